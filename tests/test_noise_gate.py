"""The noise gate: the estimate on known noise, the ceiling a model records or inherits, and upscale giving
bicubic (exactly) for a film noisier than the ceiling."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import invoke, one_error_line

from mammo_tf.data.block_coding import BLOCK_CODED, jpeg_grid_score
from mammo_tf.data.degrade import degrade, interpolate
from mammo_tf.data.noise import estimate_noise_greys, noise_ceiling
from mammo_tf.errors import MammoError
from mammo_tf.inference.noise_gate import SOURCE_NOISE_CEILING, model_noise_ceiling, resolve_gate
from mammo_tf.io.images import read_image, write_image

GREY = 1 / 255


def _noisy(greys: float, shape=(256, 256), seed: int = 0) -> np.ndarray:
    """A flat film at 0.5 with white Gaussian noise of `greys` 8-bit grey levels."""
    return (0.5 + np.random.default_rng(seed).normal(0, greys * GREY, shape)).astype(np.float32)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    """An untrained tiny x2 generator with no recorded ceiling (so `auto` leaves the gate off)."""
    from mammo_tf.config import resolve_sr_config
    from mammo_tf.models.sr import build_sr_generator

    path = tmp_path_factory.mktemp("model") / "tiny-sr.keras"
    build_sr_generator(resolve_sr_config("tiny"), name="mammo_sr_generator_x2_ema").save(path)
    return path


def test_the_estimate_on_known_noise() -> None:
    for greys in (1.0, 3.0, 8.0):
        assert estimate_noise_greys(_noisy(greys)) == pytest.approx(greys, rel=0.05)
    ramp = np.tile(np.linspace(0.2, 0.8, 256, dtype=np.float32), (256, 1))
    assert estimate_noise_greys(ramp) < 0.01  # a Laplacian difference does not see a linear ramp
    film = _noisy(2.0)
    film[:, :128] = 0.0  # black background: not film, not counted
    assert estimate_noise_greys(film) == pytest.approx(2.0, rel=0.05)
    assert noise_ceiling([_noisy(1.0), _noisy(2.0)]) == round(estimate_noise_greys(_noisy(2.0)) * 1.03, 2)


def test_the_ceiling_a_model_records_or_inherits(tmp_path: Path) -> None:
    model = tmp_path / "run" / "generator.keras"
    model.parent.mkdir()
    assert model_noise_ceiling(model) is None  # nothing recorded beside it
    (model.parent / "config.json").write_text(json.dumps({"kind": "sr", "source": "mias"}))
    assert model_noise_ceiling(model) == SOURCE_NOISE_CEILING["mias"]  # a run from before the record
    (model.parent / "config.json").write_text(json.dumps({"source": "mias", "lr_degradations": "diverse"}))
    assert model_noise_ceiling(model) is None  # trained on noisy LR on purpose: no gate
    (model.parent / "metrics.json").write_text(json.dumps({"noise_ceiling_greys": 2.5}))
    assert model_noise_ceiling(model) == 2.5
    shipped = tmp_path / "sr-old" / "model.keras"
    shipped.parent.mkdir()
    (shipped.parent / "card.json").write_text(json.dumps({"training": {"data": "mias", "config": {}}}))
    assert model_noise_ceiling(shipped) == SOURCE_NOISE_CEILING["mias"]
    assert resolve_gate("auto", 2.5) == 2.5 and resolve_gate("auto", None) is None
    assert resolve_gate("off", 2.5) is None and resolve_gate(None, 2.5) is None and resolve_gate(3, None) == 3.0
    with pytest.raises(MammoError, match="noise gate must be 'auto', 'off' or a positive number"):
        resolve_gate(-1.0, None)


def test_a_film_above_the_ceiling_is_written_as_bicubic(tmp_path: Path, tiny_model: Path) -> None:
    film = tmp_path / "noisy.png"
    write_image(film, _noisy(4.0), 8)
    lr = read_image(film).pixels
    result = invoke("upscale", film, "--out", tmp_path / "gated", "--model", tiny_model, "--noise-gate", "2")
    assert result.exit_code == 0, result.output
    assert "noisy.png: noise 4." in result.stderr and "written as bicubic" in result.stderr
    bicubic = read_image(tmp_path / "gated" / "noisy_x2.png").pixels
    assert np.array_equal(bicubic, read_image(_written(interpolate(lr, 2, "bicubic"), tmp_path)).pixels)
    result = invoke("upscale", film, "--out", tmp_path / "auto", "--model", tiny_model)  # no ceiling recorded
    assert result.exit_code == 0 and "bicubic" not in result.stderr
    assert not np.array_equal(read_image(tmp_path / "auto" / "noisy_x2.png").pixels, bicubic)
    one_error_line(invoke("upscale", film, "--out", tmp_path / "x", "--noise-gate", "loud"), "--noise-gate")


def _texture(shape=(256, 256), seed: int = 0) -> np.ndarray:
    """Smooth random tissue-like texture in [0.3, 0.7], 8-bit levels: what a film's LR looks like to a codec."""
    from scipy import ndimage

    noise = ndimage.gaussian_filter(np.random.default_rng(seed).normal(size=shape), 2.0)
    film = 0.5 + 0.2 * noise / np.abs(noise).max()
    return (np.round(film * 255) / 255).astype(np.float32)


