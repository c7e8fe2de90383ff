"""The noise gate: a film noisier than anything the SR model was trained on, or JPEG-coded, is written as bicubic.

Why: a model trained on one digitiser's films sharpens another scanner's noise into calcification-like
specks (docs/results-sr.md, the scanner grid: at 4 grey levels of added noise `sr-x2` made 2.5x bicubic's
spurious specks and lost 1.4 dB). Softer fixes were tried and failed the grid (soft-thresholding the added
detail, a wider consistency tolerance, blending toward bicubic); a film whose noise the model never saw is
left to bicubic, which invents nothing: "SR that adds nothing" there.

The film's noise: data/noise.py (8-bit grey levels). The ceiling: the model's own, recorded when it was
trained (metrics.json or card.json `noise_ceiling_greys`: its noisiest training film's LR, plus 3 %); for
models trained before it was recorded, their source's (SOURCE_NOISE_CEILING: mini-MIAS, measured on its
training films, 0.75-1.16, by a test); else unknown, and the gate is off. Models trained on degraded LR
(`--lr-degradations diverse`, noise up to 5 grey levels) record none: the gate is off for them.

JPEG: a film with an 8x8 JPEG block grid (data/block_coding.py) is also left to bicubic whenever the gate is
on: box-trained models never saw JPEG loss, and `sr-x2` lost 0.07 dB to bicubic on JPEG q75 LR (the grid's
jpeg-75 cell), while the noise estimate does not see that loss.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from mammo_tf.data.block_coding import BLOCK_CODED, jpeg_grid_score
from mammo_tf.data.noise import estimate_noise_greys
from mammo_tf.errors import MammoError

SOURCE_NOISE_CEILING = {"mias": 1.19}  # noise_ceiling of the mini-MIAS train split (tests/test_noise_gate.py)
META_FILES = ("card.json", "metrics.json", "config.json")  # beside a shipped model or in a run directory


@dataclass(frozen=True)
class GateDecision:
    """What the gate decided for one input: its noise (8-bit grey levels), the ceiling (None: gate off),
    its JPEG grid score (data/block_coding.py), and whether the output is bicubic."""

    noise_greys: float
    ceiling: float | None
    jpeg_grid: float = 1.0

    @property
    def jpeg_coded(self) -> bool:
        return self.jpeg_grid > BLOCK_CODED

    @property
    def bicubic(self) -> bool:
        return self.ceiling is not None and (self.noise_greys > self.ceiling or self.jpeg_coded)

    def describe(self) -> str:
        """One line for the CLI: the noise, the ceiling, the JPEG grid when seen, and what was done."""
        if self.ceiling is None:
            return f"noise {self.noise_greys:.2f} grey levels (gate off: super-resolved)"
        if self.jpeg_coded:
            return (
                f"JPEG-coded (8x8 block grid, score {self.jpeg_grid:.2f} > {BLOCK_CODED:g}), a loss the model was "
                "not trained on: written as bicubic (--noise-gate off forces SR)"
            )
        if self.bicubic:
            return (
                f"noise {self.noise_greys:.2f} grey levels > {self.ceiling:g}, more than the model was trained "
                "on: written as bicubic, SR would sharpen it into specks (--noise-gate off forces SR)"
            )
        return f"noise {self.noise_greys:.2f} grey levels <= {self.ceiling:g}: super-resolved"


def gate(lr, ceiling: float | None) -> GateDecision:
    """The gate's decision for one LR input (float [h, w] in [0, 1]); ceiling None: never bicubic."""
    return GateDecision(estimate_noise_greys(lr), ceiling, jpeg_grid_score(lr))


def model_noise_ceiling(model_path: Path | None) -> float | None:
    """The noise ceiling of the SR model at `model_path`, from the card.json, metrics.json or config.json
    beside it (module docstring); None when unknown."""
    if model_path is None:
        return None
    folder = model_path.parent
    records = {n: json.loads((folder / n).read_text()) for n in META_FILES if (folder / n).is_file()}
    for record in records.values():
        if "noise_ceiling_greys" in record:
            return record["noise_ceiling_greys"]
    training = records.get("card.json", {}).get("training", {})
    config = records.get("config.json") or training.get("config") or {}
    if config.get("lr_degradations", "box") != "box":
        return None
    return SOURCE_NOISE_CEILING.get(config.get("source") or training.get("data"))


def resolve_gate(requested: str | float | None, model_ceiling: float | None) -> float | None:
    """The ceiling to apply: 'auto' -> the model's (None when unknown), 'off' or None -> None, a number -> it."""
    if requested is None or requested == "off":
        return None
    if requested == "auto":
        return model_ceiling
    if isinstance(requested, int | float) and not isinstance(requested, bool) and requested > 0:
        return float(requested)
    raise MammoError(f"noise gate must be 'auto', 'off' or a positive number of grey levels, got {requested!r}")
