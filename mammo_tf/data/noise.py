"""How noisy a film is, in 8-bit grey levels: what the SR noise gate compares with the model's training films.

Immerkaer's estimator: the mean absolute response to a 3x3 Laplacian difference, times sqrt(pi/2) / 6, over
the film's foreground (pixels above FOREGROUND, eroded 2 px, so the film edge and the black background do
not count), as sigma x 255 whatever the bit depth. It reads texture as a little noise too, so a clean
mini-MIAS LR film scores about 1 (0.73-1.18, 2x2 box average, 8 bits), not 0.

`noise_ceiling` is what an SR model records (metrics.json `noise_ceiling_greys`): the noisiest LR of its
training films, plus CEILING_MARGIN. `upscale` leaves films above it to bicubic (inference/noise_gate.py).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

FOREGROUND = 0.08  # LR pixels above this are film (MIAS background is 0-0.05)
MIN_FOREGROUND = 256  # fewer foreground pixels than this: the whole image is measured
CEILING_MARGIN = 0.03  # above the noisiest training film: the estimate's own spread on a film
_LAPLACIAN_DIFFERENCE = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float64)


def estimate_noise_greys(lr: np.ndarray) -> float:
    """Noise standard deviation of float [h, w] in [0, 1], in 8-bit grey levels (module docstring)."""
    from scipy import ndimage  # not at import: the CLI builds --help from modules that import this one

    pixels = np.asarray(lr, np.float64)
    response = np.abs(ndimage.convolve(pixels, _LAPLACIAN_DIFFERENCE, mode="reflect"))
    foreground = ndimage.binary_erosion(pixels > FOREGROUND, iterations=2)
    values = response[foreground] if foreground.sum() >= MIN_FOREGROUND else response.ravel()
    return float(np.sqrt(np.pi / 2) * values.mean() / 6 * 255)


def noise_ceiling(lr_films: Iterable[np.ndarray]) -> float:
    """The noisiest of `lr_films` (float [h, w] in [0, 1]) plus CEILING_MARGIN, in grey levels, 2 decimals."""
    noisiest = max(estimate_noise_greys(lr) for lr in lr_films)
    return round(noisiest * (1 + CEILING_MARGIN), 2)
