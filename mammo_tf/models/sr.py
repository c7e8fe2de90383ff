"""SR generator and discriminator builders, and the SRGAN wrapper that overrides train_step.

Generator (any input size): conv -> residual blocks at LR resolution (no BatchNorm) -> conv + skip ->
ICNR sub-pixel upsampling -> conv to one channel (zero-initialised), added in float32 to a bicubic
interpolation of the input, then the consistency projection (models/consistency.py). The untrained
generator therefore equals the projected bicubic interpolation.

    inputs:  lr float32 [B, h, w, 1] in [0, 1]; quant_step float32 [B] (0 = float input, 1/(2^bits - 1) for files)
    output:  sr float32 [B, h*s, w*s, 1] in [0, 1]

Discriminator: a spectral-normalised patch discriminator on HR images that also returns its intermediate
features (for the feature-matching loss): [logits float32 [B, H/4, W/4, 1], f1, f2, f3].
"""

from __future__ import annotations

from typing import ClassVar

import keras
import tensorflow as tf
from keras import layers

from mammo_tf.config import SRConfig
from mammo_tf.models.blocks import Interpolate, residual_block, subpixel_upsample
from mammo_tf.models.consistency import ConsistencyProjection
from mammo_tf.models.losses import relativistic_average_d, relativistic_average_g, speck_excess
from mammo_tf.models.paired import PairedOptimizers

GENERATOR_PREFIX = "mammo_sr_generator"


def build_sr_generator(config: SRConfig, name: str | None = None) -> keras.Model:
    """The SR generator for `config` (scale, size preset, consistency on/off); see the module docstring."""
    lr = keras.Input((None, None, 1), name="lr")
    quant_step = keras.Input((), name="quant_step")
    f = config.filters
    head = layers.Conv2D(f, 3, padding="same", name="head")(lr)
    x = head
    for i in range(config.blocks):
        x = residual_block(x, f, config.res_scale, name=f"block{i}", activation=config.activation)
    x = layers.Conv2D(f, 3, padding="same", name="body_end")(x)
    x = layers.Add(name="body_skip")([x, head])
    x = subpixel_upsample(x, f, config.scale, name="up")
    residual = layers.Conv2D(1, 3, padding="same", kernel_initializer="zeros", dtype="float32", name="tail")(x)
    base = Interpolate(config.scale, "bicubic", name="bicubic")(lr)
    sr = layers.Add(dtype="float32", name="global_skip")([base, residual])
    sr = ConsistencyProjection(config.scale, enabled=config.consistency, name="consistency")([sr, lr, quant_step])
    return keras.Model([lr, quant_step], sr, name=name or f"{GENERATOR_PREFIX}_x{config.scale}")


def generator_scale(model: keras.Model) -> int | None:
    """The scale of an SR generator built here, or None if `model` is not one."""
    if not model.name.startswith(GENERATOR_PREFIX):
        return None
    try:
        return int(model.get_layer("consistency").scale)
    except ValueError:
        return None


def build_sr_discriminator(config: SRConfig) -> keras.Model:
    """Spectral-normalised patch discriminator with feature outputs (see the module docstring)."""
    hr = keras.Input((None, None, 1), name="hr")
    f = config.d_filters
    sn = lambda layer: layers.SpectralNormalization(layer, power_iterations=1)  # noqa: E731
    x = sn(layers.Conv2D(f, 3, padding="same", name="d_conv0"))(hr)
    f1 = layers.LeakyReLU(0.2)(x)
    x = sn(layers.Conv2D(2 * f, 4, strides=2, padding="same", name="d_conv1"))(f1)
    f2 = layers.LeakyReLU(0.2)(x)
    x = sn(layers.Conv2D(4 * f, 4, strides=2, padding="same", name="d_conv2"))(f2)
    f3 = layers.LeakyReLU(0.2)(x)
    x = sn(layers.Conv2D(4 * f, 3, padding="same", name="d_conv3"))(f3)
    x = layers.LeakyReLU(0.2)(x)
    logits = layers.Conv2D(1, 3, padding="same", dtype="float32", name="d_logits")(x)
    return keras.Model(hr, [logits, f1, f2, f3], name="mammo_sr_discriminator")


def _per_example_mean(x):
    x = tf.cast(x, tf.float32)
    return tf.reduce_mean(tf.reshape(x, [tf.shape(x)[0], -1]), axis=1)


