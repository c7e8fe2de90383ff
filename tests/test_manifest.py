"""CSV manifests: the Catalog they produce, splits, and every bad input as one line naming manifest and line."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from dicom_builders import make_dataset, save

from mammo_tf.data.catalog import FINDING_COLUMNS, IMAGE_COLUMNS, load_catalog
from mammo_tf.data.manifest import MANIFEST_NAME, load_manifest
from mammo_tf.errors import MammoError
from mammo_tf.io.images import encode_pgm, probe_image

HEADER = "path,patient_id,image_id,laterality,view,tissue,abnormality,severity,row,col,radius"


def write_dicom(path: Path, pixels: np.ndarray, bits_stored: int = 12, photometric: str = "MONOCHROME2") -> Path:
    return save(make_dataset(pixels, bits_stored, photometric), path)


def write_png(path: Path, shape: tuple[int, ...], dtype: type = np.uint8) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), np.zeros(shape, dtype))
    return path


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """images/: 8-bit PNG 20x30, 16-bit PNG 24x32, 12-bit DICOM 16x18, 12-bit PGM 10x12, 3-channel PNG 8x9."""
    root = tmp_path / "data"
    write_png(root / "images" / "a8.png", (20, 30))
    write_png(root / "images" / "b16.png", (24, 32), np.uint16)
    write_dicom(root / "images" / "c12.dcm", np.zeros((16, 18), np.uint16))
    (root / "images" / "d.pgm").write_bytes(encode_pgm(np.zeros((10, 12), np.float32), 12))
    write_png(root / "images" / "rgb.png", (8, 9, 3))
    return root


def write_manifest(folder: Path, lines: list[str], name: str = MANIFEST_NAME) -> Path:
    path = folder / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# --- a good manifest ---------------------------------------------------------------------------


def test_catalog_tables(folder: Path, tmp_path: Path) -> None:
    outside = write_png(tmp_path / "elsewhere" / "e 16.png", (5, 6), np.uint16)
    manifest = write_manifest(
        folder,
        [
            HEADER,
            "images/a8.png,p1,,left,cc,,calc,benign_without_callback,5,7,3",
            "images/a8.png,p1,,L,CC,,MASS,M,,,",
            "images/b16.png,p2,,RIGHT,mlo,,,,,,",
            "sub/../images/c12.dcm,p3,c,R,MLO,b,CALC,MALIGNANT,15,17.0,4",
            "images/d.pgm,p4,,,,,,,,,",
            f"{outside},p5,,,,,,,,,",
            "images/rgb.png,p6,,,,,,,,,",
        ],
    )
    catalog = load_manifest(manifest)
    assert catalog.source == "manifest" and catalog.root == folder.resolve()
    assert list(catalog.images.columns) == list(IMAGE_COLUMNS)
    assert list(catalog.findings.columns) == list(FINDING_COLUMNS)
    images = catalog.images.set_index("image_id")
    assert list(images.index) == ["a8", "b16", "c", "d", "e 16", "rgb"]
    assert list(images["bit_depth"]) == [8, 16, 12, 12, 16, 8]
    assert list(images["height"]) == [20, 24, 16, 10, 5, 8]
    assert list(images["width"]) == [30, 32, 18, 12, 6, 9]
    assert images.loc["c", "path"] == str(folder.resolve() / "images" / "c12.dcm")
    assert images.loc["e 16", "path"] == str(outside)
    assert all(Path(p).is_absolute() and Path(p).is_file() for p in images["path"])
    assert list(images["laterality"]) == ["L", "R", "R", "", "", ""]
    assert list(images["view"]) == ["CC", "MLO", "MLO", "", "", ""]
    assert images.loc["c", "tissue"] == "B"
    assert set(images["split"]) <= {"train", "val", "test"}

    findings = catalog.findings
    assert list(findings["source_line"]) == [2, 3, 4, 5, 6, 7, 8]
    assert list(findings["abnormality"]) == ["CALC", "MASS", "NORM", "CALC", "NORM", "NORM", "NORM"]
    assert list(findings["severity"]) == ["B", "M", "", "M", "", "", ""]
    first, calc = findings.iloc[0], findings.iloc[3]
    assert (first["x"], first["y"], first["row"], first["col"], first["radius"]) == (7, 5, 5, 7, 3)
    assert (calc["x"], calc["y"], calc["radius"]) == (17, 15, 4)
    assert list(findings["has_coords"]) == [True, False, False, True, False, False, False]
    assert findings.loc[~findings["has_coords"], ["x", "y", "row", "col", "radius"]].isna().all().all()
    labels = catalog.image_labels()
    assert labels["a8"] == "calc-B" and labels["c"] == "calc-M" and labels["b16"] == "normal"


def test_probe_image_depths(folder: Path) -> None:
    images = folder / "images"
    assert probe_image(images / "a8.png") == (20, 30, 8)
    assert probe_image(images / "b16.png") == (24, 32, 16)
    assert probe_image(images / "c12.dcm") == (16, 18, 12)
    assert probe_image(images / "d.pgm") == (10, 12, 12)
    assert probe_image(images / "rgb.png") == (8, 9, 8)


def _many_patients(folder: Path, patients: int = 20, split: list[str] | None = None) -> Path:
    lines = ["path,patient_id,abnormality,severity" + (",split" if split else "")]
    for p in range(patients):
        for side in ("L", "R"):
            write_png(folder / "many" / f"p{p}{side}.png", (4, 4))
            kind = "CALC,M" if p % 4 == 0 and side == "L" else ","
            lines.append(f"many/p{p}{side}.png,pat{p},{kind}" + (f",{split[p]}" if split else ""))
    return write_manifest(folder, lines)


def test_computed_split_keeps_patients_together(tmp_path: Path) -> None:
    catalog = load_manifest(_many_patients(tmp_path), seed=3)
    per_patient = catalog.images.groupby("patient_id")["split"].nunique()
    assert (per_patient == 1).all()
    assert set(catalog.images["split"]) == {"train", "val", "test"}
    again = load_manifest(tmp_path / MANIFEST_NAME, seed=3)
    assert catalog.images["split"].tolist() == again.images["split"].tolist()


def test_given_split_is_respected(tmp_path: Path) -> None:
    given = ["Train", "val", "TEST", "training", "validation"] * 4
    catalog = load_manifest(_many_patients(tmp_path, split=given))
    expected = {"train": "train", "training": "train", "val": "val", "validation": "val", "test": "test"}
    by_patient = catalog.images.groupby("patient_id", sort=False)["split"].first()
    assert by_patient.tolist() == [expected[s.lower()] for s in given]


def test_empty_split_column_is_computed(folder: Path) -> None:
    manifest = write_manifest(folder, ["path,patient_id,split", "images/a8.png,p1,", "images/b16.png,p2,"])
    assert set(load_manifest(manifest).images["split"]) <= {"train", "val", "test"}


def test_load_catalog_finds_manifests(folder: Path) -> None:
    write_manifest(folder, ["path,patient_id", "images/a8.png,p1"])
    other = write_manifest(folder, ["Path , Patient_ID", "images/b16.png , p2", ""], name="other.csv")
    assert load_catalog(folder).images["image_id"].tolist() == ["a8"]
    assert load_catalog(other).images["image_id"].tolist() == ["b16"]
    assert load_catalog(folder / MANIFEST_NAME).source == "manifest"


def test_blank_lines_keep_line_numbers(folder: Path) -> None:
    lines = ["path,patient_id,laterality", "", "images/a8.png,p1,L", "", "images/b16.png,p2,X"]
    manifest = write_manifest(folder, lines)
    with pytest.raises(MammoError, match=rf"^{manifest}:5: unknown laterality 'X'"):
        load_manifest(manifest)


def test_excel_bom_and_extra_columns(folder: Path) -> None:
    (folder / MANIFEST_NAME).write_bytes("\ufeffpath,patient_id,notes\nimages/a8.png,p1,anything\n".encode())
    catalog = load_manifest(folder / MANIFEST_NAME)
    assert catalog.images["image_id"].tolist() == ["a8"]


def test_mask_column(folder: Path, tmp_path: Path) -> None:
    """mask: relative to the manifest's folder or absolute, normalised, "" when empty or absent (other sources)."""
    elsewhere = write_png(tmp_path / "elsewhere" / "m.png", (24, 32))
    manifest = write_manifest(
        folder,
        [
            "path,patient_id,abnormality,mask",
            "images/a8.png,p1,CALC,sub/../images/b16.png",
            f"images/a8.png,p1,MASS,{elsewhere}",
            "images/a8.png,p1,CALC,",
            "images/c12.dcm,p2,,",
        ],
    )
    findings = load_manifest(manifest).findings
    assert findings["mask"].tolist() == [str(folder.resolve() / "images" / "b16.png"), str(elsewhere), "", ""]
    assert write_manifest(folder, ["path,patient_id", "images/a8.png,p1"]) == manifest
    assert load_manifest(manifest).findings["mask"].tolist() == [""]


