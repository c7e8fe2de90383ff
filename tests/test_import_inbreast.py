"""`data import-inbreast`: a tiny INbreast release with the real names and quirks -> every manifest row checked.

The tree (built by `inbreast_tree`): INbreast.csv, ";"-separated with the real header ("Patient ID;Patient
age;Laterality;View;Acquisition date;File Name;ACR;Bi-Rads"), Patient ID and age "removed", a blank ACR
padded with spaces, Bi-Rads 1 to 6 with "4a"; AllDICOMs/<file id>_<patient key>_MG_<L|R>_<CC|ML>_ANON.dcm
written with pydicom (16-bit MONOCHROME2 and MONOCHROME1, one RLE-compressed, PixelSpacing,
ImagerPixelSpacing or none), a stray file and a DICOM without a CSV row; AllXML/<file id>.xml written
with `plistlib.dump` as OsiriX writes it: a point calcification (Type 19), a polygon calcification
(Type 15), an ellipse given as points (Type 9), a polygon cluster, a mass, the misspelt "Assymetry",
a ROI without points, a cluster outside its image; an image without an XML (BI-RADS 1), a CSV row
whose DICOM is missing, and an XML without an image.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
from cli_helpers import invoke, one_error_line
from dicom_builders import make_dataset, save
from pydicom.uid import RLELossless

from mammo_tf.data.catalog import load_catalog
from mammo_tf.data.importers import common
from mammo_tf.data.importers.common import points_circle
from mammo_tf.data.importers.inbreast import SPECK_RADIUS_PX, import_inbreast, read_rois
from mammo_tf.errors import MammoError

HEADER = "Patient ID;Patient age;Laterality;View;Acquisition date;File Name;ACR;Bi-Rads"
SHAPE = (64, 48)  # rows x columns of every DICOM
P1, P2, P3 = "61b13c59bcba149e", "6bd24a0a42c19ce1", "97ec8cadfca70d32"  # patient keys of the file names
# file id -> (patient key, side, file-name view, CSV view, ACR as written, Bi-Rads, DICOM: photometric, spacing)
IMAGES = {
    "22678622": (P1, "R", "CC", "CC", "4", "1", "MONOCHROME2", {"PixelSpacing": [0.07, 0.07]}),  # no XML
    "22678646": (P1, "L", "CC", "CC", "4", "4a", "MONOCHROME1", {"PixelSpacing": [0.07, 0.07]}),
    "22678670": (P1, "R", "ML", "MLO", "4", "2", "MONOCHROME2", {"ImagerPixelSpacing": [0.07, 0.07]}),  # RLE
    "22678694": (P1, "L", "ML", "MLO", "   ", "3", "MONOCHROME1", {}),  # blank ACR; no spacing
    "22614074": (P2, "R", "CC", "MLO", "2", "6", "MONOCHROME2", {"PixelSpacing": [0.07, 0.07]}),  # CSV view wrong
    "22614097": (P2, "L", "CC", "CC", "2", "5", None, None),  # no DICOM on disk
}
RLE_IMAGE = "22678670"
EXTRA_DICOM = f"50997434_{P3}_MG_L_ML_ANON.dcm"  # in AllDICOMs, not in the CSV
ELLIPSE = (35.0, 40.0, 4.0, 2.5)  # centre x, y and semi-axes a (x), b (y) of the ellipse speck, pixels


def _ellipse_points(n: int = 20) -> list[tuple[float, float]]:
    x, y, a, b = ELLIPSE
    return [(x + a * math.cos(t), y + b * math.sin(t)) for t in np.linspace(0, 2 * math.pi, n, endpoint=False)]


# file id -> ROIs as (Name, Type, points (x, y)); what OsiriX writes around them is added by `_roi`.
ROIS = {
    "22678646": [
        ("Calcification", 19, [(10.2, 12.7)]),  # a point: a disc around row 13, col 10
        ("Calcification", 15, [(20.0, 5.0), (23.0, 5.0), (23.0, 7.0), (20.0, 7.0)]),  # rows 5-7, cols 20-23
        ("Calcification", 9, _ellipse_points()),
        ("Cluster", 15, [(8.0, 8.0), (16.0, 8.0), (16.0, 18.0), (8.0, 18.0)]),
        ("Mass", 15, [(30.0, 10.0), (40.0, 10.0), (40.0, 20.0), (30.0, 20.0)]),
    ],
    "22678670": [  # specks only, no cluster outlined
        ("Calcification", 19, [(5.0, 50.0)]),
        ("Calcifications", 19, [(40.6, 2.4)]),
    ],
    "22678694": [
        ("Assymetry", 15, [(4.0, 30.0), (15.0, 32.0), (10.0, 31.0)]),
        ("Unnamed", 19, []),  # no points: a problem, left out
    ],
    "22614074": [
        ("Cluster", 15, [(100.0, 100.0), (110.0, 100.0), (105.0, 110.0)]),  # outside the 64x48 image
        ("Spiculated Region", 15, [(20.0, 40.0), (26.0, 40.0), (23.0, 46.0)]),
    ],
    "12345678": [("Mass", 15, [(1.0, 1.0), (2.0, 1.0), (2.0, 2.0)])],  # no such image
}


def _roi(index: int, name: str, kind: int, points: list[tuple[float, float]]) -> dict:
    """One ROI as OsiriX writes it (the adapter reads Name and Point_px)."""
    return {
        "Area": 0.0,
        "Center": "(0.000000, 0.000000, 0.000000)",
        "Dev": 0.0,
        "IndexInImage": index,
        "Max": 0.0,
        "Mean": 0.0,
        "Min": 0.0,
        "Name": name,
        "NumberOfPoints": len(points),
        "Point_mm": [f"({x * 0.07:.6f}, {y * 0.07:.6f}, 0.000000)" for x, y in points],
        "Point_px": [f"({x:.6f}, {y:.6f})" for x, y in points],
        "Total": 0.0,
        "Type": kind,
    }


def _write_xml(path: Path, rois: list[tuple[str, int, list]]) -> None:
    import plistlib

    image = {"ImageHeight": SHAPE[0], "ImageWidth": SHAPE[1], "ImageIndex": 0, "NumberOfROIs": len(rois)}
    image["ROIs"] = [_roi(i, *roi) for i, roi in enumerate(rois)]
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:
        plistlib.dump({"Images": [image]}, handle)


def _csv_lines(images=IMAGES) -> list[str]:
    lines = [HEADER]
    for file_id, (_, side, _, view, acr, birads, *_) in images.items():
        lines.append(f"removed;removed;{side};{view};201001;{file_id};{acr};{birads}")
    return lines


def _dicom_path(src: Path, file_id: str) -> Path:
    key, side, view, *_ = IMAGES[file_id]
    return src / "AllDICOMs" / f"{file_id}_{key}_MG_{side}_{view}_ANON.dcm"


def _dicom(path: Path, photometric: str, spacing: dict, rle: bool = False) -> None:
    pixels = np.random.default_rng(len(path.name)).integers(0, 65536, SHAPE, dtype=np.uint16)
    ds = make_dataset(pixels, 16, photometric, **spacing)
    if rle:
        ds.compress(RLELossless)
    save(ds, path)


@pytest.fixture
def inbreast_tree(tmp_path: Path) -> Path:
    """SRC: INbreast.csv, AllDICOMs/ and AllXML/ (see the module docstring); returns SRC."""
    src = tmp_path / "INbreast Release 1.0"
    src.mkdir()
    (src / "INbreast.csv").write_text("\n".join(_csv_lines()) + "\n", encoding="utf-8")
    for file_id, (*_, photometric, spacing) in IMAGES.items():
        if photometric is not None:
            _dicom(_dicom_path(src, file_id), photometric, spacing, rle=file_id == RLE_IMAGE)
    _dicom(src / "AllDICOMs" / EXTRA_DICOM, "MONOCHROME2", {})
    (src / "AllDICOMs" / "readme.txt").write_text("not a DICOM")
    for file_id, rois in ROIS.items():
        _write_xml(src / "AllXML" / f"{file_id}.xml", rois)
    return src


def _read(manifest: Path) -> list[dict[str, str]]:
    with open(manifest, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _mask_path(out: Path, file_id: str) -> str:
    return str(out / "masks" / f"{file_id}_specks.png")


# --- a good release -------------------------------------------------------------------------------------

# Every manifest row, in order: file id, class, (row, col, radius) or None, has the speck mask, ROI name,
# specks in the image, CSV line.
EXPECTED = [
    ("22678622", "NORM", None, False, "", 0, 2),  # no XML
    ("22678646", "CALC", (13, 12, 7), True, "Cluster", 3, 3),  # centre (12, 13), radius hypot(4, 5) = 6.4
    ("22678646", "MASS", (15, 35, 8), False, "Mass", 3, 3),  # radius hypot(5, 5) = 7.07
    ("22678670", "CALC", None, True, "Calcification", 2, 4),  # specks only: the mask, no centre
    ("22678694", "ASYMMETRY", (31, 10, 7), False, "Assymetry", 0, 5),  # farthest (4, 30): hypot(6, 1)
    ("22614074", "CALC", None, False, "Cluster", 0, 6),  # its centre lies outside the image
    ("22614074", "SPICULATED_REGION", (42, 23, 4), False, "Spiculated Region", 0, 6),  # circumcircle r = 3.75
]
SUSPICION = {"1": "", "4a": "suspicious", "2": "benign", "3": "probably benign", "6": "known malignant"}
VIEW = {"CC": "CC", "ML": "MLO"}


def test_every_manifest_row(inbreast_tree: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    summary = import_inbreast(inbreast_tree, out, progress=False)
    rows = _read(out / "manifest.csv")
    assert len(rows) == len(EXPECTED)
    for row, (file_id, code, circle, masked, roi, specks, line) in zip(rows, EXPECTED, strict=True):
        key, side, view, _, acr, birads, *_ = IMAGES[file_id]
        assert row["path"] == str(_dicom_path(inbreast_tree, file_id)) and Path(row["path"]).is_absolute(), file_id
        assert (row["patient_id"], row["image_id"], row["laterality"], row["view"]) == (key, file_id, side, VIEW[view])
        assert (row["tissue"], row["abnormality"], row["severity"], row["split"]) == (acr.strip(), code, "", "")
        assert (row["row"], row["col"], row["radius"]) == tuple(str(v) for v in circle or ("", "", "")), file_id
        assert (row["spacing_mm"], row["spacing_assumed"]) == ("", "false")
        assert row["mask"] == (_mask_path(out, file_id) if masked else ""), file_id
        suspicion = SUSPICION[birads] if code != "NORM" else ""
        labels = (row["birads"], row["suspicion"], row["roi_name"], row["specks"])
        assert labels == (birads, suspicion, roi, str(specks)), file_id
        assert row["source_row"] == f"INbreast.csv:{line}"
    assert sorted(p.name for p in (out / "masks").iterdir()) == ["22678646_specks.png", "22678670_specks.png"]
    assert summary.images == 5 and summary.patients == 2 and summary.splits == {}
    assert (summary.source_rows, summary.rows_used) == (6, 5)
    assert summary.findings == {"CALC -": 3, "MASS -": 1, "ASYMMETRY -": 1, "NORM -": 1, "SPICULATED_REGION -": 1}
    assert summary.with_centre == 4 and summary.spacing_mm == (0.07, 0.07) and summary.spacing_unknown == 1
    assert summary.not_found == (str(inbreast_tree / "AllDICOMs" / "22614097_*_MG_*_ANON.dcm"),)
    xml = inbreast_tree / "AllXML"
    assert summary.problems == (
        f"{xml / '22678694.xml'}: ROI 1 (Unnamed) has no points; left out",
        f"{_dicom_path(inbreast_tree, '22614074')}: INbreast.csv line 6 gives R MLO, the file name R CC; "
        "the file name's is kept",
        f"{xml / '22614074.xml'}: ROI 0 (Cluster): centre row 104, col 105 outside the 64x48 image; "
        "finding kept without a centre",
    )
    assert summary.notes == (
        "1 file(s) of AllDICOMs not named <file id>_<patient key>_MG_<L|R>_<view>_ANON.dcm, ignored: readme.txt",
        "1 DICOM(s) of AllDICOMs have no row in INbreast.csv, left out: 50997434",
        "1 XML file(s) of AllXML name no image of INbreast.csv, ignored: 12345678",
        "1 image(s) have no XML in AllXML (no annotation): NORM",
        "patient_id of 5 image(s) is the DICOM file name's patient key (INbreast.csv gives no Patient ID: "
        "'removed' or empty)",
    )


def _pixels(mask: np.ndarray) -> set[tuple[int, int]]:
    return {(int(r), int(c)) for r, c in zip(*np.nonzero(mask), strict=True)}


def _disc(row: int, col: int) -> set[tuple[int, int]]:
    """A disc of radius SPECK_RADIUS_PX = 1 as OpenCV draws it: the pixel and its four neighbours."""
    assert SPECK_RADIUS_PX == 1
    return {(row, col), (row - 1, col), (row + 1, col), (row, col - 1), (row, col + 1)}


def _read_mask(path: str) -> np.ndarray:
    mask = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    assert mask.dtype == np.uint8 and mask.shape == SHAPE  # 8-bit, the image's size
    assert set(np.unique(mask)) <= {0, 255}
    return mask > 0


def test_the_speck_masks(inbreast_tree: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    import_inbreast(inbreast_tree, out, progress=False)
    # points only: (x 5, y 50) and (x 40.6, y 2.4) -> discs about (row 50, col 5) and (row 2, col 41)
    assert _pixels(_read_mask(_mask_path(out, "22678670"))) == _disc(50, 5) | _disc(2, 41)
    mask = _read_mask(_mask_path(out, "22678646"))
    rectangle = {(r, c) for r in range(5, 8) for c in range(20, 24)}  # filled, border included
    x, y, a, b = ELLIPSE
    rows, cols = np.mgrid[: SHAPE[0], : SHAPE[1]]
    inner = ((cols - x) / (a - 0.5)) ** 2 + ((rows - y) / (b - 0.5)) ** 2 <= 1  # surely inside the ellipse
    outer = ((cols - x) / (a + 1)) ** 2 + ((rows - y) / (b + 1)) ** 2 <= 1  # surely holds its drawing
    ellipse = _pixels(mask & outer)
    assert _pixels(inner) <= ellipse and len(ellipse) > 0.8 * math.pi * a * b
    assert _pixels(mask) == _disc(13, 10) | rectangle | ellipse  # nothing else: the cluster and mass are not specks


def test_load_catalog_reads_the_manifest(inbreast_tree: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    import_inbreast(inbreast_tree, out, progress=False)
    catalog = load_catalog(out)
    assert catalog.n_images == 5 and catalog.n_patients == 2 and len(catalog.findings) == 7
    images = catalog.images.set_index("image_id")
    assert set(images["split"]) <= {"train", "val", "test"}  # the catalog's seeded split, by patient
    assert images.loc[[i for i in IMAGES if IMAGES[i][0] == P1], "split"].nunique() == 1
    assert (images["height"] == 64).all() and (images["width"] == 48).all() and (images["bit_depth"] == 16).all()
    sources = images["spacing_source"].to_dict()
    assert sources == {
        "22678622": "dicom PixelSpacing",
        "22678646": "dicom PixelSpacing",
        "22678670": "dicom ImagerPixelSpacing",
        "22678694": "unknown",
        "22614074": "dicom PixelSpacing",
    }
    known = images[images["spacing_source"] != "unknown"]
    assert (known["spacing_row_mm"] == 0.07).all() and (known["spacing_col_mm"] == 0.07).all()
    findings = catalog.findings
    assert findings["abnormality"].tolist() == [e[1] for e in EXPECTED]
    assert findings["has_coords"].tolist() == [e[2] is not None for e in EXPECTED]
    assert findings["mask"].tolist() == [_mask_path(out, e[0]) if e[3] else "" for e in EXPECTED]
    assert findings.loc[1, ["row", "col", "radius"]].tolist() == [13, 12, 7]


def test_cli_summary(inbreast_tree: Path, tmp_path: Path) -> None:
    result = invoke("data", "import-inbreast", inbreast_tree, "--out", tmp_path / "out")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[:4] == [
        f"wrote        {tmp_path / 'out' / 'manifest.csv'} (INbreast)",
        "images       5 of 2 patients; no split given (the catalog splits by patient, seeded)",
        "findings     CALC -: 3, MASS -: 1, ASYMMETRY -: 1, NORM -: 1, SPICULATED_REGION -: 1; 4 of 6 with a "
        "centre; 1 of 6 source rows left out (image not found)",
        "spacing      0.07 mm per pixel, from the headers; unknown for 1 image (their headers state none)",
    ]
    assert lines[4] == f"not found    1: {inbreast_tree / 'AllDICOMs' / '22614097_*_MG_*_ANON.dcm'}"
    assert lines[5].startswith("problems     3: ") and "ROI 1 (Unnamed) has no points" in lines[5]
    assert len(lines) == 11 and all(line.startswith("note         ") for line in lines[6:])
    assert result.stderr == ""


def test_the_rle_dicom_is_read_from_its_header(inbreast_tree: Path) -> None:
    import pydicom

    path = _dicom_path(inbreast_tree, RLE_IMAGE)
    assert pydicom.dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID == RLELossless


def test_a_comma_separated_table_and_a_patient_id(inbreast_tree: Path, tmp_path: Path) -> None:
    """A table re-saved with ","; a Patient ID other than "removed" is used as given."""
    lines = [line.replace(";", ",") for line in _csv_lines()]
    lines[1] = lines[1].replace("removed,removed", "P-007,45", 1)
    (inbreast_tree / "INbreast.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    summary = import_inbreast(inbreast_tree, tmp_path / "out", progress=False)
    rows = _read(tmp_path / "out" / "manifest.csv")
    assert [r["patient_id"] for r in rows] == ["P-007", *[P1] * 4, P2, P2]
    assert summary.patients == 3 and "patient_id of 4 image(s)" in summary.notes[-1]


# --- all or nothing ------------------------------------------------------------------------------------


def test_an_output_holding_masks_is_refused(inbreast_tree: Path, tmp_path: Path) -> None:
    (tmp_path / "out" / "masks").mkdir(parents=True)
    (tmp_path / "out" / "masks" / "mine.png").write_bytes(b"x")
    with pytest.raises(MammoError, match=r"out/masks: already exists"):
        import_inbreast(inbreast_tree, tmp_path / "out", progress=False)
    assert sorted(p.name for p in (tmp_path / "out").rglob("*")) == ["masks", "mine.png"]


def test_a_failed_manifest_write_removes_the_masks(
    inbreast_tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full_disk(path, data) -> None:
        assert (tmp_path / "out" / "masks" / "22678646_specks.png").is_file()  # the masks came first
        raise MammoError(f"{path}: cannot write (No space left on device)")

    monkeypatch.setattr(common, "write_bytes_atomic", full_disk)
    with pytest.raises(MammoError, match="No space left"):
        import_inbreast(inbreast_tree, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


# --- bad inputs: one line naming the file (and line), exit 2, nothing written ---------------------------


def _csv(src: Path, lines: list[str]) -> Path:
    (src / "INbreast.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return src


def _xml(src: Path, data: bytes) -> Path:
    (src / "AllXML" / "22678646.xml").write_bytes(data)
    return src


def _plist(document: dict) -> bytes:
    import plistlib

    return plistlib.dumps(document)


def _remove(src: Path, name: str) -> Path:
    import shutil

    target = src / name
    shutil.rmtree(target) if target.is_dir() else target.unlink()
    return src


def _no_dicoms(src: Path) -> Path:
    for path in (src / "AllDICOMs").iterdir():
        path.unlink()
    return src


def _corrupt_dicom(src: Path) -> Path:
    _dicom_path(src, "22678694").write_bytes(b"\0" * 300)
    return src


def _truncated_xml(src: Path) -> Path:
    data = (src / "AllXML" / "22678646.xml").read_bytes()
    return _xml(src, data[: len(data) // 2])


BAD = [
    # (id, breaks the tree and returns SRC, text the one line must hold)
    ("no-csv", lambda s: _remove(s, "INbreast.csv"), ["INbreast.csv: file not found"]),
    ("no-xml-folder", lambda s: _remove(s, "AllXML"), ["AllXML: no such folder"]),
    ("no-dicom-folder", lambda s: _remove(s, "AllDICOMs"), ["AllDICOMs: no such folder"]),
    (
        "no-birads-column",
        lambda s: _csv(s, [HEADER.replace("Bi-Rads", "Assessment"), *_csv_lines()[1:]]),
        ["INbreast.csv:1: missing required column(s) ['bi-rads']"],
    ),
    (
        "bad-birads",
        lambda s: _csv(s, [*_csv_lines()[:2], _csv_lines()[2].replace(";4a", ";7"), *_csv_lines()[3:]]),
        ["INbreast.csv:3: Bi-Rads '7' is not a BI-RADS category"],
    ),
    (
        "twice",
        lambda s: _csv(s, [*_csv_lines()[:3], _csv_lines()[2].replace(";L;", ";R;"), *_csv_lines()[3:]]),
        ["INbreast.csv:4: File Name 22678646 is also on line 3"],
    ),
    ("not-a-plist", lambda s: _xml(s, b"<html>not a plist</html>"), ["22678646.xml: malformed plist"]),
    ("truncated-plist", _truncated_xml, ["22678646.xml: malformed plist"]),
    ("no-images-array", lambda s: _xml(s, _plist({"ROIs": []})), ["22678646.xml: not an OsiriX ROI plist"]),
    (
        "bad-point",
        lambda s: _xml(s, _plist({"Images": [{"ROIs": [{"Name": "Mass", "Point_px": ["(1.0, two)"]}]}]})),
        ["22678646.xml: ROI 0: Point_px entry '(1.0, two)'"],
    ),
    ("corrupt-dicom", _corrupt_dicom, ["22678694_61b13c59bcba149e_MG_L_ML_ANON.dcm: not a DICOM file"]),
    ("nothing-found", _no_dicoms, ["no DICOM found for any of the 6 images of INbreast.csv"]),
]


@pytest.mark.parametrize(("breaks", "needles"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_sources_are_one_line_and_write_nothing(inbreast_tree: Path, tmp_path: Path, breaks, needles) -> None:
    src = breaks(inbreast_tree)
    result = invoke("data", "import-inbreast", src, "--out", tmp_path / "out")
    one_error_line(result, "mammo-tf: error: ", str(src), *needles)
    assert not (tmp_path / "out").exists()
    (tmp_path / "empty").mkdir()  # an existing (empty) output folder stays empty: no manifest.csv, no masks/
    with pytest.raises(MammoError):
        import_inbreast(src, tmp_path / "empty", progress=False)
    assert list((tmp_path / "empty").iterdir()) == []


def test_missing_src(tmp_path: Path) -> None:
    result = invoke("data", "import-inbreast", tmp_path / "nope", "--out", tmp_path / "out")
    one_error_line(result, str(tmp_path / "nope"), "no such folder", "(SRC)")
    with pytest.raises(MammoError, match="nope: no such folder"):
        import_inbreast(tmp_path / "nope", tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == []


# --- the ROI reader and the circle of points -------------------------------------------------------------


def test_read_rois(inbreast_tree: Path) -> None:
    rois = read_rois(inbreast_tree / "AllXML" / "22678646.xml")
    assert [(r.index, r.name, r.type, len(r.points)) for r in rois] == [
        (0, "Calcification", 19, 1),
        (1, "Calcification", 15, 4),
        (2, "Calcification", 9, 20),
        (3, "Cluster", 15, 4),
        (4, "Mass", 15, 4),
    ]
    np.testing.assert_allclose(rois[0].points, [[10.2, 12.7]])  # (x, y) as written


@pytest.mark.parametrize(
    "points",
    [
        [(10.2, 12.7)],
        [(8.0, 8.0), (16.0, 8.0), (16.0, 18.0), (8.0, 18.0)],
        [(20.0, 40.0), (26.0, 40.0), (23.0, 46.0)],
        _ellipse_points(),
        [(0.4, 0.6), (1000.3, 2.2), (500.0, 700.9)],
    ],
    ids=["point", "rectangle", "triangle", "ellipse", "large"],
)
def test_points_circle_holds_every_point_and_no_more_than_it_must(points: list[tuple[float, float]]) -> None:
    row, col, radius = points_circle(np.array(points))
    xy = np.array(points)
    distances = np.hypot(xy[:, 0] - col, xy[:, 1] - row)
    assert (distances <= radius).all()
    assert radius == max(1, math.ceil(distances.max()))  # exact: OpenCV's 1e-4 px margin does not round up
    (x, y), smallest = cv2.minEnclosingCircle(xy.astype(np.float32))
    assert (row, col) == (math.floor(y + 0.5), math.floor(x + 0.5))
    assert radius <= math.ceil(smallest + math.hypot(0.5, 0.5))
