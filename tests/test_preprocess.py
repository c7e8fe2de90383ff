"""Breast mask, orientation, the preprocess cache and findings_in_breast.

Synthetic films (256 x 256, written as PGM): dark film background, a bright textured
half-ellipse "breast" growing from the chest-wall side, a saturated film label in a
background corner, a thin bright scanner stripe on the far edge and a foggy band
along the top film edge. The real-film checks run on mini-MIAS (marked `mias`).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from mammo_tf.data import preprocess
from mammo_tf.data.catalog import Catalog
from mammo_tf.data.preprocess import (
    Prepared,
    breast_mask,
    chest_wall_side,
    findings_in_breast,
    prepare,
    to_oriented,
)
from mammo_tf.io.images import read_image, write_image

SIZE = 256
CENTRE_ROW, AXIS_ROW, AXIS_COL = 128, 118, 150  # half-ellipse breast on the chest-wall edge


def ellipse(size: int = SIZE) -> np.ndarray:
    """Bool [size, size]: the true breast, chest wall on the left."""
    rows, cols = np.mgrid[0:size, 0:size]
    return ((rows - CENTRE_ROW) / AXIS_ROW) ** 2 + (cols / AXIS_COL) ** 2 <= 1.0


def film(seed: int = 0, side: str = "left") -> np.ndarray:
    """float32 [256, 256] in [0, 1]: breast + label + stripe + film-edge fog, mirrored if side == 'right'."""
    rng = np.random.default_rng(seed)
    pixels = 0.02 + 0.01 * rng.random((SIZE, SIZE))
    texture = cv2.GaussianBlur(rng.random((SIZE, SIZE)).astype(np.float32), (0, 0), 3.0)
    cols = np.arange(SIZE)[None, :]
    breast = ellipse()
    pixels[breast] = (0.45 + 0.3 * (1 - cols / AXIS_COL) + 2.0 * (texture - texture.mean()))[breast]
    pixels[4:40, 200:236] = 1.0  # film label, background corner, saturated
    pixels[:, 248:252] = 0.9  # scanner stripe near the far edge
    pixels[0:10, :] = np.maximum(pixels[0:10, :], 0.25)  # fogged top film edge, touches the breast
    pixels = np.clip(pixels, 0.0, 1.0).astype(np.float32)
    return pixels[:, ::-1].copy() if side == "right" else pixels


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "cache"
    monkeypatch.setenv("MAMMO_CACHE", str(cache))
    return cache


def test_breast_mask_covers_the_breast_and_drops_label_stripe_and_fog() -> None:
    mask = breast_mask(film())
    truth = ellipse()
    assert mask.dtype == bool and mask.shape == (SIZE, SIZE)
    assert (mask & truth).sum() / (mask | truth).sum() > 0.9
    assert not mask[4:40, 200:236].any()  # label
    assert not mask[:, 240:].any()  # stripe
    assert not mask[0:10, AXIS_COL + 10 :].any()  # fog band beyond the breast


def test_breast_mask_of_a_blank_image_is_empty() -> None:
    assert not breast_mask(np.zeros((64, 64), np.float32)).any()
    assert not breast_mask(np.full((64, 64), 0.5, np.float32)).any()


@pytest.mark.parametrize("side", ["left", "right"])
def test_chest_wall_side_comes_from_the_pixels(side: str) -> None:
    pixels = film(side=side)
    assert chest_wall_side(pixels, breast_mask(pixels)) == side


def test_to_oriented_is_its_own_inverse() -> None:
    assert to_oriented(5, 10, 100, False) == (5, 10)
    assert to_oriented(5, 10, 100, True) == (5, 89)
    rows, cols = np.array([1, 2]), np.array([0, 99])
    back = to_oriented(*to_oriented(rows, cols, 100, True), 100, True)
    assert np.array_equal(back[0], rows) and np.array_equal(back[1], cols)


@pytest.mark.parametrize("bit_depth", [8, 16])
def test_prepare_orients_chest_wall_left_and_keeps_pixels_exact(tmp_path: Path, bit_depth: int) -> None:
    path = tmp_path / "right.pgm"
    write_image(path, film(side="right"), bit_depth)
    original = read_image(path).pixels
    prepared = prepare(path)
    assert isinstance(prepared, Prepared) and prepared.flipped and prepared.bit_depth == bit_depth
    assert prepared.pixels.dtype == np.float32 and prepared.mask.dtype == bool
    assert np.array_equal(prepared.pixels, original[:, ::-1])
    assert prepared.mask[:, :20].sum() > prepared.mask[:, -20:].sum()
    assert chest_wall_side(prepared.pixels, prepared.mask) == "left"


def test_prepare_caches_and_second_call_loads(tmp_path: Path, _cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "left.pgm"
    write_image(path, film(), 8)
    first = prepare(path)
    files = list((_cache / "preprocess").glob("*.npz"))
    assert len(files) == 1 and not list((_cache / "preprocess").glob("*.part"))
    assert files[0].stat().st_size < 40_000  # packed mask + compressed 8-bit integers

    def fail(_pixels: np.ndarray) -> np.ndarray:
        raise AssertionError("recomputed although cached")

    monkeypatch.setattr(preprocess, "breast_mask", fail)
    second = prepare(path)
    assert np.array_equal(first.pixels, second.pixels) and np.array_equal(first.mask, second.mask)
    assert (first.flipped, first.bit_depth) == (second.flipped, second.bit_depth)
    monkeypatch.undo()
    monkeypatch.setenv("MAMMO_CACHE", str(_cache))
    write_image(path, film(seed=1), 8)  # new content (size equal, mtime differs): a new key
    path.touch()
    prepare(path)
    assert len(list((_cache / "preprocess").glob("*.npz"))) == 2


def _catalog(root: Path, findings: list[dict]) -> Catalog:
    write_image(root / "a.pgm", film(side="right"), 8)
    images = pd.DataFrame(
        [
            {
                "image_id": "a",
                "patient_id": "p1",
                "path": str(root / "a.pgm"),
                "laterality": "R",
                "view": "MLO",
                "tissue": "F",
                "height": SIZE,
                "width": SIZE,
                "bit_depth": 8,
                "split": "train",
            }
        ]
    )
    rows = []
    for line, f in enumerate(findings, start=1):
        has = f.get("row") is not None
        rows.append(
            {
                "image_id": "a",
                "abnormality": f.get("abnormality", "CALC"),
                "severity": f.get("severity", "B"),
                "x": f.get("col"),
                "y": SIZE - 1 - f["row"] if has else None,
                "row": f.get("row"),
                "col": f.get("col"),
                "radius": f.get("radius", 5 if has else None),
                "has_coords": has,
                "source_line": line,
            }
        )
    return Catalog(images=images, findings=pd.DataFrame(rows), source="test", root=root)


def test_findings_in_breast(tmp_path: Path) -> None:
    # Image "a" is a right breast: the chest wall and the breast sit at high columns of the file.
    catalog = _catalog(
        tmp_path,
        [
            {"row": 128, "col": SIZE - 40},  # deep in the breast
            {"row": 20, "col": 20},  # film background (like mdb212 / mdb214)
            {"row": None},  # *NOTE 3*: no centre
            {"row": 22, "col": SIZE - 1 - 218},  # on the film label
        ],
    )
    result = findings_in_breast(catalog)
    assert result.dtype == bool and result.index.equals(catalog.findings.index)
    assert result.tolist() == [True, False, False, False]


# Label, stripe and frame regions on real films, (x, y, w, h) in the original file: never breast.
MIAS_ARTEFACTS = {
    "mdb005": [(262, 0, 79, 98)],
    "mdb011": [(206, 39, 103, 144)],
    "mdb012": [(559, 0, 95, 114), (746, 0, 91, 1024)],
    "mdb131": [(13, 1, 182, 1023), (351, 44, 51, 50)],
    "mdb274": [(825, 0, 187, 1024)],
}


@pytest.mark.mias
def test_mias_masks_and_findings_in_breast(mias_dir: Path) -> None:
    from mammo_tf.data.mias import load_mias

    catalog = load_mias(mias_dir, seed=0)
    for image_id, boxes in MIAS_ARTEFACTS.items():
        path = catalog.images.set_index("image_id").loc[image_id, "path"]
        prepared = prepare(path)
        assert prepared.flipped == (int(image_id[3:]) % 2 == 1)  # odd = right breast
        mask = prepared.mask[:, ::-1] if prepared.flipped else prepared.mask
        assert 0.2 < mask.mean() < 0.8, image_id
        pixels = read_image(path).pixels
        for x, y, w, h in boxes:
            bright = pixels[y : y + h, x : x + w] >= 0.85
            assert not (mask[y : y + h, x : x + w] & bright).any(), (image_id, x, y)
    calc_ids = set(catalog.findings.loc[catalog.findings["abnormality"] == "CALC", "image_id"])
    images = catalog.images[catalog.images["image_id"].isin(calc_ids)]
    findings = catalog.findings[catalog.findings["image_id"].isin(calc_ids)]
    subset = Catalog(images=images, findings=findings, source="mias", root=catalog.root)
    inside = findings_in_breast(subset)
    calc = subset.findings.assign(inside=inside.to_numpy())
    calc = calc[(calc["abnormality"] == "CALC") & calc["has_coords"]]
    assert not calc.loc[calc["image_id"].isin(["mdb212", "mdb214"]), "inside"].any()
    others = calc[~calc["image_id"].isin(["mdb212", "mdb214"])]
    assert len(others) == 25 and others["inside"].all()
