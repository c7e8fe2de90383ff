"""Class-conditional synthesis of mammogram patches: the SynthesisGAN wrapper, sampling and building.

Classes are the patch classes of ``mammo_tf.data.schema``: NORMAL=0, BENIGN=1, MALIGNANT=2.

- ``SynthesisGAN``: a ``keras.Model`` overriding ``train_step``: hinge or non-saturating loss, lazy R1,
  DiffAugment on real and fake with an ADA controller, an EMA generator, balanced fake labels, per-example
  losses averaged over the global batch, a seeded truncation-aware ``sample``. Under a tf.distribute
  strategy a batch split over replicas trains as on one device (the noise, the fake labels, the ADA
  statistic and D's minibatch std are those of the global batch: models/replicas.py).
- ``build_synthesis_gan(config)``: the networks (models/synthesis_networks.py, their layers in
  models/synthesis_layers.py) that ``config`` describes, in a SynthesisGAN.

The config (``SynthesisConfig``), its presets and checks are in ``mammo_tf.config`` (config/synthesis.py).
"""

from __future__ import annotations

from typing import Any, ClassVar

import keras
import numpy as np
import tensorflow as tf

from mammo_tf.config.synthesis import SynthesisConfig
from mammo_tf.models.augment import AdaptiveAugment, AugmentPolicy
from mammo_tf.models.losses import D_LOSSES, G_LOSSES, r1_penalty
from mammo_tf.models.paired import PairedOptimizers
from mammo_tf.models.replicas import global_batch, own_rows, replicas
from mammo_tf.models.synthesis_networks import build_synthesis_discriminator, build_synthesis_generator

__all__ = [
    "SynthesisConfig",
    "SynthesisGAN",
    "augment_policy",
    "build_synthesis_discriminator",
    "build_synthesis_gan",
    "build_synthesis_generator",
    "latents",
]


def augment_policy(config: SynthesisConfig) -> AugmentPolicy:
    """The DiffAugment policy of a config's aug_* fields."""
    return AugmentPolicy(
        flips=config.aug_flips,
        translation=config.aug_translation,
        brightness=config.aug_brightness,
        contrast=config.aug_contrast,
        cutout=config.aug_cutout,
    )