# --- bad inputs: each one MammoError naming the manifest and the line -----------------------------

BAD = [
    # (name, lines after/with header, line in the message (None: no line), text in the message)
    ("missing column", ["path,image_id", "images/a8.png,a"], 1, "missing required column(s) ['patient_id']"),
    ("duplicate column", ["path,patient_id,path", "images/a8.png,p1,x"], 1, "appears twice"),
    ("coord columns partial", ["path,patient_id,row,col", "images/a8.png,p1,1,2"], 1, "come together"),
    ("empty file", [""], None, "empty manifest"),
    ("header only", ["path,patient_id"], None, "empty manifest"),
    ("malformed csv", ["path,patient_id", "images/a8.png,p1", "images/b16.png,p2,extra"], 3, "malformed CSV"),
    ("missing file", [HEADER, "images/a8.png,p1,,,,,,,,,", "images/nope.png,p2,,,,,,,,,"], 3, "nope.png"),
    ("bad extension", [HEADER, "images/a8.jpg,p1,,,,,,,,,"], 2, "unsupported image type '.jpg'"),
    ("empty patient", [HEADER, "images/a8.png,,,,,,,,,,"], 2, "empty patient_id"),
    ("non-integer row", [HEADER, "images/a8.png,p1,,,,,CALC,B,5.5,7,3"], 2, "row must be a whole number >= 0"),
    ("text col", [HEADER, "images/a8.png,p1,,,,,CALC,B,5,seven,3"], 2, "col must be a whole number"),
    ("negative col", [HEADER, "images/a8.png,p1,,,,,CALC,B,5,-1,3"], 2, "col must be a whole number >= 0"),
    ("zero radius", [HEADER, "images/a8.png,p1,,,,,CALC,B,5,1,0"], 2, "radius must be a whole number >= 1"),
    ("some coords", [HEADER, "images/a8.png,p1,,,,,CALC,B,5,,3"], 2, "got only ['row', 'radius']"),
    ("row outside", [HEADER, "images/a8.png,p1,,,,,CALC,B,20,0,3"], 2, "outside its 20x30"),
    ("col outside", [HEADER, "images/b16.png,p1,,,,,,,,,", "images/a8.png,p1,,,,,CALC,B,0,30,3"], 3, "outside"),
    ("bad laterality", [HEADER, "images/a8.png,p1,,both,,,,,,,"], 2, "unknown laterality 'both'"),
    ("bad severity", [HEADER, "images/a8.png,p1,,,,,CALC,probably,,,"], 2, "unknown severity 'probably'"),
    ("norm with severity", [HEADER, "images/a8.png,p1,,,,,NORM,B,,,"], 2, "NORM row"),
    ("norm with mask", ["path,patient_id,mask", "images/a8.png,p1,images/b16.png"], 2, "NORM row"),
    ("missing mask", ["path,patient_id,abnormality,mask", "images/a8.png,p1,CALC,nope.png"], 2, "mask file not found"),
    (
        "image fields disagree",
        [HEADER, "images/a8.png,p1,,L,,,CALC,B,,,", "images/a8.png,p1,,R,,,MASS,B,,,"],
        3,
        "laterality 'R' disagrees with 'L' on line 2",
    ),
    ("one id, two paths", [HEADER, "images/a8.png,p1,x,,,,,,,,", "images/b16.png,p2,x,,,,,,,,"], 3, "path '"),
    ("one stem, two paths", ["path,patient_id", "images/a8.png,p1", "more/a8.png,p2"], 3, "give an image_id"),
    ("one path, two ids", [HEADER, "images/a8.png,p1,x,,,,,,,,", "images/a8.png,p1,y,,,,,,,,"], 3, "as 'x' on line 2"),
    (
        "patient in two splits",
        ["path,patient_id,split", "images/a8.png,p1,train", "images/b16.png,p2,val", "images/c12.dcm,p1,test"],
        4,
        "patient 'p1' is in split 'test' here and in 'train' on line 2",
    ),
    ("bad split", ["path,patient_id,split", "images/a8.png,p1,dev"], 2, "unknown split 'dev'"),
    ("partly empty split", ["path,patient_id,split", "images/a8.png,p1,train", "images/b16.png,p2,"], 3, "empty split"),
    ("corrupt image", ["path,patient_id", "images/a8.png,p1", "images/bad.dcm,p2"], 3, "not a DICOM file"),
    ("colour dicom", ["path,patient_id", "images/rgb.dcm,p2"], 2, "colour DICOM"),
]


