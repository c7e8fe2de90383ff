"""Pixel spacing at inference: the spacing an SR model was trained at, the input's, and the check between them.

An SR model learns one task: LR pixels of its training images' spacing x scale, made s times finer. MIAS is
0.2 mm per pixel, so `sr-x2` learnt 0.4 mm -> 0.2 mm; a 0.05 mm CBIS-DDSM film is 8x finer than the inputs
it saw, where calcifications, noise and texture span 8x more pixels: another task. `upscale` states both
spacings and, when they differ by more than SPACING_TOLERANCE, warns or refuses (`--spacing-check`), and
can bring the input to the model's input spacing first (`--resample-to model`, data/resample.py).

A model's training spacing: its card's or run config's `training_spacing_mm` where recorded, else from its
training data's source (MIAS: 0.2 mm); None (unknown, no check) otherwise.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from mammo_tf.data.mias import MIAS_SPACING_MM
from mammo_tf.errors import MammoError, located

SPACING_CHECKS = ("warn", "refuse", "off")
# The input's pixels may be up to this factor larger or smaller than the model's training inputs: upscaling
# a MIAS film (0.2 mm) with a model trained on MIAS (inputs 0.4 mm) is the documented use, one octave finer.
SPACING_TOLERANCE = 2.0
SOURCE_SPACING_MM = {"mias": MIAS_SPACING_MM}  # training sources whose spacing is a fact of the source

Pair = tuple[float, float]  # (row, col) mm per pixel


def training_spacing(model_path: Path | None) -> float | None:
    """mm per pixel of the images the model at `model_path` trained on (an SR model: its HR images), from
    card.json or config.json beside it (`hr_spacing_mm`, `spacing_mm` or `training_spacing_mm`, else its
    source's spacing); None when unknown."""
    if model_path is None:
        return None
    for meta in (model_path.parent / "card.json", model_path.parent / "config.json"):
        if not meta.is_file():
            continue
        data = json.loads(meta.read_text())
        training = data.get("training") if isinstance(data.get("training"), dict) else data
        for key in ("hr_spacing_mm", "spacing_mm", "training_spacing_mm"):
            if training.get(key):
                return float(training[key])
        source = training.get("data") if training is not data else data.get("source")
        if source in SOURCE_SPACING_MM:
            return SOURCE_SPACING_MM[source]
    return None


@dataclass(frozen=True)
class SpacingPlan:
    """What `upscale` does about spacing for one input (mm per pixel, (row, col) pairs; None = unknown).

    input_mm: the file's (or --input-spacing); model_input_mm: the model's training LR spacing; resample_mm:
    the spacing the input is resampled to before SR (None: not resampled); output_mm: the output's;
    warning: the mismatch message when --spacing-check warns.
    """

    input_mm: Pair | None
    model_input_mm: float | None
    resample_mm: Pair | None
    output_mm: Pair | None
    warning: str | None = None


def plan_spacing(
    source: Path,
    stated: Pair | None,
    model_hr_mm: float | None,
    scale: int,
    *,
    input_mm: float | None = None,
    check: str = "warn",
    resample_to: str | float | None = None,
) -> SpacingPlan:
    """The SpacingPlan of one input. stated: its header's spacing; input_mm: the user's (wins over the
    header); resample_to: None, "model" or a spacing in mm. MammoError naming `source` when --spacing-check
    refuses, or when resampling lacks a spacing it needs."""
    if check not in SPACING_CHECKS:
        raise MammoError(f"spacing check must be one of {', '.join(SPACING_CHECKS)}, got {check!r}")
    given = (float(input_mm), float(input_mm)) if input_mm is not None else stated
    model_in = model_hr_mm * scale if model_hr_mm is not None else None
    target = None
    if resample_to is not None:
        if given is None:
            raise located(source, "its pixel spacing is unknown: give --input-spacing MM to resample it")
        if resample_to == "model":
            if model_in is None:
                raise located(source, "the model's training spacing is unknown: give --resample-to MM instead")
            target = (model_in, model_in)
        else:
            target = (float(resample_to), float(resample_to))
    effective = target or given
    output = None if effective is None else (effective[0] / scale, effective[1] / scale)
    warning = None
    if effective is not None and model_in is not None and check != "off":
        ratio = 0.5 * (effective[0] + effective[1]) / model_in
        if not 1 / SPACING_TOLERANCE - 1e-9 <= ratio <= SPACING_TOLERANCE + 1e-9:
            message = (
                f"{source}: pixels of {effective[0]:.3g} mm, the model was trained on inputs of {model_in:.3g} mm "
                f"({max(ratio, 1 / ratio):.1f}x {'larger' if ratio > 1 else 'smaller'}): another task for it; "
                "--resample-to model brings the film to its input spacing first"
            )
            if check == "refuse":
                raise MammoError(message)
            warning = message
    return SpacingPlan(given, model_in, target, output, warning)
