"""The synthesis networks' custom layers (registered as ``mammo_tf>ClassName``, so saved models load).

- ``InputStem``: the discriminator's fixed input (standardised grey plus a high-pass channel).
- ``ReflectPad``: mirrored borders for the generator's 3x3 convolutions.
- ``ClassConditionalNorm``: group norm with a per-class gain and bias (the generator's conditioning).
- ``MinibatchStd``: the discriminator's minibatch-standard-deviation channel.
"""

from __future__ import annotations

import math
from typing import Any

import keras
import numpy as np
from keras import layers, ops

from mammo_tf.models.replicas import global_sum, replicas


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
    """Append one channel: the mean over features of the per-feature std across the batch (ProGAN).

    Lets D see a lack of variety among fakes, the usual remedy for partial mode collapse. [B, H, W, C] ->
    [B, H, W, C + 1]. Under a strategy the std is over the GLOBAL batch (all-reduced across replicas), so a
    batch split over devices gives D the input it gets on one device.
    """

    def call(self, x: Any) -> Any:
        xf = ops.cast(x, "float32")
        var = ops.var(xf, axis=0) if replicas() == 1 else _global_variance(xf)
        std = ops.sqrt(var + 1e-8)  # [H, W, C]
        stat = ops.mean(std)
        shape = ops.shape(x)
        channel = ops.ones((shape[0], shape[1], shape[2], 1), dtype="float32") * stat
        return ops.concatenate([x, ops.cast(channel, x.dtype)], axis=-1)

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return (*input_shape[:-1], input_shape[-1] + 1)


def _global_variance(x: Any) -> Any:
    """Per-feature variance over the rows of every replica: float32 [B, ...] -> [...] (0 for an empty batch)."""
    count = global_sum(ops.cast(ops.shape(x)[0], "float32"))
    mean = global_sum(ops.sum(x, axis=0)) / ops.maximum(count, 1.0)
    return global_sum(ops.sum(ops.square(x - mean), axis=0)) / ops.maximum(count, 1.0)
