"""The insertion refiner GAN (models/refiner.py) at the tiny preset: 32 px patches, 4 filters, buffer of 8."""

from __future__ import annotations

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

from saving import assert_saves_and_reloads  # noqa: E402

from mammo_tf.config import resolve  # noqa: E402
from mammo_tf.models.refiner import (  # noqa: E402
    RESIDUAL_BOUND,
    RefinerGAN,
    build_local_discriminator,
    build_refiner,
    build_refiner_gan,
    local_weights,
)

TINY = resolve("insert", "tiny")
P = TINY.patch_size
STEPS = 5  # 2 buffer writes per step (batch 4): the 8-slot buffer is full after 4


def _rendered(n: int = 8, size: int = P, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rendered [n, s, s, 1], mask [n, s, s, 1] in {0, 1}, labels [n] in {1, 2}): grey tissue with flat bright
    square specks, the mask their 1-px dilation; the tissue includes exact 0.0, -0.0 and 1.0 pixels."""
    rng = np.random.default_rng(seed)
    rendered = rng.uniform(0.2, 0.7, (n, size, size, 1)).astype(np.float32)
    rendered[:, 0, :3, 0] = [0.0, -0.0, 1.0]
    mask = np.zeros_like(rendered)
    for i in range(n):
        for r, c in rng.integers(3, size - 4, (3, 2)):
            rendered[i, r : r + 2, c : c + 2, 0] += 0.2
            mask[i, r - 1 : r + 3, c - 1 : c + 3, 0] = 1.0
    return rendered, mask, (1 + np.arange(n) % 2).astype(np.int32)


def _reals(n: int = 8, seed: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Real positives: (tissue with small blurred bright specks, their masks (2-px dilation), labels)."""
    rng = np.random.default_rng(seed)
    images = rng.uniform(0.2, 0.7, (n, P, P, 1)).astype(np.float32)
    masks = np.zeros_like(images)
    for i in range(n):
        for r, c in rng.integers(2, P - 2, (4, 2)):
            images[i, r - 1 : r + 2, c - 1 : c + 2, 0] += 0.1
            images[i, r, c, 0] += 0.2
            masks[i, max(r - 3, 0) : r + 4, max(c - 3, 0) : c + 4, 0] = 1.0
    return np.clip(images, 0, 1), masks, (1 + np.arange(n) % 2).astype(np.int32)


def _dataset():
    rendered, mask, labels = _rendered()
    real, real_mask, real_labels = _reals()
    data = ((rendered, mask, labels), (real, real_mask, real_labels))
    return tf.data.Dataset.from_tensor_slices(data).repeat().batch(TINY.batch_size, drop_remainder=True)


def _weights(model) -> list[np.ndarray]:
    return [np.array(w) for w in model.weights]


