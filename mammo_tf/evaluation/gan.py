"""GAN metrics on feature vectors: Fréchet distance, unbiased KID, k-NN precision/recall, memorisation,
and calcification (speck) statistics of real against synthetic patches. NumPy/SciPy only (no TensorFlow).

Conventions: features are float arrays [N, D] from ONE feature network (name it beside every number; see
evaluation/features.py). Every FD/KID is only interpretable beside the real-vs-real floor computed the same way
with the same sample sizes; FD is biased at small N (Chong & Forsyth 2020), KID is not (Binkowski et al. 2018).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import linalg
from scipy.spatial.distance import cdist
from scipy.stats import wasserstein_distance

SPECK_STATISTICS = ("count", "mean_area", "mean_contrast", "fine_texture")
FINE_TEXTURE_SIGMA = 1.0  # px: what a Gaussian of this sigma removes is the texture the detector thresholds on
_CHUNK = 2048  # rows of a distance matrix computed at once (memory stays ~ CHUNK * N * 8 bytes)


def _features(x: np.ndarray, name: str, min_rows: int = 1) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or len(x) < min_rows:
        raise ValueError(f"{name} must be [N, D] features with N >= {min_rows}, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or inf")
    return x


def _same_width(a: np.ndarray, b: np.ndarray) -> None:
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"feature widths differ: {a.shape[1]} and {b.shape[1]}")


# ----------------------------------------------------------------------------------------- Fréchet distance


def frechet_distance(feats_a: np.ndarray, feats_b: np.ndarray, eps: float = 1e-6) -> float:
    """||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2)) of Gaussians fitted to two feature sets.

    feats_a, feats_b: [N_a, D], [N_b, D] with N >= 2. Covariances by ``numpy.cov`` (unbiased), the square root
    by ``scipy.linalg.sqrtm``. Guards (as MONAI's fid.py): when the square root is not finite, ``eps`` is added
    to both diagonals and it is recomputed; a remaining imaginary part larger than 1e-3 (relative to the
    largest real diagonal entry, at least 1) raises ValueError; a small one is dropped.
    Biased at small N (and the covariances are singular for N <= D): report N and the real-vs-real floor.
    """
    a = _features(feats_a, "feats_a", 2)
    b = _features(feats_b, "feats_b", 2)
    _same_width(a, b)
    mu_a, mu_b = a.mean(axis=0), b.mean(axis=0)
    cov_a = np.atleast_2d(np.cov(a, rowvar=False))
    cov_b = np.atleast_2d(np.cov(b, rowvar=False))
    covmean = linalg.sqrtm(cov_a @ cov_b)
    if not np.isfinite(covmean).all():
        offset = np.eye(len(cov_a)) * eps
        covmean = linalg.sqrtm((cov_a + offset) @ (cov_b + offset))
    if np.iscomplexobj(covmean):
        imaginary = np.abs(np.diagonal(covmean).imag).max()
        scale = max(1.0, np.abs(np.diagonal(covmean).real).max())
        if imaginary > 1e-3 * scale:
            raise ValueError(f"matrix square root has a large imaginary component ({imaginary:.3g})")
        covmean = covmean.real
    diff = mu_a - mu_b
    value = diff @ diff + np.trace(cov_a) + np.trace(cov_b) - 2.0 * np.trace(covmean)
    return float(max(value, 0.0))  # rounding can push an exact 0 slightly negative


# -------------------------------------------------------------------------------------------------- KID


def _polynomial_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """k(x, y) = (x . y / d + 1)^3, the KID kernel (Bińkowski et al. 2018)."""
    return (x @ y.T / x.shape[1] + 1.0) ** 3


def mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD^2 between equal-size samples x, y [m, D] (m >= 2) with the cubic polynomial kernel.

    (sum_{i != j} k(x_i, x_j) + sum_{i != j} k(y_i, y_j)) / (m (m - 1)) - 2 sum_{i, j} k(x_i, y_j) / m^2.
    """
    m = len(x)
    kxx, kyy, kxy = _polynomial_kernel(x, x), _polynomial_kernel(y, y), _polynomial_kernel(x, y)
    same = (kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1))
    return float(same - 2.0 * kxy.sum() / (m * m))


