"""The degradation SR inverts, and the plain resamplers it is compared with: NumPy and OpenCV only (no TensorFlow).

    crop_to_scale(image, s)      [H, W] -> the largest top-left part whose sides are multiples of s
    area_downsample(image, s)    the exact s x s block mean, float64
    degrade(hr, s, bits)         the LR image SR is trained and scored on: that mean, rounded to `bits`
    quant_step_for(bits)         one grey level of that rounding (what the consistency projection allows)
    interpolate(lr, s, method)   nearest / bicubic / Lanczos upscaling, the baselines

Here, below training, inference and evaluation, because all three use them. The rounding is
`mammo_tf.io.images.quantize(..., as_float=True)`, the same function the image writers round with.
(samplers.degrade is another one: the blurred, noisy pairs of a degradation study, never rounded.)
"""

from __future__ import annotations

import cv2
import numpy as np

from mammo_tf.io.images import quantize

INTERPOLATIONS = {"nearest": cv2.INTER_NEAREST, "bicubic": cv2.INTER_CUBIC, "lanczos": cv2.INTER_LANCZOS4}


def crop_to_scale(image: np.ndarray, scale: int) -> np.ndarray:
    """[H, W] -> [H - H % s, W - W % s]: the largest top-left part whose sides are multiples of the scale."""
    return image[: image.shape[0] // scale * scale, : image.shape[1] // scale * scale]


def area_downsample(image: np.ndarray, scale: int) -> np.ndarray:
    """float [H, W] -> float64 [H/s, W/s]: the exact s x s block mean (the degradation SR inverts)."""
    h, w = image.shape[:2]
    return np.asarray(image, np.float64).reshape(h // scale, scale, w // scale, scale).mean(axis=(1, 3))


def degrade(hr: np.ndarray, scale: int, bits: int | None) -> np.ndarray:
    """The LR image SR is scored on: float32 [H/s, W/s], the s x s block mean of `hr` rounded to `bits`.

    The mean is cast to float32 before rounding, as every shipped evaluation was scored (rounding the float64
    mean moves a few pixels that sit on a half grey level).
    """
    return quantize(area_downsample(hr, scale).astype(np.float32), bits, as_float=True)


def quant_step_for(bit_depth: int | None) -> float:
    """0 for float inputs (None), else one grey level of a `bit_depth`-bit file in units of full scale."""
    return 0.0 if not bit_depth else 1.0 / ((1 << int(bit_depth)) - 1)


def interpolate(lr: np.ndarray, scale: int, method: str) -> np.ndarray:
    """OpenCV upscaling of float32 [h, w] by `scale` (nearest, bicubic or lanczos), clipped to [0, 1]."""
    h, w = lr.shape[:2]
    up = cv2.resize(np.asarray(lr, np.float32), (w * scale, h * scale), interpolation=INTERPOLATIONS[method])
    return np.clip(up, 0.0, 1.0)
