"""Was this film JPEG-coded? The 8x8 DCT grid a lossy JPEG leaves, measured for the SR gate.

Why: JPEG quantises each 8x8 block's DCT coefficients on the image's own grid, and sets most of the
high-frequency ones to zero. The SR model never saw that loss; on JPEG-coded LR it lost to bicubic
(the scanner grid's jpeg-75 cell), so `upscale` leaves such films to bicubic (inference/noise_gate.py).

The score: the share of near-zero high-frequency coefficients (u + v >= 4, |c| < 0.5 8-bit grey level,
orthonormal DCT) in the foreground blocks of the image's 8-px grid, over the same share on the grid
shifted by 4 px. A film never JPEG-coded has no preferred grid: about 1. Measured on the LR of the
scanner grid's cells without JPEG (evaluation/sr_grid.py: noise, blur, kernels, bit depths): all 322
mini-MIAS films 0.96-1.05, 16 phantom films of 512 px 0.93-1.15. After a JPEG round trip of the 8-bit
LR at quality 50, 75, 90 or 95: MIAS 1.42-2.25, phantom 1.74-2.87. The gate's line, BLOCK_CODED, is
between the two.

Not seen: a JPEG crop whose origin is off the 8-px grid (the shifted grid may then be the coded one),
and wavelet codecs (JPEG 2000), which leave no block grid.
"""

from __future__ import annotations

import numpy as np

BLOCK = 8  # JPEG's block size, px
BLOCK_CODED = 1.25  # scores above this are JPEG-coded (module docstring)
MIN_BLOCKS = 64  # fewer foreground blocks on either grid: no evidence, score 1.0
_FOREGROUND = 0.08  # blocks whose every pixel is above this are film (data/noise.FOREGROUND)
_ZERO = 0.5 / 255  # "zero": below half an 8-bit grey level, in [0, 1] units
_HIGH = np.add.outer(np.arange(BLOCK), np.arange(BLOCK)) >= 4  # the 54 coefficients with u + v >= 4


def _zero_share(pixels: np.ndarray) -> tuple[float, int]:
    """(share of near-zero high-frequency DCT coefficients, foreground blocks) on the grid at pixels' origin."""
    from scipy.fft import dctn  # not at import: the CLI builds --help from modules that import this one

    h, w = (pixels.shape[0] // BLOCK) * BLOCK, (pixels.shape[1] // BLOCK) * BLOCK
    blocks = pixels[:h, :w].reshape(h // BLOCK, BLOCK, w // BLOCK, BLOCK).transpose(0, 2, 1, 3)
    film = blocks[blocks.min(axis=(2, 3)) > _FOREGROUND]
    if len(film) == 0:
        return 0.0, 0
    high = dctn(film, axes=(1, 2), norm="ortho")[:, _HIGH]
    return float(np.mean(np.abs(high) < _ZERO)), len(film)


def jpeg_grid_score(lr: np.ndarray) -> float:
    """How strongly float [h, w] in [0, 1] shows a JPEG block grid at its origin: ~1 none, > BLOCK_CODED coded."""
    pixels = np.asarray(lr, np.float64)
    on_grid, blocks = _zero_share(pixels)
    off_grid, shifted = _zero_share(pixels[BLOCK // 2 :, BLOCK // 2 :])
    if min(blocks, shifted) < MIN_BLOCKS:
        return 1.0
    return on_grid / max(off_grid, 1.0 / (shifted * int(_HIGH.sum())))  # none off the grid counts as one
