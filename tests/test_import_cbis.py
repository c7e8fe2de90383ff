"""`data import-cbis`: a tiny CBIS-DDSM download with the real names and quirks -> every manifest row checked.

The tree (built by `cbis_tree`): three of the four CSVs (no mass test set: whichever exist are read)
with the real headers (calc: "breast density", mass: "breast_density", stray spaces) and their own
file paths (UID folders, 000000.dcm: never used), one quoted path holding a newline; on disk, case
folders with a study folder and a renamed series folder holding 1-1.dcm, ROI folders whose 1-1.dcm /
1-2.dcm are mask and crop in either order (one row swapped, one ROI without SeriesDescription with the
crop in a series folder of its own, one whose crop carries the series' "ROI mask images" too), a
missing case folder, a missing ROI folder, and a patient in both CBIS-DDSM splits.
"""

from __future__ import annotations

import csv
import math
import zlib
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import invoke, one_error_line
from dicom_builders import make_dataset, save

from mammo_tf.data.catalog import load_catalog
from mammo_tf.data.importers.cbis import import_cbis
from mammo_tf.data.importers.common import bounding_circle, read_source_csv
from mammo_tf.errors import MammoError

CALC_HEADER = (
    "patient_id,breast density,left or right breast,image view,abnormality id,abnormality type,calc type,"
    "calc distribution,assessment,pathology,subtlety,image file path,cropped image file path,ROI mask file path"
)
MASS_HEADER = (
    "patient_id,breast_density, left or right breast ,image view,abnormality id,abnormality type,mass shape,"
    "mass margins,assessment,pathology,subtlety,image file path,cropped image file path,ROI mask file path"
)
FULL_SHAPE = (64, 48)  # rows x columns of every full mammogram
UID = "1.3.6.1.4.1.9590.100.1.2."
# ROI folder -> the mask's foreground (row slice, col slice) and the circle it must give (row, col, radius)
MASKS = {
    "Calc-Training_P_00005_RIGHT_CC_1": ((slice(10, 21), slice(20, 31)), (15, 25, 8)),  # 11x11: r = 5*sqrt(2)
    "Calc-Training_P_00005_RIGHT_CC_2": ((slice(40, 41), slice(5, 6)), (40, 5, 1)),  # one pixel
    "Calc-Test_P_00038_LEFT_CC_1": ((slice(50, 55), slice(8, 17)), (52, 12, 5)),  # 5x9: r = sqrt(20)
    "Mass-Training_P_00001_LEFT_CC_1": ((slice(20, 41), slice(14, 35)), (30, 24, 15)),  # 21x21: r = 10*sqrt(2)
}


def _csv_path(case: str, name: str, newline: bool = False) -> str:
    """A path as the CSV writes it: UID folders and 00000x.dcm, which the download does not have."""
    text = f"{case}/{UID}{zlib.crc32(case.encode())}/{UID}{zlib.crc32(name.encode())}/{name}"
    return f'"{text}\n"' if newline else text


def _calc_row(patient, density, side, view, number, calc_type, assessment, pathology, subtlety, swapped=False):
    case = f"Calc-{'Test' if patient == 'P_00038' else 'Training'}_{patient}_{side}_{view}"
    crop, mask = ("000000.dcm", "000001.dcm") if swapped else ("000001.dcm", "000000.dcm")
    return (
        f"{patient},{density},{side},{view},{number},calcification,{calc_type},CLUSTERED,{assessment},{pathology},"
        f"{subtlety},{_csv_path(case, '000000.dcm')},{_csv_path(f'{case}_{number}', crop, newline=swapped)},"
        f"{_csv_path(f'{case}_{number}', mask)}"
    )


