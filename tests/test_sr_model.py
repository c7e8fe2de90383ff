"""The SR model: consistency projection, generator init, both training phases, .keras round trip, tiling."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import tensorflow as tf
from saving import assert_saves_and_reloads

from mammo_tf.config import resolve_sr_config
from mammo_tf.data.degrade import area_downsample, crop_to_scale, degrade
from mammo_tf.inference.tiling import tile_layout, tiled_apply
from mammo_tf.inference.upscale import SRModel, receptive_margin, upscale_array
from mammo_tf.io.images import quantize
from mammo_tf.models.consistency import project
from mammo_tf.models.sr import SRGAN, build_sr_generator, compiled_srgan


def _tiny(**overrides):
    return resolve_sr_config("tiny", **overrides)


def _quantised(x: np.ndarray, bits: int | None) -> np.ndarray:
    if bits is None:
        return x.astype(np.float32)
    levels = (1 << bits) - 1
    return (np.round(x * levels) / levels).astype(np.float32)


def test_degrade_box_averages_then_rounds_to_the_files_grey_levels() -> None:
    hr = np.array([[0.0, 1.0, 0.2, 0.2, 0.9], [0.0, 1.0, 0.2, 0.3, 0.9], [0.4, 0.4, 0.4, 0.4, 0.4]])
    assert crop_to_scale(hr, 2).shape == (2, 4)
    np.testing.assert_allclose(degrade(crop_to_scale(hr, 2), 2, None), [[0.5, 0.225]], rtol=1e-6)
    np.testing.assert_array_equal(degrade(crop_to_scale(hr, 2), 2, 8), np.float32([[128 / 255, 57 / 255]]))
    assert quantize(np.array([-0.1, 1.2]), 8, as_float=True).tolist() == [0.0, 1.0]
    assert quantize(hr, 8, as_float=True).dtype == np.float32
    np.testing.assert_array_equal(quantize(hr, 8, as_float=True), (quantize(hr, 8) / 255).astype(np.float32))


@pytest.mark.parametrize("scale", [2, 4])
@pytest.mark.parametrize("bits", [None, 8, 16])
def test_projection_is_consistent_with_saturation(scale: int, bits: int | None) -> None:
    rng = np.random.default_rng(scale)
    x = rng.normal(0.5, 0.5, (2, 8 * scale, 12 * scale, 1)).astype(np.float32)  # far outside [0, 1] in places
    lr = _quantised(np.clip(rng.normal(0.5, 0.3, (2, 8, 12, 1)), 0, 1), bits)
    lr[0, :2, :3] = 1.0  # saturated LR blocks (markers) and black ones
    lr[1, -2:, -3:] = 0.0
    q = 0.0 if bits is None else 1.0 / ((1 << bits) - 1)
    out = project(x, lr, np.full([2], q, np.float32), scale).numpy()
    assert out.min() >= 0.0 and out.max() <= 1.0
    error = np.abs(np.stack([area_downsample(o[..., 0], scale) for o in out]) - lr[..., 0]).max()
    assert error <= q / 2 + 2e-7
    if bits is None:
        assert error < 1e-5


def test_projection_leaves_means_inside_the_quantisation_cell_alone() -> None:
    """Only the part of the residual outside the half-grey-level cell is corrected."""
    lr = np.full((1, 4, 4, 1), 100 / 255, np.float32)
    x = np.repeat(np.repeat(lr, 2, 1), 2, 2) + 0.3 / 255  # block means inside the cell
    x[0, 0, 0, 0] += 0.1 / 255
    out = project(x, lr, np.full([1], 1 / 255, np.float32), 2).numpy()
    np.testing.assert_allclose(out, x, atol=1e-7)


def test_untrained_generator_is_the_projected_bicubic_interpolation() -> None:
    config = _tiny(consistency=False)
    generator = build_sr_generator(config)
    lr = np.random.default_rng(0).random((1, 9, 13, 1)).astype(np.float32)
    out = generator([lr, np.zeros([1], np.float32)]).numpy()
    bicubic = tf.clip_by_value(tf.image.resize(lr, (18, 26), method="bicubic"), 0, 1).numpy()
    np.testing.assert_allclose(out, bicubic, atol=1e-6)
    assert out.shape == (1, 18, 26, 1)


def test_residual_blocks_use_the_configured_activation() -> None:
    from mammo_tf.errors import MammoError

    x = np.array([-1.0, 2.0], np.float32)
    for name, expected in (("leaky_relu", [-0.2, 2.0]), ("relu", [0.0, 2.0])):
        conv = build_sr_generator(_tiny(activation=name)).get_layer("block0_conv1")
        np.testing.assert_allclose(np.asarray(conv.activation(x)), expected, rtol=1e-6)
    with pytest.raises(MammoError, match="activation"):
        _tiny(activation="gelu")


def _batches(scale: int = 2, n: int = 4):
    rng = np.random.default_rng(1)
    hr = rng.random((n, 16 * scale, 16 * scale, 1)).astype(np.float32)
    lr = np.stack([area_downsample(h[..., 0], scale)[..., None] for h in hr]).astype(np.float32)
    return tf.data.Dataset.from_tensors(((lr, np.full([n], 1 / 255, np.float32)), hr)).repeat()


@pytest.mark.parametrize("scale", [2, 4])
def test_one_step_moves_the_loss_in_both_phases(scale: int) -> None:
    model = compiled_srgan(_tiny(scale=scale, hr_size=32 * scale // 2 * 2))
    data = _batches(scale)
    for phase in ("pretrain", "gan"):
        model.phase, model.train_function = phase, None
        g_before = [w.numpy().copy() for w in model.generator.trainable_weights]
        d_before = [w.numpy().copy() for w in model.discriminator.trainable_weights]
        first = model.fit(data, steps_per_epoch=1, epochs=1, verbose=0, shuffle=False).history
        second = model.fit(data, steps_per_epoch=1, epochs=1, verbose=0, shuffle=False).history
        assert first["g_loss"][0] != second["g_loss"][0]
        assert any(
            not np.array_equal(a, b.numpy()) for a, b in zip(g_before, model.generator.trainable_weights, strict=False)
        )
        d_moved = any(
            not np.array_equal(a, b.numpy())
            for a, b in zip(d_before, model.discriminator.trainable_weights, strict=False)
        )
        assert d_moved == (phase == "gan")  # D trains only in the adversarial phase
        if phase == "gan":
            assert np.isfinite(second["d_loss"][0]) and "adv" in second


def test_raw_loss_reaches_the_pixels_that_the_projection_clips() -> None:
    """Background at 0 in HR: the projected output is clipped there and passes no gradient; the raw term does."""
    lr = np.zeros([2, 16, 16, 1], np.float32)
    data = tf.data.Dataset.from_tensors(((lr, np.zeros([2], np.float32)), np.zeros([2, 32, 32, 1], np.float32)))
    assert _tiny().raw_weight == 1.0  # on by default
    for weight in (0.0, 1.0):
        model = compiled_srgan(_tiny(scale=2, hr_size=32, raw_weight=weight))
        tail = model.generator.get_layer("tail")
        tail.bias.assign([-0.5])  # raw output -0.5 everywhere
        raw = model.generator([lr, np.zeros([2], np.float32)], training=True)
        assert float(tf.reduce_min(raw)) < 0.0  # training mode: the projection layer passes x through
        logs = model.fit(data.repeat(), steps_per_epoch=1, epochs=1, verbose=0, shuffle=False).history
        assert logs["pixel"][0] == 0.0 and logs["raw"][0] == pytest.approx(0.5)  # projected output clipped to 0
        moved = float(tail.bias.numpy()[0]) != -0.5
        assert moved == (weight > 0)  # train_step: only the raw term reaches the clipped pixels


def test_the_speck_term_sees_added_bright_detail_only() -> None:
    from mammo_tf.models.losses import SPECK_MARGIN, speck_excess, white_tophat

    hr = np.full([1, 32, 32, 1], 0.5, np.float32)
    sr = hr.copy()
    sr[0, 16, 16, 0] += 0.1  # one invented speck
    assert float(tf.reduce_max(white_tophat(sr))) == pytest.approx(0.1, abs=1e-6)
    assert float(speck_excess(sr, hr)[0]) == pytest.approx((0.1 - SPECK_MARGIN) / 24**2, rel=1e-4)  # 4-px edges out
    assert float(speck_excess(hr, sr)[0]) == 0.0  # a speck SR leaves out costs nothing here (L1 sees it)
    ramp = np.tile(np.linspace(0.2, 0.8, 32, dtype=np.float32), (1, 32, 1))[..., None]
    assert float(speck_excess(ramp, hr)[0]) == 0.0  # no narrow bright detail inside a ramp


def test_a_speck_weight_trains_logs_and_saves_only_when_set(tmp_path) -> None:
    data = _batches(2)
    plain = compiled_srgan(_tiny(scale=2))
    history = plain.fit(data, steps_per_epoch=1, epochs=1, verbose=0, shuffle=False).history
    assert "speck" not in history  # unchanged layout
    model = compiled_srgan(_tiny(scale=2, speck_weight=10.0))
    logs = model.fit(data, steps_per_epoch=1, epochs=1, verbose=0, shuffle=False).history
    assert np.isfinite(logs["speck"][0]) and logs["speck"][0] >= 0.0
    assert SRGAN.from_config(model.get_config()).speck_weight == 10.0


def test_keras_round_trip_identical_outputs_and_optimizer_state(tmp_path) -> None:
    model = compiled_srgan(_tiny())
    model.phase = "gan"
    model.fit(_batches(), steps_per_epoch=2, epochs=1, verbose=0, shuffle=False)
    lr = np.random.default_rng(2).random((2, 11, 7, 1)).astype(np.float32)
    q = np.zeros([2], np.float32)
    loaded = assert_saves_and_reloads(model, [lr, q], tmp_path, optimizers=("g_optimizer", "d_optimizer"))
    assert isinstance(loaded, SRGAN) and loaded.phase == "gan" and int(loaded.g_optimizer.iterations) == 2
    np.testing.assert_array_equal(model.generator([lr, q]).numpy(), loaded.generator([lr, q]).numpy())
    loaded.fit(_batches(), steps_per_epoch=1, epochs=1, verbose=0, shuffle=False)  # training goes on
    assert int(loaded.g_optimizer.iterations) == 3


def _random_generator(scale: int, engine: str = "keras") -> SRModel:
    """A tiny generator with random (non-identity) weights, so tiling errors would show."""
    generator = build_sr_generator(_tiny(scale=scale))
    rng = np.random.default_rng(3)
    generator.set_weights([rng.normal(0, 0.2, w.shape).astype(np.float32) for w in generator.get_weights()])
    return SRModel(generator, scale, receptive_margin(generator), "random", None, engine)


@pytest.mark.parametrize("engine", ["keras", "xla"])
@pytest.mark.parametrize("scale", [2, 4])
@pytest.mark.parametrize("shape", [(97, 131), (45, 30), (16, 16)])
def test_tiled_equals_untiled(scale: int, shape: tuple[int, int], engine: str) -> None:
    model = _random_generator(scale, engine)
    image = np.random.default_rng(4).random(shape).astype(np.float32)
    whole = upscale_array(model, image, 8, tile=None)
    tiled = upscale_array(model, image, 8, tile=4 * model.margin + 12)  # tile >= 2 x the default overlap
    assert whole.shape == (shape[0] * scale, shape[1] * scale)
    # Tiles are other conv shapes, so oneDNN sums in another order: up to 9.5e-7 measured on AVX2 (random
    # weights, large activations; outputs in [0, 1]). 1e-5 leaves 10x margin; half the margin errs by 1e-2.
    assert np.abs(whole - tiled).max() < 1e-5


@pytest.mark.parametrize("scale", [2, 4])
def test_the_receptive_margin_is_tight(scale: int) -> None:
    """One LR pixel less of margin and the tiles show seams: the margin is the radius, not a loose bound."""
    model = _random_generator(scale)
    image = np.random.default_rng(4).random((97, 131)).astype(np.float32)
    whole = upscale_array(model, image, 8, tile=None)
    short = dataclasses.replace(model, margin=model.margin - 1)
    assert np.abs(whole - upscale_array(short, image, 8, tile=4 * model.margin + 12)).max() > 1e-4


@pytest.mark.parametrize("scale", [2, 4])
def test_xla_engine_equals_the_keras_graph(scale: int) -> None:
    """The folded tail is exact, the image edge included (sizes below 3 take the unfolded form)."""
    from mammo_tf.inference.sr_engine import XLAGenerator

    keras_model = _random_generator(scale)
    assert XLAGenerator(keras_model.generator).folded is not None  # the fold applies to this architecture
    xla_model = _random_generator(scale, "xla")
    rng = np.random.default_rng(5)
    for shape in [(23, 31), (3, 40), (2, 2), (1, 7)]:
        image = rng.random(shape).astype(np.float32)
        keras_out = upscale_array(keras_model, image, 8, tile=None)
        xla_out = upscale_array(xla_model, image, 8, tile=None)
        # Other summation orders (XLA, the composed kernel): 1.2e-7 measured (outputs in [0, 1]).
        assert np.abs(keras_out - xla_out).max() < 1e-5, shape


def test_generator_flops_counts_each_conv_at_its_resolution() -> None:
    from mammo_tf.inference.sr_engine import generator_flops

    config = _tiny()  # 4 filters, 1 block: head 1->4, 2 block convs, body_end, up 4->16 at LR, tail 4->1 at HR
    per_lr_pixel = 2 * 9 * (1 * 4 + 3 * 4 * 4 + 4 * 16 + 4 * (4 * 1))
    assert generator_flops(build_sr_generator(config), 10, 7) == 70 * per_lr_pixel


def test_engine_choice() -> None:
    from mammo_tf.errors import MammoError
    from mammo_tf.inference.sr_engine import resolve_engine
    from mammo_tf.training.distribute import precision_and_seed

    float32 = build_sr_generator(_tiny())
    with precision_and_seed("mixed_bfloat16"):
        bf16 = build_sr_generator(_tiny())
    assert resolve_engine("auto", bf16, native_bf16=True) == "keras"  # oneDNN bf16 is the fast path there
    assert resolve_engine("auto", bf16, native_bf16=False) == "xla"  # emulated bf16: float32 XLA instead
    assert resolve_engine("auto", float32, native_bf16=True) == "xla"
    assert resolve_engine("keras", float32, native_bf16=False) == "keras"
    with pytest.raises(MammoError, match="engine must be one of"):
        resolve_engine("onnx", float32)


def test_tile_layout_covers_with_overlap_and_little_waste() -> None:
    size, starts = tile_layout(1024, 512, 48)
    assert len(starts) == 3 and size < 400 and starts[0] == 0 and starts[-1] + size == 1024
    assert all(b - a <= size - 48 for a, b in zip(starts, starts[1:], strict=False))


def test_tiling_sends_only_tile_batches_to_the_model() -> None:
    seen = []

    def apply(tiles):
        seen.append(tiles.shape)
        return np.repeat(np.repeat(tiles, 2, 1), 2, 2)

    out = tiled_apply(apply, np.ones((300, 200), np.float32), scale=2, tile=64, overlap=20, margin=8, batch=3)
    assert out.shape == (600, 400) and np.allclose(out, 1.0)
    assert all(s[0] <= 3 and s[1] * s[2] <= 64 * 64 for s in seen) and len(set(seen[0][1:3] for _ in seen)) == 1


@pytest.mark.parametrize(("height", "width"), [(1024, 1024), (2864, 4432), (300, 200), (77, 1500), (40, 40)])
def test_tile_grid_covers_with_overlap_within_the_pixel_budget(height, width) -> None:
    from mammo_tf.inference.tiling import tile_grid

    tile, overlap = (768, 42) if height > 100 else (64, 20)
    (th, rows), (tw, cols) = tile_grid(height, width, tile, overlap)
    assert th * tw <= tile * tile
    for size, starts, length in ((th, rows, height), (tw, cols, width)):
        assert starts[0] == 0 and starts[-1] + size == length
        assert all(b - a <= size - overlap for a, b in zip(starts, starts[1:], strict=False))
    repeated = th * len(rows) * tw * len(cols) / (height * width) - 1
    square = tile_layout(height, tile, overlap), tile_layout(width, tile, overlap)
    assert repeated <= square[0][0] * len(square[0][1]) * square[1][0] * len(square[1][1]) / (height * width) - 1
    if (height, width) == (1024, 1024):  # 2 tiles of 1024 x 533 repeat 4.1 % of the pixels, 4 of 533² 8.4 %
        assert len(rows) * len(cols) == 2 and repeated < 0.05


@pytest.mark.parametrize(
    ("flags", "gpu", "expected"),
    [
        ({"avx2"}, False, "float32"),
        ({"avx512_bf16"}, False, "mixed_bfloat16"),
        ({"amx_bf16"}, False, "mixed_bfloat16"),
        (set(), True, "mixed_bfloat16"),
    ],
)
def test_auto_precision_picks_bf16_only_where_it_is_fast(flags, gpu, expected) -> None:
    from mammo_tf.training.distribute import resolve_precision

    assert resolve_precision("auto", flags=flags, gpu=gpu) == expected
    assert resolve_precision("float32", flags={"avx512_bf16"}, gpu=True) == "float32"


def test_bf16_training_keeps_skip_and_projection_in_float32() -> None:
    from mammo_tf.training.distribute import set_precision

    set_precision("mixed_bfloat16")
    try:
        model = compiled_srgan(_tiny())
        model.phase = "gan"
        history = model.fit(_batches(), steps_per_epoch=2, epochs=1, verbose=0, shuffle=False).history
    finally:
        set_precision("float32")
    assert np.isfinite(history["g_loss"][0]) and np.isfinite(history["d_loss"][0])
    assert model.generator.get_layer("head").compute_dtype == "bfloat16"
    for name in ("bicubic", "global_skip", "consistency", "tail"):
        assert model.generator.get_layer(name).compute_dtype == "float32", name
    lr = np.random.default_rng(5).random((1, 8, 8, 1)).astype(np.float32)
    out = model.generator([lr, np.zeros([1], np.float32)])
    assert out.dtype == "float32"
    assert np.abs(area_downsample(out.numpy()[0, ..., 0], 2) - lr[0, ..., 0]).max() < 1e-5


def test_anchor_mask_is_threshold_erosion_without_the_border() -> None:
    from mammo_tf.evaluation.sr_eval import anchor_mask

    hr = np.zeros((40, 40), np.float32)
    hr[10:30, 10:30] = 0.5  # a 20x20 breast: the 9x9 erosion leaves 12x12
    mask = anchor_mask(hr)
    assert mask.shape == (40, 40) and mask.sum() == 144 and mask[14:26, 14:26].all()
    hr[:] = 0.5  # the whole film: all but the 4-px border
    assert anchor_mask(hr).sum() == 32 * 32
    hr[:] = 0.05  # below the 0.08 threshold: nothing counts
    assert not anchor_mask(hr).any()


def test_interior_leaves_out_the_edge_and_isolated_black_pixels() -> None:
    """A digitiser's black pixel inside the tissue is where bicubic rings worst: not tissue, not scored."""
    from mammo_tf.evaluation.sr_eval import INTERIOR_PX, anchor_mask, interior_mask

    hr = np.full((120, 120), 0.5, np.float32)
    hr[60, 60] = 0.0
    mask = np.ones_like(hr, bool)
    interior = interior_mask(mask, anchor_mask(hr))
    assert not interior[56:65, 56:65].any()  # the 9x9 neighbourhood of the black pixel
    assert interior[50, 50] and interior[70, 70]
    mask[:, :30] = False  # a breast edge: INTERIOR_PX of tissue next to it are left out
    interior = interior_mask(mask, anchor_mask(hr))
    assert not interior[:, : 30 + INTERIOR_PX].any() and interior[40, 30 + INTERIOR_PX + 1]
