"""SR pairs and labelled patches on small synthetic catalogs (256 x 256 PGM films).

Each film: dark background, bright textured half-ellipse breast from the chest-wall
side (left or right), a saturated label in a background corner, and 3x3 bright
specks at the calcification centres, so a patch can be checked for its speck.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from mammo_tf.data.catalog import Catalog
from mammo_tf.data.preprocess import prepare, to_oriented
from mammo_tf.data.samplers import (
    Patches,
    PatchReport,
    SRPairs,
    accept_patch,
    degrade,
    sample_patches,
    sample_sr_pairs,
)
from mammo_tf.data.schema import BENIGN, MALIGNANT, NORMAL
from mammo_tf.errors import MammoError
from mammo_tf.io.images import write_image

SIZE, P = 256, 32
CENTRE_ROW, AXIS_ROW, AXIS_COL = 128, 118, 150


def film(seed: int, side: str, specks: list[tuple[int, int]], saturated: tuple[int, int] | None = None) -> np.ndarray:
    """float32 [256, 256]; specks and the saturated square are given in the file's own coordinates."""
    rng = np.random.default_rng(seed)
    pixels = 0.02 + 0.01 * rng.random((SIZE, SIZE))
    rows, cols = np.mgrid[0:SIZE, 0:SIZE]
    breast = ((rows - CENTRE_ROW) / AXIS_ROW) ** 2 + (cols / AXIS_COL) ** 2 <= 1.0
    texture = cv2.GaussianBlur(rng.random((SIZE, SIZE)).astype(np.float32), (0, 0), 3.0)
    pixels[breast] = (0.4 + 0.2 * (1 - cols / AXIS_COL) + 1.0 * (texture - texture.mean()))[breast]
    pixels[4:40, 200:236] = 1.0  # film label
    if side == "right":
        pixels = pixels[:, ::-1].copy()
    for row, col in specks:
        pixels[row - 1 : row + 2, col - 1 : col + 2] = 0.95
    if saturated is not None:
        row, col = saturated
        pixels[row - 10 : row + 10, col - 10 : col + 10] = 1.0
    return np.clip(pixels, 0.0, 1.0).astype(np.float32)


def mirror(col: int) -> int:
    return SIZE - 1 - col


# image_id, patient, split, side, findings: (abnormality, severity, row, col, radius) with None for no centre
SPECS = [
    ("i1", "p1", "train", "left", [("CALC", "B", 128, 60, 8)]),
    ("i2", "p1", "train", "right", [("CALC", "M", 100, mirror(50), 6)]),
    ("i3", "p2", "train", "left", [("NORM", "", None, None, None)]),
    ("i4", "p3", "test", "right", [("CALC", "M", 140, mirror(70), 8), ("CIRC", "B", 90, mirror(40), 12)]),
    ("i5", "p4", "val", "left", [("CALC", "B", None, None, None)]),  # *NOTE 3*: spread, no centre
    ("i6", "p5", "val", "left", [("CALC", "B", 230, 200, 5)]),  # centre in the film background
    ("i7", "p6", "test", "left", [("CALC", "B", 128, 141, 4)]),  # at the skin line: fails the 95% rule
    ("i8", "p7", "test", "left", [("CALC", "M", 150, 50, 6)]),  # inside a saturated square
]
SATURATED = {"i8": (150, 50)}


def make_catalog(root: Path, specs=SPECS) -> Catalog:
    images, findings = [], []
    for seed, (image_id, patient, split, side, items) in enumerate(specs):
        specks = [(r, c) for a, _, r, c, _ in items if a == "CALC" and r is not None]
        path = root / f"{image_id}.pgm"
        write_image(path, film(seed, side, specks, SATURATED.get(image_id)), 8)
        images.append(
            {
                "image_id": image_id,
                "patient_id": patient,
                "path": str(path),
                "laterality": "L" if side == "left" else "R",
                "view": "MLO",
                "tissue": "F",
                "height": SIZE,
                "width": SIZE,
                "bit_depth": 8,
                "split": split,
            }
        )
        for abnormality, severity, row, col, radius in items:
            findings.append(
                {
                    "image_id": image_id,
                    "abnormality": abnormality,
                    "severity": severity,
                    "x": col,
                    "y": None if row is None else SIZE - 1 - row,
                    "row": row,
                    "col": col,
                    "radius": radius,
                    "has_coords": row is not None,
                    "source_line": len(findings) + 1,
                }
            )
    return Catalog(images=pd.DataFrame(images), findings=pd.DataFrame(findings), source="test", root=root)


