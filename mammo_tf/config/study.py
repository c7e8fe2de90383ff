"""The augmentation study's config (evaluate-aug): StudyConfig, its presets and checks.

Not a trainer config: the study trains classifiers and GANs by their own presets (classifier_preset,
gan_preset), with the step counts classifier_steps / gan_steps when set.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from mammo_tf.config.base import Config
from mammo_tf.config.classifier import CLASSIFIER_PRESETS
from mammo_tf.config.synthesis import SYNTHESIS_PRESETS

STUDY_TASKS = ("easy", "matched", "film")

STUDY_PRESETS = {
    "quick": dict(
        folds=2, seeds=1, classifier_preset="tiny", classifier_steps=6, gan_preset="tiny", gan_steps=2, bootstrap=200
    ),
    "standard": dict(classifier_steps=500),
}


@dataclass(frozen=True)
class StudyConfig(Config):
    KIND: ClassVar[str] = "study"
    PRESETS: ClassVar[dict[str, dict]] = STUDY_PRESETS

    folds: int = 5
    seeds: int = 3
    tasks: tuple[str, ...] = ("easy", "matched", "film")
    ratios: tuple[float, ...] = (0.5, 1.0, 2.0)
    classifier_preset: str = "standard"
    classifier_steps: int | None = None
    gan_preset: str = "quick"
    gan_steps: int | None = None
    bootstrap: int = 1000
    val_fraction: float = 0.2
    fixed_specificity: float = 0.90  # sensitivity is also reported at this specificity (in (0, 1))
    preset: str = "standard"

    def validate(self) -> None:
        super().validate()
        if set(self.tasks) - set(STUDY_TASKS):
            self.fail("tasks", f"a subset of {', '.join(STUDY_TASKS)}")
        self.check_at_least("folds", 2)
        self.check_at_least("seeds", 1)
        self.check_choice("classifier_preset", CLASSIFIER_PRESETS)
        self.check_choice("gan_preset", SYNTHESIS_PRESETS)
        if not isinstance(self.fixed_specificity, float | int) or not 0 < self.fixed_specificity < 1:
            self.fail("fixed_specificity", "in (0, 1)")


def resolve_study_config(preset: str = "standard", **overrides) -> StudyConfig:
    """Preset, then the overrides that are not None, then validation (MammoError on a bad value)."""
    return StudyConfig.resolve(preset, **overrides)
