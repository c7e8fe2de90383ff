"""Class-conditional synthesis of mammogram patches: networks, presets and the SynthesisGAN wrapper.

Classes are the patch classes of ``mammo_tf.data.samplers``: NORMAL=0, BENIGN=1, MALIGNANT=2.

- ``build_synthesis_generator``: z and a class id -> a [0, 1] float32 patch. The class enters twice: its
  embedding is concatenated to z, and every normalisation is class-conditional (a per-class gain and bias after
  a group norm, as BigGAN's conditional BatchNorm but independent of the batch). Upsampling is bilinear
  followed by a 3x3 convolution (no transposed convolutions, so no checkerboard; nearest neighbour left a
  faint blocky texture after a 5-minute run on mini-MIAS).
- ``build_synthesis_discriminator``: a fixed input stem (standardised grey plus a high-pass channel, which
  helped D learn on low-contrast mini-MIAS patches), spectral-normalised residual down blocks, a
  minibatch-standard-deviation channel, and a projection head: logit = w . h + embed(y) . h (Miyato & Koyama
  2018).
- ``SynthesisGAN``: a ``keras.Model`` overriding ``train_step``: hinge or non-saturating loss, lazy R1,
  DiffAugment on real and fake with an ADA controller, an EMA generator, balanced fake labels, per-example
  losses averaged over the global batch (tf.distribute-ready), a seeded truncation-aware ``sample``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from keras import layers, ops

from mammo_tf.models.augment import AdaptiveAugment, AugmentPolicy
from mammo_tf.models.losses import D_LOSSES, G_LOSSES, r1_penalty
from mammo_tf.models.spectral import SNConv2D, SNDense

N_CLASSES = 3  # NORMAL, BENIGN, MALIGNANT (mammo_tf.data.samplers)
LOSSES = tuple(D_LOSSES)
PADDINGS = ("reflect", "zeros")
POOLINGS = ("mean", "sum")
SPECTRAL_NORMS = ("reparam", "projected")
SN_WARMUP_ITERATIONS = 20  # power iterations on each initial kernel, so the first sigma is near exact


# --------------------------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class SynthesisConfig:
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
    """

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

    def __post_init__(self) -> None:
        size = self.patch_size
        if not isinstance(size, int) or size < 8 or size % 4 or (size // 4) & (size // 4 - 1):
            raise ValueError(f"patch_size must be 4 * 2**k >= 8 (e.g. 64 or 128), got {size!r}")
        if self.g_padding not in PADDINGS:
            raise ValueError(f"g_padding must be one of {PADDINGS}, got {self.g_padding!r}")
        if self.d_pooling not in POOLINGS:
            raise ValueError(f"d_pooling must be one of {POOLINGS}, got {self.d_pooling!r}")
        if self.d_spectral_norm not in SPECTRAL_NORMS:
            raise ValueError(f"d_spectral_norm must be one of {SPECTRAL_NORMS}, got {self.d_spectral_norm!r}")
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {self.loss!r}")
        for name in ("n_classes", "latent_dim", "embed_dim", "g_width", "d_width", "max_mult", "r1_every"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        if self.batch_size < 2 or self.steps < 1:
            raise ValueError(f"batch_size must be >= 2 and steps >= 1, got {self.batch_size}, {self.steps}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay}")

    @property
    def augment_policy(self) -> AugmentPolicy:
        return AugmentPolicy(
            flips=self.aug_flips,
            translation=self.aug_translation,
            brightness=self.aug_brightness,
            contrast=self.aug_contrast,
            cutout=self.aug_cutout,
        )

    def replace(self, **changes: Any) -> SynthesisConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> SynthesisConfig:
        """The config a model was saved with; fields it predates take the value it was built with."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown SynthesisConfig fields: {unknown}")
        return cls(**{**PREDATED_DEFAULTS, **values})


# Fields added after models had been saved, with what those models were built with (their new defaults differ).
PREDATED_DEFAULTS: dict[str, Any] = {"d_pooling": "mean", "generator_float32": False}


PRESETS: dict[str, SynthesisConfig] = {
    # Tests: a few hundred parameters, milliseconds per step.
    "tiny": SynthesisConfig(
        patch_size=16, latent_dim=8, embed_dim=4, g_width=4, d_width=4, max_mult=2,
        batch_size=4, steps=2, r1_every=2, ema_decay=0.9, ada_speed_images=1_000.0,
    ),
    # Minutes on a 2-core CPU (about 0.3-0.4 s a step at batch 16): narrow networks, a faster ADA controller
    # and a shorter EMA for the short run.
    "quick": SynthesisConfig(
        latent_dim=64, embed_dim=16, g_width=8, d_width=8, batch_size=16, steps=1_000,
        ema_decay=0.995, ada_speed_images=100_000.0,
    ),
    # Hours on a CPU (about the size of a plain few-shot conditional GAN): the dataclass defaults.
    "standard": SynthesisConfig(),
}  # fmt: skip


def preset(name: str, **overrides: Any) -> SynthesisConfig:
    """A named preset ('tiny', 'quick', 'standard') with optional field overrides."""
    if name not in PRESETS:
        raise ValueError(f"unknown synthesis preset {name!r} (choose from {sorted(PRESETS)})")
    return PRESETS[name].replace(**overrides) if overrides else PRESETS[name]


# ---------------------------------------------------------------------------------------------------- layers


@keras.saving.register_keras_serializable(package="mammo_tf")
class InputStem(layers.Layer):
    """Fixed (non-trainable) discriminator stem: [B, H, W, 1] -> float32 [B, H, W, 2].

    Channel 0: (x - mean) / std, a fixed affine map (absolute brightness stays visible to D).
    Channel 1: gain * (x - GaussianBlur_sigma(x)), reflected borders: the fine detail (specks, edges) that a
    freshly initialised D barely sees on low-contrast tissue. Always computed in float32, even under
    mixed precision (bf16 would erase the small high-pass values).
    """

    def __init__(
        self, mean: float = 0.5, std: float = 0.25, highpass_sigma: float = 1.5, highpass_gain: float = 40.0, **kw
    ) -> None:
        kw["dtype"] = "float32"
        kw.setdefault("trainable", False)
        super().__init__(**kw)
        self.mean, self.std = float(mean), float(std)
        self.highpass_sigma, self.highpass_gain = float(highpass_sigma), float(highpass_gain)
        radius = max(1, int(math.ceil(3 * self.highpass_sigma)))
        taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / self.highpass_sigma) ** 2)
        taps /= taps.sum()
        self._radius = radius
        self._kernel = np.outer(taps, taps).astype(np.float32)[:, :, None, None]
        self.built = True

    def call(self, x: Any) -> Any:
        x = ops.cast(x, "float32")
        r = self._radius
        padded = ops.pad(x, [[0, 0], [r, r], [r, r], [0, 0]], mode="reflect")
        blurred = ops.conv(padded, ops.convert_to_tensor(self._kernel), strides=1, padding="valid")
        grey = (x - self.mean) / self.std
        return ops.concatenate([grey, (x - blurred) * self.highpass_gain], axis=-1)

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return (*input_shape[:-1], 2)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            mean=self.mean, std=self.std, highpass_sigma=self.highpass_sigma, highpass_gain=self.highpass_gain
        )
        return config


@keras.saving.register_keras_serializable(package="mammo_tf")
class ReflectPad(layers.Layer):
    """[B, H, W, C] -> [B, H + 2p, W + 2p, C], mirrored borders (edge pixel not repeated), any dtype."""

    def __init__(self, pad: int = 1, **kw) -> None:
        super().__init__(**kw)
        self.pad = int(pad)

    def call(self, x: Any) -> Any:
        p = self.pad
        return ops.pad(x, [[0, 0], [p, p], [p, p], [0, 0]], mode="reflect")

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        b, h, w, c = input_shape
        grow = lambda n: None if n is None else n + 2 * self.pad  # noqa: E731
        return (b, grow(h), grow(w), c)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "pad": self.pad}


@keras.saving.register_keras_serializable(package="mammo_tf")
class ClassConditionalNorm(layers.Layer):
    """Group norm without affine, then a per-class gain and bias: inputs [x [B, H, W, C], labels int [B]].

    gain starts at 1 and bias at 0 for every class. Statistics are per example (no batch coupling), computed
    in float32; the output has the layer's compute dtype.
    """

    def __init__(self, n_classes: int, groups: int = 8, epsilon: float = 1e-5, **kw) -> None:
        super().__init__(**kw)
        self.n_classes, self.groups, self.epsilon = int(n_classes), int(groups), float(epsilon)

    def build(self, input_shape: list) -> None:
        channels = int(input_shape[0][-1])
        self.groups = math.gcd(self.groups, channels)
        # autocast=False: the affine runs in float32 even under mixed precision.
        self.gain = self.add_weight(name="gain", shape=(self.n_classes, channels), initializer="ones", autocast=False)
        self.bias = self.add_weight(name="bias", shape=(self.n_classes, channels), initializer="zeros", autocast=False)

    def call(self, inputs: list) -> Any:
        x, labels = inputs
        shape = ops.shape(x)
        channels = x.shape[-1]
        xf = ops.cast(x, "float32")
        grouped = ops.reshape(xf, (shape[0], shape[1], shape[2], self.groups, channels // self.groups))
        mean, var = ops.moments(grouped, axes=[1, 2, 4], keepdims=True)
        normed = ops.reshape((grouped - mean) * ops.rsqrt(var + self.epsilon), shape)
        labels = ops.cast(ops.reshape(labels, (-1,)), "int32")
        gain = ops.take(ops.cast(self.gain.value, "float32"), labels, axis=0)[:, None, None, :]
        bias = ops.take(ops.cast(self.bias.value, "float32"), labels, axis=0)[:, None, None, :]
        return ops.cast(normed * gain + bias, self.compute_dtype)

    def compute_output_shape(self, input_shape: list) -> tuple:
        return tuple(input_shape[0])

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(n_classes=self.n_classes, groups=self.groups, epsilon=self.epsilon)
        return config


@keras.saving.register_keras_serializable(package="mammo_tf")
class MinibatchStd(layers.Layer):
    """Append one channel: the mean over features of the per-feature std across the (replica) batch (ProGAN).

    Lets D see a lack of variety among fakes, the usual remedy for partial mode collapse. [B, H, W, C] ->
    [B, H, W, C + 1].
    """

    def call(self, x: Any) -> Any:
        xf = ops.cast(x, "float32")
        std = ops.sqrt(ops.var(xf, axis=0) + 1e-8)  # [H, W, C]
        stat = ops.mean(std)
        shape = ops.shape(x)
        channel = ops.ones((shape[0], shape[1], shape[2], 1), dtype="float32") * stat
        return ops.concatenate([x, ops.cast(channel, x.dtype)], axis=-1)

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return (*input_shape[:-1], input_shape[-1] + 1)


# -------------------------------------------------------------------------------------------------- builders


class _Seeds:
    """Distinct integer seeds for the initializers of one network, so building is deterministic per seed."""

    def __init__(self, seed: int) -> None:
        self.base, self.count = int(seed) * 1_000_003, 0

    def __call__(self, kind: str = "glorot") -> keras.initializers.Initializer:
        self.count += 1
        seed = (self.base + self.count) % (2**31 - 1)
        if kind == "embedding":
            return keras.initializers.RandomNormal(stddev=1.0, seed=seed)
        return keras.initializers.GlorotUniform(seed=seed)


def _levels(patch_size: int, base: int = 4) -> int:
    ratio = patch_size // base
    if patch_size % base or ratio < 2 or ratio & (ratio - 1):
        raise ValueError(f"patch_size must be {base} * 2**k with k >= 1, got {patch_size}")
    return int(round(math.log2(ratio)))


def build_synthesis_generator(
    latent_dim: int = 128,
    patch_size: int = 64,
    n_classes: int = N_CLASSES,
    width: int = 32,
    *,
    embed_dim: int = 32,
    max_mult: int = 8,
    groups: int = 8,
    padding: str = "reflect",
    seed: int = 0,
    name: str = "synthesis_generator",
) -> keras.Model:
    """Conditional generator: inputs ``[z float32 [B, latent_dim], label int32 [B]]`` -> float32 [B, P, P, 1] in [0, 1].

    4x4 start, then log2(P/4) residual up blocks (conditional norm, LeakyReLU, bilinear x2, 3x3 conv, twice, plus
    a 1x1 skip); channels width * min(2**levels_left, max_mult). The last layer is a float32 sigmoid, so the
    output is float32 in [0, 1] under any dtype policy. ``padding``: 'reflect' or 'zeros' for the 3x3
    convolutions. ``seed`` fixes the initial weights.
    """
    levels = _levels(patch_size)
    init = _Seeds(seed)

    def conv3(x: Any, filters: int, layer_name: str) -> Any:
        if padding == "zeros":
            return layers.Conv2D(filters, 3, padding="same", kernel_initializer=init(), name=layer_name)(x)
        x = ReflectPad(1, name=f"{layer_name}_pad")(x)
        return layers.Conv2D(filters, 3, padding="valid", kernel_initializer=init(), name=layer_name)(x)

    chans = [width * min(2 ** (levels - i), max_mult) for i in range(levels + 1)]
    z = keras.Input((latent_dim,), name="z")
    label = keras.Input((), dtype="int32", name="label")
    emb = layers.Embedding(n_classes, embed_dim, embeddings_initializer=init("embedding"), name="class_embedding")
    emb = emb(label)
    h = layers.Concatenate(name="z_and_class")([z, emb])
    h = layers.Dense(4 * 4 * chans[0], kernel_initializer=init(), name="project")(h)
    h = layers.Reshape((4, 4, chans[0]), name="to_4x4")(h)
    for level in range(levels):
        out = chans[level + 1]
        tag = f"up{level + 1}"
        skip = layers.UpSampling2D(2, interpolation="bilinear", name=f"{tag}_skip_up")(h)
        skip = layers.Conv2D(out, 1, kernel_initializer=init(), name=f"{tag}_skip")(skip)
        y = ClassConditionalNorm(n_classes, groups, name=f"{tag}_norm1")([h, label])
        y = layers.LeakyReLU(0.2, name=f"{tag}_act1")(y)
        y = layers.UpSampling2D(2, interpolation="bilinear", name=f"{tag}_up")(y)
        y = conv3(y, out, f"{tag}_conv1")
        y = ClassConditionalNorm(n_classes, groups, name=f"{tag}_norm2")([y, label])
        y = layers.LeakyReLU(0.2, name=f"{tag}_act2")(y)
        y = conv3(y, out, f"{tag}_conv2")
        h = layers.Add(name=f"{tag}_add")([skip, y])
    h = ClassConditionalNorm(n_classes, groups, name="out_norm")([h, label])
    h = layers.LeakyReLU(0.2, name="out_act")(h)
    h = conv3(h, 1, "to_grey")
    image = layers.Activation("sigmoid", dtype="float32", name="image")(h)
    return keras.Model([z, label], image, name=name)


def _sn(layer: layers.Layer, name: str, **kw: Any) -> layers.Layer:
    return layers.SpectralNormalization(layer, power_iterations=1, name=name, **kw)


def build_synthesis_discriminator(
    patch_size: int = 64,
    n_classes: int = N_CLASSES,
    width: int = 32,
    *,
    max_mult: int = 8,
    minibatch_std: bool = True,
    pooling: str = "mean",
    spectral_norm: str = "projected",
    stem: dict[str, float] | None = None,
    seed: int = 0,
    name: str = "synthesis_discriminator",
) -> keras.Model:
    """Projection discriminator: ``[image float32 [B, P, P, 1], label int32 [B]]`` -> float32 logits [B, 1].

    InputStem (fixed) -> SN 3x3 conv -> log2(P/4) residual down blocks (LeakyReLU, SN conv, LeakyReLU, SN conv,
    average pool, plus an SN 1x1 pooled skip) down to 4x4 -> [minibatch std] -> SN 3x3 conv -> global average
    pool h [B, C] (``pooling`` 'mean', or 'sum' = mean x 16) -> SN Dense(1)(h) + embed(label) . h. The head is
    float32. ``spectral_norm``: 'reparam' (models/spectral.py) or 'projected' (keras.layers.SpectralNormalization).
    ``stem``: InputStem keyword arguments. ``seed`` fixes the initial weights and the spectral-norm vectors.
    """
    if spectral_norm not in SPECTRAL_NORMS:
        raise ValueError(f"spectral_norm must be one of {SPECTRAL_NORMS}, got {spectral_norm!r}")
    reparam = spectral_norm == "reparam"

    def sn_conv(filters: int, size: int, layer_name: str) -> layers.Layer:
        if reparam:
            return SNConv2D(filters, size, padding="same", kernel_initializer=init(), name=layer_name)
        return _sn(layers.Conv2D(filters, size, padding="same", kernel_initializer=init()), layer_name)

    levels = _levels(patch_size)
    init = _Seeds(seed + 7919)
    image = keras.Input((patch_size, patch_size, 1), name="image")
    label = keras.Input((), dtype="int32", name="label")
    h = InputStem(**(stem or {}), name="stem")(image)
    h = sn_conv(width, 3, "from_stem")(h)
    channels = width
    for level in range(levels):
        out = width * min(2 ** (level + 1), max_mult)
        tag = f"down{level + 1}"
        skip = sn_conv(out, 1, f"{tag}_skip")(h)
        skip = layers.AveragePooling2D(2, name=f"{tag}_skip_pool")(skip)
        y = layers.LeakyReLU(0.2, name=f"{tag}_act1")(h)
        y = sn_conv(channels, 3, f"{tag}_conv1")(y)
        y = layers.LeakyReLU(0.2, name=f"{tag}_act2")(y)
        y = sn_conv(out, 3, f"{tag}_conv2")(y)
        y = layers.AveragePooling2D(2, name=f"{tag}_pool")(y)
        h = layers.Add(name=f"{tag}_add")([skip, y])
        channels = out
    h = layers.LeakyReLU(0.2, name="final_act1")(h)
    if minibatch_std:
        h = MinibatchStd(name="minibatch_std")(h)
    h = sn_conv(channels, 3, "final_conv")(h)
    h = layers.LeakyReLU(0.2, name="final_act2")(h)
    h = layers.GlobalAveragePooling2D(name="pool")(h)
    if pooling == "sum":
        h = layers.Rescaling(16.0, name="sum_pool")(h)  # the map is 4x4
    features = layers.Activation("linear", dtype="float32", name="features")(h)
    # The wrapper too is float32: it casts its output to its (autocast) input dtype.
    if reparam:
        linear = SNDense(1, kernel_initializer=init(), dtype="float32", name="linear")
    else:
        linear = _sn(layers.Dense(1, kernel_initializer=init(), dtype="float32"), "linear", dtype="float32")
    unconditional = linear(features)
    class_vec = layers.Embedding(
        n_classes, channels, embeddings_initializer=init(), dtype="float32", name="projection_embedding"
    )(label)
    projection = layers.Dot(axes=1, dtype="float32", name="projection")([class_vec, features])
    logits = layers.Add(dtype="float32", name="logits")([unconditional, projection])
    model = keras.Model([image, label], logits, name=name)
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x5EED]))
    for layer in model.layers:  # Keras draws these from the global seed: make them depend on `seed` only
        if isinstance(layer, layers.SpectralNormalization):
            layer.vector_u.assign(rng.normal(0.0, 0.02, size=layer.vector_u.shape).astype(np.float32))
        elif isinstance(layer, SNConv2D | SNDense):
            layer.sn_u.assign(rng.normal(0.0, 1.0, size=layer.sn_u.shape).astype(np.float32))
            layer.power_iterate(SN_WARMUP_ITERATIONS)
    return model


# ------------------------------------------------------------------------------------------------- the model


@keras.saving.register_keras_serializable(package="mammo_tf")
class SynthesisGAN(keras.Model):
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
        gan = build_synthesis_gan(preset("quick"), seed=0)
        gan.compile(); gan.build_optimizers()
        gan.fit(patch_dataset(train, 16, balanced=True), steps_per_epoch=100, epochs=1, shuffle=False)
        images = gan.sample(64, class_ids=2, seed=1, truncation=1.5)   # float32 [64, P, P, 1] in [0, 1]
    """

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
            policy=cfg.augment_policy,
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

    def build_optimizers(self) -> None:
        """Create the optimizers' slot variables (inside ``strategy.scope()``, before ``fit``)."""
        if self.g_optimizer is None or self.d_optimizer is None:
            raise RuntimeError("compile() the SynthesisGAN before build_optimizers()")
        self.g_optimizer.build(self.generator.trainable_variables)
        self.d_optimizer.build(self.discriminator.trainable_variables)

    def get_compile_config(self) -> dict[str, Any] | None:
        if self.g_optimizer is None or self.d_optimizer is None:
            return None
        return {
            "g_optimizer": keras.saving.serialize_keras_object(self.g_optimizer),
            "d_optimizer": keras.saving.serialize_keras_object(self.d_optimizer),
        }

    def compile_from_config(self, config: dict[str, Any]) -> None:
        """Re-compile AND build the optimizers, so a .keras load restores their slot variables."""
        self.compile(
            g_optimizer=keras.saving.deserialize_keras_object(config["g_optimizer"]),
            d_optimizer=keras.saving.deserialize_keras_object(config["d_optimizer"]),
        )
        self.build_optimizers()

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

    @classmethod
    def from_config(cls, config: dict[str, Any], custom_objects: dict | None = None) -> SynthesisGAN:
        config = dict(config)
        nets = {
            key: keras.saving.deserialize_keras_object(config.pop(key), custom_objects=custom_objects)
            for key in ("generator", "discriminator", "ema_generator")
        }
        return cls(**nets, **config)

    # ---- training

    def _step_seed(self) -> tf.Tensor:
        """A fresh int64 [2] stateless seed per step, different on every replica
        (keras.random with one SeedGenerator gives every replica the same noise).

        Derived from (seed, D optimizer step): the step counter is saved with the optimizer, so a resumed run
        draws exactly the noise an uninterrupted one would have (a SeedGenerator's state is not saved).
        """
        base = tf.random.experimental.stateless_fold_in(
            tf.constant([self.seed, 0x6D74], dtype=tf.int64), tf.cast(self.d_optimizer.iterations, tf.int64)
        )
        context = tf.distribute.get_replica_context()
        replica = context.replica_id_in_sync_group if context is not None else 0
        return tf.random.experimental.stateless_fold_in(base, tf.cast(replica, tf.int64))

    def _latents(self, batch: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
        return tf.random.stateless_normal([batch, self.latent_dim], seed=seed, dtype=tf.float32)

    def _fake_labels(self, batch: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
        """Balanced class ids: consecutive ids from a random offset, so each class gets B/n (+-1) fakes."""
        n = self.config.n_classes
        offset = tf.random.stateless_uniform([], seed=seed, minval=0, maxval=n, dtype=tf.int32)
        return (tf.range(batch, dtype=tf.int32) + offset) % n

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
        global_batch = batch * tf.distribute.get_strategy().num_replicas_in_sync
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
        with tf.GradientTape() as tape:
            real_aug = self.ada.augment(real, sub(2))
            fake_aug = self.ada.augment(tf.stop_gradient(fake), sub(3))
            # Only the first call runs the spectral-norm power iteration (training=True); the later calls of this
            # step see the sigma it found (D has no BN/dropout, so training changes nothing else).
            real_logits = self.discriminator([real_aug, labels], training=True)
            fake_logits = self.discriminator([fake_aug, fake_labels], training=False)
            adversarial = d_loss_fn(real_logits, fake_logits)  # [B]
            r1 = tf.cond(
                do_r1,
                lambda: r1_penalty(self.discriminator, real_aug, labels, cfg.r1_gamma, training=False),
                lambda: tf.zeros_like(adversarial),
            )
            per_example = adversarial + float(cfg.r1_every) * r1
            d_total = tf.nn.compute_average_loss(per_example, global_batch_size=global_batch)
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
            g_total = tf.nn.compute_average_loss(g_per_example, global_batch_size=global_batch)
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


def build_synthesis_gan(config: SynthesisConfig | None = None, seed: int = 0) -> SynthesisGAN:
    """A SynthesisGAN whose networks follow ``config``; ``seed`` fixes initial weights and training noise."""
    cfg = config or SynthesisConfig()
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
