"""A catalog brought to a target pixel spacing: resampled copies, findings mapped, samplers unchanged."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from cli_helpers import invoke, one_error_line

from mammo_tf.data.catalog import load_catalog
from mammo_tf.data.resample import at_training_spacing, catalog_at_spacing, uniform_spacing
from mammo_tf.data.samplers import sample_patches
from mammo_tf.errors import MammoError
from mammo_tf.io.images import read_image, write_image


def _dataset(tmp_path: Path, spacing: str = "0.1") -> Path:
    """Two 12-bit PNG films of 0.1 mm pixels: a breast (a bright half-disc) with a 5-px speck cluster."""
    rows, cols = np.mgrid[0:400, 0:320]
    lines = ["path,patient_id,abnormality,severity,row,col,radius,spacing_mm,split"]
    for i in range(2):
        film = np.where(np.hypot(rows - 200, cols) < 300, 0.5, 0.0).astype(np.float32)
        film[198:203, 158:163] = 0.95  # a speck at (200, 160)
        write_image(tmp_path / f"film{i}.png", film, 12)
        lines.append(f"film{i}.png,p{i},CALC,B,200,160,20,{spacing},{'train' if i == 0 else 'test'}")
    (tmp_path / "manifest.csv").write_text("\n".join(lines) + "\n")
    return tmp_path


def test_images_and_findings_are_brought_to_the_target_spacing(tmp_path: Path) -> None:
    catalog = load_catalog(_dataset(tmp_path / "data"))
    coarse = catalog_at_spacing(catalog, 0.2, tmp_path / "cache")
    images = coarse.images.set_index("image_id")
    assert (images["height"] == 200).all() and (images["width"] == 160).all()
    assert (images["spacing_row_mm"] == 0.2).all() and (images["spacing_source"] == "resampled").all()
    pixels = read_image(images.loc["film0", "path"]).pixels
    assert pixels.shape == (200, 160) and np.unravel_index(np.argmax(pixels), pixels.shape) in {
        (r, c) for r in (99, 100, 101) for c in (79, 80, 81)
    }
    finding = coarse.findings.iloc[0]
    assert (finding["row"], finding["col"], finding["radius"]) == (100, 80, 10)  # 200, 160, 20 at 0.1 mm
    patches = sample_patches(coarse, patch_size=16, per_cluster=2, jitter=2, normal_per_image=1, split="train")
    assert len(patches.labels) > 0 and patches.images.shape[1:] == (16, 16, 1)
    # the copies are cached: a second call makes none again
    made = {p: p.stat().st_mtime_ns for p in (tmp_path / "cache").iterdir()}
    catalog_at_spacing(catalog, 0.2, tmp_path / "cache")
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "cache").iterdir()} == made


def test_images_at_the_target_stay_and_unknown_spacings_are_refused(tmp_path: Path) -> None:
    catalog = load_catalog(_dataset(tmp_path / "data"))
    same = catalog_at_spacing(catalog, 0.1005, tmp_path / "cache")  # within 1 %: the files as they are
    assert list(same.images["path"]) == list(catalog.images["path"]) and not (tmp_path / "cache").exists()
    unknown = load_catalog(_dataset(tmp_path / "unknown", spacing=""))
    with pytest.raises(MammoError, match=r"film0.png: pixel spacing unknown, so it cannot be brought to 0.2 mm"):
        catalog_at_spacing(unknown, 0.2, tmp_path / "cache")
    with pytest.raises(MammoError, match="target spacing must be a positive number"):
        catalog_at_spacing(catalog, 0.0, tmp_path / "cache")


def test_a_trainer_learns_the_shared_spacing_or_the_target(tmp_path: Path) -> None:
    catalog = load_catalog(_dataset(tmp_path / "data"))
    assert uniform_spacing(catalog) == pytest.approx(0.1)
    same, spacing = at_training_spacing(catalog, None)
    assert same is catalog and spacing == pytest.approx(0.1)
    coarse, spacing = at_training_spacing(catalog, 0.2)
    assert spacing == 0.2 and (coarse.images["height"] == 200).all()
    mixed = catalog.images.copy()
    mixed.loc[mixed.index[1], ["spacing_row_mm", "spacing_col_mm"]] = 0.05
    assert uniform_spacing(type(catalog)(mixed, catalog.findings, catalog.source, catalog.root)) is None
    assert uniform_spacing(load_catalog(_dataset(tmp_path / "unknown", spacing=""))) is None


def test_training_at_a_spacing_refuses_images_of_unknown_spacing(tmp_path: Path) -> None:
    data = _dataset(tmp_path / "unknown", spacing="")
    run = tmp_path / "run"
    result = invoke("train-classifier", "--data", data, "--spacing-mm", "0.2", "--run-dir", run)
    one_error_line(result, "film0.png: pixel spacing unknown, so it cannot be brought to 0.2 mm")
    assert not run.exists()
    one_error_line(invoke("train-gan", "--spacing-mm", "0", "--run-dir", run), "Invalid value for '--spacing-mm'")
