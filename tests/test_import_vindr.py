"""`data import-vindr`: a tiny VinDr-Mammo release with the real names and quirks -> every manifest row checked.

The tree (built by `vindr_tree`): finding_annotations.csv with the real header, hashed study and image
ids, `finding_categories` as Python lists written as text (one box with two categories, quoted because
of its comma), "No Finding" rows without a box, BI-RADS and density as VinDr writes them ("BI-RADS 4",
"DENSITY C"), `training` / `test` splits and one study in both; images/<study_id>/<image_id>.dicom
written with pydicom: 16-bit MONOCHROME2 and MONOCHROME1, one RLE-compressed, with PixelSpacing,
ImagerPixelSpacing (with and without a magnification factor) or no spacing at all; one DICOM missing,
one whose header disagrees with the CSV's height, one box whose centre lies outside its image.
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import invoke, one_error_line
from dicom_builders import make_dataset, save
from pydicom.uid import RLELossless

from mammo_tf.data.catalog import load_catalog
from mammo_tf.data.importers.common import (
    abnormality_code,
    birads_suspicion,
    box_circle,
    integer_circle,
)
from mammo_tf.data.importers.vindr import import_vindr, parse_categories
from mammo_tf.errors import MammoError

HEADER_LINE = (
    "study_id,series_id,image_id,laterality,view_position,height,width,breast_birads,breast_density,"
    "finding_categories,finding_birads,xmin,ymin,xmax,ymax,split"
)
HEADER = HEADER_LINE.split(",")
SHAPE = (64, 48)  # rows x columns of every DICOM


def _hash(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()  # VinDr's ids are 32 hex digits


S1, S2, S3 = _hash("study-1"), _hash("study-2"), _hash("study-3")
IDS = {name: _hash(f"image-{name}") for name in "abcdefgh"}
# image -> (study, laterality, view, breast BI-RADS, density, split, DICOM: photometric, spacing attributes, RLE)
IMAGES = {
    "a": (S1, "L", "CC", "BI-RADS 5", "DENSITY C", "training", "MONOCHROME2", {"PixelSpacing": [0.085, 0.085]}),
    "b": (S1, "L", "MLO", "BI-RADS 5", "DENSITY C", "training", "MONOCHROME1", {"PixelSpacing": [0.085, 0.085]}),
    "c": (S1, "R", "CC", "BI-RADS 3", "DENSITY C", "training", "MONOCHROME2", {"ImagerPixelSpacing": [0.1, 0.1]}),
    "d": (S1, "R", "MLO", "BI-RADS 4", "DENSITY C", "training", None, None),  # no DICOM on disk
    "e": (S2, "L", "CC", "BI-RADS 2", "DENSITY B", "test", "MONOCHROME2", {}),  # no spacing in the header
    "f": (
        S2,
        "R",
        "CC",
        "BI-RADS 1",
        "DENSITY B",
        "test",
        "MONOCHROME1",
        {"ImagerPixelSpacing": [0.1, 0.1], "EstimatedRadiographicMagnificationFactor": 1.25},
    ),
    "g": (S3, "L", "CC", "BI-RADS 1", "DENSITY A", "training", "MONOCHROME2", {"PixelSpacing": [0.065, 0.065]}),
    "h": (S3, "L", "MLO", "BI-RADS 3", "DENSITY A", "test", "MONOCHROME2", {"PixelSpacing": [0.085, 0.085]}),
}
RLE_IMAGE = "c"
# CSV rows after the header (lines 2, 3, ...): image, categories as text, finding BI-RADS, box or None
FINDINGS = [
    ("a", "['Suspicious Calcification']", "BI-RADS 4", (10.5, 20.0, 16.5, 28.0)),  # line 2
    ("a", "['Mass', 'Suspicious Calcification']", "BI-RADS 5", (30.0, 40.0, 40.0, 50.0)),  # line 3: two findings
    ("b", "['No Finding']", "", None),  # line 4
    ("c", "['Architectural Distortion']", "BI-RADS 3", (0.0, 0.0, 6.0, 8.0)),  # line 5
    ("d", "['Suspicious Calcification']", "BI-RADS 4", (5.0, 5.0, 9.0, 9.0)),  # line 6: DICOM missing
    ("e", "['Focal Asymmetry']", "BI-RADS 2", (20.0, 30.0, 24.0, 34.0)),  # line 7: CSV says 70 rows
    ("f", "['No Finding']", "", None),  # line 8
    ("g", "['No Finding']", "", None),  # line 9
    ("h", "['Suspicious Lymph Node']", "BI-RADS 3", (100.0, 10.0, 110.0, 20.0)),  # line 10: centre off the image
]
CSV_HEIGHT = {"e": 70}  # the CSV's height where it disagrees with the DICOM header


def _csv_rows(findings=FINDINGS) -> list[list[str]]:
    rows = []
    for image, categories, birads, box in findings:
        study, side, view, breast_birads, density, split, *_ = IMAGES[image]
        height = CSV_HEIGHT.get(image, SHAPE[0])
        coordinates = [f"{v:g}" for v in box] if box else ["", "", "", ""]
        rows.append(
            [study, _hash(f"series-{study}-{side}"), IDS[image], side, view, str(height), str(SHAPE[1]), breast_birads]
            + [density, categories, birads, *coordinates, split]
        )
    return rows


def _write_csv(path: Path, rows: list[list[str]], header: list[str] = HEADER) -> None:
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")  # pandas' quoting: only the values with a comma
    writer.writerows([header, *rows])
    path.write_text(text.getvalue(), encoding="utf-8")


def _dicom_path(src: Path, image: str) -> Path:
    return src / "images" / IMAGES[image][0] / f"{IDS[image]}.dicom"


@pytest.fixture
def vindr_tree(tmp_path: Path) -> Path:
    """SRC: finding_annotations.csv and images/ (see the module docstring); returns SRC."""
    src = tmp_path / "vindr-mammo-1.0.0"
    src.mkdir()
    _write_csv(src / "finding_annotations.csv", _csv_rows())
    rng = np.random.default_rng(0)
    for image, (_, _, _, _, _, _, photometric, spacing) in IMAGES.items():
        if photometric is None:
            continue
        pixels = rng.integers(0, 65536, SHAPE, dtype=np.uint16)
        ds = make_dataset(pixels, 16, photometric, **spacing)
        if image == RLE_IMAGE:
            ds.compress(RLELossless)
        save(ds, _dicom_path(src, image))
    return src


def _read(manifest: Path) -> list[dict[str, str]]:
    with open(manifest, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


# --- a good release -------------------------------------------------------------------------------------

# Every manifest row, in order: image, class, (row, col, radius) or None, finding BI-RADS, suspicion,
# categories as text, source line.
EXPECTED = [
    ("a", "CALC", (24, 14, 6), "BI-RADS 4", "suspicious", "['Suspicious Calcification']", 2),
    ("a", "MASS", (45, 35, 8), "BI-RADS 5", "suspicious", "['Mass', 'Suspicious Calcification']", 3),
    ("a", "CALC", (45, 35, 8), "BI-RADS 5", "suspicious", "['Mass', 'Suspicious Calcification']", 3),
    ("b", "NORM", None, "", "", "['No Finding']", 4),
    ("c", "ARCHITECTURAL_DISTORTION", (4, 3, 5), "BI-RADS 3", "probably benign", "['Architectural Distortion']", 5),
    ("e", "FOCAL_ASYMMETRY", (32, 22, 3), "BI-RADS 2", "benign", "['Focal Asymmetry']", 7),
    ("f", "NORM", None, "", "", "['No Finding']", 8),
    ("g", "NORM", None, "", "", "['No Finding']", 9),
    ("h", "SUSPICIOUS_LYMPH_NODE", None, "BI-RADS 3", "probably benign", "['Suspicious Lymph Node']", 10),
]
TISSUE = {"DENSITY A": "A", "DENSITY B": "B", "DENSITY C": "C"}
SPLIT = {"a": "train", "b": "train", "c": "train", "e": "test", "f": "test", "g": "test", "h": "test"}  # S3: both


def test_every_manifest_row(vindr_tree: Path, tmp_path: Path) -> None:
    summary = import_vindr(vindr_tree, tmp_path / "out", progress=False)
    rows = _read(tmp_path / "out" / "manifest.csv")
    assert len(rows) == len(EXPECTED)
    for row, (image, code, circle, birads, suspicion, categories, line) in zip(rows, EXPECTED, strict=True):
        study, side, view, breast_birads, density, *_ = IMAGES[image]
        where = f"{image} line {line}"
        assert row["path"] == str(_dicom_path(vindr_tree, image)) and Path(row["path"]).is_absolute(), where
        assert (row["patient_id"], row["image_id"], row["laterality"], row["view"]) == (study, IDS[image], side, view)
        assert (row["tissue"], row["abnormality"], row["severity"], row["split"]) == (
            TISSUE[density],
            code,
            "",
            SPLIT[image],
        ), where
        assert (row["row"], row["col"], row["radius"]) == tuple(str(v) for v in circle or ("", "", "")), where
        assert (row["spacing_mm"], row["spacing_assumed"], row["mask"]) == ("", "false", ""), where
        assert row["series_id"] == _hash(f"series-{study}-{side}"), where
        assert (row["breast_birads"], row["finding_birads"], row["suspicion"]) == (breast_birads, birads, suspicion)
        assert (row["finding_categories"], row["source_row"]) == (categories, f"finding_annotations.csv:{line}")
    assert summary.images == 7 and summary.patients == 3
    assert (summary.source_rows, summary.rows_used) == (9, 8)
    assert summary.findings == {
        "CALC -": 2,
        "MASS -": 1,
        "ARCHITECTURAL_DISTORTION -": 1,
        "FOCAL_ASYMMETRY -": 1,
        "NORM -": 3,
        "SUSPICIOUS_LYMPH_NODE -": 1,
    }
    assert summary.with_centre == 5 and summary.splits == {"train": 3, "test": 4}
    assert summary.spacing_mm == (0.065, 0.1) and summary.spacing_unknown == 1 and not summary.spacing_assumed
    assert summary.not_found == (str(_dicom_path(vindr_tree, "d")),)
    assert summary.problems == (
        f"{_dicom_path(vindr_tree, 'e')}: finding_annotations.csv line 7 gives 70x48 (height x width), "
        "the DICOM header 64x48; the header's size is kept",
        f"{_dicom_path(vindr_tree, 'h')} (finding_annotations.csv line 10): centre row 15, col 105 outside the "
        "64x48 image; finding kept without a centre",
    )
    assert summary.notes == (f"1 patient is in both VinDr-Mammo splits: test gets all their images ({S3})",)


def test_load_catalog_reads_the_manifest(vindr_tree: Path, tmp_path: Path) -> None:
    import_vindr(vindr_tree, tmp_path / "out", progress=False)
    catalog = load_catalog(tmp_path / "out")
    assert catalog.n_images == 7 and catalog.n_patients == 3 and len(catalog.findings) == 9
    images = catalog.images.set_index("image_id")
    assert {image: images.loc[IDS[image], "split"] for image in SPLIT} == SPLIT
    assert (images["height"] == 64).all() and (images["width"] == 48).all() and (images["bit_depth"] == 16).all()
    columns = ["spacing_row_mm", "spacing_col_mm", "spacing_source"]
    spacing = {image: tuple(images.loc[IDS[image], columns]) for image in "acfg"}
    assert spacing == {
        "a": (0.085, 0.085, "dicom PixelSpacing"),
        "c": (0.1, 0.1, "dicom ImagerPixelSpacing"),
        "f": (pytest.approx(0.08), pytest.approx(0.08), "dicom ImagerPixelSpacing / magnification"),
        "g": (0.065, 0.065, "dicom PixelSpacing"),
    }
    unknown = images.loc[IDS["e"]]
    assert unknown["spacing_source"] == "unknown" and math.isnan(unknown["spacing_row_mm"])
    findings = catalog.findings
    assert findings["abnormality"].tolist() == [e[1] for e in EXPECTED]
    assert findings["has_coords"].tolist() == [e[2] is not None for e in EXPECTED]
    assert findings.loc[0, ["row", "col", "radius"]].tolist() == [24, 14, 6]
    assert (findings["severity"] == "").all() and (findings["mask"] == "").all()
    labels = catalog.image_labels()
    assert labels[IDS["b"]] == "normal" and labels[IDS["a"]] == "other"  # no severity: not calc-B / calc-M


def test_cli_summary(vindr_tree: Path, tmp_path: Path) -> None:
    result = invoke("data", "import-vindr", vindr_tree, "--out", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        f"wrote        {tmp_path / 'out' / 'manifest.csv'} (VinDr-Mammo)",
        "images       7 of 3 patients; splits test: 4, train: 3",
        "findings     CALC -: 2, MASS -: 1, ARCHITECTURAL_DISTORTION -: 1, FOCAL_ASYMMETRY -: 1, NORM -: 3, "
        "SUSPICIOUS_LYMPH_NODE -: 1; 5 of 6 with a centre; 1 of 9 source rows left out (image not found)",
        "spacing      0.065-0.1 mm per pixel, from the headers; unknown for 1 image (their headers state none)",
        f"not found    1: {_dicom_path(vindr_tree, 'd')}",
        f"problems     2: {_dicom_path(vindr_tree, 'e')}: finding_annotations.csv line 7 gives 70x48 (height x "
        f"width), the DICOM header 64x48; the header's size is kept; {_dicom_path(vindr_tree, 'h')} "
        "(finding_annotations.csv line 10): centre row 15, col 105 outside the 64x48 image; finding kept without "
        "a centre",
        f"note         1 patient is in both VinDr-Mammo splits: test gets all their images ({S3})",
    ]
    assert result.stderr == ""


def test_the_rle_dicom_is_read_from_its_header(vindr_tree: Path, tmp_path: Path) -> None:
    """The RLE film is one of the images (headers only: nothing is decoded), with its header's spacing."""
    import pydicom

    path = _dicom_path(vindr_tree, RLE_IMAGE)
    assert pydicom.dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID == RLELossless
    import_vindr(vindr_tree, tmp_path / "out", progress=False)
    rows = [r for r in _read(tmp_path / "out" / "manifest.csv") if r["image_id"] == IDS[RLE_IMAGE]]
    assert [r["abnormality"] for r in rows] == ["ARCHITECTURAL_DISTORTION"]


