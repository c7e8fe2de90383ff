"""Pixel spacing at inference: the model's training spacing, the input's, the check, and resampling."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mammo_tf.data.resample import resample_to_spacing
from mammo_tf.errors import MammoError
from mammo_tf.inference.registry import REPO_MODELS
from mammo_tf.inference.spacing import plan_spacing, training_spacing

FILM = Path("film.dcm")


def test_the_plan_checks_the_input_against_the_models_training_inputs() -> None:
    # sr-x2 learnt MIAS (0.2 mm) box-averaged x2: inputs of 0.4 mm
    unknown = plan_spacing(FILM, None, 0.2, 2)
    assert (unknown.input_mm, unknown.output_mm, unknown.warning) == (None, None, None)
    mias = plan_spacing(FILM, (0.2, 0.2), 0.2, 2)  # a MIAS film: one octave finer, the documented use
    assert mias.model_input_mm == pytest.approx(0.4) and mias.output_mm == (0.1, 0.1) and mias.warning is None
    cbis = plan_spacing(FILM, (0.05, 0.05), 0.2, 2)
    assert "film.dcm: pixels of 0.05 mm, the model was trained on inputs of 0.4 mm (8.0x smaller)" in cbis.warning
    assert plan_spacing(FILM, (0.05, 0.05), 0.2, 2, check="off").warning is None
    assert plan_spacing(FILM, (0.05, 0.05), None, 2).warning is None  # the model's spacing unknown: no check
    with pytest.raises(MammoError, match=r"film.dcm: pixels of 0.05 mm, .* \(8.0x smaller\)"):
        plan_spacing(FILM, (0.05, 0.05), 0.2, 2, check="refuse")
    declared = plan_spacing(FILM, (0.05, 0.05), 0.2, 2, input_mm=0.3)  # --input-spacing wins over the header
    assert declared.input_mm == (0.3, 0.3) and declared.warning is None


def test_the_plan_resamples_to_the_model_or_to_a_size() -> None:
    plan = plan_spacing(FILM, (0.05, 0.06), 0.2, 2, resample_to="model")
    assert plan.resample_mm == pytest.approx((0.4, 0.4)) and plan.output_mm == pytest.approx((0.2, 0.2))
    assert plan.warning is None
    sized = plan_spacing(FILM, (0.05, 0.05), 0.2, 2, resample_to=0.1)
    assert sized.resample_mm == (0.1, 0.1) and sized.output_mm == (0.05, 0.05) and "4.0x smaller" in sized.warning
    with pytest.raises(MammoError, match="film.dcm: its pixel spacing is unknown: give --input-spacing MM"):
        plan_spacing(FILM, None, 0.2, 2, resample_to="model")
    with pytest.raises(MammoError, match="film.dcm: the model's training spacing is unknown"):
        plan_spacing(FILM, (0.05, 0.05), None, 2, resample_to="model")


def test_resampling_keeps_the_extent_and_area_averages_down() -> None:
    rng = np.random.default_rng(0)
    pixels = rng.uniform(0.2, 0.8, (96, 80)).astype(np.float32)
    down = resample_to_spacing(pixels, (0.05, 0.05), (0.4, 0.4))
    assert down.shape == (12, 10)
    np.testing.assert_allclose(down, pixels.reshape(12, 8, 10, 8).mean(axis=(1, 3)), atol=1e-5)  # 8x8 areas
    up = resample_to_spacing(pixels, (0.2, 0.2), (0.1, 0.1))
    assert up.shape == (192, 160) and up.min() >= 0.0 and up.max() <= 1.0
    assert resample_to_spacing(pixels, (0.1, 0.1), (0.1, 0.1)) is not pixels
    with pytest.raises(MammoError, match="pixel spacings must be positive"):
        resample_to_spacing(pixels, (0.0, 0.1), (0.1, 0.1))


def test_a_models_training_spacing_comes_from_its_card_or_run_config(tmp_path: Path) -> None:
    assert training_spacing(REPO_MODELS / "sr-x2" / "model.keras") == pytest.approx(0.2)  # trained on MIAS
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"source": "phantom"}))
    assert training_spacing(run / "generator.keras") is None  # not a fact of the source: unknown
    (run / "config.json").write_text(json.dumps({"source": "manifest", "hr_spacing_mm": 0.07}))
    assert training_spacing(run / "generator.keras") == pytest.approx(0.07)
    (run / "config.json").write_text(json.dumps({"source": "mias"}))
    assert training_spacing(run / "generator.keras") == pytest.approx(0.2)
    assert training_spacing(None) is None
