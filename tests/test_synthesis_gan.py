"""SynthesisGAN, its networks, presets and the adversarial losses, at tiny sizes (16 px, 4 filters)."""

from __future__ import annotations

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

from saving import assert_saves_and_reloads  # noqa: E402

from mammo_tf.config import SynthesisConfig, resolve_synthesis_config  # noqa: E402
from mammo_tf.errors import MammoError  # noqa: E402
from mammo_tf.models import losses  # noqa: E402
from mammo_tf.models.spectral import SNConv2D, SNDense  # noqa: E402
from mammo_tf.models.synthesis import (  # noqa: E402
    SynthesisGAN,
    build_synthesis_discriminator,
    build_synthesis_gan,
    build_synthesis_generator,
    latents,
)
from mammo_tf.models.synthesis_layers import ReflectPad  # noqa: E402
from mammo_tf.models.synthesis_networks import _levels  # noqa: E402

TINY = resolve_synthesis_config("tiny")


def _patches(n: int = 24, size: int = 16, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Fake patches: grey tissue, plus bright specks for the calcification classes."""
    rng = np.random.default_rng(seed)
    images = rng.uniform(0.35, 0.55, (n, size, size, 1)).astype(np.float32)
    labels = (np.arange(n) % 3).astype(np.int32)
    for i in np.flatnonzero(labels > 0):
        rows, cols = rng.integers(2, size - 2, (2, 3 * labels[i]))
        images[i, rows, cols, 0] = 0.9
    return images, labels


def _dataset(batch: int = 4, seed: int = 0):
    images, labels = _patches(seed=seed)
    return tf.data.Dataset.from_tensor_slices((images, labels)).repeat().batch(batch, drop_remainder=True)


def _weights(model) -> list[np.ndarray]:
    return [np.array(w) for w in model.weights]


# ------------------------------------------------------------------------------------------------ losses


def test_losses_are_per_example_and_match_hand_values():
    real = tf.constant([[2.0], [0.5], [-1.0]])
    fake = tf.constant([[-2.0], [0.0], [1.5]])
    np.testing.assert_allclose(losses.hinge_d(real, fake), [0.0 + 0.0, 0.5 + 1.0, 2.0 + 2.5], rtol=1e-6)
    np.testing.assert_allclose(losses.hinge_g(fake), [2.0, 0.0, -1.5], rtol=1e-6)
    softplus = lambda v: np.log1p(np.exp(v))  # noqa: E731
    r, f = real.numpy()[:, 0], fake.numpy()[:, 0]
    np.testing.assert_allclose(losses.nonsaturating_d(real, fake), softplus(-r) + softplus(f), rtol=1e-6)
    np.testing.assert_allclose(losses.nonsaturating_g(fake), softplus(-f), rtol=1e-6)
    # Relativistic average: against the batch means of the other side.
    rel_r, rel_f = r - f.mean(), f - r.mean()
    np.testing.assert_allclose(losses.relativistic_average_d(real, fake), softplus(-rel_r) + softplus(rel_f), rtol=1e-6)
    np.testing.assert_allclose(losses.relativistic_average_g(real, fake), softplus(rel_r) + softplus(-rel_f), rtol=1e-6)


def test_losses_reduce_patch_maps_to_batch_axis_in_float32():
    real = tf.cast(tf.ones([2, 3, 3, 1]), tf.bfloat16)
    fake = -tf.ones([2, 3, 3, 1])
    for value in (
        losses.hinge_d(real, fake),
        losses.nonsaturating_g(fake),
        losses.relativistic_average_d(real, fake),
        losses.relativistic_average_g(real, fake),
    ):
        assert value.shape == (2,) and value.dtype == tf.float32


def test_r1_penalty_of_a_linear_critic_is_half_gamma_times_squared_weight_norm():
    w = np.array([0.5, -1.0, 2.0, 0.0], dtype=np.float32).reshape(1, 2, 2, 1)

    def critic(inputs, training=False):
        x, _ = inputs
        return tf.reduce_sum(x * w, axis=[1, 2, 3])[:, None]

    real = tf.random.stateless_uniform([3, 2, 2, 1], seed=[1, 2])
    penalty = losses.r1_penalty(critic, real, tf.zeros([3], tf.int32), gamma=0.2)
    np.testing.assert_allclose(penalty, [0.5 * 0.2 * (0.25 + 1.0 + 4.0)] * 3, rtol=1e-6)


def test_lazy_r1_inside_tf_cond_reaches_the_discriminator_weights():
    """The lazy R1 branch (a nested tape inside tf.cond, in a graph) gives D the same gradient as computed directly."""
    disc = build_synthesis_discriminator(16, 3, 4, max_mult=2)
    x = tf.random.stateless_uniform([4, 16, 16, 1], seed=[3, 4])
    y = tf.constant([0, 1, 2, 0])

    def dense(grads):
        return [np.zeros(v.shape) if g is None else np.asarray(tf.convert_to_tensor(g)) for g, v in zip(
            grads, disc.trainable_variables, strict=True)]  # fmt: skip

    @tf.function
    def lazy(flag):
        with tf.GradientTape() as tape:
            r1 = tf.cond(flag, lambda: losses.r1_penalty(disc, x, y, 1.0, training=False), lambda: tf.zeros([4]))
            total = tf.reduce_sum(r1)
        return tape.gradient(total, disc.trainable_variables)

    with tf.GradientTape() as tape:
        total = tf.reduce_sum(losses.r1_penalty(disc, x, y, 1.0, training=False))
    direct = dense(tape.gradient(total, disc.trainable_variables))
    via_cond = dense(lazy(tf.constant(True)))
    assert max(np.abs(g).max() for g in via_cond) > 0
    for a, b in zip(via_cond, direct, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)
    assert max(np.abs(g).max() for g in dense(lazy(tf.constant(False)))) == 0


# ------------------------------------------------------------------------------------------------ config
# (the config itself, its presets and old saved configs: tests/test_config.py)


def test_loss_names_of_the_config_are_the_losses_module():
    from mammo_tf.config import LOSSES

    assert LOSSES == tuple(losses.D_LOSSES) == tuple(losses.G_LOSSES)


# ------------------------------------------------------------------------------------------------ networks


@pytest.mark.parametrize("size", [16, 128])
def test_networks_shapes_dtypes_and_stem(size):
    gen = build_synthesis_generator(8, size, 3, 4, embed_dim=4, max_mult=2)
    disc = build_synthesis_discriminator(size, 3, 4, max_mult=2, spectral_norm="reparam")
    z = latents(2, 8, seed=0)
    labels = np.array([0, 2], np.int32)
    images = np.asarray(gen([z, labels]))
    assert images.shape == (2, size, size, 1) and images.dtype == np.float32
    assert images.min() >= 0.0 and images.max() <= 1.0
    logits = disc([images, labels])
    assert logits.shape == (2, 1) and logits.dtype == tf.float32
    stem = disc.get_layer("stem")
    assert not stem.trainable_weights and not stem.trainable
    spectral = [layer for layer in disc.layers if isinstance(layer, SNConv2D | SNDense)]
    assert len(spectral) == 1 + 3 * _levels(size) + 2  # stem conv, 3 per down block, final conv, linear head
    projected = build_synthesis_discriminator(size, 3, 4, max_mult=2, spectral_norm="projected")
    assert sum(isinstance(layer, keras.layers.SpectralNormalization) for layer in projected.layers) == len(spectral)
    assert not any(isinstance(layer, SNConv2D | SNDense) for layer in projected.layers)


def test_sum_pooling_scales_the_discriminators_logits_by_the_final_map_area():
    images, labels = _patches(4)
    mean = build_synthesis_discriminator(16, 3, 4, max_mult=2, seed=3)
    summed = build_synthesis_discriminator(16, 3, 4, max_mult=2, pooling="sum", seed=3)
    summed.set_weights(mean.get_weights())  # same weights (the head's bias starts at 0)
    np.testing.assert_allclose(
        np.asarray(summed([images, labels])), 16 * np.asarray(mean([images, labels])), rtol=1e-4, atol=1e-6
    )


def test_reflect_pad_mirrors_borders_and_the_generator_uses_it_unless_told_zeros():
    x = np.arange(2 * 3 * 4 * 2, dtype=np.float32).reshape(2, 3, 4, 2)
    expected = np.pad(x, [(0, 0), (1, 1), (1, 1), (0, 0)], mode="reflect")
    assert np.array_equal(np.asarray(ReflectPad(1)(x)), expected)
    z, labels = latents(2, TINY.latent_dim, seed=1), np.array([0, 1], np.int32)
    outputs = {}
    for padding in ("reflect", "zeros"):
        gen = build_synthesis_gan(TINY.replace(g_padding=padding), seed=0).generator
        convs = [c for c in gen.layers if isinstance(c, keras.layers.Conv2D) and c.kernel_size == (3, 3)]
        assert convs and all(c.padding == ("valid" if padding == "reflect" else "same") for c in convs)
        pads = sum(isinstance(layer, ReflectPad) for layer in gen.layers)
        assert pads == (len(convs) if padding == "reflect" else 0)
        outputs[padding] = np.asarray(gen([z, labels]))
    assert outputs["reflect"].shape == outputs["zeros"].shape
    assert np.abs(outputs["reflect"] - outputs["zeros"]).max() > 1e-5  # same weights, different borders
    with pytest.raises(MammoError, match="g_padding"):
        TINY.replace(g_padding="wrap")


def test_class_conditioning_changes_outputs():
    gan = build_synthesis_gan(TINY, seed=0)
    z = latents(3, TINY.latent_dim, seed=5)
    by_class = [np.asarray(gan((z, np.full(3, c, np.int32)))) for c in range(3)]
    for a in range(3):
        for b in range(a + 1, 3):
            assert np.abs(by_class[a] - by_class[b]).max() > 1e-4
    images = by_class[0]
    logits = [np.asarray(gan.discriminator([images, np.full(3, c, np.int32)])) for c in range(3)]
    assert np.abs(logits[0] - logits[2]).max() > 1e-6  # the projection head sees the class too


def test_building_is_deterministic_by_seed():
    a, b, c = (build_synthesis_gan(TINY, seed=s) for s in (3, 3, 4))
    for x, y in zip(_weights(a), _weights(b), strict=True):
        np.testing.assert_array_equal(x, y)
    assert any(not np.array_equal(x, y) for x, y in zip(_weights(a), _weights(c), strict=True))
    np.testing.assert_array_equal(a.sample(4, 1, seed=9), b.sample(4, 1, seed=9))


# ------------------------------------------------------------------------------------------------ training
# Tracing a GAN train_step costs seconds on a shared 2-core box: one module-wide trained model serves the
# training, ADA and round-trip tests (the round trip, which trains it further, comes last in this file).

# ada_target below -1: whatever D says, E[sign D(real)] is "too high", so p must rise at 4 images / 40.
OVERFIT = TINY.replace(ada_target=-1.5, ada_speed_images=40.0)


@pytest.fixture(scope="module")
def trained() -> dict:
    gan = build_synthesis_gan(OVERFIT, seed=0)
    gan.compile()
    gan.build_optimizers()
    before = {name: _weights(getattr(gan, name)) for name in ("generator", "discriminator", "ema_generator")}
    history = gan.fit(_dataset(), steps_per_epoch=1, epochs=3, shuffle=False, verbose=0).history
    return {"gan": gan, "before": before, "history": history}


def test_train_step_moves_both_losses_and_weights(trained):
    gan, history = trained["gan"], trained["history"]
    for key in ("d_loss", "g_loss"):
        assert np.all(np.isfinite(history[key]))
        assert history[key][0] != history[key][2]  # one step per epoch: these are steps 1 and 3
    assert history["r1"][0] > 0  # lazy R1 runs on D step 0 (and every r1_every steps)
    for name, before in trained["before"].items():
        after = _weights(getattr(gan, name))
        assert any(not np.array_equal(x, y) for x, y in zip(before, after, strict=True)), name
    assert int(gan.d_optimizer.iterations) == int(gan.g_optimizer.iterations) == 3


def test_a_reparametrised_discriminator_trains_and_round_trips(tmp_path):
    gan = build_synthesis_gan(TINY.replace(d_spectral_norm="reparam"), seed=0)
    gan.compile()
    gan.build_optimizers()
    before = _weights(gan.discriminator)
    history = gan.fit(_dataset(), steps_per_epoch=1, epochs=2, shuffle=False, verbose=0).history
    assert np.all(np.isfinite(history["d_loss"])) and np.all(np.isfinite(history["g_loss"]))
    assert any(not np.array_equal(x, y) for x, y in zip(before, _weights(gan.discriminator), strict=True))
    images, labels = _patches(4)
    z = latents(4, TINY.latent_dim, seed=2)
    loaded = assert_saves_and_reloads(gan, (z, labels), tmp_path, optimizers=("g_optimizer", "d_optimizer"))
    assert loaded.config.d_spectral_norm == "reparam"
    np.testing.assert_array_equal(
        np.asarray(loaded.discriminator([images, labels])), np.asarray(gan.discriminator([images, labels]))
    )


def test_adaptive_p_rises_while_the_discriminator_overfits(trained):
    gan, history = trained["gan"], trained["history"]
    assert float(gan.ada.p) == pytest.approx(3 * 4 / 40.0)
    assert history["ada_p"][0] < history["ada_p"][1] < history["ada_p"][2]


def test_sample_is_deterministic_and_truncation_bounds_latents():
    gan = build_synthesis_gan(TINY, seed=1)
    a = gan.sample(5, [0, 1, 2, 0, 1], seed=7, truncation=0.7)
    np.testing.assert_array_equal(a, gan.sample(5, [0, 1, 2, 0, 1], seed=7, truncation=0.7))
    assert not np.array_equal(a, gan.sample(5, [0, 1, 2, 0, 1], seed=8, truncation=0.7))
    assert a.shape == (5, 16, 16, 1) and a.dtype == np.float32
    z = latents(200, 8, seed=3, truncation=0.5)
    assert np.abs(z).max() <= 0.5 and z.std() < 0.35
    with pytest.raises(ValueError, match="class ids"):
        gan.sample(2, 3, seed=0)
    with pytest.raises(ValueError, match="n must be"):
        gan.sample(0, 1, seed=0)


def _built_under(policy: str, config: SynthesisConfig = TINY) -> SynthesisGAN:
    keras.mixed_precision.set_dtype_policy(policy)
    try:
        return build_synthesis_gan(config, seed=0)
    finally:
        keras.mixed_precision.set_dtype_policy("float32")


def test_the_generator_computes_in_float32_under_mixed_bfloat16_unless_told_otherwise():
    mixed, plain = _built_under("mixed_bfloat16"), _built_under("float32")
    for net in (mixed.generator, mixed.ema_generator):
        assert {layer.compute_dtype for layer in net.layers if not isinstance(layer, keras.layers.InputLayer)} == {
            "float32"
        }
    assert mixed.discriminator.get_layer("from_stem").compute_dtype == "bfloat16"
    z, labels = latents(6, TINY.latent_dim, seed=1), (np.arange(6) % 3).astype(np.int32)
    # No bf16 rounding noise: the same pixels as a generator built under float32.
    np.testing.assert_array_equal(np.asarray(mixed.generator([z, labels])), np.asarray(plain.generator([z, labels])))
    bf16 = _built_under("mixed_bfloat16", TINY.replace(generator_float32=False))
    assert bf16.generator.get_layer("to_grey").compute_dtype == "bfloat16"
    assert np.abs(np.asarray(bf16.generator([z, labels])) - np.asarray(plain.generator([z, labels]))).max() > 0


def test_mixed_bfloat16_trains_with_float32_outputs_and_losses():
    gan = _built_under("mixed_bfloat16", TINY.replace(generator_float32=False))
    assert gan.generator.get_layer("to_grey").compute_dtype == "bfloat16"
    # Eagerly (one trace less, ~15 s saved): step 0 runs the R1 branch, step 1 the other; graph-mode bf16 fits
    # are what the benchmark measures.
    gan.compile(run_eagerly=True)
    gan.build_optimizers()
    history = gan.fit(_dataset(), steps_per_epoch=2, epochs=1, shuffle=False, verbose=0).history
    assert history["r1"][0] > 0
    assert all(np.isfinite(v[0]) for v in history.values())
    images = gan.sample(3, 2, seed=0)
    assert images.dtype == np.float32
    assert gan.discriminator([images, np.full(3, 2, np.int32)]).dtype == tf.float32
    assert all(w.dtype == "float32" for w in gan.weights)


def test_keras_round_trip_keeps_outputs_optimizer_state_and_resumes_identically(trained, tmp_path):
    """Last in the file: it trains the shared model further."""
    gan = trained["gan"]
    z = latents(5, TINY.latent_dim, seed=2)
    labels = np.array([0, 1, 2, 0, 1], np.int32)
    loaded = assert_saves_and_reloads(gan, (z, labels), tmp_path, optimizers=("g_optimizer", "d_optimizer"))
    assert isinstance(loaded, SynthesisGAN) and loaded.config == gan.config and loaded.seed == gan.seed
    assert int(loaded.g_optimizer.iterations) == int(loaded.d_optimizer.iterations) == 3
    np.testing.assert_array_equal(gan.sample(6, 2, seed=1), loaded.sample(6, 2, seed=1))
    assert float(loaded.ada.p) == float(gan.ada.p) > 0
    # The training noise is a function of (seed, step): resuming continues exactly like the original, so
    # one more step gives bitwise-identical weights (determinism by seed, across a save/load).
    for model in (gan, loaded):
        model.fit(_dataset(), steps_per_epoch=1, epochs=1, shuffle=False, verbose=0)
    for x, y in zip(_weights(gan), _weights(loaded), strict=True):
        np.testing.assert_array_equal(x, y)