# --- bad inputs: one line naming the file (and line), exit 2, nothing written ---------------------------


def _rewrite(src: Path, line: int, column: str, value: str) -> Path:
    """Set one cell of finding_annotations.csv (line: the file's line, header = 1)."""
    rows = _csv_rows()
    rows[line - 2][HEADER.index(column)] = value
    _write_csv(src / "finding_annotations.csv", rows)
    return src


def _no_csv(src: Path) -> Path:
    (src / "finding_annotations.csv").unlink()
    return src


def _no_split_column(src: Path) -> Path:
    header = [*HEADER[:-1], "fold"]
    _write_csv(src / "finding_annotations.csv", _csv_rows(), header)
    return src


def _corrupt_dicom(src: Path) -> Path:
    _dicom_path(src, "b").write_bytes(b"\0" * 300)
    return src


def _no_images(src: Path) -> Path:
    (src / "images").rename(src / "elsewhere")
    return src


BAD = [
    # (id, breaks the tree and returns SRC, text the one line must hold)
    ("no-csv", _no_csv, ["finding_annotations.csv: file not found"]),
    ("no-split-column", _no_split_column, ["finding_annotations.csv:1: missing required column(s) ['split']"]),
    ("list-not-closed", lambda s: _rewrite(s, 4, "finding_categories", "['No Finding'"), [":4: finding_categories"]),
    ("bare-word", lambda s: _rewrite(s, 5, "finding_categories", "Mass"), [":5: finding_categories must be a list"]),
    ("empty-list", lambda s: _rewrite(s, 2, "finding_categories", "[]"), [":2: finding_categories must be a list"]),
    ("not-names", lambda s: _rewrite(s, 2, "finding_categories", "[1, 2]"), [":2: finding_categories must be a list"]),
    ("split", lambda s: _rewrite(s, 3, "split", "validation"), [":3: unknown split 'validation'"]),
    ("half-box", lambda s: _rewrite(s, 2, "xmax", ""), [":2: xmin, ymin, xmax, ymax must be four numbers"]),
    ("box-text", lambda s: _rewrite(s, 2, "ymin", "top"), [":2: xmin, ymin, xmax, ymax must be four numbers"]),
    ("box-inverted", lambda s: _rewrite(s, 5, "xmin", "9"), [":5: box has xmin > xmax"]),
    ("birads", lambda s: _rewrite(s, 2, "finding_birads", "BI-RADS 7"), [":2: finding_birads 'BI-RADS 7' is not"]),
    ("side", lambda s: _rewrite(s, 3, "laterality", "B"), [":3: unknown laterality 'B'"]),
    ("image-disagrees", lambda s: _rewrite(s, 3, "view_position", "MLO"), [":3: image ", "view 'MLO' disagrees"]),
    ("height", lambda s: _rewrite(s, 4, "height", "0"), [":4: height must be a whole number"]),
    ("study-path", lambda s: _rewrite(s, 4, "study_id", "../x"), [":4: study_id must be letters"]),
    ("corrupt-dicom", _corrupt_dicom, [".dicom: not a DICOM file"]),
    ("nothing-found", _no_images, ["no DICOM found for any of the 8 images of finding_annotations.csv"]),
]


