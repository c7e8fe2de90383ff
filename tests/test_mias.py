"""The MIAS loader: the real Info.txt as distributed, the y convention, and every bad-input case."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from mammo_tf.data.catalog import load_catalog
from mammo_tf.data.mias import load_mias, parse_info
from mammo_tf.errors import MammoError
from mammo_tf.io.images import encode_pgm


def _write_mias(folder: Path, lines: list[str], size: int = 64, names: list[str] | None = None) -> Path:
    """A tiny MIAS-layout folder: a prose header, the given table lines (CRLF), and blank PGMs."""
    folder.mkdir(parents=True, exist_ok=True)
    header = ["  MIAS-like test file", "", "1st column: reference number.", "", "NOTES", "====="]
    text = "\r\n".join(header + lines + ["", "=" * 20]) + "\r\n"
    (folder / "Info.txt").write_bytes(text.encode("ascii"))
    for name in names or sorted({line.split()[0] for line in lines if line.startswith("mdb")}):
        (folder / f"{name}.pgm").write_bytes(encode_pgm(np.zeros((size, size), np.float32), 8))
    return folder


# --- the real Info.txt -------------------------------------------------------------------------


@pytest.mark.mias
def test_real_info_txt_counts(mias_source: Path) -> None:
    rows = parse_info(mias_source / "Info.txt")
    assert len(rows) == 330
    assert rows["image_id"].nunique() == 322
    calc = rows[rows["abnormality"] == "CALC"]
    assert len(calc) == 30
    assert calc["image_id"].nunique() == 25
    assert int(calc["x"].notna().sum()) == 27
    no_coords = rows[(rows["abnormality"] != "NORM") & rows["x"].isna()]
    assert sorted(no_coords["image_id"]) == ["mdb059", "mdb216", "mdb233", "mdb245"]
    assert rows["image_id"].value_counts()["mdb226"] == 3
    # source lines are the real line numbers of the CRLF file
    lines = (mias_source / "Info.txt").read_bytes().decode("ascii").splitlines()
    for _, record in rows.sample(20, random_state=0).iterrows():
        assert lines[record["source_line"] - 1].startswith(record["image_id"])


@pytest.mark.mias
def test_real_catalog(mias_dir: Path) -> None:
    catalog = load_mias(mias_dir)
    assert catalog.n_images == 322 and catalog.n_patients == 161
    images = catalog.images.set_index("image_id")
    assert images.loc["mdb001", "laterality"] == "R" and images.loc["mdb002", "laterality"] == "L"
    assert images.loc["mdb001", "patient_id"] == images.loc["mdb002", "patient_id"]
    assert images.loc["mdb002", "patient_id"] != images.loc["mdb003", "patient_id"]
    assert set(images["bit_depth"]) == {8} and set(images["height"]) == {1024}
    first = catalog.findings.iloc[0]
    assert (first["x"], first["y"], first["row"], first["col"]) == (535, 425, 1023 - 425, 535)
    assert catalog.summary()["abnormal_without_coords"] == 4


# --- the y convention on data with known positions ------------------------------------------------


def test_y_origin_is_bottom_left(tmp_path: Path) -> None:
    """A bright speck drawn at array (row 10, col 40) is found where Info.txt's y=53 (64-1-10) points."""
    folder = _write_mias(tmp_path / "m", ["mdb001 F CALC B 40 53 3", "mdb002 F NORM "])
    pixels = np.zeros((64, 64), np.float32)
    pixels[10, 40] = 1.0
    (folder / "mdb001.pgm").write_bytes(encode_pgm(pixels, 8))
    catalog = load_mias(folder)
    finding = catalog.findings.iloc[0]
    assert (finding["row"], finding["col"]) == (10, 40)
    from mammo_tf.io.images import read_image

    image = read_image(catalog.images.iloc[0]["path"]).pixels
    assert image[finding["row"], finding["col"]] == 1.0


def test_patients_are_film_pairs_and_splits_never_separate_them(tmp_path: Path) -> None:
    lines = [f"mdb{i:03d} G NORM " for i in range(1, 41)]
    lines[4] = "mdb005 G CALC M 10 10 5"
    catalog = load_mias(_write_mias(tmp_path / "m", lines))
    per_patient = catalog.images.groupby("patient_id")["split"].nunique()
    assert catalog.n_patients == 20 and (per_patient == 1).all()
    assert set(catalog.images["split"]) == {"train", "val", "test"}
    again = load_mias(tmp_path / "m")
    assert catalog.images["split"].tolist() == again.images["split"].tolist()


def test_load_catalog_accepts_info_file_and_folder(tmp_path: Path) -> None:
    folder = _write_mias(tmp_path / "m", ["mdb001 D NORM ", "mdb002 D NORM "])
    assert load_catalog(folder).n_images == 2
    assert load_catalog(folder / "Info.txt").n_images == 2


# --- bad input: one clear message naming the file and line ------------------------------------------

