"""DiffAugment ops and the adaptive (ADA) probability controller."""

from __future__ import annotations

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from mammo_tf.models.augment import AdaptiveAugment, AugmentPolicy, diff_augment  # noqa: E402

ONLY = {
    "flips": AugmentPolicy(flips=True, translation=0, brightness=0, contrast=0, cutout=0),
    "translation": AugmentPolicy(flips=False, translation=0.25, brightness=0, contrast=0, cutout=0),
    "brightness": AugmentPolicy(flips=False, translation=0, brightness=0.05, contrast=0, cutout=0),
    "contrast": AugmentPolicy(flips=False, translation=0, brightness=0, contrast=0.2, cutout=0),
    "cutout": AugmentPolicy(flips=False, translation=0, brightness=0, contrast=0, cutout=0.25),
}


def _images(n: int = 8, size: int = 16, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0.2, 0.8, (n, size, size, 1)).astype(np.float32)


def test_p_zero_is_the_identity_and_seeds_decide_the_draws():
    x = _images()
    np.testing.assert_array_equal(diff_augment(x, 0.0, [1, 2]), x)
    a = diff_augment(x, 1.0, tf.constant([1, 2]))
    np.testing.assert_array_equal(a, diff_augment(x, 1.0, tf.constant([1, 2])))
    assert not np.array_equal(a, diff_augment(x, 1.0, tf.constant([1, 3])))
    assert a.shape == x.shape and a.dtype == tf.float32


def test_p_is_a_per_example_probability():
    x = _images(n=400, size=8)
    out = diff_augment(x, 0.5, [4, 4], ONLY["brightness"]).numpy()
    changed = np.abs(out - x).reshape(len(x), -1).max(axis=1) > 0
    assert 0.4 < changed.mean() < 0.6


def test_flips_and_rot90_are_dihedral_transforms():
    x = _images(n=16)
    out = diff_augment(x, 1.0, [0, 5], ONLY["flips"]).numpy()
    for image, result in zip(x[..., 0], out[..., 0], strict=True):
        candidates = [np.rot90(m, k) for m in (image, image[:, ::-1]) for k in range(4)]
        assert any(np.array_equal(result, c) for c in candidates)


def test_translation_shifts_with_reflected_borders():
    x = _images(n=16)
    out = diff_augment(x, 1.0, [0, 6], ONLY["translation"]).numpy()
    moved = 0
    for image, result in zip(x[..., 0], out[..., 0], strict=True):
        padded = np.pad(image, 4, mode="reflect")
        shifts = [
            (dy, dx)
            for dy in range(-4, 5)
            for dx in range(-4, 5)
            if np.array_equal(result, padded[4 - dy : 4 - dy + 16, 4 - dx : 4 - dx + 16])
        ]
        assert shifts, "output is not a reflected integer shift of the input"
        moved += shifts[0] != (0, 0)
    assert moved >= 10


def test_colour_jitter_stays_within_its_bounds():
    x = _images(n=32)
    bright = diff_augment(x, 1.0, [0, 7], ONLY["brightness"]).numpy() - x
    per_image = bright.reshape(32, -1)
    np.testing.assert_allclose(per_image, per_image[:, :1].repeat(per_image.shape[1], axis=1), atol=1e-6)
    assert np.abs(per_image).max() <= 0.05 + 1e-6
    contrast = diff_augment(x, 1.0, [0, 8], ONLY["contrast"]).numpy()
    ratio = contrast.reshape(32, -1).std(axis=1) / x.reshape(32, -1).std(axis=1)
    assert np.all((ratio >= 0.8 - 1e-4) & (ratio <= 1.2 + 1e-4))
    np.testing.assert_allclose(contrast.mean(axis=(1, 2, 3)), x.mean(axis=(1, 2, 3)), atol=1e-5)


def test_cutout_fills_one_square_with_the_image_mean():
    x = _images(n=8)
    out = diff_augment(x, 1.0, [0, 9], ONLY["cutout"]).numpy()
    for image, result in zip(x, out, strict=True):
        changed = ~np.isclose(result, image)
        assert changed.sum() <= 16  # 4 x 4 at most (it may overhang the border)
        np.testing.assert_allclose(result[changed], image.mean(), rtol=1e-5)


def test_augmentation_is_differentiable_with_respect_to_the_image():
    x = tf.constant(_images(n=4))
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = diff_augment(x, 1.0, [2, 2])
        total = tf.reduce_sum(y * y)
    grad = tape.gradient(total, x)
    assert grad is not None and float(tf.reduce_max(tf.abs(grad))) > 0


def test_adaptive_p_rises_when_d_overfits_and_falls_back_to_zero():
    ada = AdaptiveAugment(target=0.6, speed_images=100.0)
    assert float(ada.p) == 0.0
    overfit = tf.fill([10, 1], 3.0)  # every real scores "real": E[sign D(real)] = 1 > 0.6
    for step in range(1, 4):
        rt = ada.update(overfit)
        assert float(rt) == 1.0
        assert float(ada.p) == pytest.approx(step * 10 / 100.0)
    underfit = tf.fill([10, 1], -3.0)  # E[sign] = -1 < 0.6: p falls, and never below 0
    for _ in range(5):
        ada.update(underfit)
    assert float(ada.p) == 0.0
    for _ in range(20):
        ada.update(overfit)
    assert float(ada.p) == 1.0  # clipped at p_max


def test_adaptive_p_stays_zero_for_a_balanced_discriminator_and_round_trips_config():
    ada = AdaptiveAugment(target=0.6, speed_images=10.0, p_max=0.5, policy={"cutout": 0.0})
    mixed = tf.constant([[1.0], [-1.0], [2.0], [-0.5]])  # r_t = 0 < target
    ada.update(mixed)
    assert float(ada.p) == 0.0
    clone = AdaptiveAugment.from_config(ada.get_config())
    assert clone.policy == ada.policy and clone.p_max == 0.5 and clone.speed_images == 10.0
    with pytest.raises(ValueError):
        AdaptiveAugment(p_init=0.8, p_max=0.5)