def kid(
    feats_a: np.ndarray, feats_b: np.ndarray, n_subsets: int = 100, subset_size: int = 1000, seed: int = 0
) -> tuple[float, float]:
    """Kernel Inception Distance (on any features): mean and standard deviation of the unbiased MMD^2.

    Each of ``n_subsets`` rounds draws ``min(subset_size, N_a, N_b)`` rows of each set without replacement
    (seeded) and computes ``mmd2_unbiased``. Returns (mean, std over subsets; 0 for one subset). Unbiased, so
    it can be slightly negative when the sets match.
    """
    a = _features(feats_a, "feats_a", 2)
    b = _features(feats_b, "feats_b", 2)
    _same_width(a, b)
    if n_subsets < 1 or subset_size < 2:
        raise ValueError(f"need n_subsets >= 1 and subset_size >= 2, got {n_subsets}, {subset_size}")
    m = min(subset_size, len(a), len(b))
    rng = np.random.default_rng(seed)
    values = [
        mmd2_unbiased(a[rng.choice(len(a), m, replace=False)], b[rng.choice(len(b), m, replace=False)])
        for _ in range(n_subsets)
    ]
    return float(np.mean(values)), float(np.std(values))


# ------------------------------------------------------------------------------------- precision / recall


def _kth_neighbour_radius(x: np.ndarray, k: int) -> np.ndarray:
    """Distance of each row to its k-th nearest OTHER row."""
    radii = np.empty(len(x))
    for start in range(0, len(x), _CHUNK):
        block = cdist(x[start : start + _CHUNK], x)
        radii[start : start + _CHUNK] = np.partition(block, k, axis=1)[:, k]  # column 0 is the row itself
    return radii


def _inside_manifold(points: np.ndarray, centres: np.ndarray, radii: np.ndarray) -> np.ndarray:
    inside = np.zeros(len(points), dtype=bool)
    for start in range(0, len(points), _CHUNK):
        block = cdist(points[start : start + _CHUNK], centres)
        inside[start : start + _CHUNK] = (block <= radii[None, :]).any(axis=1)
    return inside