@pytest.fixture
def catalog(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Catalog:
    monkeypatch.setenv("MAMMO_CACHE", str(tmp_path / "cache"))
    return make_catalog(tmp_path)


# ---------------------------------------------------------------- degrade


def test_degrade_is_an_exact_block_mean() -> None:
    hr = np.random.default_rng(0).random((3, 12, 12, 1)).astype(np.float32)
    for scale in (2, 3, 4):
        lr = degrade(hr, scale)
        expected = hr[..., 0].astype(np.float64).reshape(3, 12 // scale, scale, 12 // scale, scale).mean(axis=(2, 4))
        assert lr.dtype == np.float32 and lr.shape == (3, 12 // scale, 12 // scale, 1)
        assert np.array_equal(lr[..., 0], expected.astype(np.float32))
    assert degrade(hr[0, ..., 0], 2).shape == (6, 6) and degrade(hr[0], 2).shape == (6, 6, 1)


def test_degrade_blur_and_noise() -> None:
    hr = np.random.default_rng(0).random((2, 16, 16, 1)).astype(np.float32)
    plain = degrade(hr, 2)
    blurred = degrade(hr, 2, blur_sigma=1.5)
    noisy = degrade(hr, 2, noise=0.05, rng=np.random.default_rng(1))
    assert not np.allclose(blurred, plain) and blurred.std() < plain.std()
    assert not np.allclose(noisy, plain) and noisy.min() >= 0 and noisy.max() <= 1
    assert np.array_equal(noisy, degrade(hr, 2, noise=0.05, rng=np.random.default_rng(1)))
    assert 0.02 < np.std(noisy - plain) < 0.1
    assert np.array_equal(degrade(hr, 2, noise=0.05), degrade(hr, 2, noise=0.05))  # default rng is seeded


@pytest.mark.parametrize(
    "args",
    [
        {"scale": 1},
        {"scale": 3},  # 16 is not divisible by 3
        {"scale": 2, "blur_sigma": -1.0},
        {"scale": 2, "noise": float("nan")},
    ],
)
def test_degrade_rejects_bad_arguments(args: dict) -> None:
    with pytest.raises(MammoError):
        degrade(np.zeros((16, 16), np.float32), **args)


# ---------------------------------------------------------------- SR pairs


def test_sr_pairs_shapes_ranges_and_exact_lr(catalog: Catalog) -> None:
    pairs = sample_sr_pairs(catalog, 12, hr_size=32, scale=4, split="train")
    assert isinstance(pairs, SRPairs) and pairs.scale == 4
    assert pairs.hr.shape == (12, 32, 32, 1) and pairs.lr.shape == (12, 8, 8, 1)
    assert pairs.hr.dtype == np.float32 and pairs.lr.dtype == np.float32
    assert pairs.hr.min() >= 0 and pairs.hr.max() <= 1
    expected = pairs.hr[..., 0].astype(np.float64).reshape(12, 8, 4, 8, 4).mean(axis=(2, 4)).astype(np.float32)
    assert np.array_equal(pairs.lr[..., 0], expected)
    assert len(np.unique(pairs.lr * 255 % 1)) > 1  # not rounded to 8 bits
    assert set(pairs.image_id) <= {"i1", "i2", "i3"} and set(pairs.patient_id) <= {"p1", "p2"}


def test_sr_crops_lie_in_the_breast(catalog: Catalog) -> None:
    pairs = sample_sr_pairs(catalog, 40, hr_size=48, scale=2, split=None, seed=3)
    tissue = (pairs.hr[..., 0] > 0.15).mean(axis=(1, 2))  # the breast is >= 0.2, the background 0.03
    assert tissue.min() >= 0.9
    assert len(set(pairs.image_id)) >= 5  # images are drawn from the whole catalog


def test_sr_pairs_are_deterministic_and_noise_leaves_hr_alone(catalog: Catalog) -> None:
    a = sample_sr_pairs(catalog, 8, hr_size=32, seed=1)
    b = sample_sr_pairs(catalog, 8, hr_size=32, seed=1)
    c = sample_sr_pairs(catalog, 8, hr_size=32, seed=2)
    noisy = sample_sr_pairs(catalog, 8, hr_size=32, seed=1, noise=0.02, blur_sigma=1.0)
    assert np.array_equal(a.hr, b.hr) and np.array_equal(a.lr, b.lr) and np.array_equal(a.image_id, b.image_id)
    assert not np.array_equal(a.hr, c.hr)
    assert np.array_equal(a.hr, noisy.hr) and not np.array_equal(a.lr, noisy.lr)
    assert noisy.lr.min() >= 0 and noisy.lr.max() <= 1


def test_foreground_share_puts_crops_on_film_labels(catalog: Catalog) -> None:
    label_crops = {}
    for share in (0.0, 1.0):
        pairs = sample_sr_pairs(catalog, 60, hr_size=32, split=None, seed=4, foreground_share=share)
        label_crops[share] = int(((pairs.hr[..., 0] >= 0.99).mean(axis=(1, 2)) > 0.5).sum())
        assert ((pairs.hr[..., 0] > 0.08).mean(axis=(1, 2)) >= 0.9).all()  # foreground, labels included
    assert label_crops[0.0] == 0 and label_crops[1.0] >= 10  # the rest lie on the breast edge
    default = sample_sr_pairs(catalog, 8, hr_size=32, seed=1)
    assert np.array_equal(default.hr, sample_sr_pairs(catalog, 8, hr_size=32, seed=1, foreground_share=0.0).hr)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"n": 4, "foreground_share": 1.5},
        {"n": 4, "hr_size": 30, "scale": 4},  # not divisible
        {"n": 4, "scale": 1},
        {"n": 0},
        {"n": 4, "split": "nope"},
        {"n": 4, "hr_size": 240},  # fits in no breast
        {"n": 4, "noise": -0.1},
    ],
)
def test_sr_pairs_reject_bad_arguments(catalog: Catalog, kwargs: dict) -> None:
    with pytest.raises(MammoError):
        sample_sr_pairs(catalog, **kwargs)


