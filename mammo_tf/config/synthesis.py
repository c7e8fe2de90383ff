"""The synthesis GAN's config: SynthesisConfig, its presets, the fields old saved models predate, its checks.

Classes are the patch classes of ``mammo_tf.data.schema``: NORMAL=0, BENIGN=1, MALIGNANT=2. The networks
and the training step that read this config are in ``mammo_tf.models.synthesis``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

from mammo_tf.config.base import TrainerConfig

# NORMAL, BENIGN, MALIGNANT: len(mammo_tf.data.schema.CLASS_NAMES); config imports nothing above it, a test keeps
# the two equal.
N_CLASSES = 3
LOSSES = ("hinge", "nonsaturating")  # the keys of models/losses.py D_LOSSES and G_LOSSES (a test checks)
PADDINGS = ("reflect", "zeros")
POOLINGS = ("mean", "sum")
SPECTRAL_NORMS = ("reparam", "projected")

SYNTHESIS_PRESETS: dict[str, dict[str, Any]] = {
    # Tests: a few hundred parameters, milliseconds per step.
    "tiny": dict(
        patch_size=16, latent_dim=8, embed_dim=4, g_width=4, d_width=4, max_mult=2,
        batch_size=4, steps=2, r1_every=2, ema_decay=0.9, ada_speed_images=1_000.0, val_every=1,
    ),
    # Minutes on a 2-core CPU (about 0.3-0.4 s a step at batch 16): narrow networks, a faster ADA controller
    # and a shorter EMA for the short run.
    "quick": dict(
        latent_dim=64, embed_dim=16, g_width=8, d_width=8, batch_size=16, steps=1_000,
        ema_decay=0.995, ada_speed_images=100_000.0, val_every=250,
    ),
    # Hours on a CPU (about the size of a plain few-shot conditional GAN): the dataclass defaults.
    "standard": {},
}  # fmt: skip

# Fields added after models had been saved, with what those models were built with (their new defaults differ).
# (seed, precision and val_every, added later too, do not change a built model: they take their defaults.)
PREDATED_DEFAULTS: dict[str, Any] = {"d_pooling": "mean", "generator_float32": False}


@dataclass(frozen=True)
class SynthesisConfig(TrainerConfig):
    """Everything that defines a synthesis GAN and its training recipe (JSON-able, frozen).

    patch_size: side P of the square patches, 4 * 2**k (64 by default, 128 as an option).
    g_width / d_width: channels at full resolution; they double per halving of the size up to x max_mult.
    g_padding: the generator's 3x3 convolutions pad by 'reflect' (no dark frame: zero padding lets a small
        generator learn the patch border as a feature) or 'zeros' (the models shipped before it existed).
    generator_float32: the generator computes in float32 whatever the run's precision (the discriminator
        follows it). Under mixed_bfloat16 the step-7000 synth-64 generator's patches carried bf16 rounding
        noise of std ~0.005 per pixel, as large as real pixel-scale texture (fine_texture 0.0069 against
        0.0041 for the same weights in float32; real 0.0057), and it differed between CPUs.
    r1_gamma, r1_every: R1 weight and lazy interval (the penalty is computed every r1_every D steps and
        scaled by r1_every). ema_decay: the EMA generator's decay per step. ada_*: the augmentation
        controller (target for E[sign D(real)], images for p to move by 1, start, maximum). With StyleGAN2-ADA's
        500k images (a standard run sees 320k), D was certain of every real (E[sign] 1.0) by step 300 on MIAS
        while p had reached 0.01; 50k held E[sign] near 0.6 until step 1,100, but its run was not evaluated.
    d_pooling: how the discriminator pools its last 4x4 map: 'mean' or 'sum' (SNGAN / BigGAN). With spectral
        norm every layer is ~1-Lipschitz, so mean pooling shrinks the logits 16x against the hinge margin: on
        MIAS its hinge loss reached 2.0 (D outputs ~0 for real and fake alike) by step 1,500 and the ADA
        controller never engaged; with sum pooling it was 0.94 at step 250 (the models shipped before used mean).
    d_spectral_norm: 'projected' (keras.layers.SpectralNormalization, which writes W / sigma into the kernel
        each step; with it D lost its signal, hinge loss ~1.9, within 2,000-3,500 steps on MIAS) or 'reparam'
        (Miyato et al.: D computes with W / sigma(W); models/spectral.py). 'reparam' kept the hinge loss at
        1.0-1.4 to step 7,000, and normal patches came closer to real, but benign and malignant ones and the
        memorisation check got worse (docs/results-synthesis.md), so the shipped recipe stays 'projected'.
    aug_*: the DiffAugment policy (see models/augment.py). stem_*: the discriminator's fixed input stem.
    batch_size, steps: the training run (read by the trainer).
    seed, precision, strategy, val_every: the rest of the run spec every trainer config has
        (base.TrainerConfig): the seed of sampling, initialisation and training noise; 'auto' | 'float32' |
        'mixed_bfloat16'; 'auto' | 'default' | 'mirrored' | 'multiworker'; steps between validations and
        checkpoints (resolve makes it at most steps). They do not change the networks.
    """

    KIND: ClassVar[str] = "synthesis"
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = SYNTHESIS_PRESETS
    PREDATED_DEFAULTS: ClassVar[dict[str, Any]] = PREDATED_DEFAULTS

    patch_size: int = 64
    n_classes: int = N_CLASSES
    latent_dim: int = 128
    embed_dim: int = 32
    g_width: int = 16
    g_padding: str = "reflect"
    generator_float32: bool = True
    d_width: int = 16
    d_pooling: str = "sum"
    d_spectral_norm: str = "projected"
    max_mult: int = 8
    minibatch_std: bool = True
    loss: str = "hinge"
    lr_g: float = 1e-4
    lr_d: float = 4e-4
    beta_1: float = 0.0
    beta_2: float = 0.99
    r1_gamma: float = 2e-4  # 0.05 / 16**2: the penalty 0.05 was with mean pooling, whose logits are 16x smaller
    r1_every: int = 16
    ema_decay: float = 0.999
    ada_target: float = 0.6
    ada_speed_images: float = 500_000.0
    ada_p_init: float = 0.0
    ada_p_max: float = 1.0
    aug_flips: bool = True
    aug_translation: float = 0.125
    aug_brightness: float = 0.05
    aug_contrast: float = 0.2
    aug_cutout: float = 0.25
    stem_mean: float = 0.5
    stem_std: float = 0.25
    stem_highpass_sigma: float = 1.5
    stem_highpass_gain: float = 40.0  # mini-MIAS training patches: high-pass std 0.0076 -> ~0.3
    batch_size: int = 32
    steps: int = 10_000
    seed: int = 0
    precision: str = "auto"
    strategy: str = "auto"  # 'auto' | 'default' | 'mirrored' | 'multiworker' (base.TrainerConfig)
    spacing_mm: float | None = None  # train at this pixel size, images resampled (base.TrainerConfig)
    val_every: int = 1_000

    def validate(self) -> None:
        size = self.patch_size
        if isinstance(size, bool) or not isinstance(size, int) or size < 8 or size % 4 or (size // 4) & (size // 4 - 1):
            self.fail("patch_size", "4 * 2**k >= 8 (e.g. 64 or 128)")
        super().validate()
        self.check_choice("g_padding", PADDINGS)
        self.check_choice("d_pooling", POOLINGS)
        self.check_choice("d_spectral_norm", SPECTRAL_NORMS)
        self.check_choice("loss", LOSSES)
        for name in ("n_classes", "latent_dim", "embed_dim", "g_width", "d_width", "max_mult", "r1_every"):
            self.check_at_least(name, 1)
        self.check_at_least("batch_size", 2)
        if not 0.0 <= self.ema_decay < 1.0:
            self.fail("ema_decay", "in [0, 1)")

    def adjusted(self) -> SynthesisConfig:
        # A run shorter than one validation interval still validates (and checkpoints) at its end.
        return dataclasses.replace(self, val_every=min(self.val_every, self.steps))


def resolve_synthesis_config(preset: str = "standard", **overrides: Any) -> SynthesisConfig:
    """Preset, then the overrides that are not None, then validation (MammoError on a bad value).

    ``resolve_synthesis_config(preset, patch_size=..., steps=..., **overrides)`` is what
    ``training.gan_trainer.resolve_gan_config`` returned, plus seed, precision and val_every (val_every: the
    trainer's VAL_EVERY for the preset, or the override, at most steps).
    """
    return SynthesisConfig.resolve(preset, **overrides)
