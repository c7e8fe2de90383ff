"""detect: a calcification heatmap over whole films from the patch classifier, and its top regions.

Patches of the classifier's size are scored on a grid (stride px) of centres inside the breast mask, in
batches (the film stays on the host); the grid of probabilities is the heatmap, resized to the film and
set to 0 outside the breast. Top regions: grid maxima kept by non-maximum suppression (no two closer
than one patch size), with their centres in original array coordinates (row 0 = top).

The film score used by the study is the heatmap's maximum inside the breast.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from mammo_tf.errors import MammoError, located

DEFAULT_STRIDE = 16
DEFAULT_TOP = 5


@dataclass(frozen=True)
class Heatmap:
    """probability float32 [H, W] in [0, 1] (0 outside the breast), regions (rank, row, col, score), film score."""

    probability: np.ndarray
    regions: pd.DataFrame
    score: float


def load_classifier(spec: str | Path | None = None):
    """(model, model id, patch size) for a shipped name, a .keras file or a classifier run directory."""
    from mammo_tf.inference.registry import load_keras, model_id, resolve_model_path
    from mammo_tf.models.classifier import CLASSIFIER_NAME, CalcificationClassifier  # noqa: F401 (registers)

    path = resolve_model_path(spec, "classifier")
    model = load_keras(path)
    if not model.name.startswith(CLASSIFIER_NAME):
        raise located(path, f"not a mammo-tf calcification classifier (model {model.name!r})")
    return model, model_id(path), int(model.network.input_shape[1])


def heatmap(
    model,
    pixels: np.ndarray,
    mask: np.ndarray,
    patch_size: int,
    *,
    stride: int = DEFAULT_STRIDE,
    top: int = DEFAULT_TOP,
    batch: int = 256,
) -> Heatmap:
    """Score float32 [H, W] film pixels (original orientation) with its bool breast mask."""
    import cv2

    half = patch_size // 2
    height, width = pixels.shape
    rows = np.arange(half, height - half + 1, stride)
    cols = np.arange(half, width - half + 1, stride)
    if rows.size == 0 or cols.size == 0:
        raise MammoError(f"film {height}x{width} is smaller than one {patch_size}-px patch")
    grid = np.zeros((rows.size, cols.size), np.float32)
    centres = [(i, j) for i, r in enumerate(rows) for j, c in enumerate(cols) if mask[r, c]]
    for first in range(0, len(centres), batch):
        chunk = centres[first : first + batch]
        tiles = np.stack([pixels[rows[i] - half : rows[i] + half, cols[j] - half : cols[j] + half] for i, j in chunk])
        probs = np.asarray(model(tiles[..., None].astype(np.float32), training=False)["calc"])
        for (i, j), p in zip(chunk, probs, strict=True):
            grid[i, j] = p
    full = cv2.resize(
        grid, (int(cols[-1] - cols[0] + stride), int(rows[-1] - rows[0] + stride)), interpolation=cv2.INTER_LINEAR
    )
    probability = np.zeros((height, width), np.float32)
    r0, c0 = int(rows[0] - stride // 2), int(cols[0] - stride // 2)
    r_lo, c_lo = max(r0, 0), max(c0, 0)
    r_hi, c_hi = min(r0 + full.shape[0], height), min(c0 + full.shape[1], width)
    probability[r_lo:r_hi, c_lo:c_hi] = full[r_lo - r0 : r_hi - r0, c_lo - c0 : c_hi - c0]
    probability *= mask
    regions = []
    order = np.argsort(grid, axis=None)[::-1]
    for flat in order:
        i, j = np.unravel_index(flat, grid.shape)
        if grid[i, j] <= 0 or len(regions) >= top:
            break
        r, c = int(rows[i]), int(cols[j])
        if all(np.hypot(r - q["row"], c - q["col"]) >= patch_size for q in regions):
            regions.append({"rank": len(regions) + 1, "row": r, "col": c, "score": float(grid[i, j])})
    table = pd.DataFrame(regions, columns=["rank", "row", "col", "score"])
    return Heatmap(probability, table, float(grid.max()))


def detect_files(
    inputs: list[Path],
    out_dir: str | Path,
    *,
    model: str | Path | None = None,
    stride: int = DEFAULT_STRIDE,
    top: int = DEFAULT_TOP,
    on_result=None,
) -> pd.DataFrame:
    """Heatmap PNGs (<stem>_heatmap.png, 255 = probability 1) and detections.csv for every input film.

    A film that fails gives its one-line error through on_result(path, None, error) and is left out.
    Returns the detections table (image, rank, row, col, score, film_score, model).
    """
    from mammo_tf.data.preprocess import prepare
    from mammo_tf.io.atomic import write_bytes_atomic
    from mammo_tf.io.images import read_image, write_image

    net, ident, patch_size = load_classifier(model)
    out_dir = Path(out_dir)
    tables = []
    for source in map(Path, inputs):
        try:
            pixels = read_image(source).pixels
            prepared = prepare(source)
            mask = prepared.mask[:, ::-1] if prepared.flipped else prepared.mask
            result = heatmap(net, pixels, mask, patch_size, stride=stride, top=top)
            out = out_dir / f"{source.stem}_heatmap.png"
            write_image(out, result.probability, 8)
        except MammoError as err:
            if on_result:
                on_result(source, None, str(err))
            continue
        table = result.regions.assign(image=source.name, film_score=result.score, model=ident)
        tables.append(table[["image", "rank", "row", "col", "score", "film_score", "model"]])
        if on_result:
            on_result(source, out, None)
    columns = ["image", "rank", "row", "col", "score", "film_score", "model"]
    detections = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(columns=columns)
    write_bytes_atomic(out_dir / "detections.csv", detections.to_csv(index=False).encode())
    return detections