@keras.saving.register_keras_serializable(package="mammo_tf")
class SRGAN(PairedOptimizers, keras.Model):
    """Generator + discriminator + EMA generator, trained in two phases.

    phase "pretrain": pixel loss only (L1, + ssim_weight x (1 - SSIM)) on the projected output, + raw_weight x
    L1 on the output before the projection; phase "gan": relativistic-average adversarial loss x adv_weight +
    feature matching on D's features x fm_weight + both pixel losses. The raw term matters where the
    projection clips (film background at 0, saturated labels at 1): there the projected output passes no
    gradient, so without it the network's raw output drifts far out of range and, its convolutions being
    smooth, spills ringing into the tissue next to it. speck_weight > 0 adds, in both phases, speck_weight x
    the speck-like brightness SR adds over HR (losses.speck_excess: white top-hat excess). Losses are
    per-example and averaged over the global batch (strategy-ready). ``call`` runs the EMA generator.
    Data: ((lr [B,h,w,1], quant_step [B]), hr [B,H,W,1]), float32.
    """

    OPTIMIZERS: ClassVar[dict[str, str]] = {"g_optimizer": "generator", "d_optimizer": "discriminator"}
    SUBMODELS: ClassVar[tuple[str, ...]] = ("generator", "discriminator", "ema_generator")

    def __init__(
        self,
        generator: keras.Model,
        discriminator: keras.Model,
        ema_generator: keras.Model,
        phase: str = "pretrain",
        pixel_weight: float = 1.0,
        ssim_weight: float = 0.0,
        raw_weight: float = 0.0,  # 0: checkpoints saved before the term existed resume as they trained
        adv_weight: float = 2e-4,
        fm_weight: float = 2e-3,
        ema_decay: float = 0.999,
        speck_weight: float = 0.0,  # 0: no speck term and no "speck" tracker (checkpoints keep their layout)
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.generator, self.discriminator, self.ema_generator = generator, discriminator, ema_generator
        self.phase = phase
        self.pixel_weight, self.ssim_weight = float(pixel_weight), float(ssim_weight)
        self.raw_weight = float(raw_weight)
        self.adv_weight, self.fm_weight, self.ema_decay = float(adv_weight), float(fm_weight), float(ema_decay)
        self.speck_weight = float(speck_weight)
        names = ("g_loss", "pixel", "raw", "d_loss", "adv", "fm", *(("speck",) if self.speck_weight else ()))
        self.trackers = {n: keras.metrics.Mean(name=n) for n in names}

    @classmethod
    def from_sr_config(cls, config: SRConfig) -> SRGAN:
        generator = build_sr_generator(config)
        ema = build_sr_generator(config, name=f"{generator.name}_ema")
        ema.set_weights(generator.get_weights())
        return cls(
            generator,
            build_sr_discriminator(config),
            ema,
            pixel_weight=config.pixel_weight,
            ssim_weight=config.ssim_weight,
            raw_weight=config.raw_weight,
            adv_weight=config.adv_weight,
            fm_weight=config.fm_weight,
            ema_decay=config.ema_decay,
            speck_weight=config.speck_weight,
        )

    def call(self, inputs, training: bool = False):
        return self.ema_generator(inputs, training=False)

    def compile(self, g_optimizer, d_optimizer, **kwargs) -> None:
        super().compile(optimizer=None, **kwargs)
        self.g_optimizer, self.d_optimizer = g_optimizer, d_optimizer

    @property
    def metrics(self):
        return list(self.trackers.values())

    def _pixel_loss(self, sr, hr):
        per_example = _per_example_mean(tf.abs(sr - hr))
        if self.ssim_weight:
            ssim = tf.image.ssim(sr, hr, max_val=1.0, filter_size=7)
            per_example = per_example + self.ssim_weight * (1.0 - ssim)
        return per_example

    def _generate(self, lr, quant_step):
        """(projected, raw) float32 [B, H, W, 1]: the generator in training mode, then its projection."""
        raw = self.generator([lr, quant_step], training=True)  # the projection layer passes x through
        return self.generator.get_layer("consistency").project_output(raw, lr, quant_step), raw

    def _update_ema(self) -> None:
        step = tf.cast(self.g_optimizer.iterations, tf.float32)
        decay = tf.minimum(self.ema_decay, (1.0 + step) / (10.0 + step))  # warm-up: early EMA follows closely
        for ema, live in zip(self.ema_generator.weights, self.generator.weights, strict=True):
            ema.assign(decay * ema + (1.0 - decay) * tf.cast(live, ema.dtype))

    def train_step(self, data):
        (lr, quant_step), hr = data
        average = tf.nn.compute_average_loss  # over the global batch: gradients are summed over replicas
        logs = {}
        if self.phase == "gan":
            sr, _ = self._generate(lr, quant_step)
            with tf.GradientTape() as tape:
                real = self.discriminator(hr, training=True)
                fake = self.discriminator(tf.stop_gradient(sr), training=True)
                d_per = relativistic_average_d(real[0], fake[0])
                d_loss = average(d_per)
            grads = tape.gradient(d_loss, self.discriminator.trainable_variables)
            self.d_optimizer.apply_gradients(zip(grads, self.discriminator.trainable_variables, strict=True))
            self.trackers["d_loss"].update_state(tf.reduce_mean(d_per))
        with tf.GradientTape() as tape:
            sr, raw = self._generate(lr, quant_step)
            pixel = self._pixel_loss(sr, hr)
            raw_pixel = _per_example_mean(tf.abs(raw - hr))
            per_example = self.pixel_weight * pixel + self.raw_weight * raw_pixel
            if self.speck_weight:
                speck = speck_excess(sr, hr)
                per_example = per_example + self.speck_weight * speck
            if self.phase == "gan":
                real = self.discriminator(hr, training=False)
                fake = self.discriminator(sr, training=False)
                adv = relativistic_average_g(real[0], fake[0])
                fm = tf.add_n([_per_example_mean(tf.abs(r - f)) for r, f in zip(real[1:], fake[1:], strict=True)])
                fm = fm / float(len(real) - 1)
                per_example = per_example + self.adv_weight * adv + self.fm_weight * fm
            g_loss = average(per_example)
        grads = tape.gradient(g_loss, self.generator.trainable_variables)
        self.g_optimizer.apply_gradients(zip(grads, self.generator.trainable_variables, strict=True))
        self._update_ema()
        self.trackers["g_loss"].update_state(tf.reduce_mean(per_example))
        self.trackers["pixel"].update_state(tf.reduce_mean(pixel))
        self.trackers["raw"].update_state(tf.reduce_mean(raw_pixel))
        names = ["g_loss", "pixel", "raw"]
        if self.speck_weight:
            self.trackers["speck"].update_state(tf.reduce_mean(speck))
            names.append("speck")
        if self.phase == "gan":
            self.trackers["adv"].update_state(tf.reduce_mean(adv))
            self.trackers["fm"].update_state(tf.reduce_mean(fm))
            names += ["d_loss", "adv", "fm"]
        for name in names:
            logs[name] = self.trackers[name].result()
        return logs

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            generator=keras.saving.serialize_keras_object(self.generator),
            discriminator=keras.saving.serialize_keras_object(self.discriminator),
            ema_generator=keras.saving.serialize_keras_object(self.ema_generator),
            phase=self.phase,
            pixel_weight=self.pixel_weight,
            ssim_weight=self.ssim_weight,
            raw_weight=self.raw_weight,
            adv_weight=self.adv_weight,
            fm_weight=self.fm_weight,
            ema_decay=self.ema_decay,
            speck_weight=self.speck_weight,
        )
        return config