@pytest.mark.parametrize(("breaks", "needles"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_sources_are_one_line_and_write_nothing(vindr_tree: Path, tmp_path: Path, breaks, needles) -> None:
    src = breaks(vindr_tree)
    result = invoke("data", "import-vindr", src, "--out", tmp_path / "out")
    one_error_line(result, "mammo-tf: error: ", str(src), *needles)
    assert not (tmp_path / "out").exists()
    (tmp_path / "empty").mkdir()  # an existing (empty) output folder stays empty: no manifest.csv
    with pytest.raises(MammoError):
        import_vindr(src, tmp_path / "empty", progress=False)
    assert list((tmp_path / "empty").iterdir()) == []


def test_missing_src(tmp_path: Path) -> None:
    result = invoke("data", "import-vindr", tmp_path / "nope", "--out", tmp_path / "out")
    one_error_line(result, str(tmp_path / "nope"), "no such folder", "(SRC)")
    with pytest.raises(MammoError, match="nope: no such folder"):
        import_vindr(tmp_path / "nope", tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == []


# --- the shared pieces ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("['Suspicious Calcification']", ("Suspicious Calcification",)),
        ("['Mass', 'Suspicious Calcification']", ("Mass", "Suspicious Calcification")),
        ('["Mass", "Skin Retraction"]', ("Mass", "Skin Retraction")),  # double quotes too
        ("['No Finding']", ("No Finding",)),
        ("['No Finding', 'Mass']", ("Mass",)),  # No Finding beside a finding says nothing
    ],
)
def test_parse_categories(text: str, names: tuple[str, ...]) -> None:
    assert parse_categories(Path("f.csv"), 2, text) == names


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("Mass", "MASS"),
        ("Architectural Distortion", "ARCHITECTURAL_DISTORTION"),
        ("Global Asymmetry", "GLOBAL_ASYMMETRY"),
        ("Suspicious Lymph Node", "SUSPICIOUS_LYMPH_NODE"),
        (" skin  thickening ", "SKIN_THICKENING"),
        ("Spiculated region", "SPICULATED_REGION"),
    ],
)
def test_abnormality_code(name: str, code: str) -> None:
    assert abnormality_code(name) == code