CALC_TRAIN = [
    CALC_HEADER,
    _calc_row("P_00005", 3, "RIGHT", "CC", 1, "AMORPHOUS", 3, "MALIGNANT", 3),
    _calc_row("P_00005", 3, "RIGHT", "CC", 2, "PLEOMORPHIC", 4, "BENIGN_WITHOUT_CALLBACK", 2, swapped=True),
    _calc_row("P_00007", 2, "LEFT", "MLO", 1, "PUNCTATE", 2, "BENIGN", 5),  # its case folder is not downloaded
]
CALC_TEST = [CALC_HEADER, _calc_row("P_00038", 2, "LEFT", "CC", 1, "FINE_LINEAR_BRANCHING", 5, "MALIGNANT", 4)]
MASS_TRAIN = [
    MASS_HEADER,
    "P_00001,4,LEFT,CC,1,mass,IRREGULAR,SPICULATED,5,MALIGNANT,5,"
    + ",".join(
        _csv_path(f"Mass-Training_P_00001_LEFT_CC{roi}", f"00000{n}.dcm") for roi, n in (("", 0), ("_1", 1), ("_1", 0))
    ),
    # P_00038 is in Calc-Test too: moved to test; its ROI folder is missing: kept without a centre
    "P_00038,2,RIGHT,MLO,1,mass,OVAL,CIRCUMSCRIBED,3,BENIGN,2,"
    + ",".join(
        _csv_path(f"Mass-Training_P_00038_RIGHT_MLO{roi}", f"00000{n}.dcm")
        for roi, n in (("", 0), ("_1", 1), ("_1", 0))
    ),
]


def _dicom(path: Path, pixels: np.ndarray, bits: int, description: str | None, case: str) -> Path:
    attributes = {"PatientID": case}
    if description is not None:
        attributes["SeriesDescription"] = description
    return save(make_dataset(pixels, bits, "MONOCHROME2", **attributes), path)


def _full(root: Path, case: str, seed: int) -> Path:
    pixels = np.random.default_rng(seed).integers(0, 65536, FULL_SHAPE, dtype=np.uint16)
    folder = root / case / f"07-20-2016-DDSM-NA-{seed:05d}" / f"1.000000-full mammogram images-{seed + 100:05d}"
    return _dicom(folder / "1-1.dcm", pixels, 16, "full mammogram images", case)


def _roi(root: Path, roi: str, layout: str, described: bool = True, crop_says: str = "cropped images") -> Path:
    """Mask and crop of one ROI folder; layout 'mask-first', 'crop-first' (swapped) or 'two-series'.

    described=False: no SeriesDescription at all; crop_says: the crop's (the series' shared description).
    """
    region, _ = MASKS[roi]
    mask = np.zeros(FULL_SHAPE, np.uint8)
    mask[region] = 255
    crop = np.random.default_rng(1).integers(0, 65536, (12, 10), dtype=np.uint16)
    study = root / roi / "07-21-2016-DDSM-NA-31337"
    series = study / "1.000000-ROI mask images-31338"
    mask_path, crop_path = {
        "mask-first": (series / "1-1.dcm", series / "1-2.dcm"),
        "crop-first": (series / "1-2.dcm", series / "1-1.dcm"),
        "two-series": (series / "1-1.dcm", study / "1.000000-cropped images-31339" / "1-1.dcm"),
    }[layout]
    _dicom(mask_path, mask, 8, "ROI mask images" if described else None, roi)
    _dicom(crop_path, crop, 16, crop_says if described else None, roi)
    return mask_path


