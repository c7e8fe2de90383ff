"""The synthesis GAN's two networks, built as functional Keras models from plain arguments.

- ``build_synthesis_generator``: z and a class id -> a [0, 1] float32 patch. The class enters twice: its
  embedding is concatenated to z, and every normalisation is class-conditional (a per-class gain and bias after
  a group norm, as BigGAN's conditional BatchNorm but independent of the batch). Upsampling is bilinear
  followed by a 3x3 convolution (no transposed convolutions, so no checkerboard; nearest neighbour left a
  faint blocky texture after a 5-minute run on mini-MIAS).
- ``build_synthesis_discriminator``: a fixed input stem (standardised grey plus a high-pass channel, which
  helped D learn on low-contrast mini-MIAS patches), spectral-normalised residual down blocks, a
  minibatch-standard-deviation channel, and a projection head: logit = w . h + embed(y) . h (Miyato & Koyama
  2018).
"""

from __future__ import annotations

import math
from typing import Any

import keras
import numpy as np
from keras import layers

from mammo_tf.config.synthesis import N_CLASSES, SPECTRAL_NORMS
from mammo_tf.models.spectral import SNConv2D, SNDense
from mammo_tf.models.synthesis_layers import ClassConditionalNorm, InputStem, MinibatchStd, ReflectPad

SN_WARMUP_ITERATIONS = 20  # power iterations on each initial kernel, so the first sigma is near exact


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