@pytest.mark.parametrize(("lines", "line", "text"), [case[1:] for case in BAD], ids=[case[0] for case in BAD])
def test_bad_manifest(folder: Path, lines: list[str], line: int | None, text: str) -> None:
    (folder / "images" / "bad.dcm").write_bytes(b"\x00" * 200)
    write_dicom(folder / "images" / "rgb.dcm", np.zeros((4, 4, 3), np.uint8), 8, "RGB")
    write_png(folder / "more" / "a8.png", (4, 4))
    manifest = folder / MANIFEST_NAME
    manifest.write_text("\n".join(lines), encoding="utf-8")
    with pytest.raises(MammoError) as info:
        load_manifest(manifest)
    message = str(info.value)
    where = f"{manifest}:{line}: " if line is not None else f"{manifest}: "
    assert message.startswith(where), message
    assert text in message and "\n" not in message, message


def test_missing_manifest(tmp_path: Path) -> None:
    with pytest.raises(MammoError, match="manifest not found"):
        load_manifest(tmp_path / MANIFEST_NAME)


def test_catalog_dtypes(folder: Path) -> None:
    manifest = write_manifest(folder, ["path,patient_id", "images/a8.png,p1"])
    catalog = load_manifest(manifest)
    for table, columns in ((catalog.images, IMAGE_COLUMNS), (catalog.findings, FINDING_COLUMNS)):
        expected = pd.DataFrame({c: pd.Series(dtype=t) for c, t in columns.items()}).dtypes
        assert table.dtypes.equals(expected)
