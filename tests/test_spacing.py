"""Physical pixel spacing in the catalog: MIAS, the phantom, DICOM headers and the manifest's spacing_mm column."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from dicom_builders import make_dataset, save

from mammo_tf.data.catalog import load_catalog
from mammo_tf.data.manifest import load_manifest
from mammo_tf.data.mias import MIAS_SPACING_MM
from mammo_tf.data.phantom import DEFAULT_PHANTOM_SIZE, phantom_spacing_mm, write_phantom
from mammo_tf.data.schema import Catalog
from mammo_tf.errors import MammoError
from mammo_tf.io.dicom import probe_dicom, probe_dicom_header
from mammo_tf.io.images import Spacing, probe_header
from mammo_tf_cli.main import cli

PIXELS = np.zeros((6, 8), np.uint16)


def dicom(path: Path, **attributes: object) -> Path:
    return save(make_dataset(PIXELS, **attributes), path)


def damaged(path: Path, old: bytes, new: bytes) -> Path:
    """Replace bytes in a written file: values pydicom refuses to write (e.g. 'abcd' as a DS)."""
    data = path.read_bytes()
    assert data.count(old) == 1 and len(old) == len(new)
    path.write_bytes(data.replace(old, new))
    return path


def png(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), np.zeros((6, 8), np.uint8))
    return path


def spacing_of(catalog: Catalog, image_id: str) -> tuple[float, float, str]:
    row = catalog.images.set_index("image_id").loc[image_id]
    return float(row["spacing_row_mm"]), float(row["spacing_col_mm"]), str(row["spacing_source"])


# --- MIAS and the phantom -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def phantom(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_phantom(tmp_path_factory.mktemp("spacing") / "ph", n=2, seed=0, size=128)


def test_phantom_states_its_spacing(phantom: Path) -> None:
    catalog = load_catalog(phantom)
    assert catalog.source == "phantom"
    assert list(catalog.images["spacing_source"]) == ["phantom", "phantom"]
    # The same 204.8 mm film at 128 pixels: 1.6 mm per pixel.
    assert catalog.images["spacing_row_mm"].tolist() == [1.6, 1.6]
    assert catalog.images["spacing_col_mm"].tolist() == [1.6, 1.6]


def test_default_phantom_is_mias_like() -> None:
    assert phantom_spacing_mm(DEFAULT_PHANTOM_SIZE) == MIAS_SPACING_MM == 0.2


def test_mias_layout_is_0_2_mm(phantom: Path, tmp_path: Path) -> None:
    mias = tmp_path / "mias"
    shutil.copytree(phantom, mias)
    (mias / "phantom_truth.csv").unlink()  # without its ground truth, the folder is plain MIAS-layout data
    catalog = load_catalog(mias)
    assert catalog.source == "mias"
    assert [spacing_of(catalog, i) for i in ("mdb001", "mdb002")] == [(0.2, 0.2, "MIAS (0.2 mm)")] * 2


# --- DICOM headers --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("attributes", "expected"),
    [
        ({"PixelSpacing": [0.07, 0.075]}, Spacing(0.07, 0.075, "dicom PixelSpacing")),
        (  # PixelSpacing (at the patient) wins over the detector's
            {"PixelSpacing": [0.07, 0.07], "ImagerPixelSpacing": [0.1, 0.1]},
            Spacing(0.07, 0.07, "dicom PixelSpacing"),
        ),
        (
            {"ImagerPixelSpacing": [0.1, 0.12], "EstimatedRadiographicMagnificationFactor": 1.25},
            Spacing(0.08, 0.096, "dicom ImagerPixelSpacing / magnification"),
        ),
        ({"ImagerPixelSpacing": [0.1, 0.1]}, Spacing(0.1, 0.1, "dicom ImagerPixelSpacing")),
        (  # a factor of 0 says nothing: the detector spacing as is
            {"ImagerPixelSpacing": [0.1, 0.1], "EstimatedRadiographicMagnificationFactor": 0},
            Spacing(0.1, 0.1, "dicom ImagerPixelSpacing"),
        ),
        ({}, None),
        ({"EstimatedRadiographicMagnificationFactor": 1.1}, None),
    ],
)
def test_dicom_header_spacing(tmp_path: Path, attributes: dict, expected: Spacing | None) -> None:
    header = probe_dicom_header(dicom(tmp_path / "a.dcm", **attributes))
    assert (header.height, header.width, header.bit_depth) == (6, 8, 12)
    if expected is None:
        assert header.spacing is None
    else:
        assert header.spacing.source == expected.source
        assert header.spacing.row_mm == pytest.approx(expected.row_mm)
        assert header.spacing.col_mm == pytest.approx(expected.col_mm)


def test_empty_pixel_spacing_is_unknown(tmp_path: Path) -> None:
    ds = make_dataset(PIXELS)
    ds.add_new("PixelSpacing", "DS", None)
    assert probe_dicom_header(save(ds, tmp_path / "e.dcm")).spacing is None


@pytest.mark.parametrize(
    ("keyword", "value", "shown"),
    [
        ("PixelSpacing", "0.1", "'0.1'"),
        ("PixelSpacing", [0.1, 0.1, 0.1], "'0.1\\0.1\\0.1'"),
        ("PixelSpacing", [-0.1, 0.1], "'-0.1\\0.1'"),
        ("PixelSpacing", [0, 0.1], "'0.0\\0.1'"),
        ("ImagerPixelSpacing", [0.1, 0], "'0.1\\0.0'"),
    ],
)
def test_malformed_spacing_names_file_and_tag(tmp_path: Path, keyword: str, value: object, shown: str) -> None:
    path = dicom(tmp_path / "bad.dcm", **{keyword: value})
    with pytest.raises(MammoError) as caught:
        probe_dicom_header(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: DICOM {keyword} must be two positive numbers"), message
    assert message.endswith(f"got {shown}"), message
    assert probe_dicom(path) == (6, 8, 12)  # the size probe does not look at spacing


def test_non_numeric_pixel_spacing_and_magnification(tmp_path: Path) -> None:
    path = damaged(dicom(tmp_path / "abc.dcm", PixelSpacing=[9.25, 0.1]), b"9.25", b"abcd")
    with pytest.raises(MammoError, match=r"abc\.dcm: DICOM PixelSpacing must be two positive numbers"):
        probe_header(path)
    attributes = {"ImagerPixelSpacing": [0.1, 0.1], "EstimatedRadiographicMagnificationFactor": 9.25}
    path = damaged(dicom(tmp_path / "mag.dcm", **attributes), b"9.25", b"abcd")
    with pytest.raises(MammoError, match=r"mag\.dcm: DICOM EstimatedRadiographicMagnificationFactor must be one"):
        probe_header(path)


def test_non_dicom_files_state_no_spacing(tmp_path: Path) -> None:
    assert probe_header(png(tmp_path / "a.png")).spacing is None


# --- the manifest's spacing_mm column ---------------------------------------------------------------


def write_manifest(folder: Path, lines: list[str]) -> Path:
    path = folder / "manifest.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_manifest_spacing_column_and_dicom_fallback(tmp_path: Path) -> None:
    for name in ("a", "b", "c", "d", "plain"):
        png(tmp_path / f"{name}.png")
    dicom(tmp_path / "hdr.dcm", PixelSpacing=[0.1, 0.1])
    dicom(tmp_path / "close.dcm", PixelSpacing=[0.1, 0.1])
    dicom(tmp_path / "far.dcm", PixelSpacing=[0.1, 0.1])
    dicom(tmp_path / "none.dcm")
    manifest = write_manifest(
        tmp_path,
        [
            "path,patient_id,spacing_mm",
            "a.png,p1,0.07",
            "b.png,p1,0.1 0.12",
            "c.png,p2,0.1x0.12",
            "d.png,p2, 0.05 X 0.06 ",
            "plain.png,p3,",
            "hdr.dcm,p3,",
            "close.dcm,p4,0.1005",  # within 1 % of the header: the header's value and source
            "far.dcm,p4,0.05",  # more than 1 % off: the manifest wins
            "none.dcm,p5,",
        ],
    )
    catalog = load_manifest(manifest)
    assert spacing_of(catalog, "a") == (0.07, 0.07, "manifest")
    assert spacing_of(catalog, "b") == (0.1, 0.12, "manifest")
    assert spacing_of(catalog, "c") == (0.1, 0.12, "manifest")
    assert spacing_of(catalog, "d") == (0.05, 0.06, "manifest")
    assert spacing_of(catalog, "hdr") == (0.1, 0.1, "dicom PixelSpacing")
    assert spacing_of(catalog, "close") == (0.1, 0.1, "dicom PixelSpacing")
    assert spacing_of(catalog, "far") == (0.05, 0.05, "manifest")
    for unknown in ("plain", "none"):
        row, col, source = spacing_of(catalog, unknown)
        assert math.isnan(row) and math.isnan(col) and source == "unknown"


def test_manifest_without_the_column_is_unknown_or_dicom(tmp_path: Path) -> None:
    png(tmp_path / "a.png")
    dicom(tmp_path / "m.dcm", ImagerPixelSpacing=[0.1, 0.1], EstimatedRadiographicMagnificationFactor=1.25)
    catalog = load_manifest(write_manifest(tmp_path, ["path,patient_id", "a.png,p1", "m.dcm,p2"]))
    assert catalog.images["spacing_source"].tolist() == ["unknown", "dicom ImagerPixelSpacing / magnification"]
    assert catalog.images["spacing_row_mm"].isna().tolist() == [True, False]
    assert catalog.images["spacing_row_mm"].iloc[1] == pytest.approx(0.08)


@pytest.mark.parametrize("value", ["abc", "0", "-0.1", "0.1 0.2 0.3", "nan", "inf", "0.1x", "0.1,0.2", "x0.1"])
def test_malformed_spacing_mm_names_manifest_line_and_column(tmp_path: Path, value: str) -> None:
    png(tmp_path / "a.png")
    png(tmp_path / "b.png")
    manifest = write_manifest(tmp_path, ["path,patient_id,spacing_mm", "a.png,p1,0.1", f'b.png,p2,"{value}"'])
    with pytest.raises(MammoError) as caught:
        load_manifest(manifest)
    message = str(caught.value)
    assert message.startswith(f"{manifest}:3: spacing_mm must be one positive number"), message
    assert message.endswith(f"got '{value}'"), message


def test_rows_of_one_image_must_agree_on_spacing(tmp_path: Path) -> None:
    png(tmp_path / "a.png")
    header = "path,patient_id,abnormality,spacing_mm"
    agree = write_manifest(tmp_path, [header, "a.png,p1,CALC,0.1", "a.png,p1,MASS,0.10 0.1"])
    assert spacing_of(load_manifest(agree), "a") == (0.1, 0.1, "manifest")
    for second in ("0.2", ""):
        manifest = write_manifest(tmp_path, [header, "a.png,p1,CALC,0.1", f"a.png,p1,MASS,{second}"])
        shown = "0.2 x 0.2" if second else ""
        with pytest.raises(MammoError) as caught:
            load_manifest(manifest)
        assert str(caught.value) == (
            f"{manifest}:3: image 'a': spacing_mm '{shown}' disagrees with '0.1 x 0.1' on line 2"
        )


def test_malformed_dicom_spacing_through_the_cli_is_one_line_exit_2(tmp_path: Path) -> None:
    png(tmp_path / "a.png")
    bad = dicom(tmp_path / "bad.dcm", PixelSpacing=[-0.1, 0.1])
    manifest = write_manifest(tmp_path, ["path,patient_id", "a.png,p1", "bad.dcm,p2"])
    result = CliRunner().invoke(cli, ["data", "info", "--data", str(manifest)])
    assert result.exit_code == 2, result.output
    assert f"{manifest}:3: {bad}: DICOM PixelSpacing must be two positive numbers" in result.output
    assert len(result.output.strip().splitlines()) == 1, result.output


def test_data_info_shows_spacing_per_source(tmp_path: Path) -> None:
    for name in ("a", "b", "c"):
        png(tmp_path / f"{name}.png")
    dicom(tmp_path / "d.dcm", PixelSpacing=[0.085, 0.085])
    lines = ["path,patient_id,spacing_mm", "a.png,p1,0.07", "b.png,p2,0.1", "c.png,p3,", "d.dcm,p4,"]
    manifest = write_manifest(tmp_path, lines)
    result = CliRunner().invoke(cli, ["data", "info", "--data", str(manifest)])
    assert result.exit_code == 0, result.output
    expected = (
        "spacing      dicom PixelSpacing: 1 image at 0.085 mm; manifest: 2 images at 0.07-0.1 mm; unknown: 1 image"
    )
    assert expected in result.output.splitlines()


# --- the schema -----------------------------------------------------------------------------------


def _images(**extra: object) -> pd.DataFrame:
    row = {"image_id": "a", "patient_id": "p", "path": "/a.png", "laterality": "", "view": "", "tissue": ""}
    return pd.DataFrame([{**row, "height": 6, "width": 8, "bit_depth": 8, "split": "train", **extra}])


def _findings() -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "image_id": "a",
                "abnormality": "NORM",
                "severity": "",
                "x": None,
                "y": None,
                "row": None,
                "col": None,
                "radius": None,
                "has_coords": False,
                "source_line": 1,
            }
        ]
    )


def test_catalog_without_spacing_columns_states_unknown() -> None:
    catalog = Catalog(_images(), _findings(), "test", Path("/"))
    assert catalog.images["spacing_source"].tolist() == ["unknown"]
    assert catalog.images[["spacing_row_mm", "spacing_col_mm"]].isna().all().all()
    assert catalog.summary()["spacing"] == [{"source": "unknown", "images": 1, "min_mm": None, "max_mm": None}]


@pytest.mark.parametrize(
    "spacing",
    [
        {"spacing_row_mm": float("nan"), "spacing_col_mm": float("nan"), "spacing_source": "MIAS (0.2 mm)"},
        {"spacing_row_mm": 0.2, "spacing_col_mm": 0.2, "spacing_source": "unknown"},
        {"spacing_row_mm": 0.2, "spacing_col_mm": -0.2, "spacing_source": "manifest"},
        {"spacing_row_mm": 0.2, "spacing_col_mm": 0.2, "spacing_source": "guessed"},
    ],
)
def test_catalog_refuses_inconsistent_spacing(spacing: dict) -> None:
    with pytest.raises(ValueError, match="spacing"):
        Catalog(_images(**spacing), _findings(), "test", Path("/"))