BAD_LINES = [
    ("mdb001 X NORM ", "bad background tissue 'X'"),
    ("mdb001 F BLOB B 1 2 3", "bad abnormality class 'BLOB'"),
    ("mdb001 F CALC Q 1 2 3", "needs severity B or M"),
    ("mdb001 F CALC B 1 2", "expected 'X Y RADIUS'"),
    ("mdb001 F CALC B 1 two 3", "expected 'X Y RADIUS'"),
    ("mdb001 F NORM 1 2 3", "NORM line has extra fields"),
    ("mdb01 F NORM ", "bad reference number"),
    ("mdb001 F", "expected 'REFNUM BG CLASS"),
    ("mdb001 F CALC B 64 2 3", "does not fit a 64x64 image"),
    ("mdb001 F CALC B 2 70 3", "does not fit a 64x64 image"),
    ("mdb001 F CALC B 2 7 0", "does not fit"),
]


@pytest.mark.parametrize(("line", "message"), BAD_LINES)
def test_malformed_info_line(tmp_path: Path, line: str, message: str) -> None:
    folder = _write_mias(tmp_path / "m", ["mdb002 F NORM ", line], names=["mdb001", "mdb002"])
    with pytest.raises(MammoError) as err:
        load_mias(folder)
    text = str(err.value)
    assert f"{folder / 'Info.txt'}:8:" in text  # header is 6 lines, the bad line is the 8th
    assert message in text


def test_prose_after_table_is_an_error_not_skipped(tmp_path: Path) -> None:
    folder = _write_mias(tmp_path / "m", ["mdb001 F NORM ", "this is not a record", "mdb002 F NORM "])
    with pytest.raises(MammoError, match=r"Info.txt:8: bad reference number 'this'"):
        load_mias(folder)


def test_conflicting_tissue_for_one_image(tmp_path: Path) -> None:
    folder = _write_mias(tmp_path / "m", ["mdb001 F CALC B 1 2 3", "mdb001 D CALC B 5 5 3"])
    with pytest.raises(MammoError, match="different background tissues"):
        load_mias(folder)


def test_missing_info_txt(tmp_path: Path) -> None:
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "mdb001.pgm").write_bytes(encode_pgm(np.zeros((8, 8), np.float32)))
    with pytest.raises(MammoError, match="no Info.txt or manifest.csv"):
        load_catalog(tmp_path / "m")
    with pytest.raises(MammoError, match="Info.txt: missing"):
        load_mias(tmp_path / "m")


def test_empty_and_missing_folder(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(MammoError, match="folder is empty"):
        load_catalog(tmp_path / "empty")
    with pytest.raises(MammoError, match="no such file or folder"):
        load_catalog(tmp_path / "nowhere")


def test_info_txt_without_table_or_binary(tmp_path: Path) -> None:
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "Info.txt").write_bytes(b"just prose\r\n")
    with pytest.raises(MammoError, match="no annotation lines"):
        load_mias(folder)
    (folder / "Info.txt").write_bytes(b"mdb001 F NORM \r\n\xff\xfe")
    with pytest.raises(MammoError, match=r"Info.txt:2: not a text file"):
        load_mias(folder)


def test_listed_image_missing(tmp_path: Path) -> None:
    folder = _write_mias(tmp_path / "m", ["mdb001 F NORM ", "mdb002 F NORM "], names=["mdb001"])
    with pytest.raises(MammoError, match=r"Info.txt:8: lists mdb002 but .*mdb002.pgm is missing"):
        load_mias(folder)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"P2\n64 64\n255\n" + b"0 " * 10, "not a binary PGM"),
        (b"GIF89a....", "not a binary PGM"),
        (b"P5\n64 64\n255\n" + bytes(100), "truncated PGM"),
        (b"P5\n64 64\n255\n" + bytes(64 * 64 + 9), "bytes after the pixel data"),
        (b"P5\n64\n", "truncated PGM header|malformed PGM header"),
        (b"P5\n64 -1\n255\n", "malformed PGM header"),
        (b"P5\n0 64\n255\n", "bad PGM header values"),
        (b"", "not a binary PGM"),
    ],
)
def test_bad_pgm(tmp_path: Path, content: bytes, message: str) -> None:
    folder = _write_mias(tmp_path / "m", ["mdb001 F NORM ", "mdb002 F NORM "])
    (folder / "mdb002.pgm").write_bytes(content)
    with pytest.raises(MammoError, match=message) as err:
        load_mias(folder)
    assert str(folder / "mdb002.pgm") in str(err.value)


@pytest.mark.mias
def test_comment_in_pgm_header_and_copy_of_real_folder(mias_dir: Path, tmp_path: Path) -> None:
    """A GIMP-style comment line in the header (as in other MIAS copies) is accepted."""
    folder = tmp_path / "m"
    folder.mkdir()
    shutil.copy(mias_dir / "Info.txt", folder)
    for image in sorted(mias_dir.glob("mdb*.pgm")):
        (folder / image.name).symlink_to(image)
    commented = folder / "mdb001.pgm"
    commented.unlink()
    raw = (mias_dir / "mdb001.pgm").read_bytes()
    commented.write_bytes(b"P5\n# CREATOR: GIMP\n" + raw[3:])
    catalog = load_mias(folder)
    assert catalog.images.set_index("image_id").loc["mdb001", "height"] == 1024
