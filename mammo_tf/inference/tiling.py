"""Overlap-and-blend tiling: whole images through a fully convolutional model, one tile batch at a time.

The image stays on the host (NumPy); only batches of equal-size tiles go to the model, so model memory
is bounded by the tile's pixel count (at most tile x tile, tile_grid), not the image. Tiles overlap by
`overlap` input pixels. Each tile's output is weighted 0 within `margin` input pixels of an edge it shares
with a neighbour (where zero padding makes it differ from an untiled pass), then ramps linearly to 1. With
margin >= the model's receptive radius and overlap >= 2 * margin + 1, every weighted pixel is exact, so
tiled output equals untiled output to float precision; the ramps only smooth if the margin is set too small.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from mammo_tf.errors import MammoError


def axis_layout(length: int, count: int, overlap: int) -> tuple[int, list[int]]:
    """(tile size, start offsets) of `count` equal tiles spread evenly over [0, length), neighbours sharing
    at least `overlap` pixels: the smallest size that does it."""
    if count <= 1:
        return length, [0]
    size = min(length, -(-(length + (count - 1) * overlap) // count))
    starts = np.floor(np.linspace(0, length - size, count)).astype(int).tolist()
    return size, starts


def tile_layout(length: int, tile: int, overlap: int) -> tuple[int, list[int]]:
    """axis_layout with the fewest tiles of at most `tile` pixels (a 1024 px axis in tiles of 512 with
    overlap 48 takes 3 tiles of 374, not 3 of 512)."""
    count = 1 if length <= tile else -(-(length - overlap) // (tile - overlap))
    return axis_layout(length, count, overlap)


def tile_grid(height: int, width: int, tile: int, overlap: int) -> tuple[tuple[int, list[int]], tuple[int, list[int]]]:
    """Row and column layouts (axis_layout) of tiles of at most tile x tile pixels, of any shape, that compute
    the fewest pixels (then the fewest tiles).

    Why any shape: the pixel count bounds a tile's memory, and what tiling repeats is the overlap at each
    seam. A 1024² image with tile 768 and overlap 42 runs as 2 tiles of 1024 x 533 (4.1 % of its pixels
    repeated), not 4 of 533² (8.4 %).
    """
    budget, best = tile * tile, None
    for rows in range(1, height + 1):
        th, row_starts = axis_layout(height, rows, overlap)
        if rows > 1 and th <= overlap:  # neighbours must advance by at least one pixel
            break
        if best is not None and th * rows * width >= best[0][0]:  # more rows only repeat more
            break
        widest = budget // th
        if widest < width and widest <= overlap:
            continue
        tw, col_starts = tile_layout(width, widest, overlap)
        cost = (th * rows * tw * len(col_starts), rows * len(col_starts))
        if best is None or cost < best[0]:
            best = (cost, (th, row_starts), (tw, col_starts))
    if best is None:
        raise MammoError(f"--tile {tile} is too small for an overlap of {overlap}")
    return best[1], best[2]


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

    apply: float32 [B, th, tw, 1] -> float32 [B, th*scale, tw*scale, 1] (e.g. a Keras generator), th * tw <=
    tile², one shape for every tile (tile_grid). image: float32 [H, W] (any size). Returns float32
    [H*scale, W*scale].
    """
    check_tiling(tile, overlap, margin)
    height, width = image.shape
    (th, rows), (tw, cols) = tile_grid(height, width, tile, overlap)
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
