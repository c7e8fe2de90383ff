"""SR image metrics with their conventions stated: data range 1.0 (float [0, 1] from the true bit depth),
a border of `scale` pixels cropped, optionally a breast mask; SSIM with an 11x11 Gaussian window,
sigma 1.5, K1 = 0.01, K2 = 0.03 (the MATLAB reference, via scikit-image when available, else TF).

NumPy in, floats out; no model code here. The degradation they are scored on is mammo_tf.data.degrade.
"""

from __future__ import annotations

import numpy as np

from mammo_tf.data.degrade import area_downsample

SSIM_WINDOW = {"gaussian_weights": True, "sigma": 1.5, "use_sample_covariance": False, "K1": 0.01, "K2": 0.03}


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


def consistency_error(sr: np.ndarray, lr: np.ndarray, scale: int) -> float:
    """max |D(sr) - lr|, in units of full scale."""
    return float(np.abs(area_downsample(sr, scale) - np.asarray(lr, np.float64)).max())