@keras.saving.register_keras_serializable(package="mammo_tf")
class SynthesisGAN(PairedOptimizers, keras.Model):
    """Class-conditional few-shot GAN for mammogram patches.

    Args:
        generator: from ``build_synthesis_generator``; trained by ``train_step``.
        discriminator: from ``build_synthesis_discriminator``.
        ema_generator: the exponential moving average of the generator (a clone of it when None); it is what
            ``call`` and ``sample`` use.
        config: a SynthesisConfig (or its dict): losses, R1, EMA, ADA, augmentation.
        seed: seeds the training-time noise (latents, fake labels, augmentation); each step's draws are
            stateless functions of (seed, optimizer step, replica).

    ``train_step((images float32 [B, P, P, 1] in [0, 1], labels int [B]))`` runs one D step (with lazy R1 every
    ``r1_every`` D steps) and one G step, updates ADA's p and the EMA generator, and returns the trackers
    d_loss, g_loss, r1, ada_p, real_sign. Build it with ``build_synthesis_gan``; compile with
    ``compile()`` (Adam from the config) or explicit optimizers, and under a strategy call
    ``build_optimizers()`` inside ``strategy.scope()`` before ``fit``.

    Example:
        gan = build_synthesis_gan(resolve("synthesis", "quick"), seed=0)
        gan.compile(); gan.build_optimizers()
        gan.fit(patch_dataset(train, 16, balanced=True), steps_per_epoch=100, epochs=1, shuffle=False)
        images = gan.sample(64, class_ids=2, seed=1, truncation=1.5)   # float32 [64, P, P, 1] in [0, 1]
    """

    OPTIMIZERS: ClassVar[dict[str, str]] = {"g_optimizer": "generator", "d_optimizer": "discriminator"}
    SUBMODELS: ClassVar[tuple[str, ...]] = ("generator", "discriminator", "ema_generator")

    def __init__(
        self,
        generator: keras.Model,
        discriminator: keras.Model,
        ema_generator: keras.Model | None = None,
        config: SynthesisConfig | dict | None = None,
        seed: int = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if config is None:
            config = SynthesisConfig()
        self.config = config if isinstance(config, SynthesisConfig) else SynthesisConfig.from_dict(config)
        self.generator = generator
        self.discriminator = discriminator
        if ema_generator is None:
            ema_generator = keras.models.clone_model(generator)
            ema_generator.set_weights(generator.get_weights())
        ema_generator.trainable = False
        self.ema_generator = ema_generator
        self.seed = int(seed)
        cfg = self.config
        self.ada = AdaptiveAugment(
            target=cfg.ada_target,
            speed_images=cfg.ada_speed_images,
            p_init=cfg.ada_p_init,
            p_max=cfg.ada_p_max,
            policy=augment_policy(cfg),
            name="ada",
        )
        self.d_loss_tracker = keras.metrics.Mean(name="d_loss")
        self.g_loss_tracker = keras.metrics.Mean(name="g_loss")
        self.r1_tracker = keras.metrics.Mean(name="r1")
        self.ada_p_tracker = keras.metrics.Mean(name="ada_p")
        self.real_sign_tracker = keras.metrics.Mean(name="real_sign")
        self.g_optimizer: keras.optimizers.Optimizer | None = None
        self.d_optimizer: keras.optimizers.Optimizer | None = None
        self.built = True  # every variable exists already (the networks are built functional models)

    # ---- structure

    @property
    def patch_size(self) -> int:
        return int(self.generator.output_shape[1])

    @property
    def latent_dim(self) -> int:
        return int(self.generator.input_shape[0][-1])

    @property
    def metrics(self) -> list[keras.metrics.Metric]:
        return [self.d_loss_tracker, self.g_loss_tracker, self.r1_tracker, self.ada_p_tracker, self.real_sign_tracker]

    def call(self, inputs: Any, training: bool = False) -> Any:
        """(z float32 [B, latent_dim], labels int32 [B]) -> the EMA generator's float32 [B, P, P, 1] in [0, 1]."""
        z, labels = inputs
        return self.ema_generator([z, labels], training=False)

    # ---- compile / optimizers

    def compile(
        self,
        g_optimizer: keras.optimizers.Optimizer | None = None,
        d_optimizer: keras.optimizers.Optimizer | None = None,
        **kwargs: Any,
    ) -> None:
        """Set both optimizers (Adam from the config's lr_g / lr_d / betas when None)."""
        super().compile(optimizer=None, **kwargs)  # None: no unused default optimizer
        cfg = self.config
        self.g_optimizer = g_optimizer or keras.optimizers.Adam(cfg.lr_g, cfg.beta_1, cfg.beta_2, name="g_adam")
        self.d_optimizer = d_optimizer or keras.optimizers.Adam(cfg.lr_d, cfg.beta_1, cfg.beta_2, name="d_adam")

    # ---- serialisation

    def get_config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "trainable": self.trainable,
            "generator": keras.saving.serialize_keras_object(self.generator),
            "discriminator": keras.saving.serialize_keras_object(self.discriminator),
            "ema_generator": keras.saving.serialize_keras_object(self.ema_generator),
            "config": self.config.to_dict(),
            "seed": self.seed,
        }

    # ---- training

    def _step_seed(self) -> tf.Tensor:
        """A fresh int64 [2] stateless seed per step, the same on every replica: each replica draws the noise of
        the whole global batch and keeps its own rows (models/replicas.py), so replicas get different noise and
        a split batch the single-device noise (one SeedGenerator would give every replica the same noise).

        Derived from (seed, D optimizer step): the step counter is saved with the optimizer, so a resumed run
        draws exactly the noise an uninterrupted one would have (a SeedGenerator's state is not saved).
        """
        base = tf.random.experimental.stateless_fold_in(
            tf.constant([self.seed, 0x6D74], dtype=tf.int64), tf.cast(self.d_optimizer.iterations, tf.int64)
        )
        return tf.random.experimental.stateless_fold_in(base, tf.constant(0, tf.int64))  # (replica 0, as before)

    def _latents(self, batch: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
        """float32 [batch, latent_dim]: this replica's rows of the global batch's latents."""
        z = tf.random.stateless_normal([global_batch(batch), self.latent_dim], seed=seed, dtype=tf.float32)
        return own_rows(z, batch)

    def _fake_labels(self, batch: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
        """Balanced class ids: consecutive ids from a random offset, so each class gets B/n (+-1) fakes of the
        global batch (this replica's rows of them)."""
        n = self.config.n_classes
        offset = tf.random.stateless_uniform([], seed=seed, minval=0, maxval=n, dtype=tf.int32)
        return own_rows((tf.range(global_batch(batch), dtype=tf.int32) + offset) % n, batch)

    def _update_ema(self) -> None:
        """ema = decay * ema + (1 - decay) * w for every generator weight, on every replica's copy."""
        decay = self.config.ema_decay
        pairs = [(e.value, w.value) for e, w in zip(self.ema_generator.weights, self.generator.weights, strict=True)]

        def update(distribution: tf.distribute.Strategy, pairs: list) -> None:
            for ema_var, var in pairs:
                distribution.extended.update(
                    ema_var, lambda e, w: e.assign(decay * e + (1.0 - decay) * w), args=(var,), group=False
                )

        tf.__internal__.distribute.interim.maybe_merge_call(update, tf.distribute.get_strategy(), pairs)

    def _r1(self, do_r1: tf.Tensor, real: tf.Tensor, labels: tf.Tensor, like: tf.Tensor) -> tf.Tensor:
        """R1 per example [B] on the interval's steps, else zeros like `like` (one device: a tf.cond)."""
        cfg = self.config
        return tf.cond(
            do_r1,
            lambda: r1_penalty(self.discriminator, real, labels, cfg.r1_gamma, training=False),
            lambda: tf.zeros_like(like),
        )

    def _r1_without_cond(self, do_r1: tf.Tensor, real: tf.Tensor, labels: tf.Tensor, like: tf.Tensor) -> tf.Tensor:
        """``_r1`` under several replicas, where D all-reduces (its minibatch-std channel) and an all-reduce
        cannot run inside a tf.cond: R1 of every row on the interval's steps, of one row (nearly free; D's
        reflect padding refuses an empty batch) on the others, padded to [B] and multiplied by 0 there. The
        same numbers as ``_r1`` (x 1 and + 0 are exact)."""
        batch = tf.shape(real)[0]
        rows = tf.where(do_r1, batch, 1)
        r1 = r1_penalty(self.discriminator, real[:rows], labels[:rows], self.config.r1_gamma, training=False)
        r1 = tf.concat([r1, tf.zeros([batch - rows], like.dtype)], axis=0)
        return r1 * tf.cast(do_r1, like.dtype)

    # No AutoGraph: the step has no Python control flow on tensors (tf.cond is explicit), and converting it and
    # everything it calls cost seconds of tracing per fit.
    @tf.autograph.experimental.do_not_convert
    def train_step(self, data: Any) -> dict[str, tf.Tensor]:
        if self.g_optimizer is None or self.d_optimizer is None:
            raise RuntimeError("compile() the SynthesisGAN before training it")
        real, labels = data[0], data[1]
        cfg = self.config
        real = tf.cast(real, tf.float32)
        labels = tf.reshape(tf.cast(labels, tf.int32), [-1])
        batch = tf.shape(real)[0]
        total_batch = global_batch(batch)
        seed = self._step_seed()

        def sub(stream: int) -> tf.Tensor:
            return tf.random.experimental.stateless_fold_in(seed, stream)

        d_loss_fn, g_loss_fn = D_LOSSES[cfg.loss], G_LOSSES[cfg.loss]
        d_vars = self.discriminator.trainable_variables
        g_vars = self.generator.trainable_variables

        # Discriminator step (with lazy R1, scaled by its interval).
        fake_labels = self._fake_labels(batch, sub(1))
        fake = self.generator([self._latents(batch, sub(0)), fake_labels], training=True)
        do_r1 = tf.equal(self.d_optimizer.iterations % cfg.r1_every, 0) if cfg.r1_gamma > 0 else tf.constant(False)
        r1_of = self._r1 if replicas() == 1 else self._r1_without_cond
        with tf.GradientTape() as tape:
            real_aug = self.ada.augment(real, sub(2))
            fake_aug = self.ada.augment(tf.stop_gradient(fake), sub(3))
            # Only the first call runs the spectral-norm power iteration (training=True); the later calls of this
            # step see the sigma it found (D has no BN/dropout, so training changes nothing else).
            real_logits = self.discriminator([real_aug, labels], training=True)
            fake_logits = self.discriminator([fake_aug, fake_labels], training=False)
            adversarial = d_loss_fn(real_logits, fake_logits)  # [B]
            r1 = r1_of(do_r1, real_aug, labels, adversarial)
            per_example = adversarial + float(cfg.r1_every) * r1
            d_total = tf.nn.compute_average_loss(per_example, global_batch_size=total_batch)
        grads = tape.gradient(d_total, d_vars)
        self.d_optimizer.apply_gradients(zip(grads, d_vars, strict=True))
        real_sign = self.ada.update(real_logits)

        # Generator step: fresh latents and balanced labels, the same augmentation path as for D.
        g_labels = self._fake_labels(batch, sub(5))
        g_latents = self._latents(batch, sub(4))
        with tf.GradientTape() as tape:
            generated = self.generator([g_latents, g_labels], training=True)
            logits = self.discriminator([self.ada.augment(generated, sub(6)), g_labels], training=False)
            g_per_example = g_loss_fn(logits)
            g_total = tf.nn.compute_average_loss(g_per_example, global_batch_size=total_batch)
        grads = tape.gradient(g_total, g_vars)
        self.g_optimizer.apply_gradients(zip(grads, g_vars, strict=True))
        self._update_ema()

        # Trackers hold unscaled per-replica means; fit averages them over replicas.
        self.d_loss_tracker.update_state(tf.reduce_mean(adversarial))
        self.g_loss_tracker.update_state(tf.reduce_mean(g_per_example))
        self.r1_tracker.update_state(tf.reduce_mean(r1), sample_weight=tf.cast(do_r1, tf.float32))
        self.ada_p_tracker.update_state(self.ada.p)
        self.real_sign_tracker.update_state(real_sign)
        return {m.name: m.result() for m in self.metrics}

    # ---- sampling

    def sample(
        self,
        n: int,
        class_ids: int | Any,
        seed: int = 0,
        truncation: float | None = None,
        *,
        batch_size: int = 256,
        ema: bool = True,
    ) -> np.ndarray:
        """n patches, float32 [n, P, P, 1] in [0, 1], identical for the same weights, arguments and seed.

        class_ids: one class id for all, or int [n]. truncation: resample every |z_i| > truncation (the
        truncation trick; None keeps the plain normal). ema: use the EMA generator (default) or the raw one.
        """
        n = int(n)
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        labels = np.asarray(class_ids, dtype=np.int64)
        labels = np.full(n, int(labels), dtype=np.int32) if labels.ndim == 0 else labels.astype(np.int32)
        if labels.shape != (n,):
            raise ValueError(f"class_ids must be one id or {n} ids, got shape {labels.shape}")
        if labels.min() < 0 or labels.max() >= self.config.n_classes:
            raise ValueError(f"class ids must be in [0, {self.config.n_classes}), got {sorted(set(labels.tolist()))}")
        if truncation is not None and truncation <= 0:
            raise ValueError(f"truncation must be > 0, got {truncation}")
        z = latents(n, self.latent_dim, seed, truncation)
        net = self.ema_generator if ema else self.generator
        out = [
            np.asarray(net([z[i : i + batch_size], labels[i : i + batch_size]], training=False))
            for i in range(0, n, batch_size)
        ]
        return np.clip(np.concatenate(out).astype(np.float32), 0.0, 1.0)


def latents(n: int, latent_dim: int, seed: int, truncation: float | None = None, start: int = 0) -> np.ndarray:
    """float32 [n, latent_dim] standard normal; with truncation, entries with |z| > t are redrawn.

    Row i depends only on (seed, start + i), so one patch of a larger set can be regenerated alone (the
    manifest of ``synth`` records seed and index).
    """
    rows = []
    for index in range(int(start), int(start) + int(n)):
        rng = np.random.default_rng(np.random.SeedSequence([int(seed), index, 0x2A7E]))
        z = rng.standard_normal(latent_dim)
        if truncation is not None:
            for _ in range(1000):  # P(|z| > t) < 1 for t > 0, so this ends quickly
                outside = np.abs(z) > truncation
                if not outside.any():
                    break
                z[outside] = rng.standard_normal(int(outside.sum()))
        rows.append(z)
    return np.asarray(rows, dtype=np.float32).reshape(int(n), latent_dim)


def build_synthesis_gan(config: SynthesisConfig | None = None, seed: int | None = None) -> SynthesisGAN:
    """A SynthesisGAN whose networks follow ``config``; ``seed`` (None: the config's) fixes initial weights and
    training noise."""
    cfg = config or SynthesisConfig()
    seed = cfg.seed if seed is None else int(seed)
    previous = keras.mixed_precision.dtype_policy().name
    if cfg.generator_float32:
        keras.mixed_precision.set_dtype_policy("float32")
    try:
        generator = build_synthesis_generator(
            cfg.latent_dim, cfg.patch_size, cfg.n_classes, cfg.g_width,
            embed_dim=cfg.embed_dim, max_mult=cfg.max_mult, padding=cfg.g_padding, seed=seed,
        )  # fmt: skip
    finally:
        keras.mixed_precision.set_dtype_policy(previous)
    discriminator = build_synthesis_discriminator(
        cfg.patch_size, cfg.n_classes, cfg.d_width,
        max_mult=cfg.max_mult, minibatch_std=cfg.minibatch_std, pooling=cfg.d_pooling,
        spectral_norm=cfg.d_spectral_norm, seed=seed,
        stem={
            "mean": cfg.stem_mean, "std": cfg.stem_std,
            "highpass_sigma": cfg.stem_highpass_sigma, "highpass_gain": cfg.stem_highpass_gain,
        },
    )  # fmt: skip
    return SynthesisGAN(generator, discriminator, config=cfg, seed=seed, name="synthesis_gan")
