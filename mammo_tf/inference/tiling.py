"""Overlap-and-blend tiling: whole images through a fully convolutional model, one tile batch at a time.

The image stays on the host (NumPy); only batches of equal-size tiles go to the model, so model memory
is bounded by the tile size, not the image. Tiles overlap by `overlap` input pixels. Each tile's output
is weighted 0 within `margin` input pixels of an edge it shares with a neighbour (where zero padding
makes it differ from an untiled pass), then ramps linearly to 1. With margin >= the model's receptive
radius and overlap >= 2 * margin + 1, every weighted pixel is exact, so tiled output equals untiled
output to float precision; the ramps only smooth if the margin is set too small.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from mammo_tf.errors import MammoError


def tile_layout(length: int, tile: int, overlap: int) -> tuple[int, list[int]]:
    """(tile size, start offsets) covering [0, length) with the fewest tiles of at most `tile`.

    The tiles are shrunk to the smallest equal size that still covers the axis with `overlap` between
    neighbours, and spread evenly, so little work is repeated (a 1024 px axis in tiles of 512 with overlap 48
    takes 3 tiles of 375, not 3 of 512).
    """
    if length <= tile:
        return length, [0]
    count = -(-(length - overlap) // (tile - overlap))
    size = min(length, -(-(length + (count - 1) * overlap) // count) + 1)
    starts = np.floor(np.linspace(0, length - size, count)).astype(int).tolist()
    return size, starts


def edge_weights(
    size: int, scale: int, interior_before: bool, interior_after: bool, margin: int, overlap: int
) -> np.ndarray:
    """float64 [size * scale] weights along one axis of one output tile (see the module docstring)."""
    out = np.arange(size * scale, dtype=np.float64)
    ramp = max(overlap - 2 * margin, 1) * scale
    weights = np.ones(size * scale)
    if interior_before:
        weights = np.minimum(weights, np.clip((out - margin * scale + 0.5) / ramp, 0.0, 1.0))
    if interior_after:
        back = size * scale - 1 - out
        weights = np.minimum(weights, np.clip((back - margin * scale + 0.5) / ramp, 0.0, 1.0))
    return weights


def check_tiling(tile: int, overlap: int, margin: int) -> None:
    """MammoError unless tile > 2 * overlap and overlap >= 2 * margin + 1."""
    if overlap < 0 or tile <= 0:
        raise MammoError(f"tile ({tile}) must be > 0 and overlap ({overlap}) >= 0")
    if tile < 2 * overlap:
        raise MammoError(f"--tile {tile} is smaller than twice the overlap ({overlap})")
    if overlap < 2 * margin + 1:
        raise MammoError(f"--overlap {overlap} is below 2 x the model's receptive radius + 1 ({2 * margin + 1}): seams")


def tiled_apply(
    apply: Callable[[np.ndarray], np.ndarray],
    image: np.ndarray,
    *,
    scale: int,
    tile: int,
    overlap: int,
    margin: int,
    batch: int = 4,
) -> np.ndarray:
    """Run `apply` over overlapping tiles of `image` and blend.

    apply: float32 [B, t, t, 1] -> float32 [B, t*scale, t*scale, 1] (e.g. a Keras generator).
    image: float32 [H, W] (any size). Returns float32 [H*scale, W*scale].
    """
    check_tiling(tile, overlap, margin)
    height, width = image.shape
    th, rows = tile_layout(height, tile, overlap)
    tw, cols = tile_layout(width, tile, overlap)
    acc = np.zeros((height * scale, width * scale), np.float32)  # float32: the output itself is float32
    total = np.zeros_like(acc)
    boxes = [(r, c) for r in rows for c in cols]
    for first in range(0, len(boxes), batch):
        chunk = boxes[first : first + batch]
        tiles = np.stack([image[r : r + th, c : c + tw] for r, c in chunk])[..., None].astype(np.float32)
        outputs = np.asarray(apply(tiles), dtype=np.float32)[..., 0]
        for (r, c), out in zip(chunk, outputs, strict=True):
            wr = edge_weights(th, scale, r > 0, r + th < height, margin, overlap)
            wc = edge_weights(tw, scale, c > 0, c + tw < width, margin, overlap)
            weight = (wr[:, None] * wc[None, :]).astype(np.float32)
            window = (slice(r * scale, (r + th) * scale), slice(c * scale, (c + tw) * scale))
            acc[window] += weight * out
            total[window] += weight
    return acc / total
