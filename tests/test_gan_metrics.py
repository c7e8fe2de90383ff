"""GAN metrics against independently computed values (closed forms and hand arithmetic)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mammo_tf.evaluation.gan import (
    frechet_distance,
    kid,
    memorisation,
    precision_recall,
    speck_comparison,
    speck_distribution_distance,
    speck_statistics,
)

# Two Gaussians with commuting covariances S = R diag(v) R^T, so that, independently of any matrix square root,
# FD = ||mu_a - mu_b||^2 + sum_i (sqrt(va_i) - sqrt(vb_i))^2.
ROTATION = np.linalg.qr(np.random.default_rng(42).standard_normal((3, 3)))[0]
MU_A, MU_B = np.array([0.0, 0.0, 0.0]), np.array([1.0, -0.5, 0.25])
VAR_A, VAR_B = np.array([1.0, 4.0, 0.25]), np.array([2.25, 1.0, 1.0])
CLOSED_FORM = (1.0 + 0.25 + 0.0625) + ((1.0 - 1.5) ** 2 + (2.0 - 1.0) ** 2 + (0.5 - 1.0) ** 2)  # = 2.8125


def _gaussian(n: int, mu: np.ndarray, var: np.ndarray, seed: int, exact: bool = False) -> np.ndarray:
    white = np.random.default_rng(seed).standard_normal((n, len(mu)))
    if exact:  # whiten the sample itself: its mean and (unbiased) covariance are then exactly 0 and I
        white -= white.mean(axis=0)
        white = white @ np.linalg.inv(np.linalg.cholesky(np.cov(white, rowvar=False))).T
    return mu + (white * np.sqrt(var)) @ ROTATION.T  # covariance R diag(var) R^T


def test_frechet_distance_matches_the_closed_form():
    exact = frechet_distance(_gaussian(50, MU_A, VAR_A, 1, exact=True), _gaussian(80, MU_B, VAR_B, 2, exact=True))
    assert exact == pytest.approx(CLOSED_FORM, rel=1e-9)
    sampled = frechet_distance(_gaussian(20_000, MU_A, VAR_A, 3), _gaussian(20_000, MU_B, VAR_B, 4))
    assert sampled == pytest.approx(CLOSED_FORM, abs=0.1)
    same = _gaussian(500, MU_A, VAR_A, 5)
    assert frechet_distance(same, same) == pytest.approx(0.0, abs=1e-7)


def test_frechet_distance_guards_singular_covariances_and_bad_input():
    rng = np.random.default_rng(0)
    few = rng.standard_normal((5, 16))  # N < D: singular covariances
    value = frechet_distance(few, rng.standard_normal((6, 16)))
    assert np.isfinite(value) and value >= 0
    with pytest.raises(ValueError, match="N >= 2"):
        frechet_distance(few[:1], few)
    with pytest.raises(ValueError, match="widths"):
        frechet_distance(few, few[:, :3])


def test_kid_matches_a_hand_computed_value():
    x = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    y = np.array([[2.0, 0.0], [0.0, 2.0], [2.0, 2.0]])
    # k(u, v) = (u.v / 2 + 1)^3. Off-diagonal x pairs: dots 0, 1, 1; y pairs: dots 0, 4, 4.
    kxx = 2 * ((0 / 2 + 1) ** 3 + (1 / 2 + 1) ** 3 + (1 / 2 + 1) ** 3) / (3 * 2)
    kyy = 2 * ((0 / 2 + 1) ** 3 + (4 / 2 + 1) ** 3 + (4 / 2 + 1) ** 3) / (3 * 2)
    # x.y dots: 2 six times, 0 twice, 4 once.
    kxy = 2 * (6 * (2 / 2 + 1) ** 3 + 2 * (0 / 2 + 1) ** 3 + (4 / 2 + 1) ** 3) / (3 * 3)
    expected = kxx + kyy - kxy  # = 2.58333 + 18.33333 - 17.11111 = 3.80556
    mean, std = kid(x, y, n_subsets=5, subset_size=3, seed=0)  # subsets of all 3 points: permutations
    assert mean == pytest.approx(expected, rel=1e-12)
    assert std == pytest.approx(0.0, abs=1e-12)


def test_kid_is_near_zero_for_one_distribution_and_positive_for_two():
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((400, 8)), rng.standard_normal((400, 8))
    same_mean, same_std = kid(a, b, n_subsets=20, subset_size=100, seed=0)
    far_mean, far_std = kid(a, b + 1.0, n_subsets=20, subset_size=100, seed=0)
    assert abs(same_mean) < 3 * same_std + 0.05
    assert far_mean > 5 * far_std > 0
    assert kid(a, b, n_subsets=3, subset_size=50, seed=7) == kid(a, b, n_subsets=3, subset_size=50, seed=7)


def test_precision_recall_identical_disjoint_and_half():
    rng = np.random.default_rng(2)
    real = rng.standard_normal((60, 4))
    assert precision_recall(real, real.copy()) == (1.0, 1.0)
    assert precision_recall(real, real + 100.0) == (0.0, 0.0)
    half = np.concatenate([real[:30], real[:30] + 100.0])  # half on the real manifold, half far away
    precision, recall = precision_recall(real, half, k=3)
    assert precision == 0.5 and 0.0 < recall < 1.0


def test_memorisation_flags_a_copied_training_patch():
    rng = np.random.default_rng(3)
    train, heldout = rng.standard_normal((200, 8)), rng.standard_normal((60, 8))
    synth = rng.standard_normal((40, 8))
    honest = memorisation(train, heldout, synth)
    synth[13] = train[7]  # a training patch copied into the synthetic set
    result = memorisation(train, heldout, synth, n_pairs=3)
    assert 13 in result.flagged and 13 not in honest.flagged
    assert result.closest[0] == (13, 7, 0.0)
    assert result.synth_nn_index[13] == 7 and result.synth_nn_distance[13] == 0.0
    assert result.fraction_below > honest.fraction_below
    assert result.threshold == pytest.approx(np.percentile(result.heldout_nn_distance, 5))
    assert result.heldout_nn_distance.shape == (60,) and len(result.closest) == 3


def _bright_pixel_detector(image: np.ndarray) -> pd.DataFrame:
    """Each pixel above 0.8 is a one-pixel speck; contrast against the image median."""
    rows, cols = np.nonzero(image > 0.8)
    contrast = image[rows, cols] - np.median(image)
    return pd.DataFrame({"row": rows, "col": cols, "area_px": np.ones(len(rows)), "contrast": contrast})


def _speckled(n: int, specks: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    images = np.full((n, 16, 16, 1), 0.4, np.float32)
    for image in images:
        cells = rng.choice(256, specks, replace=False)
        image.reshape(-1)[cells] = 0.9
    return images


def test_speck_statistics_and_distances_with_a_given_detector():
    real, synth = _speckled(10, 2, seed=0), _speckled(10, 5, seed=1)
    stats = speck_statistics(real, detector=_bright_pixel_detector)
    assert list(stats.columns) == ["count", "mean_area", "mean_contrast", "fine_texture"] and len(stats) == 10
    assert (stats["count"] == 2).all() and np.allclose(stats["mean_contrast"], 0.5)
    blank = speck_statistics(np.full((2, 16, 16), 0.4, np.float32), detector=_bright_pixel_detector)
    assert (blank["count"] == 0).all() and blank["mean_area"].isna().all()
    # A flat patch has no fine texture. OpenCV's float32 blur picks its code path by CPU (IPP, AVX2, AVX-512),
    # and paths round a constant differently (0.4 blurs to 0.4, or to 0.39999998 with cv2.setUseOptimized(False)):
    # allow 1e-6 (~30 ulp at 0.4); the speckled patches measure 0.035 and more.
    assert (blank["fine_texture"] <= 1e-6).all() and (stats["fine_texture"] > 0.01).all()
    table = speck_distribution_distance(stats, speck_statistics(synth, detector=_bright_pixel_detector))
    by_stat = table.set_index("statistic")
    assert by_stat.loc["count", "wasserstein"] == pytest.approx(3.0)
    assert by_stat.loc["mean_area", "wasserstein"] == pytest.approx(0.0)
    assert speck_distribution_distance(stats, stats)["wasserstein"].max() == 0.0
    labels = np.array([0] * 5 + [2] * 5)
    per_class = speck_comparison(real, labels, synth, labels, detector=_bright_pixel_detector)
    assert set(per_class["class"]) == {"normal", "malignant"} and len(per_class) == 8
