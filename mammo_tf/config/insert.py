"""The calcification-insertion config: cluster layouts rendered into real tissue, then a GAN refiner.

Data: `n_rendered` positives rendered once per run from layouts fitted on the training patients' real
specks (data/layouts.py) into matched normal backgrounds (data/render.py), benign and malignant balanced;
real calcification patches of the training patients (`per_cluster` per cluster, jittered by `jitter`) are
what the discriminator sees as real.
Refiner (models/refiner.py, SimGAN): a small fully convolutional network (`r_width` filters, `r_blocks`
residual blocks) adds a residual inside the dilated speck mask only; a local (patch-wise) discriminator of
`d_width` filters scores the refined patch against real patches of the same class, its windows away from any
speck mask weighted `background_weight` against 1 near one; a history buffer of
`history_size` refined patches feeds half of each fake batch; `reg_weight` x the mean |refined - rendered|
(`reg_norm` l1; l2: its square) over the mask keeps the layout (self-regularisation). What each setting did on
MIAS: docs/results-insertion.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from mammo_tf.config.base import TrainerConfig

INSERT_PRESETS: dict[str, dict] = {
    "quick": dict(steps=600, val_every=200, n_rendered=512),
    "standard": {},
    "tiny": dict(
        patch_size=32, r_width=4, r_blocks=1, d_width=4, batch_size=4, steps=4, val_every=2, n_rendered=16,
        history_size=8, per_cluster=2,
    ),
}  # fmt: skip


@dataclass(frozen=True)
class InsertConfig(TrainerConfig):
    """One insertion run: layouts, rendering and the refiner GAN (module docstring)."""

    KIND: ClassVar[str] = "insert"
    PRESETS: ClassVar[dict[str, dict]] = INSERT_PRESETS
    # Before the mask weighting: D's plain local mean, and an L1 averaged over the whole patch (weight 1).
    PREDATED_DEFAULTS: ClassVar[dict] = {"background_weight": 1.0, "reg_norm": "l1"}

    patch_size: int = 64
    n_rendered: int = 2048
    per_cluster: int = 8
    jitter: int = 16
    r_width: int = 16
    r_blocks: int = 3
    d_width: int = 16
    batch_size: int = 16
    steps: int = 3000
    val_every: int = 500
    lr_r: float = 1e-4
    lr_d: float = 1e-4
    reg_weight: float = 10.0
    reg_norm: str = "l2"
    background_weight: float = 0.1
    history_size: int = 256
    precision: str = "auto"
    strategy: str = "auto"  # 'auto' | 'default' | 'mirrored' | 'multiworker' (base.TrainerConfig)
    spacing_mm: float | None = None  # train at this pixel size, images resampled (base.TrainerConfig)
    seed: int = 0
    preset: str = "standard"

    def validate(self) -> None:
        super().validate()
        size = self.patch_size
        if isinstance(size, bool) or not isinstance(size, int) or size < 16 or size % 4:
            self.fail("patch_size", "a multiple of 4, >= 16")
        for name in ("n_rendered", "per_cluster", "r_width", "r_blocks", "d_width", "history_size"):
            self.check_at_least(name, 1)
        self.check_at_least("batch_size", 2)
        self.check_at_least("jitter", 0)
        self.check_at_least("reg_weight", 0)
        if self.reg_norm not in ("l1", "l2"):
            self.fail("reg_norm", "'l1' or 'l2'")
        if not 0 < self.background_weight <= 1:
            self.fail("background_weight", "in (0, 1]")
        for name in ("lr_r", "lr_d"):
            if not getattr(self, name) > 0:
                self.fail(name, "> 0")


def resolve_insert_config(preset: str = "standard", **overrides) -> InsertConfig:
    """Preset, then the overrides that are not None, then validation (MammoError on a bad value)."""
    return InsertConfig.resolve(preset, **overrides)
