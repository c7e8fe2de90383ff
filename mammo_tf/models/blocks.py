"""Building blocks shared by the networks: residual blocks, ICNR sub-pixel upsampling, float32 interpolation.

Every custom object is registered for `.keras` saving (package "mammo_tf").
"""

from __future__ import annotations

import keras
import numpy as np
from keras import layers, ops


@keras.saving.register_keras_serializable(package="mammo_tf")
class ICNR(keras.initializers.Initializer):
    """Sub-pixel kernel initialiser against checkerboard artefacts (Aitken et al. 2017).

    The kernel [k, k, C_in, C_out * s^2] repeats one base kernel for all s^2 sub-pixel positions, so that
    conv + depth_to_space starts as nearest-neighbour upsampling of one convolution. depth_to_space reads
    channel (i * s + j) * C_out + c for offset (i, j): tiling the base s^2 times along the last axis matches.
    """

    def __init__(self, scale: int, seed: int | None = None) -> None:
        self.scale = int(scale)
        self.seed = seed

    def __call__(self, shape, dtype=None):
        *spatial, c_in, c_out = shape
        sub = self.scale**2
        if c_out % sub:
            raise ValueError(f"ICNR: {c_out} output channels is not a multiple of scale^2 = {sub}")
        base = keras.initializers.HeNormal(seed=self.seed)((*spatial, c_in, c_out // sub), dtype=dtype)
        return ops.tile(base, [1] * len(spatial) + [1, sub])

    def get_config(self) -> dict:
        return {"scale": self.scale, "seed": self.seed}


def residual_block(x, filters: int, scale: float, name: str, activation: str = "relu"):
    """conv3x3 - activation - conv3x3, scaled and added to the input (EDSR/ESRGAN style: no BatchNorm).

    activation: 'relu' (EDSR) or 'leaky_relu' (slope 0.2). Leaky ReLU was tried when ReLU channels of the
    deeper blocks stopped firing in runs with film-label crops; the cause was the loss, not the activation
    (SRGAN's raw_weight, docs/results-sr.md, "What was tried"), so ReLU stays the default.
    """
    y = layers.Conv2D(filters, 3, padding="same", activation=activation, name=f"{name}_conv1")(x)
    y = layers.Conv2D(filters, 3, padding="same", name=f"{name}_conv2")(y)
    if scale != 1.0:
        y = layers.Rescaling(scale, name=f"{name}_scale")(y)
    return layers.Add(name=f"{name}_add")([x, y])


def subpixel_upsample(x, filters: int, scale: int, name: str):
    """x2 sub-pixel stages (ICNR-initialised conv + depth_to_space); scale 2 or 4.

    No activation after the shuffle (as in EDSR): with a ReLU there, every channel of the upsampled
    features died within 4,000 steps of L1 training on MIAS (0.1 % of them active), which cut the
    residual path and brought the gain over bicubic from +0.57 dB back to +0.03 dB.
    """
    if scale not in (2, 4):
        raise ValueError(f"scale must be 2 or 4, got {scale}")
    for stage in range(int(np.log2(scale))):
        x = layers.Conv2D(filters * 4, 3, padding="same", kernel_initializer=ICNR(2), name=f"{name}{stage}_conv")(x)
        x = PixelShuffle(2, name=f"{name}{stage}_shuffle")(x)
    return x


@keras.saving.register_keras_serializable(package="mammo_tf")
class PixelShuffle(layers.Layer):
    """depth_to_space as a registered layer: [B, h, w, C * r^2] -> [B, h * r, w * r, C]."""

    def __init__(self, factor: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.factor = int(factor)

    def call(self, x):
        return ops.depth_to_space(x, self.factor)

    def compute_output_shape(self, shape):
        b, h, w, c = shape
        r = self.factor
        return (b, None if h is None else h * r, None if w is None else w * r, c // (r * r))

    def get_config(self) -> dict:
        return {**super().get_config(), "factor": self.factor}


@keras.saving.register_keras_serializable(package="mammo_tf")
class Interpolate(layers.Layer):
    """Upsample by an integer factor with a classic kernel, always in float32 (the global skip).

    [B, h, w, C] float -> [B, h * s, w * s, C] float32. method: 'bicubic' (Keys, a = -0.5), 'bilinear',
    'nearest'. Any input size.
    """

    def __init__(self, scale: int, method: str = "bicubic", **kwargs) -> None:
        kwargs["dtype"] = "float32"
        super().__init__(**kwargs)
        self.scale, self.method = int(scale), method

    def call(self, x):
        import tensorflow as tf

        x = ops.cast(x, "float32")
        size = tf.shape(x)[1:3] * self.scale
        return tf.image.resize(x, size, method=self.method)

    def compute_output_shape(self, shape):
        b, h, w, c = shape
        s = self.scale
        return (b, None if h is None else h * s, None if w is None else w * s, c)

    def get_config(self) -> dict:
        config = super().get_config()
        config.pop("dtype", None)
        return {**config, "scale": self.scale, "method": self.method}
