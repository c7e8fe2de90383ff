"""The SR GAN's config: SRConfig, its presets and checks."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import ClassVar

from mammo_tf.config.base import TrainerConfig

# filters, blocks, residual scale; "tiny" exists for the test suite.
SR_ACTIVATIONS = ("relu", "leaky_relu")
# How training LR is made from HR (data/scanner_degradations.py).
LR_DEGRADATIONS = ("box", "diverse", "gated", "gated-noisy")
GENERATOR_SIZES = {"compact": (32, 8, 1.0), "large": (64, 16, 0.1), "tiny": (4, 1, 1.0)}


SR_PRESETS: dict[str, dict] = {
    # Minutes on 2 CPU cores: what `make demo` trains on the phantom.
    "quick": dict(generator="compact", n_pairs=1024, pretrain_steps=400, gan_steps=100, val_every=100, val_films=4),
    # The shipped models: about 0.6 h on one CPU core in bf16 (more in float32), resumable.
    "standard": {},
    # Seconds: the test suite.
    "tiny": dict(
        generator="tiny",
        hr_size=32,
        batch_size=4,
        n_pairs=32,
        pretrain_steps=4,
        gan_steps=2,
        val_every=2,
        val_films=1,
        d_filters=4,
        ema_decay=0.9,
    ),
}


@dataclass(frozen=True)
class SRConfig(TrainerConfig):
    """Everything that defines one SR training run.

    Model: scale 2 or 4; generator 'compact' (32 filters x 8 blocks, the CPU default) or 'large' (64 x 16,
    for GPUs); residual blocks with 'relu' (default) or 'leaky_relu'; consistency projection on by default.
    Data: HR crops of hr_size px inside the breast, a foreground_share of them on the film's labels, markers
    and breast edge instead (whose sharp edges a breast-only model over-sharpens); LR by box averaging,
    rounded to the source bit depth when quantise_lr (what a file gives at inference); lr_degradations
    "diverse" instead draws a random scanner per pair (PSF, kernel, noise, JPEG; a share stays the box),
    so the model meets other scanners' noise in training (scanner_degradations.random_degradation);
    "gated" draws only scanners upscale's noise gate lets through (blur, grainy noise; half stays the box);
    "gated-noisy" adds noise up to 5 grey levels, half of it white, for a model that still keeps the gate.
    Training: pretrain_steps of L1 (+ ssim_weight x (1 - SSIM)) on the projected output, + raw_weight x L1
    on the output before the projection (models/sr.py says why), then gan_steps of adversarial fine-tuning
    (relativistic-average GAN + feature matching), cosine learning rate in pretraining, EMA generator.
    Validation: every val_every steps on val_films whole validation films, PSNR gain over bicubic in the
    film-foreground region, HR > 0.08 eroded 9x9, 4-px border (what evaluate-sr reports on the test films).
    """

    KIND: ClassVar[str] = "sr"
    PRESETS: ClassVar[dict[str, dict]] = SR_PRESETS

    scale: int = 2
    generator: str = "compact"
    activation: str = "relu"
    consistency: bool = True
    quantise_lr: bool = True
    lr_degradations: str = "box"
    hr_size: int = 96
    batch_size: int = 16
    n_pairs: int = 32768
    foreground_share: float = 0.25
    pretrain_steps: int = 12000
    gan_steps: int = 1000
    val_every: int = 1000
    val_films: int = 8
    lr_pretrain: float = 5e-4
    lr_gan_g: float = 5e-5
    lr_gan_d: float = 1e-4
    pixel_weight: float = 1.0
    ssim_weight: float = 0.0
    raw_weight: float = 1.0
    adv_weight: float = 2e-4
    fm_weight: float = 2e-3
    speck_weight: float = 0.0  # x the speck-like brightness SR adds over HR (models/losses.speck_excess)
    ema_decay: float = 0.999
    d_filters: int = 32
    precision: str = "auto"
    strategy: str = "auto"  # 'auto' | 'default' | 'mirrored' | 'multiworker' (base.TrainerConfig)
    spacing_mm: float | None = None  # train at this pixel size, images resampled (base.TrainerConfig)
    seed: int = 0
    preset: str = "standard"

    @property
    def filters(self) -> int:
        return GENERATOR_SIZES[self.generator][0]

    @property
    def blocks(self) -> int:
        return GENERATOR_SIZES[self.generator][1]

    @property
    def res_scale(self) -> float:
        return GENERATOR_SIZES[self.generator][2]

    @property
    def steps(self) -> int:
        return self.pretrain_steps + self.gan_steps

    def validate(self) -> None:
        for name in ("pretrain_steps", "gan_steps"):
            self.check_at_least(name, 0)
        super().validate()
        if self.scale not in (2, 4):
            self.fail("scale", "2 or 4")
        self.check_choice("generator", GENERATOR_SIZES)
        self.check_choice("activation", SR_ACTIVATIONS)
        self.check_choice("lr_degradations", LR_DEGRADATIONS)
        if not 0.0 <= self.foreground_share <= 1.0:
            self.fail("foreground_share", "in [0, 1]")
        if self.hr_size % (4 * self.scale):
            self.fail("hr_size", f"a multiple of {4 * self.scale} (4 x scale)")

    def adjusted(self) -> SRConfig:
        # Checkpoints fall on validation boundaries: validate every gcd(val_every, phase lengths) steps if the
        # phases are not whole multiples of val_every (e.g. a short --steps run).
        every = math.gcd(self.val_every, self.pretrain_steps, self.gan_steps) or 1
        return dataclasses.replace(self, val_every=every)


def resolve_sr_config(preset: str = "standard", **overrides) -> SRConfig:
    """Preset, then the overrides that are not None, then validation (MammoError on a bad value)."""
    return SRConfig.resolve(preset, **overrides)