def _randomise(model, scale: float, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    model.set_weights([rng.normal(0.0, scale, w.shape).astype(w.dtype) for w in model.get_weights()])


def _assert_identity_outside(refined: np.ndarray, rendered: np.ndarray, mask: np.ndarray) -> None:
    outside = mask == 0
    bits = lambda a: np.ascontiguousarray(a, np.float32).view(np.uint32)  # noqa: E731
    np.testing.assert_array_equal(bits(refined)[outside], bits(rendered)[outside])  # also tells -0.0 from 0.0


# ------------------------------------------------------------------------------------------------ networks


def test_the_refiner_keeps_the_outside_of_the_mask_bit_for_bit_and_bounds_the_inside():
    refiner = build_refiner(TINY)
    rendered, mask, _ = _rendered(4)
    untrained = np.asarray(refiner([rendered, mask]))
    _assert_identity_outside(untrained, rendered, mask)
    assert np.abs(untrained - rendered).max() < 1e-2  # the near-zero tail: refinement starts at the identity
    _randomise(refiner, 2.0)  # large weights: any leak outside the mask would show
    refined = np.asarray(refiner([rendered, mask]))
    assert refined.dtype == np.float32 and refined.shape == rendered.shape
    _assert_identity_outside(refined, rendered, mask)
    inside = mask == 1
    assert np.mean(refined[inside] != rendered[inside]) > 0.9
    assert refined[inside].min() >= 0.0 and refined[inside].max() <= 1.0
    assert np.abs(refined - rendered).max() <= RESIDUAL_BOUND + 1e-6
    # Fully convolutional: any height and width.
    other, other_mask, _ = _rendered(2, size=40)
    wide = np.asarray(refiner([other[:, :24], other_mask[:, :24]]))
    assert wide.shape == (2, 24, 40, 1)
    _assert_identity_outside(wide, other[:, :24], other_mask[:, :24])


def test_the_local_discriminator_scores_windows_per_class():
    disc = build_local_discriminator(TINY)
    images, _, labels = _reals(4)
    logits = np.asarray(disc([images, labels]))
    assert logits.shape == (4, P // 4, P // 4, 1) and logits.dtype == np.float32
    # Class conditioning: the same images with the other class score differently.
    assert not np.allclose(logits, np.asarray(disc([images, 3 - labels])))
    # Local: a pixel in the top-left corner moves the logits whose 20 px windows cover it, not the far ones.
    changed = images.copy()
    changed[:, 0, 0, 0] += 0.5
    moved = np.asarray(disc([changed, labels]))
    assert np.all(np.abs(moved[:, 0, 0] - logits[:, 0, 0]) > 1e-6)
    np.testing.assert_allclose(moved[:, 5:, :], logits[:, 5:, :], rtol=0, atol=1e-6)
    np.testing.assert_allclose(moved[:, :, 5:], logits[:, :, 5:], rtol=0, atol=1e-6)


def test_local_weights_are_one_on_windows_that_see_the_mask_and_the_floor_elsewhere():
    mask = np.zeros((2, 64, 64, 1), np.float32)
    mask[0, 30:33, 30:33] = 1.0  # logit cells 7-8; windows reach 2 cells: cells 5-10 weigh 1
    weights = np.asarray(local_weights(mask, 0.1))
    assert weights.shape == (2, 16, 16, 1) and weights.dtype == np.float32
    near = np.zeros((16, 16), bool)
    near[5:11, 5:11] = True
    np.testing.assert_array_equal(weights[0, ..., 0][near], 1.0)
    np.testing.assert_allclose(weights[0, ..., 0][~near], 0.1, rtol=1e-6)
    np.testing.assert_allclose(weights[1], 0.1, rtol=1e-6)  # no mask: the floor everywhere (the loss stays defined)
    np.testing.assert_array_equal(np.asarray(local_weights(mask, 1.0)), 1.0)  # SimGAN's plain mean


def test_the_discriminator_loss_looks_where_the_masks_are():
    """Reals that differ from the fakes only far from both masks move D's loss (from its value when they are
    the same) by ~background_weight as much as under the plain mean (background_weight 1)."""
    import dataclasses

    rendered, mask, labels = _rendered(4)
    mask[:] = 0.0
    mask[:, 2:6, 2:6] = 1.0  # top-left corner
    changed = rendered.copy()
    changed[:, 26:, 26:] = 1.0  # bottom-right corner: no window there sees the mask
    moved = {}
    for floor in (1.0, 0.01):
        losses = []
        for real in (rendered, changed):  # a new model each time: the same weights and an empty history buffer
            gan = build_refiner_gan(dataclasses.replace(TINY, background_weight=floor), seed=0)
            gan.compile(r_optimizer=keras.optimizers.SGD(0.0), d_optimizer=keras.optimizers.SGD(0.0), run_eagerly=True)
            gan.build_optimizers()
            data = tf.data.Dataset.from_tensors(((rendered, mask, labels), (real, mask, labels)))
            losses.append(gan.fit(data, epochs=1, shuffle=False, verbose=0).history["d_loss"][0])
        moved[floor] = abs(losses[1] - losses[0])
    assert moved[1.0] > 1e-4
    assert moved[0.01] < moved[1.0] / 5


@pytest.mark.parametrize("norm", ["l1", "l2"])
def test_self_regularisation_is_the_mean_change_over_the_mask(norm: str):
    """reg_loss = sum over the mask of |change| (l1) or change^2 (l2) / the mask's pixels, per patch: a bigger
    patch around the same specks must not dilute it (over the whole patch it let a refiner paint discs)."""
    import dataclasses

    gan = build_refiner_gan(dataclasses.replace(TINY, reg_norm=norm), seed=0)
    _randomise(gan.refiner, 0.5)  # a refiner that changes the masked pixels noticeably
    gan.compile(r_optimizer=keras.optimizers.SGD(0.0), d_optimizer=keras.optimizers.SGD(0.0), run_eagerly=True)
    gan.build_optimizers()
    rendered, mask, labels = _rendered(4)
    change = np.asarray(gan.refiner([rendered, mask])) - rendered
    change = np.abs(change) if norm == "l1" else change**2
    expected = np.mean(change.sum(axis=(1, 2, 3)) / mask.sum(axis=(1, 2, 3)))
    data = tf.data.Dataset.from_tensors(((rendered, mask, labels), (rendered, mask, labels)))
    reg = gan.fit(data, epochs=1, shuffle=False, verbose=0).history["reg_loss"][0]
    assert expected > 1e-3
    np.testing.assert_allclose(reg, expected, rtol=1e-5)


def test_building_is_deterministic_by_seed():
    a, b, c = (build_refiner_gan(TINY, seed=s) for s in (3, 3, 4))
    for x, y in zip(_weights(a), _weights(b), strict=True):
        np.testing.assert_array_equal(x, y)
    assert any(not np.array_equal(x, y) for x, y in zip(_weights(a), _weights(c), strict=True))
    assert a.seed == 3 and build_refiner_gan(TINY).seed == TINY.seed


# ------------------------------------------------------------------------------------------------ history buffer


def test_fakes_are_current_until_the_buffer_holds_enough_then_half_history():
    gan = build_refiner_gan(TINY, seed=0)
    size = TINY.history_size
    refined = tf.constant(np.random.default_rng(0).uniform(size=(4, P, P, 1)).astype(np.float32))
    labels = tf.constant([1, 2, 1, 2], tf.int32)
    seed = tf.constant([1, 2], tf.int64)
    masks = tf.constant(np.random.default_rng(1).integers(0, 2, (4, P, P, 1)).astype(np.float32))
    fakes, fake_masks, fake_labels = gan._mix_history((refined, masks, labels), seed)
    np.testing.assert_array_equal(fakes, refined)
    np.testing.assert_array_equal(fake_masks, masks)
    np.testing.assert_array_equal(fake_labels, labels)

    # Writes go to the empty slots first, lowest first, and count them.
    gan._update_history((refined, masks, labels), seed)
    assert int(gan.history_count) == 2
    np.testing.assert_array_equal(np.asarray(gan.history_images)[:2], refined[:2])
    np.testing.assert_array_equal(np.asarray(gan.history_masks)[:2], masks[:2])
    np.testing.assert_array_equal(np.asarray(gan.history_labels)[:2], [1, 2])
    assert not np.asarray(gan.history_images)[2:].any()

    # Full buffer of known patches: the second half of the fakes are distinct buffer entries with their labels.
    stored = np.arange(size, dtype=np.float32)[:, None, None, None] * np.ones((1, P, P, 1), np.float32) + 10
    gan.history_images.assign(stored)
    gan.history_masks.assign(stored - 10)
    gan.history_labels.assign(np.arange(size, dtype=np.int32) % 2 + 1)
    gan.history_count.assign(size)
    fakes, fake_masks, fake_labels = (np.asarray(t) for t in gan._mix_history((refined, masks, labels), seed))
    np.testing.assert_array_equal(fakes[:2], refined[:2])
    np.testing.assert_array_equal(fake_masks[:2], masks[:2])
    picked = fakes[2:, 0, 0, 0].astype(int) - 10
    assert len(set(picked.tolist())) == 2 and all(0 <= i < size for i in picked)
    np.testing.assert_array_equal(fakes[2:], stored[picked])
    np.testing.assert_array_equal(fake_masks[2:], stored[picked] - 10)  # each patch with its own mask
    np.testing.assert_array_equal(fake_labels[2:], picked % 2 + 1)
    # Once full, writes overwrite random slots (no longer the first ones) and the count stays at the size.
    gan._update_history((refined, masks, labels), tf.constant([5, 6], tf.int64))
    assert int(gan.history_count) == size
    images = np.asarray(gan.history_images)
    assert sum(np.array_equal(images[i], stored[i]) for i in range(size)) == size - 2


# ------------------------------------------------------------------------------------------------ training
# Tracing a GAN train_step costs seconds on a shared 2-core box: one module-wide trained model serves the
# training, buffer, determinism and round-trip tests (the round trip, which trains it further, comes last).


@pytest.fixture(scope="module")
def trained() -> dict:
    gan = build_refiner_gan(TINY, seed=0)
    before = {name: _weights(getattr(gan, name)) for name in ("refiner", "discriminator")}
    history = gan.fit(_dataset(), steps_per_epoch=1, epochs=STEPS, shuffle=False, verbose=0).history
    return {"gan": gan, "before": before, "history": history}


def test_train_step_moves_both_losses_and_both_networks(trained):
    gan, history = trained["gan"], trained["history"]
    assert set(history) == {"d_loss", "g_loss", "adv_loss", "reg_loss"}
    for key in history:
        assert np.all(np.isfinite(history[key])), key
    for key in ("d_loss", "g_loss"):
        assert history[key][0] != history[key][-1]  # one step per epoch: steps 1 and STEPS
    assert history["reg_loss"][-1] > 0
    for name, before in trained["before"].items():
        after = _weights(getattr(gan, name))
        assert any(not np.array_equal(x, y) for x, y in zip(before, after, strict=True)), name
    assert int(gan.r_optimizer.iterations) == int(gan.d_optimizer.iterations) == STEPS


def test_training_fills_the_buffer_with_refined_patches(trained):
    gan = trained["gan"]
    assert int(gan.history_count) == TINY.history_size
    images, labels = np.asarray(gan.history_images), np.asarray(gan.history_labels)
    stored_masks = np.asarray(gan.history_masks)
    assert set(labels.tolist()) <= {1, 2}
    assert images.min() >= 0.0 and images.max() <= 1.0
    assert all(image.any() for image in images)  # every slot written
    # Refined patches are their rendering outside the mask: every stored patch is one of the training patches
    # there, and its label is that patch's label.
    rendered, mask, rendered_labels = _rendered()
    for image, stored_mask, label in zip(images, stored_masks, labels, strict=True):
        matches = [
            i for i in range(len(rendered))
            if np.array_equal(image[mask[i] == 0], rendered[i][mask[i] == 0])
        ]  # fmt: skip
        assert len(matches) == 1 and rendered_labels[matches[0]] == label
        np.testing.assert_array_equal(stored_mask, mask[matches[0]])


def test_training_is_deterministic_by_seed(trained):
    again = build_refiner_gan(TINY, seed=0)
    again.fit(_dataset(), steps_per_epoch=1, epochs=STEPS, shuffle=False, verbose=0)
    for x, y in zip(_weights(trained["gan"]), _weights(again), strict=True):  # buffer included
        np.testing.assert_array_equal(x, y)


def test_refine_takes_and_returns_numpy_patches(trained):
    gan = trained["gan"]
    rendered, mask, _ = _rendered(5)
    expected = np.asarray(gan([rendered, mask]))[..., 0]
    whole = gan.refine(rendered, mask)  # same inputs, same batch: the same bytes
    assert whole.shape == (5, P, P) and whole.dtype == np.float32
    np.testing.assert_array_equal(whole, expected)
    # Batches of 2: oneDNN may pick other kernels for another batch size (float32 sums reordered, ~1e-7 on
    # these [0, 1] pixels); 1e-5 leaves 100x margin and still catches a patch put back in the wrong place.
    chunked = gan.refine(rendered[..., 0], mask[..., 0], batch=2)
    assert chunked.shape == (5, P, P) and chunked.dtype == np.float32
    np.testing.assert_allclose(chunked, expected, rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="same shape"):
        gan.refine(rendered, mask[:4])
    with pytest.raises(ValueError, match="expected"):
        gan.refine(rendered[..., 0, 0], mask[..., 0, 0])


# ------------------------------------------------------------------------------------------------ precision


def test_mixed_bfloat16_keeps_float32_outputs_and_the_exact_outside():
    keras.mixed_precision.set_dtype_policy("mixed_bfloat16")
    try:
        gan = build_refiner_gan(TINY, seed=0)
    finally:
        keras.mixed_precision.set_dtype_policy("float32")
    assert gan.refiner.get_layer("head").compute_dtype == "bfloat16"
    assert gan.discriminator.get_layer("d_conv1").compute_dtype == "bfloat16"
    _randomise(gan.refiner, 2.0)
    rendered, mask, labels = _rendered(4)
    refined = gan([rendered, mask])
    assert refined.dtype == tf.float32
    refined = np.asarray(refined)
    _assert_identity_outside(refined, rendered, mask)
    assert gan.discriminator([refined, labels]).dtype == tf.float32
    # Trains (eagerly: one trace less) with finite float32 losses; the buffer stays float32.
    gan.compile(run_eagerly=True)
    gan.build_optimizers()
    history = gan.fit(_dataset(), steps_per_epoch=1, epochs=1, shuffle=False, verbose=0).history
    assert all(np.isfinite(v[0]) for v in history.values())
    assert gan.history_images.dtype == "float32" and int(gan.history_count) == 2
    _assert_identity_outside(np.asarray(gan([rendered, mask])), rendered, mask)


# ------------------------------------------------------------------------------------------------ saving


def test_keras_round_trip_keeps_outputs_optimizers_and_buffer_and_resumes_identically(trained, tmp_path):
    """Last in the file: it trains the shared model further."""
    gan = trained["gan"]
    rendered, mask, _ = _rendered(4)
    loaded = assert_saves_and_reloads(
        gan, [rendered, mask], tmp_path, optimizers=("r_optimizer", "d_optimizer"), name="refiner.keras"
    )
    assert isinstance(loaded, RefinerGAN) and loaded.config == gan.config and loaded.seed == gan.seed
    for name in ("history_images", "history_masks", "history_labels", "history_count"):
        np.testing.assert_array_equal(np.asarray(getattr(loaded, name)), np.asarray(getattr(gan, name)))
    assert int(loaded.history_count) == TINY.history_size
    # The training randomness is a function of (seed, step): one more step on each gives identical weights.
    for model in (gan, loaded):
        model.fit(_dataset(), steps_per_epoch=1, epochs=1, shuffle=False, verbose=0)
    for x, y in zip(_weights(gan), _weights(loaded), strict=True):
        np.testing.assert_array_equal(x, y)
