"""The calcification classifier's config: ClassifierConfig, its presets and checks."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import ClassVar

from mammo_tf.config.base import TrainerConfig

CLASSIFIER_PRESETS: dict[str, dict] = {
    "quick": dict(steps=300, val_every=100),
    "standard": {},
    "tiny": dict(width=4, batch_size=8, steps=4, val_every=2, per_cluster=2, normal_per_image=1),
}
TASKS = ("easy", "matched")


@dataclass(frozen=True)
class ClassifierConfig(TrainerConfig):
    """One classifier training run: patches, task, synthetic mix, steps.

    task: 'easy' (cluster-centred patches against random normal tissue) or 'matched' (negatives resampled
    to match the positives in patch intensity and position in the breast). synthetic_ratio: synthetic
    patches per real patch, per class (0 = real only).
    """

    KIND: ClassVar[str] = "classifier"
    PRESETS: ClassVar[dict[str, dict]] = CLASSIFIER_PRESETS

    patch_size: int = 64
    width: int = 16
    batch_size: int = 32
    steps: int = 3000
    val_every: int = 500
    learning_rate: float = 1e-3
    per_cluster: int = 8
    jitter: int = 16
    normal_per_image: int = 4
    task: str = "easy"
    synthetic_ratio: float = 0.0
    precision: str = "auto"
    strategy: str = "auto"  # 'auto' | 'default' | 'mirrored' | 'multiworker' (base.TrainerConfig)
    spacing_mm: float | None = None  # train at this pixel size, images resampled (base.TrainerConfig)
    seed: int = 0
    preset: str = "standard"

    def validate(self) -> None:
        super().validate()
        self.check_choice("task", TASKS)
        self.check_at_least("synthetic_ratio", 0)

    def adjusted(self) -> ClassifierConfig:
        return dataclasses.replace(self, val_every=math.gcd(self.val_every, self.steps))


def resolve_classifier_config(preset: str = "standard", **overrides) -> ClassifierConfig:
    """Preset, then the overrides that are not None, then validation (MammoError on a bad value)."""
    return ClassifierConfig.resolve(preset, **overrides)
