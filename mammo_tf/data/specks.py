"""One bright-speck detector for the whole project (NumPy/OpenCV, no TensorFlow).

Calcifications are small bright specks on a smoother background. The detector is a white top-hat
(the image minus its grey opening with a disk of `radius` px): it keeps structures narrower than the disk
and removes the background. Connected pixels above a threshold are one speck.

Uses: SR faithfulness (evaluate-sr: specks kept after SR versus in HR and in bicubic, spurious specks
created), the synthesis GAN's speck statistics (evaluate-gan), and the augmentation study's detector
baseline (the patch's maximum response).

Thresholds: absolute (in units of full scale) when given, so the same threshold can be applied to an HR
image and to its SR and bicubic versions; otherwise `k` robust standard deviations (1.4826 x MAD) of the
response inside the mask.
"""

from __future__ import annotations

import cv2
import numpy as np
import pandas as pd

DEFAULT_RADIUS = 4
DEFAULT_K = 6.0
SPECK_COLUMNS = ["row", "col", "area_px", "contrast", "mean_response"]


def speck_response(image: np.ndarray, radius: int = DEFAULT_RADIUS) -> np.ndarray:
    """White top-hat of float [H, W] in [0, 1] with a disk of `radius` px: float32 [H, W] >= 0."""
    disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    return cv2.morphologyEx(np.asarray(image, np.float32), cv2.MORPH_TOPHAT, disk)


def robust_threshold(response: np.ndarray, mask: np.ndarray | None = None, k: float = DEFAULT_K) -> float:
    """k x 1.4826 x MAD of the response (inside mask), plus its median: a noise-scaled threshold."""
    values = response[mask] if mask is not None else response.ravel()
    if values.size == 0:
        return float("inf")
    median = float(np.median(values))
    return median + k * 1.4826 * float(np.median(np.abs(values - median)))


def detect_specks(
    image: np.ndarray,
    mask: np.ndarray | None = None,
    *,
    radius: int = DEFAULT_RADIUS,
    threshold: float | None = None,
    k: float = DEFAULT_K,
    max_area: int | None = None,
) -> pd.DataFrame:
    """Bright specks of float [H, W] in [0, 1]: one row per connected component of response > threshold.

    mask: bool [H, W]; specks whose centre lies outside are dropped (and the robust threshold uses it).
    Returns columns row, col (float centroid), area_px (int), contrast (peak top-hat response, full-scale
    units), mean_response.
    """
    response = speck_response(image, radius)
    thr = robust_threshold(response, mask, k) if threshold is None else float(threshold)
    binary = (response > thr).astype(np.uint8)
    count, labels, stats, centroids = cv2.connectedComponentsWithStats(binary, connectivity=8)
    if count <= 1:
        return pd.DataFrame({c: pd.Series(dtype="float64") for c in SPECK_COLUMNS}).astype({"area_px": "int64"})
    ids = np.arange(1, count)
    flat = labels.ravel()
    values = response.ravel()
    inside = flat > 0
    peak = np.zeros(count)
    np.maximum.at(peak, flat[inside], values[inside])
    total = np.bincount(flat[inside], weights=values[inside], minlength=count)
    area = stats[:, cv2.CC_STAT_AREA]
    table = pd.DataFrame(
        {
            "row": centroids[ids, 1],
            "col": centroids[ids, 0],
            "area_px": area[ids].astype(np.int64),
            "contrast": peak[ids],
            "mean_response": total[ids] / area[ids],
        }
    )
    keep = np.ones(len(table), bool)
    if mask is not None:
        r = np.clip(np.round(table["row"].to_numpy()).astype(int), 0, mask.shape[0] - 1)
        c = np.clip(np.round(table["col"].to_numpy()).astype(int), 0, mask.shape[1] - 1)
        keep &= mask[r, c]
    if max_area is not None:
        keep &= table["area_px"].to_numpy() <= max_area
    return table[keep].reset_index(drop=True)


def speck_mask(
    image: np.ndarray, margin: int, *, radius: int = DEFAULT_RADIUS, k: float = DEFAULT_K, max_area: int | None = None
) -> np.ndarray:
    """bool [H, W]: the pixels of detect_specks' specks of float [H, W] in [0, 1] (robust threshold over the
    whole image; components larger than max_area left out), dilated by a disk of `margin` px. What a real
    patch's specks cover, drawn like the masks of rendered clusters (render.py)."""
    response = speck_response(image, radius)
    binary = (response > robust_threshold(response, None, k)).astype(np.uint8)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)
    keep = np.ones(count, bool)
    keep[0] = False
    if max_area is not None:
        keep &= stats[:, cv2.CC_STAT_AREA] <= max_area
    support = keep[labels].astype(np.uint8)
    disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * margin + 1, 2 * margin + 1))
    return cv2.dilate(support, disk).astype(bool)


def match_specks(found: pd.DataFrame, truth_rows: np.ndarray, truth_cols: np.ndarray, tolerance: float) -> np.ndarray:
    """bool [K]: which of K true positions has a detected speck centre within `tolerance` px."""
    truth_rows, truth_cols = np.asarray(truth_rows, float), np.asarray(truth_cols, float)
    if len(found) == 0 or truth_rows.size == 0:
        return np.zeros(truth_rows.shape, bool)
    d = np.hypot(
        truth_rows[:, None] - found["row"].to_numpy()[None], truth_cols[:, None] - found["col"].to_numpy()[None]
    )
    return d.min(axis=1) <= tolerance


def max_response(image: np.ndarray, radius: int = DEFAULT_RADIUS) -> float:
    """The largest top-hat response of an image or patch: the detector's own score (study baseline)."""
    return float(speck_response(image, radius).max())
