"""Spectral normalisation by reparametrisation (Miyato et al. 2018): the layer computes with W / sigma(W).

Why not ``keras.layers.SpectralNormalization``: on every training call it writes W / sigma into the kernel
variable, so no gradient flows through sigma (tensorflow/addons#1244) and the kernel's scale is reset to 1 at
every step. Adam's steps have a fixed size per weight, so a kernel pinned at norm 1 keeps the same relative
step for the whole run; in Miyato's form the raw kernel's norm grows with training and the effective step
shrinks. The synthesis discriminator uses these layers with ``d_spectral_norm='reparam'``, an option: on MIAS
D stayed engaged with them, but the patches were not better where it matters (docs/results-synthesis.md).

sigma is ||W u|| for W reshaped to [fan_in, units] and the stored unit vector u [1, units]: a training call
first moves u by one power iteration (and stores it), any other call uses the stored u, so every call of a
step after the first sees the same sigma. u is a constant for the gradient, as in the paper.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
from keras import layers, ops


def _normalise(x: Any) -> Any:
    return x / (ops.sqrt(ops.sum(ops.square(x))) + 1e-12)


class _Spectral:
    """Mixed in before Conv2D or Dense: the stored vector u, sigma, and the call with the normalised kernel.

    A subclass says only how its kernel meets the input (``_apply``); bias and activation are applied here.
    """

    def __init__(self, *args: Any, power_iterations: int = 1, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.power_iterations = int(power_iterations)

    def build(self, input_shape: tuple) -> None:
        super().build(input_shape)
        self.sn_u = self.add_weight(
            name="sn_u", shape=(1, self.kernel.shape[-1]), initializer=keras.initializers.RandomNormal(0.0, 1.0),
            trainable=False, dtype="float32",
        )  # fmt: skip

    def _apply(self, inputs: Any, kernel: Any) -> Any:
        raise NotImplementedError

    def call(self, inputs: Any, training: bool = False) -> Any:
        outputs = self._apply(inputs, self._normalised_kernel(training))
        if self.use_bias:
            outputs = ops.add(outputs, self.bias)  # channels_last: broadcasts over the last axis
        return outputs if self.activation is None else self.activation(outputs)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "power_iterations": self.power_iterations}

    # Conv2D and Dense save only kernel and bias (their quantisation-aware versions); the generic Layer
    # versions save every variable, u included.
    def save_own_variables(self, store: Any) -> None:
        layers.Layer.save_own_variables(self, store)

    def load_own_variables(self, store: Any) -> None:
        layers.Layer.load_own_variables(self, store)

    def _normalised_kernel(self, training: bool) -> Any:
        kernel = ops.cast(self.kernel, "float32")
        w = ops.reshape(kernel, (-1, kernel.shape[-1]))  # [fan_in, units]
        u = _normalise(ops.convert_to_tensor(self.sn_u))
        if training:
            for _ in range(self.power_iterations):
                v = _normalise(ops.matmul(u, ops.transpose(w)))  # [1, fan_in]
                u = _normalise(ops.matmul(v, w))  # [1, units]
            u = ops.stop_gradient(u)
            self.sn_u.assign(u)
        sigma = ops.sqrt(ops.sum(ops.square(ops.matmul(w, ops.transpose(u)))))
        return ops.cast(kernel / sigma, self.compute_dtype)

    def _numpy_w_u(self) -> tuple[np.ndarray, np.ndarray]:
        w = ops.convert_to_numpy(self.kernel).astype(np.float64)
        u = ops.convert_to_numpy(self.sn_u).astype(np.float64)
        return w.reshape(-1, w.shape[-1]), u / (np.linalg.norm(u) + 1e-12)

    def power_iterate(self, n: int) -> None:
        """n power iterations on the stored u in NumPy (at build time, so the first sigma is close to exact)."""
        w, u = self._numpy_w_u()
        for _ in range(n):
            v = u @ w.T
            u = v @ w
            u /= np.linalg.norm(u) + 1e-12
        self.sn_u.assign(u.astype(np.float32))

    def sigma(self) -> float:
        """The sigma the next non-training call divides by."""
        w, u = self._numpy_w_u()
        return float(np.linalg.norm(w @ u.T))


@keras.saving.register_keras_serializable(package="mammo_tf")
class SNConv2D(_Spectral, layers.Conv2D):
    """A Conv2D that convolves with kernel / sigma(kernel); same arguments, plus ``power_iterations``."""

    def _apply(self, inputs: Any, kernel: Any) -> Any:
        return self.convolution_op(inputs, kernel)


@keras.saving.register_keras_serializable(package="mammo_tf")
class SNDense(_Spectral, layers.Dense):
    """A Dense that multiplies by kernel / sigma(kernel); same arguments, plus ``power_iterations``."""

    def _apply(self, inputs: Any, kernel: Any) -> Any:
        return ops.matmul(inputs, kernel)
