"""The augmentation study's config (evaluate-aug): StudyConfig, its presets and checks.

Not a trainer config: the study trains classifiers, GANs, insertion models and SR models by their own presets
(classifier_preset, gan_preset, insert_preset, sr_preset), with the step counts classifier_steps, gan_steps,
sr_pretrain_steps and sr_gan_steps when set, all in one `precision`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from mammo_tf.config.base import PRECISIONS, Config
from mammo_tf.config.classifier import CLASSIFIER_PRESETS
from mammo_tf.config.insert import INSERT_PRESETS
from mammo_tf.config.sr import SR_PRESETS
from mammo_tf.config.synthesis import SYNTHESIS_PRESETS

STUDY_TASKS = ("easy", "matched", "film")
# The families of arms beside real only: "gan" (real + whole-patch GAN patches at `ratios`, synthetic only),
# "insert" (real + inserted clusters at `insert_ratios`, rendered without the refiner, inserted only,
# inserted pretraining then real fine-tuning), "sr" (the SR utility arms of the easy task: a classifier trained
# on HR, on bicubic- and on SR-upscaled LR, each tested on all three, with an SR model trained per fold).
ARM_FAMILIES = ("gan", "insert", "sr")
LOW_DATA_RATIO = 1.0  # the low-data curve compares real only with real + inserted (refined) at this ratio

STUDY_PRESETS = {
    "quick": dict(
        folds=2, seeds=1, classifier_preset="tiny", classifier_steps=6, gan_preset="tiny", gan_steps=2,
        insert_preset="tiny", sr_preset="tiny", bootstrap=100, feature_steps=10, ratios=(0.5, 1.0),
        # The default phantom's folds hold too few clusters per class for an insertion model (1 benign in a
        # fold's training patients): its insertion arms need a larger dataset (--arms gan,insert).
        arms=("gan",),
    ),
    # Per-fold SR models: 4,000 L1 + 500 GAN steps (a fold's validation gain was +0.345 dB at 2,000 L1
    # steps and +0.355 at 4,000; the shipped sr-x2 trained 13,000 steps on all training patients).
    # The synthesis GAN: the shipped synth-64 recipe (standard preset), cut from 10,000 to 3,000 steps to fit
    # the compute plan (docs/results-study.md); each fold's GAN is scored (KID against its floor) in the audit.
    "standard": dict(
        classifier_steps=500, ratios=(0.5, 1.0), gan_preset="standard", gan_steps=3000,
        sr_pretrain_steps=4000, sr_gan_steps=500,
    ),
}  # fmt: skip


@dataclass(frozen=True)
class StudyConfig(Config):
    """One study: folds x seeds x tasks x arms (workflows/study).

    arms: the arm families (ARM_FAMILIES) that run beside real only. positive_fractions: the low-data curve,
    () = off; each fraction f in (0, 1] restricts the real positives to the clusters of f of each fold's
    training patients with calcifications (nested subsets; negatives unchanged), for real only and real +
    inserted x LOW_DATA_RATIO; f = 1 is the full-data task itself. precision: every unit's (classifiers,
    GANs, insertion and SR models); float32 by default, because a study's units are trained over several
    sessions on whatever CPU a session gets, and 'auto' would train some in mixed_bfloat16 (CPUs with native
    bfloat16) and the rest in float32.
    """

    KIND: ClassVar[str] = "study"
    PRESETS: ClassVar[dict[str, dict]] = STUDY_PRESETS

    folds: int = 5
    seeds: int = 3
    tasks: tuple[str, ...] = ("easy", "matched", "film")
    arms: tuple[str, ...] = ARM_FAMILIES
    ratios: tuple[float, ...] = (0.5, 1.0, 2.0)  # GAN patches per real patch, per class
    insert_ratios: tuple[float, ...] = (0.5, 1.0, 2.0)  # inserted per real calcification patch, per class
    positive_fractions: tuple[float, ...] = ()
    classifier_preset: str = "standard"
    classifier_steps: int | None = None
    gan_preset: str = "quick"
    gan_steps: int | None = None
    insert_preset: str = "standard"
    sr_preset: str = "standard"
    sr_pretrain_steps: int | None = None
    sr_gan_steps: int | None = None
    bootstrap: int = 1000
    feature_steps: int = 400  # training steps of the feature network that scores each fold's GAN (evaluate-gan)
    val_fraction: float = 0.2
    fixed_specificity: float = 0.90  # sensitivity is also reported at this specificity (in (0, 1))
    precision: str = "float32"
    preset: str = "standard"

    def validate(self) -> None:
        super().validate()
        if set(self.tasks) - set(STUDY_TASKS):
            self.fail("tasks", f"a subset of {', '.join(STUDY_TASKS)}")
        if set(self.arms) - set(ARM_FAMILIES):
            self.fail("arms", f"a subset of {', '.join(ARM_FAMILIES)}")
        self.check_at_least("folds", 2)
        self.check_at_least("seeds", 1)
        self.check_choice("classifier_preset", CLASSIFIER_PRESETS)
        self.check_choice("gan_preset", SYNTHESIS_PRESETS)
        self.check_choice("insert_preset", INSERT_PRESETS)
        self.check_choice("sr_preset", SR_PRESETS)
        self.check_choice("precision", PRECISIONS)
        self.check_at_least("feature_steps", 1)
        for key in ("sr_pretrain_steps", "sr_gan_steps"):
            if getattr(self, key) is not None:
                self.check_at_least(key, 0)
        if self.classifier_steps is not None:  # the pretraining arm splits the budget in two stages
            self.check_at_least("classifier_steps", 2 if "insert" in self.arms else 1)
        for key in ("ratios", "insert_ratios"):
            if not all(_number(r) and r > 0 for r in getattr(self, key)):
                self.fail(key, "numbers > 0")
        fractions = self.positive_fractions
        if not all(_number(f) and 0 < f <= 1 for f in fractions) or len(set(fractions)) < len(fractions):
            self.fail("positive_fractions", "distinct numbers in (0, 1]")
        if fractions and ("insert" not in self.arms or LOW_DATA_RATIO not in self.insert_ratios):
            self.fail(
                "positive_fractions",
                f"empty unless arms include insert and insert_ratios include {LOW_DATA_RATIO:g} (the curve's arm)",
            )
        if not _number(self.fixed_specificity) or not 0 < self.fixed_specificity < 1:
            self.fail("fixed_specificity", "in (0, 1)")


def _number(value) -> bool:
    return isinstance(value, float | int) and not isinstance(value, bool)


def resolve_study_config(preset: str = "standard", **overrides) -> StudyConfig:
    """Preset, then the overrides that are not None, then validation (MammoError on a bad value)."""
    return StudyConfig.resolve(preset, **overrides)