# ---------------------------------------------------------------- patches


def test_patches_shapes_labels_and_report(catalog: Catalog) -> None:
    report = PatchReport()
    patches = sample_patches(catalog, patch_size=P, per_cluster=4, jitter=4, normal_per_image=3, report=report)
    n = len(patches.labels)
    assert isinstance(patches, Patches)
    assert patches.images.shape == (n, P, P, 1) and patches.images.dtype == np.float32
    assert patches.labels.dtype == np.int32 and set(patches.labels) == {NORMAL, BENIGN, MALIGNANT}
    assert patches.images.min() >= 0 and patches.images.max() <= 1
    calc = dict(zip(*np.unique(patches.image_id[patches.labels != NORMAL], return_counts=True), strict=True))
    assert calc == {"i1": 4, "i2": 4, "i4": 4}  # i5 no centre, i6 background, i7 skin line, i8 saturated
    assert report.clusters == 6 and report.clusters_used == 3 and report.clusters_outside_breast == ["i6"]
    assert report.calc_dropped == 8  # i7 and i8, 4 each: the same rule as for normal tissue
    assert report.images_without_coords == ["i5"] and "i5" not in set(patches.image_id)
    assert report.normal_patches == 3 * 7 and report.normal_dropped == 0


def test_calc_patches_hold_their_speck_near_the_centre(catalog: Catalog) -> None:
    patches = sample_patches(catalog, patch_size=P, per_cluster=6, jitter=4, normal_per_image=0)
    centres = {f.image_id: (f.row, f.col) for f in catalog.findings.itertuples() if f.abnormality == "CALC"}
    assert len(patches.labels) == 18 and (patches.labels != NORMAL).all()
    for image, image_id, row, col in zip(
        patches.images[..., 0], patches.image_id, patches.centre_row, patches.centre_col, strict=True
    ):
        speck_row, speck_col = centres[image_id]
        assert np.hypot(row - speck_row, col - speck_col) <= 4  # reported in the file's coordinates
        peak = np.unravel_index(np.argmax(image), image.shape)
        # patches are cut from the prepared (chest wall left) film: right films are mirrored
        flipped = image_id in {"i2", "i4"}
        speck_in_patch = np.array([speck_row - row, (col - speck_col) if flipped else (speck_col - col)]) + P // 2
        assert np.abs(np.array(peak) - speck_in_patch).max() <= 1