def precision_recall(real: np.ndarray, fake: np.ndarray, k: int = 3) -> tuple[float, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019), k-NN manifolds in feature space.

    precision: fraction of fake samples inside the real manifold (the union of balls around each real sample
    with radius = distance to its k-th nearest real neighbour); recall: fraction of real samples inside the
    fake manifold. real [N_r, D], fake [N_f, D], both with more than k rows. With tiny N the radii are large
    and both saturate: report N and the real-vs-real value.
    """
    r = _features(real, "real", k + 1)
    f = _features(fake, "fake", k + 1)
    _same_width(r, f)
    precision = _inside_manifold(f, r, _kth_neighbour_radius(r, k)).mean()
    recall = _inside_manifold(r, f, _kth_neighbour_radius(f, k)).mean()
    return float(precision), float(recall)


# ----------------------------------------------------------------------------------------- memorisation


@dataclass(frozen=True)
class Memorisation:
    """Nearest-training-neighbour distances of synthetic and held-out real samples (data-copying, Meehan et al. 2020).

    synth_nn_distance, synth_nn_index: [S] each synthetic sample's nearest training sample.
    heldout_nn_distance: [H] the same for held-out real samples: how close genuinely new images come.
    threshold: the ``percentile``-th percentile of heldout_nn_distance.
    fraction_below: fraction of synthetic samples closer to the training set than ``threshold`` (about
        percentile/100 for a model that does not copy; much more suggests copying).
    flagged: indices of those synthetic samples, closest first.
    closest: (synthetic index, training index, distance) of the ``n_pairs`` closest pairs, closest first.
    median_ratio: median synthetic distance / median held-out distance (< 1: closer than new real images).
    """

    synth_nn_distance: np.ndarray
    synth_nn_index: np.ndarray
    heldout_nn_distance: np.ndarray
    percentile: float
    threshold: float
    fraction_below: float
    flagged: np.ndarray
    closest: list[tuple[int, int, float]]
    median_ratio: float


def _nearest(queries: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    dist = np.empty(len(queries))
    index = np.empty(len(queries), dtype=np.int64)
    for start in range(0, len(queries), _CHUNK):
        block = cdist(queries[start : start + _CHUNK], reference)
        index[start : start + _CHUNK] = block.argmin(axis=1)
        dist[start : start + _CHUNK] = block[np.arange(len(block)), index[start : start + _CHUNK]]
    return dist, index


def memorisation(
    train_feats: np.ndarray,
    heldout_feats: np.ndarray,
    synth_feats: np.ndarray,
    *,
    percentile: float = 5.0,
    n_pairs: int = 8,
) -> Memorisation:
    """Data-copying check: is each synthetic sample closer to its nearest training sample than held-out
    real samples are? Euclidean distances on [N, D] features (feature-network vectors, or flattened pixels).
    """
    train = _features(train_feats, "train_feats")
    heldout = _features(heldout_feats, "heldout_feats")
    synth = _features(synth_feats, "synth_feats")
    _same_width(train, heldout)
    _same_width(train, synth)
    synth_dist, synth_index = _nearest(synth, train)
    heldout_dist, _ = _nearest(heldout, train)
    threshold = float(np.percentile(heldout_dist, percentile))
    order = np.argsort(synth_dist, kind="stable")
    flagged = order[synth_dist[order] < threshold]
    closest = [(int(i), int(synth_index[i]), float(synth_dist[i])) for i in order[:n_pairs]]
    held_median = float(np.median(heldout_dist))
    return Memorisation(
        synth_nn_distance=synth_dist,
        synth_nn_index=synth_index,
        heldout_nn_distance=heldout_dist,
        percentile=float(percentile),
        threshold=threshold,
        fraction_below=float(len(flagged) / len(synth)),
        flagged=flagged,
        closest=closest,
        median_ratio=float(np.median(synth_dist) / held_median) if held_median > 0 else float("inf"),
    )


# --------------------------------------------------------------------------------- calcification statistics

Detector = Callable[[np.ndarray], pd.DataFrame]


def speck_statistics(images: np.ndarray, detector: Detector | None = None) -> pd.DataFrame:
    """Per-patch speck statistics: one row per image with count, mean_area (pixels), mean_contrast, and
    fine_texture: the std of the image minus its Gaussian blur (sigma FINE_TEXTURE_SIGMA px), full-scale units.
    The detector's threshold scales with that texture, so a patch with more fine texture shows fewer, brighter
    specks: fine_texture tells "too few specks" from "too much texture".

    images: float32 [N, P, P, 1] or [N, P, P] in [0, 1].
    detector: ``detector(image float32 [P, P] in [0, 1]) -> DataFrame`` with columns ``area_px`` and
        ``contrast``, one row per speck; by default the project's ``mammo_tf.data.specks.detect_specks``.
    mean_area and mean_contrast are NaN for a patch without specks.
    """
    if detector is None:
        from mammo_tf.data.specks import detect_specks  # lazy: only this function needs it

        detector = detect_specks
    stack = np.asarray(images, dtype=np.float32)
    if stack.ndim == 4 and stack.shape[-1] == 1:
        stack = stack[..., 0]
    if stack.ndim != 3:
        raise ValueError(f"images must be [N, P, P, 1] or [N, P, P], got shape {np.shape(images)}")
    import cv2

    rows = []
    for image in stack:
        found = detector(image)
        fine = image - cv2.GaussianBlur(image, (0, 0), FINE_TEXTURE_SIGMA, borderType=cv2.BORDER_REFLECT)
        count = len(found)
        rows.append(
            {
                "count": count,
                "mean_area": float(found["area_px"].mean()) if count else np.nan,
                "mean_contrast": float(found["contrast"].mean()) if count else np.nan,
                "fine_texture": float(fine.std()),
            }
        )
    return pd.DataFrame(rows, columns=list(SPECK_STATISTICS))


def speck_distribution_distance(
    real_stats: pd.DataFrame, synth_stats: pd.DataFrame, statistics: Sequence[str] = SPECK_STATISTICS
) -> pd.DataFrame:
    """1-D Wasserstein distance between real and synthetic per-patch statistics, one row per statistic.

    Columns: statistic, wasserstein (in the statistic's own unit), real_mean, synthetic_mean, n_real,
    n_synthetic (patches with a value: NaN areas/contrasts of speck-free patches are left out). A statistic
    with no value on one side gets NaN.
    """
    rows = []
    for name in statistics:
        real = pd.to_numeric(real_stats[name], errors="coerce").dropna().to_numpy(dtype=float)
        synth = pd.to_numeric(synth_stats[name], errors="coerce").dropna().to_numpy(dtype=float)
        both = len(real) > 0 and len(synth) > 0
        rows.append(
            {
                "statistic": name,
                "wasserstein": float(wasserstein_distance(real, synth)) if both else np.nan,
                "real_mean": float(real.mean()) if len(real) else np.nan,
                "synthetic_mean": float(synth.mean()) if len(synth) else np.nan,
                "n_real": len(real),
                "n_synthetic": len(synth),
            }
        )
    return pd.DataFrame(rows)


def speck_comparison(
    real_images: np.ndarray,
    real_labels: np.ndarray,
    synth_images: np.ndarray,
    synth_labels: np.ndarray,
    *,
    detector: Detector | None = None,
    class_names: Sequence[str] = ("normal", "benign", "malignant"),
) -> pd.DataFrame:
    """speck_distribution_distance per class present on both sides; a ``class`` column is prepended."""
    real_stats = speck_statistics(real_images, detector)
    synth_stats = speck_statistics(synth_images, detector)
    real_labels, synth_labels = np.asarray(real_labels), np.asarray(synth_labels)
    tables = []
    for class_id, name in enumerate(class_names):
        real_rows, synth_rows = real_labels == class_id, synth_labels == class_id
        if not real_rows.any() or not synth_rows.any():
            continue
        table = speck_distribution_distance(real_stats[real_rows], synth_stats[synth_rows])
        table.insert(0, "class", name)
        tables.append(table)
    return pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()
