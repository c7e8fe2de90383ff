"""Configs as small frozen dataclasses with presets, resolved default -> preset -> overrides -> validate.

The resolved config is what a run directory records in config.json (training/runs.py) and what a
resumed run must match.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from mammo_tf.errors import MammoError


def preset_values(presets: dict[str, dict], preset: str, **overrides) -> dict:
    """A preset's field values with the overrides that are not None (None = keep the preset's value)."""
    if preset not in presets:
        raise MammoError(f"unknown preset {preset!r} (choose from {', '.join(presets)})")
    return {**presets[preset], "preset": preset, **{k: v for k, v in overrides.items() if v is not None}}


# filters, blocks, residual scale; "tiny" exists for the test suite.
SR_ACTIVATIONS = ("relu", "leaky_relu")
GENERATOR_SIZES = {"compact": (32, 8, 1.0), "large": (64, 16, 0.1), "tiny": (4, 1, 1.0)}


@dataclass(frozen=True)
class SRConfig:
    """Everything that defines one SR training run.

    Model: scale 2 or 4; generator 'compact' (32 filters x 8 blocks, the CPU default) or 'large' (64 x 16,
    for GPUs); residual blocks with 'relu' (default) or 'leaky_relu'; consistency projection on by default.
    Data: HR crops of hr_size px inside the breast, a foreground_share of them on the film's labels, markers
    and breast edge instead (whose sharp edges a breast-only model over-sharpens); LR by box averaging,
    rounded to the source bit depth when quantise_lr (what a file gives at inference).
    Training: pretrain_steps of L1 (+ ssim_weight x (1 - SSIM)) on the projected output, + raw_weight x L1
    on the output before the projection (models/sr.py says why), then gan_steps of adversarial fine-tuning
    (relativistic-average GAN + feature matching), cosine learning rate in pretraining, EMA generator.
    Validation: every val_every steps on val_films whole validation films, PSNR gain over bicubic in the
    film-foreground region, HR > 0.08 eroded 9x9, 4-px border (what evaluate-sr reports on the test films).
    """

    scale: int = 2
    generator: str = "compact"
    activation: str = "relu"
    consistency: bool = True
    quantise_lr: bool = True
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
    ema_decay: float = 0.999
    d_filters: int = 32
    precision: str = "auto"
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

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> SRConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})


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


def resolve_sr_config(preset: str = "standard", **overrides) -> SRConfig:
    """Preset, then the overrides that are not None, then validation (MammoError on a bad value)."""
    config = SRConfig(**preset_values(SR_PRESETS, preset, **overrides))
    if config.scale not in (2, 4):
        raise MammoError(f"scale must be 2 or 4, got {config.scale}")
    if config.generator not in GENERATOR_SIZES:
        raise MammoError(f"generator must be one of {', '.join(GENERATOR_SIZES)}, got {config.generator!r}")
    if config.activation not in SR_ACTIVATIONS:
        raise MammoError(f"activation must be one of {', '.join(SR_ACTIVATIONS)}, got {config.activation!r}")
    if not 0.0 <= config.foreground_share <= 1.0:
        raise MammoError(f"foreground_share must be in [0, 1], got {config.foreground_share}")
    if config.hr_size % (4 * config.scale):
        raise MammoError(f"hr_size {config.hr_size} must be a multiple of {4 * config.scale}")
    for name in ("pretrain_steps", "gan_steps"):
        steps = getattr(config, name)
        if steps < 0:
            raise MammoError(f"{name} must be >= 0, got {steps}")
    # Checkpoints fall on validation boundaries: validate every gcd(val_every, phase lengths) steps if the phases
    # are not whole multiples of val_every (e.g. a short --steps run).
    every = math.gcd(config.val_every, config.pretrain_steps, config.gan_steps) or 1
    return dataclasses.replace(config, val_every=every)


@dataclass(frozen=True)
class ClassifierConfig:
    """One classifier training run: patches, task, synthetic mix, steps.

    task: 'easy' (cluster-centred patches against random normal tissue) or 'matched' (negatives resampled
    to match the positives in patch intensity and position in the breast). synthetic_ratio: synthetic
    patches per real patch, per class (0 = real only).
    """

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
    seed: int = 0
    preset: str = "standard"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


CLASSIFIER_PRESETS: dict[str, dict] = {
    "quick": dict(steps=300, val_every=100),
    "standard": {},
    "tiny": dict(width=4, batch_size=8, steps=4, val_every=2, per_cluster=2, normal_per_image=1),
}
TASKS = ("easy", "matched")


def resolve_classifier_config(preset: str = "standard", **overrides) -> ClassifierConfig:
    """Preset, then the overrides that are not None, then validation (MammoError on a bad value)."""
    config = ClassifierConfig(**preset_values(CLASSIFIER_PRESETS, preset, **overrides))
    if config.task not in TASKS:
        raise MammoError(f"task must be one of {', '.join(TASKS)}, got {config.task!r}")
    if not config.synthetic_ratio >= 0:
        raise MammoError(f"synthetic ratio must be >= 0, got {config.synthetic_ratio}")
    if config.steps < 1:
        raise MammoError(f"steps must be >= 1, got {config.steps}")
    return dataclasses.replace(config, val_every=math.gcd(config.val_every, config.steps))