@keras.saving.register_keras_serializable(package="mammo_tf")
class TwoPhaseSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """Generator learning rate: cosine from `pretrain_lr` to ~0 over `pretrain_steps`, then `gan_lr` constant.

    Keyed on the optimizer's own step count, so a resumed run continues the same schedule.
    """

    def __init__(self, pretrain_lr: float, pretrain_steps: int, gan_lr: float) -> None:
        self.pretrain_lr, self.pretrain_steps, self.gan_lr = float(pretrain_lr), int(pretrain_steps), float(gan_lr)

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        total = float(max(self.pretrain_steps, 1))
        cosine = self.pretrain_lr * (0.01 + 0.99 * 0.5 * (1.0 + tf.cos(3.14159265 * tf.minimum(step / total, 1.0))))
        return tf.where(step < total, cosine, self.gan_lr)

    def get_config(self) -> dict:
        return {"pretrain_lr": self.pretrain_lr, "pretrain_steps": self.pretrain_steps, "gan_lr": self.gan_lr}


def compiled_srgan(config: SRConfig) -> SRGAN:
    """A new SRGAN with its two Adam optimizers built (call inside the strategy scope)."""
    model = SRGAN.from_sr_config(config)
    g_lr = TwoPhaseSchedule(config.lr_pretrain, config.pretrain_steps, config.lr_gan_g)
    model.compile(
        g_optimizer=keras.optimizers.Adam(g_lr, beta_1=0.9, beta_2=0.999),
        d_optimizer=keras.optimizers.Adam(config.lr_gan_d, beta_1=0.9, beta_2=0.99),
    )
    model.build_optimizers()
    model([tf.zeros([1, 8, 8, 1]), tf.zeros([1])])  # builds the wrapper, so saving never warns "not built"
    return model