def _write(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


@pytest.fixture
def cbis_tree(tmp_path: Path) -> Path:
    """SRC: the four CSVs and CBIS-DDSM/ (see the module docstring); returns SRC."""
    src = tmp_path / "download"
    root = src / "CBIS-DDSM"
    _write(src / "calc_case_description_train_set.csv", CALC_TRAIN)
    _write(src / "calc_case_description_test_set.csv", CALC_TEST)
    _write(src / "mass_case_description_train_set.csv", MASS_TRAIN)
    for seed, case in enumerate(
        ["Calc-Training_P_00005_RIGHT_CC", "Calc-Test_P_00038_LEFT_CC", "Mass-Training_P_00001_LEFT_CC"]
    ):
        _full(root, case, seed)
    _full(root, "Mass-Training_P_00038_RIGHT_MLO", 7)
    _roi(root, "Calc-Training_P_00005_RIGHT_CC_1", "mask-first")
    _roi(root, "Calc-Training_P_00005_RIGHT_CC_2", "crop-first")
    _roi(root, "Calc-Test_P_00038_LEFT_CC_1", "two-series", described=False)
    _roi(root, "Mass-Training_P_00001_LEFT_CC_1", "crop-first", crop_says="ROI mask images")  # size decides
    return src


def _read(manifest: Path) -> dict[str, dict[str, str]]:
    with open(manifest, newline="", encoding="utf-8") as handle:
        return {f"{r['image_id']}_{r['abnormality_id']}": r for r in csv.DictReader(handle)}


def _full_path(src: Path, case: str) -> str:
    return str(next((src / "CBIS-DDSM" / case).rglob("1-1.dcm")))


def _mask_path(src: Path, roi: str) -> str:
    masks = [p for p in (src / "CBIS-DDSM" / roi).rglob("*.dcm") if "ROI mask" in p.parent.name]
    sizes = {p: p.stat().st_size for p in masks}
    return str(max(sizes, key=sizes.get))  # the 64x48 mask, not the 12x10 crop beside it


# --- a good download ------------------------------------------------------------------------------------


def test_every_manifest_row(cbis_tree: Path, tmp_path: Path) -> None:
    summary = import_cbis(cbis_tree, tmp_path / "out", progress=False)
    rows = _read(tmp_path / "out" / "manifest.csv")
    src = cbis_tree
    benign = "BENIGN_WITHOUT_CALLBACK"
    expected = {
        # image_id_abnormality id: (patient, laterality, view, tissue, class, severity, split, pathology,
        # assessment, subtlety)
        "Calc-Training_P_00005_RIGHT_CC_1": ("P_00005", "R", "CC", "3", "CALC", "M", "train", "MALIGNANT", "3", "3"),
        "Calc-Training_P_00005_RIGHT_CC_2": ("P_00005", "R", "CC", "3", "CALC", "B", "train", benign, "4", "2"),
        "Calc-Test_P_00038_LEFT_CC_1": ("P_00038", "L", "CC", "2", "CALC", "M", "test", "MALIGNANT", "5", "4"),
        "Mass-Training_P_00001_LEFT_CC_1": ("P_00001", "L", "CC", "4", "MASS", "M", "train", "MALIGNANT", "5", "5"),
        "Mass-Training_P_00038_RIGHT_MLO_1": ("P_00038", "R", "MLO", "2", "MASS", "B", "test", "BENIGN", "3", "2"),
    }
    assert list(rows) == list(expected)  # CSV order; P_00007's image was not found
    columns = ("patient_id", "laterality", "view", "tissue", "abnormality", "severity", "split", "pathology")
    for key, values in expected.items():
        row = rows[key]
        assert tuple(row[c] for c in columns) == values[:8], key
        assert (row["assessment"], row["subtlety"]) == values[8:], key
        case = key.rsplit("_", 1)[0]
        assert row["image_id"] == case and row["path"] == _full_path(src, case) and Path(row["path"]).is_absolute()
        assert (row["spacing_mm"], row["spacing_assumed"]) == ("0.05", "true")
    for roi, (_, (r, c, radius)) in MASKS.items():
        assert (rows[roi]["row"], rows[roi]["col"], rows[roi]["radius"]) == (str(r), str(c), str(radius)), roi
        assert rows[roi]["mask"] == _mask_path(src, roi), roi  # the swapped row and the undescribed ROI too
    lost = rows["Mass-Training_P_00038_RIGHT_MLO_1"]
    assert (lost["row"], lost["col"], lost["radius"], lost["mask"]) == ("", "", "", "")
    calc = rows["Calc-Training_P_00005_RIGHT_CC_2"]
    assert (calc["calc_type"], calc["calc_distribution"], calc["mass_shape"]) == ("PLEOMORPHIC", "CLUSTERED", "")
    assert calc["source_row"] == "calc_case_description_train_set.csv:3"
    mass = rows["Mass-Training_P_00001_LEFT_CC_1"]
    assert (mass["mass_shape"], mass["mass_margins"], mass["calc_type"]) == ("IRREGULAR", "SPICULATED", "")
    assert rows["Calc-Test_P_00038_LEFT_CC_1"]["source_row"] == "calc_case_description_test_set.csv:2"
    assert summary.images == 4 and summary.patients == 3 and summary.source_rows == 6
    assert summary.findings == {"CALC B": 1, "CALC M": 2, "MASS B": 1, "MASS M": 1}
    assert summary.with_centre == 4 and summary.splits == {"train": 2, "test": 2}
    assert summary.spacing_mm == (0.05, 0.05) and summary.spacing_assumed
    root = src / "CBIS-DDSM"
    assert summary.not_found == (
        str(root / "Calc-Training_P_00007_LEFT_MLO"),
        str(root / "Mass-Training_P_00038_RIGHT_MLO_1"),
    )
    assert summary.problems == ()
    assert summary.notes == ("1 patient is in both CBIS-DDSM splits: test gets all their images (P_00038)",)


def _mask_pixels(region: tuple[slice, slice]) -> np.ndarray:
    mask = np.zeros(FULL_SHAPE, bool)
    mask[region] = True
    return mask


def test_load_catalog_reads_the_manifest(cbis_tree: Path, tmp_path: Path) -> None:
    import_cbis(cbis_tree, tmp_path / "out", spacing_mm=0.045, progress=False)
    catalog = load_catalog(tmp_path / "out")
    images = catalog.images.set_index("image_id")
    assert catalog.n_images == 4 and catalog.n_patients == 3 and len(catalog.findings) == 5
    assert images.loc["Mass-Training_P_00038_RIGHT_MLO", "split"] == "test"
    assert dict(images["split"].value_counts()) == {"train": 2, "test": 2}
    assert (images["spacing_source"] == "manifest").all()
    assert (images["spacing_row_mm"] == 0.045).all() and (images["spacing_col_mm"] == 0.045).all()
    assert (images["height"] == 64).all() and (images["width"] == 48).all() and (images["bit_depth"] == 16).all()
    findings = catalog.findings.set_index("source_line")
    assert findings["has_coords"].tolist() == [True, True, True, True, False]
    assert findings.loc[2, ["row", "col", "radius"]].tolist() == [15, 25, 8]
    assert findings["mask"].tolist()[:4] == [_mask_path(cbis_tree, roi) for roi in MASKS]
    assert findings["mask"].tolist()[4] == ""


def test_cli_summary(cbis_tree: Path, tmp_path: Path) -> None:
    result = invoke("data", "import-cbis", cbis_tree, "--out", tmp_path / "out")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == f"wrote        {tmp_path / 'out' / 'manifest.csv'} (CBIS-DDSM)"
    assert lines[1] == "images       4 of 3 patients; splits test: 2, train: 2"
    assert lines[2] == (
        "findings     CALC B: 1, CALC M: 2, MASS B: 1, MASS M: 1; 4 of 5 with a centre; "
        "1 of 6 source rows left out (image not found)"
    )
    assert lines[3] == "spacing      0.05 mm per pixel, assumed (the source's headers state none)"
    assert lines[4].startswith("not found    2: ") and "Calc-Training_P_00007_LEFT_MLO" in lines[4]
    assert lines[5] == "problems     0"
    assert lines[6] == "note         1 patient is in both CBIS-DDSM splits: test gets all their images (P_00038)"
    assert result.stderr == ""


def test_cli_spacing_option(cbis_tree: Path, tmp_path: Path) -> None:
    result = invoke("data", "import-cbis", cbis_tree, "--out", tmp_path / "out", "--spacing-mm", "0.0435")
    assert result.exit_code == 0 and "0.0435 mm per pixel, assumed" in result.stdout
    assert {r["spacing_mm"] for r in _read(tmp_path / "out" / "manifest.csv").values()} == {"0.0435"}
    refused = invoke("data", "import-cbis", cbis_tree, "--out", tmp_path / "o2", "--spacing-mm", "0")
    one_error_line(refused, "--spacing-mm")
    assert not (tmp_path / "o2").exists()


def test_case_folders_directly_in_src(cbis_tree: Path, tmp_path: Path) -> None:
    """Without a CBIS-DDSM/ folder, the case folders are looked for in SRC itself."""
    for folder in list((cbis_tree / "CBIS-DDSM").iterdir()):
        folder.rename(cbis_tree / folder.name)
    (cbis_tree / "CBIS-DDSM").rmdir()
    summary = import_cbis(cbis_tree, tmp_path / "out", progress=False)
    assert summary.images == 4 and summary.with_centre == 4


# --- unusable files: counted, not fatal ----------------------------------------------------------------


def _replace_mask(src: Path, roi: str, pixels: np.ndarray, bits: int = 8) -> None:
    path = Path(_mask_path(src, roi))
    _dicom(path, pixels, bits, "ROI mask images", roi)


@pytest.mark.parametrize(
    ("pixels", "problem"),
    [
        (np.arange(64 * 48, dtype=np.uint8).reshape(FULL_SHAPE) % 7, "not binary"),
        (np.zeros(FULL_SHAPE, np.uint8), "ROI mask is empty"),
        (np.full((60, 48), 255, np.uint8), "ROI mask of 60x48 pixels, its full mammogram has 64x48"),
    ],
    ids=["grey", "empty", "wrong-size"],
)
def test_unusable_masks_are_problems(cbis_tree: Path, tmp_path: Path, pixels: np.ndarray, problem: str) -> None:
    _replace_mask(cbis_tree, "Calc-Training_P_00005_RIGHT_CC_1", pixels)
    summary = import_cbis(cbis_tree, tmp_path / "out", progress=False)
    assert len(summary.problems) == 1 and problem in summary.problems[0], summary.problems
    row = _read(tmp_path / "out" / "manifest.csv")["Calc-Training_P_00005_RIGHT_CC_1"]
    assert (row["row"], row["radius"], row["mask"]) == ("", "", "")
    assert summary.with_centre == 3 and summary.images == 4


def test_a_16_bit_mask_counts_as_binary(cbis_tree: Path, tmp_path: Path) -> None:
    mask = _mask_pixels(MASKS["Calc-Training_P_00005_RIGHT_CC_1"][0]).astype(np.uint16) * 255
    _replace_mask(cbis_tree, "Calc-Training_P_00005_RIGHT_CC_1", mask, bits=16)
    import_cbis(cbis_tree, tmp_path / "out", progress=False)
    row = _read(tmp_path / "out" / "manifest.csv")["Calc-Training_P_00005_RIGHT_CC_1"]
    assert (row["row"], row["col"], row["radius"]) == ("15", "25", "8")


# --- bad inputs: one line naming the file (and line), exit 2, nothing written ---------------------------


def _no_pathology(src: Path) -> Path:
    lines = [line.replace(",pathology,", ",diagnosis,") for line in CALC_TEST]
    _write(src / "calc_case_description_test_set.csv", lines)
    return src


def _bad_side(src: Path) -> Path:
    _write(src / "calc_case_description_train_set.csv", [*CALC_TRAIN[:3], CALC_TRAIN[3].replace("LEFT", "BOTH", 1)])
    return src


def _bad_pathology(src: Path) -> Path:
    _write(src / "mass_case_description_train_set.csv", [MASS_HEADER, MASS_TRAIN[1].replace("MALIGNANT", "UNSURE")])
    return src


def _no_csv(src: Path) -> Path:
    for csv_file in src.glob("*.csv"):
        csv_file.unlink()
    return src


def _corrupt_dicom(src: Path) -> Path:
    Path(_mask_path(src, "Calc-Test_P_00038_LEFT_CC_1")).write_bytes(b"\0" * 300)
    return src


def _no_image_found(src: Path) -> Path:
    (src / "CBIS-DDSM").rename(src / "elsewhere")
    return src


BAD = [
    # (id, breaks the tree and returns SRC, text the one line must hold (SRC_FILE: a path in SRC))
    ("no-csv", _no_csv, ["no CBIS-DDSM case description CSV here"]),
    ("no-pathology", _no_pathology, ["calc_case_description_test_set.csv:1: missing required column(s) ['pathology']"]),
    ("bad-side", _bad_side, ["calc_case_description_train_set.csv:5: unknown left or right breast 'BOTH'"]),
    ("bad-pathology", _bad_pathology, ["mass_case_description_train_set.csv:2: unknown pathology 'UNSURE'"]),
    ("corrupt-dicom", _corrupt_dicom, ["1-1.dcm: not a DICOM file"]),
    ("nothing-found", _no_image_found, ["no full mammogram found for any of the 5 case folders"]),
]


@pytest.mark.parametrize(("breaks", "needles"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_sources_are_one_line_and_write_nothing(cbis_tree: Path, tmp_path: Path, breaks, needles) -> None:
    src = breaks(cbis_tree)
    result = invoke("data", "import-cbis", src, "--out", tmp_path / "out")
    one_error_line(result, "mammo-tf: error: ", str(src), *needles)
    assert not (tmp_path / "out").exists()
    (tmp_path / "empty").mkdir()  # an existing (empty) output folder stays empty
    with pytest.raises(MammoError):
        import_cbis(src, tmp_path / "empty", progress=False)
    assert list((tmp_path / "empty").iterdir()) == []


def test_missing_src(tmp_path: Path) -> None:
    result = invoke("data", "import-cbis", tmp_path / "nope", "--out", tmp_path / "out")
    one_error_line(result, str(tmp_path / "nope"), "no such folder", "(SRC)")
    with pytest.raises(MammoError, match="nope: no such folder"):
        import_cbis(tmp_path / "nope", tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_the_newline_inside_a_quoted_path_keeps_line_numbers(cbis_tree: Path) -> None:
    """The swapped row's crop path holds a newline (quoted): rows after it keep their file line numbers."""
    path = cbis_tree / "calc_case_description_train_set.csv"
    rows = read_source_csv(path, ["patient_id"])
    assert [r.line for r in rows] == [2, 3, 5]
    assert rows[1].values["cropped_image_file_path"].endswith("000000.dcm")  # trimmed
    assert rows[0].values["breast_density"] == "3"  # "breast density" as the calc files write it


# --- the bounding circle ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("region", "circle"),
    [((slice(3, 4), slice(7, 8)), (3, 7, 1)), *MASKS.values()],
    ids=["one-pixel", *MASKS],
)
def test_bounding_circle(region: tuple[slice, slice], circle: tuple[int, int, int]) -> None:
    mask = _mask_pixels(region)
    assert bounding_circle(mask) == circle
    rows, cols = np.nonzero(mask)
    assert (np.hypot(rows - circle[0], cols - circle[1]) <= circle[2]).all()
    assert circle[2] <= math.ceil(math.hypot(*mask[region].shape) / 2) + 1  # no bigger than it need be
    assert bounding_circle(np.zeros((4, 4), bool)) is None