def test_labels_follow_severity(catalog: Catalog) -> None:
    patches = sample_patches(catalog, patch_size=P, per_cluster=2, jitter=0, normal_per_image=0)
    labels = dict(zip(patches.image_id, patches.labels, strict=True))
    assert labels == {"i1": BENIGN, "i2": MALIGNANT, "i4": MALIGNANT}


def test_normal_patches_keep_away_from_every_finding(catalog: Catalog) -> None:
    patches = sample_patches(catalog, patch_size=P, per_cluster=0, normal_per_image=30, seed=5)
    assert (patches.labels == NORMAL).all() and len(patches.labels) == 30 * 7
    located = catalog.findings[catalog.findings["has_coords"]]
    for image_id, row, col in zip(patches.image_id, patches.centre_row, patches.centre_col, strict=True):
        for f in located[located["image_id"] == image_id].itertuples():
            assert np.hypot(row - f.row, col - f.col) > f.radius + P / 2


def test_every_patch_passes_the_one_acceptance_rule(catalog: Catalog) -> None:
    patches = sample_patches(catalog, patch_size=P, per_cluster=8, jitter=16, normal_per_image=8, seed=2)
    paths = catalog.images.set_index("image_id")["path"]
    for image, image_id, row, col in zip(
        patches.images, patches.image_id, patches.centre_row, patches.centre_col, strict=True
    ):
        prepared = prepare(paths[image_id])
        r, c = to_oriented(int(row), int(col), SIZE, prepared.flipped)
        assert accept_patch(prepared, r, c, P)
        assert np.array_equal(image[..., 0], prepared.pixels[r - P // 2 : r + P // 2, c - P // 2 : c + P // 2])
        assert (image >= 0.99).mean() <= 0.01


def test_patches_come_only_from_the_requested_split(catalog: Catalog) -> None:
    patches = sample_patches(catalog, patch_size=P, per_cluster=2, normal_per_image=2, split="test")
    assert set(patches.patient_id) == {"p3", "p6", "p7"} and set(patches.image_id) == {"i4", "i7", "i8"}
    assert (patches.labels == MALIGNANT).sum() == 2  # i4 only; i7 and i8 are dropped by the rule


def test_patches_are_deterministic(catalog: Catalog) -> None:
    a = sample_patches(catalog, patch_size=P, seed=4)
    b = sample_patches(catalog, patch_size=P, seed=4)
    c = sample_patches(catalog, patch_size=P, seed=5)
    assert np.array_equal(a.images, b.images) and np.array_equal(a.centre_row, b.centre_row)
    assert not np.array_equal(a.centre_row, c.centre_row)


@pytest.mark.parametrize(
    "kwargs",
    [{"patch_size": 4}, {"per_cluster": -1}, {"jitter": -2}, {"normal_per_image": 1.5}, {"split": "nope"}],
)
def test_patches_reject_bad_arguments(catalog: Catalog, kwargs: dict) -> None:
    with pytest.raises(MammoError):
        sample_patches(catalog, **kwargs)


def test_phantom_integration(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    phantom = pytest.importorskip("mammo_tf.data.phantom", reason="mammo_tf.data.phantom not written yet")
    from mammo_tf.data.mias import load_mias

    monkeypatch.setenv("MAMMO_CACHE", str(tmp_path / "cache"))
    phantom.write_phantom(tmp_path / "phantom", n=4, seed=0, size=256)
    catalog = load_mias(tmp_path / "phantom", seed=0)
    pairs = sample_sr_pairs(catalog, 4, hr_size=32, scale=2, split=None)
    assert pairs.hr.shape == (4, 32, 32, 1)
    patches = sample_patches(catalog, patch_size=P, per_cluster=2, normal_per_image=2)
    assert (patches.labels == NORMAL).sum() > 0
    assert set(patches.image_id) <= set(catalog.images["image_id"])