@pytest.mark.parametrize(
    ("text", "suspicion"),
    [
        ("", ""),
        ("BI-RADS 1", ""),
        ("BI-RADS 2", "benign"),
        ("BI-RADS 3", "probably benign"),
        ("BI-RADS 4", "suspicious"),
        ("BI-RADS 5", "suspicious"),
        ("4a", "suspicious"),
        ("4C", "suspicious"),
        ("6", "known malignant"),
        ("birads 0", ""),
    ],
)
def test_birads_suspicion(text: str, suspicion: str) -> None:
    assert birads_suspicion(Path("f.csv"), 2, "finding_birads", text) == suspicion


@pytest.mark.parametrize("text", ["7", "BI-RADS", "4d", "high"])
def test_birads_suspicion_refuses(text: str) -> None:
    with pytest.raises(MammoError, match=r"f\.csv:9: finding_birads .* is not a BI-RADS category"):
        birads_suspicion(Path("f.csv"), 9, "finding_birads", text)


@pytest.mark.parametrize(
    ("box", "circle"),
    [
        ((0.0, 0.0, 6.0, 8.0), (4, 3, 5)),  # centre (4, 3), half diagonal 5: exact
        ((10.5, 20.0, 16.5, 28.0), (24, 14, 6)),  # centre col 13.5 rounds to 14: radius 5 + 0.5, up
        ((3.0, 3.0, 3.0, 3.0), (3, 3, 1)),  # a point: radius 1
    ],
)
def test_box_circle_holds_the_corners(box: tuple[float, ...], circle: tuple[int, int, int]) -> None:
    assert box_circle(*box) == circle
    xmin, ymin, xmax, ymax = box
    for x, y in ((xmin, ymin), (xmax, ymin), (xmin, ymax), (xmax, ymax)):
        assert math.hypot(y - circle[0], x - circle[1]) <= circle[2] + 1e-9


def test_integer_circle_rounds_the_centre_then_reaches_the_farthest_point() -> None:
    points = np.array([(2.0, 2.5), (4.49, 2.5)])  # (x, y)
    assert integer_circle(points, 2.5, 3.245) == (3, 3, 2)  # halves up; farthest: hypot(1, 0.5) = 1.12
    assert integer_circle(np.array([(0.0, 0.0)]), 0.0, 0.0) == (0, 0, 1)  # at least 1
    assert integer_circle(np.array([(3.0, 0.0), (-3.0, 0.0), (0.0, 4.0)]), 0.0, 0.0) == (0, 0, 4)  # 4.0 stays 4
