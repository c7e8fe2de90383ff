"""SR image metrics with their conventions stated: data range 1.0 (float [0, 1] from the true bit depth),
a border of `scale` pixels cropped, optionally a breast mask; SSIM with an 11x11 Gaussian window,
sigma 1.5, K1 = 0.01, K2 = 0.03 (the MATLAB reference, via scikit-image when available, else TF).

NumPy in, floats out; no model code here.
"""

from __future__ import annotations

import cv2
import numpy as np

SSIM_WINDOW = {"gaussian_weights": True, "sigma": 1.5, "use_sample_covariance": False, "K1": 0.01, "K2": 0.03}
INTERPOLATIONS = {"nearest": cv2.INTER_NEAREST, "bicubic": cv2.INTER_CUBIC, "lanczos": cv2.INTER_LANCZOS4}


def crop_border(image: np.ndarray, border: int) -> np.ndarray:
    return image[border:-border, border:-border] if border else image


def psnr(estimate: np.ndarray, reference: np.ndarray, mask: np.ndarray | None = None) -> float:
    """PSNR in dB, data range 1.0, over `mask` (bool, same shape) or every pixel."""
    diff = np.asarray(estimate, np.float64) - np.asarray(reference, np.float64)
    sq = diff[mask] if mask is not None else diff
    mse = float(np.mean(sq**2)) if sq.size else float("nan")
    return float("inf") if mse == 0 else 10.0 * np.log10(1.0 / mse)


def ssim_map(estimate: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Per-pixel SSIM [H, W] (Gaussian window sigma 1.5, data range 1.0)."""
    from skimage.metrics import structural_similarity

    _, full = structural_similarity(
        np.asarray(reference, np.float64), np.asarray(estimate, np.float64), data_range=1.0, full=True, **SSIM_WINDOW
    )
    return full


def ssim(estimate: np.ndarray, reference: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Mean SSIM over `mask` (or the whole image)."""
    full = ssim_map(estimate, reference)
    return float(full[mask].mean() if mask is not None else full.mean())


def interpolate(lr: np.ndarray, scale: int, method: str) -> np.ndarray:
    """OpenCV upscaling of float32 [h, w] by `scale` (nearest, bicubic or lanczos), clipped to [0, 1]."""
    h, w = lr.shape[:2]
    up = cv2.resize(np.asarray(lr, np.float32), (w * scale, h * scale), interpolation=INTERPOLATIONS[method])
    return np.clip(up, 0.0, 1.0)


def area_downsample(image: np.ndarray, scale: int) -> np.ndarray:
    """float [H, W] -> float64 [H/s, W/s]: the exact s x s block mean (the degradation SR inverts)."""
    h, w = image.shape[:2]
    return np.asarray(image, np.float64).reshape(h // scale, scale, w // scale, scale).mean(axis=(1, 3))


def crop_to_scale(image: np.ndarray, scale: int) -> np.ndarray:
    """[H, W] -> [H - H % s, W - W % s]: the largest top-left part whose sides are multiples of the scale."""
    return image[: image.shape[0] // scale * scale, : image.shape[1] // scale * scale]


def quantise(pixels: np.ndarray, bits: int | None) -> np.ndarray:
    """float [0, 1] -> float32 rounded to the grey levels a `bits`-bit file holds (None: float, unrounded)."""
    if bits is None:
        return np.asarray(pixels, np.float32)
    levels = (1 << int(bits)) - 1
    return (np.round(np.clip(pixels, 0.0, 1.0) * levels) / levels).astype(np.float32)


def degrade(hr: np.ndarray, scale: int, bits: int | None) -> np.ndarray:
    """The LR image SR is scored on: float32 [H/s, W/s], the s x s block mean of `hr` rounded to `bits`.

    The mean is cast to float32 before rounding, as every shipped evaluation was scored (rounding the float64
    mean moves a few pixels that sit on a half grey level).
    """
    return quantise(area_downsample(hr, scale).astype(np.float32), bits)


def consistency_error(sr: np.ndarray, lr: np.ndarray, scale: int) -> float:
    """max |D(sr) - lr|, in units of full scale."""
    return float(np.abs(area_downsample(sr, scale) - np.asarray(lr, np.float64)).max())
