"""Resampling an image to another pixel spacing (mm per pixel), and mapping coordinates with it.

Making pixels larger (downsampling, on either axis) averages the area each new pixel covers (OpenCV
INTER_AREA), as a detector with larger elements would; making them smaller on both axes (upsampling)
interpolates bicubically. The output
size is the input's physical extent over the new spacing, rounded to whole pixels; `factors` says how
array coordinates map (new = old x factor, per axis).
"""

from __future__ import annotations

import cv2
import numpy as np

from mammo_tf.errors import MammoError


def resampled_shape(shape: tuple[int, int], spacing_mm: tuple[float, float], target_mm: tuple[float, float]):
    """(rows, cols) of an image of `shape` at `spacing_mm` (row, col) brought to `target_mm`: at least 1 each."""
    return tuple(max(1, int(round(n * s / t))) for n, s, t in zip(shape, spacing_mm, target_mm, strict=True))


def factors(shape: tuple[int, int], new_shape: tuple[int, int]) -> tuple[float, float]:
    """(row, col) factors mapping array coordinates of `shape` onto `new_shape`: new = old x factor."""
    return new_shape[0] / shape[0], new_shape[1] / shape[1]


def resample_to_spacing(
    pixels: np.ndarray, spacing_mm: tuple[float, float], target_mm: tuple[float, float]
) -> np.ndarray:
    """float32 [H, W] in [0, 1] at `spacing_mm` (row, col mm per pixel) -> the same extent at `target_mm`.

    Area averaging when the pixels grow on either axis, else bicubic; clipped to [0, 1].
    """
    if not all(np.isfinite(v) and v > 0 for v in (*spacing_mm, *target_mm)):
        raise MammoError(f"pixel spacings must be positive numbers (mm), got {spacing_mm} -> {target_mm}")
    pixels = np.asarray(pixels, np.float32)
    rows, cols = resampled_shape(pixels.shape[:2], spacing_mm, target_mm)
    if (rows, cols) == pixels.shape[:2]:
        return pixels.copy()
    shrink = rows < pixels.shape[0] or cols < pixels.shape[1]
    method = cv2.INTER_AREA if shrink else cv2.INTER_CUBIC
    return np.clip(cv2.resize(pixels, (cols, rows), interpolation=method), 0.0, 1.0)