def test_a_jpeg_block_grid_is_seen_and_plain_films_are_not() -> None:
    from mammo_tf.data.scanner_degradations import jpeg_roundtrip

    for seed in range(3):
        film = _texture(seed=seed)
        assert jpeg_grid_score(film) < BLOCK_CODED, seed
        assert jpeg_grid_score(_noisy(2.0, seed=seed)) < BLOCK_CODED, seed
        for quality in (50, 95):
            assert jpeg_grid_score(jpeg_roundtrip(film, quality)) > BLOCK_CODED, (seed, quality)
    assert jpeg_grid_score(np.zeros((256, 256), np.float32)) == 1.0  # no film: no evidence either way
    assert jpeg_grid_score(_texture((48, 48))) == 1.0  # too few blocks to judge


def test_a_jpeg_coded_film_is_written_as_bicubic_while_the_gate_is_on(tmp_path: Path, tiny_model: Path) -> None:
    from mammo_tf.data.scanner_degradations import jpeg_roundtrip

    film = tmp_path / "coded.png"
    write_image(film, jpeg_roundtrip(_texture(), 75), 8)
    lr = read_image(film).pixels
    result = invoke("upscale", film, "--out", tmp_path / "gated", "--model", tiny_model, "--noise-gate", "5")
    assert result.exit_code == 0, result.output
    assert "coded.png: JPEG-coded" in result.stderr and "written as bicubic" in result.stderr
    bicubic = read_image(tmp_path / "gated" / "coded_x2.png").pixels
    assert np.array_equal(bicubic, read_image(_written(interpolate(lr, 2, "bicubic"), tmp_path)).pixels)
    result = invoke("upscale", film, "--out", tmp_path / "off", "--model", tiny_model, "--noise-gate", "off")
    assert result.exit_code == 0 and "bicubic" not in result.stderr
    assert not np.array_equal(read_image(tmp_path / "off" / "coded_x2.png").pixels, bicubic)


def _written(pixels: np.ndarray, folder: Path) -> Path:
    """`pixels` through the same 8-bit PNG writer (the comparison sees what the file holds)."""
    path = folder / "expected.png"
    write_image(path, pixels, 8)
    return path


@pytest.mark.mias
def test_the_mias_ceiling_is_its_training_films(mias_dir: Path) -> None:
    """SOURCE_NOISE_CEILING['mias'], what models trained before the ceiling was recorded (sr-x2) use, is the
    noise_ceiling of the mini-MIAS train split's LR as SR training made it (2x2 box mean, 8 bits)."""
    from mammo_tf.data.catalog import load_catalog
    from mammo_tf.data.degrade import crop_to_scale

    films = load_catalog(mias_dir).images.query("split == 'train'")
    lrs = (degrade(crop_to_scale(read_image(path).pixels, 2), 2, 8) for path in films["path"])
    assert noise_ceiling(lrs) == SOURCE_NOISE_CEILING["mias"]


@pytest.mark.mias
def test_mias_films_show_no_jpeg_grid_until_coded(mias_dir: Path) -> None:
    """data/block_coding's line on real films: a sample of mini-MIAS LR scores below it, their JPEG q90 above."""
    from mammo_tf.data.catalog import load_catalog
    from mammo_tf.data.degrade import crop_to_scale
    from mammo_tf.data.scanner_degradations import jpeg_roundtrip

    for path in load_catalog(mias_dir).images.query("split == 'test'")["path"][:6]:
        lr = degrade(crop_to_scale(read_image(path).pixels, 2), 2, 8)
        assert jpeg_grid_score(lr) < BLOCK_CODED < jpeg_grid_score(jpeg_roundtrip(lr, 90)), path
