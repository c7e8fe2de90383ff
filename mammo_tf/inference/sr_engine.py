"""How an SR generator runs at inference: the Keras graph as trained, or float32 XLA with its linear tail folded.

Engines (``--engine`` of ``upscale``):

- ``keras``: the generator in its own precision through one ``tf.function`` (graph mode). On a CPU with native
  bfloat16 (``avx512_bf16``/AMX, through oneDNN) or a GPU this is the fast path for a bf16 model.
- ``xla``: a float32 copy of the generator compiled with XLA, in three parts: the trunk (every layer up to the
  last upsampling convolution), the folded tail, and the consistency projection; the bicubic skip runs between
  them outside XLA (XLA has no bicubic resize kernel). On a CPU without native bfloat16, where the bf16 model is
  emulated, this measured 2.4-2.9x faster than ``keras`` (BENCHMARKS.md).
- ``auto``: ``keras`` where the model computes in bfloat16 and the machine has it natively, else ``xla``.

The folded tail: the last upsampling conv (3x3, 4C channels, no activation), the pixel shuffle and the output
conv (3x3, 1 channel) are all linear, so together they are one 5x5 convolution at the lower resolution with
4 outputs, then a shuffle of one channel. That removes the slowest layer (a 1-channel conv at full resolution)
and ~20 % of the FLOPs. Zero padding differs only on the one-pixel ring of the image edge, which is computed
the exact way on thin strips, so outputs equal the unfolded float32 graph to float round-off (~1e-7).
XLA compiles once per tile shape; tiles of one image share a shape.
"""

from __future__ import annotations

import numpy as np

ENGINES = ("auto", "keras", "xla")


def computes_in_bfloat16(generator) -> bool:
    """True when any layer of the generator computes in bfloat16 (a mixed_bfloat16 model)."""
    return any(getattr(layer.dtype_policy, "compute_dtype", "float32") == "bfloat16" for layer in generator.layers)


def check_engine(engine: str) -> None:
    """MammoError unless `engine` is one of ENGINES (checked before a model is loaded)."""
    from mammo_tf.errors import MammoError

    if engine not in ENGINES:
        raise MammoError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")


def resolve_engine(requested: str, generator, *, native_bf16: bool | None = None) -> str:
    """'keras' or 'xla' for a requested 'auto' | 'keras' | 'xla' (see the module docstring)."""
    check_engine(requested)
    if requested != "auto":
        return requested
    if native_bf16 is None:
        from mammo_tf.machine import native_bfloat16

        native_bf16 = native_bfloat16()
    return "keras" if native_bf16 and computes_in_bfloat16(generator) else "xla"


def _is_plain_conv(layer, kernel: int) -> bool:
    import keras

    return (
        isinstance(layer, keras.layers.Conv2D)
        and layer.kernel_size == (kernel, kernel)
        and layer.strides == (1, 1)
        and layer.dilation_rate == (1, 1)
        and layer.padding == "same"
        and layer.activation is keras.activations.linear
        and layer.use_bias
    )


def fold_tail(up_conv, tail) -> dict[str, np.ndarray] | None:
    """Weights of the folded tail (module docstring), or None when the layers are not the linear kind it needs.

    up_conv: Conv2D 3x3, C -> 4C, followed by depth_to_space(2); tail: Conv2D 3x3, C -> 1.
    Returns float32 arrays: the two-stage form at the lower resolution (``w1`` [3,3,C,4C], ``b1`` [4C],
    ``w2`` [3,3,4C,4], ``b2`` [4]) and their composition (``w`` [5,5,C,4], ``b`` [4]); output channel
    2a + b is the full-resolution pixel (2i + a, 2j + b).
    """
    if not (_is_plain_conv(up_conv, 3) and _is_plain_conv(tail, 3) and tail.filters == 1):
        return None
    w1, b1 = (np.asarray(v, np.float64) for v in (up_conv.kernel.numpy(), up_conv.bias.numpy()))
    k, b_tail = (np.asarray(v, np.float64) for v in (tail.kernel.numpy(), tail.bias.numpy()))
    channels = k.shape[2]
    if w1.shape[3] != 4 * channels:
        return None
    # The output conv on the shuffled map, as a 3x3 conv on the map before the shuffle (exact, padding included):
    # full-resolution offset a + dy lands on low-resolution offset (a + dy) // 2, sub-pixel (a + dy) % 2.
    w2 = np.zeros((3, 3, 4 * channels, 4))
    for a in range(2):
        for b in range(2):
            for dy in (-1, 0, 1):
                for dx in (-1, 0, 1):
                    row, sub_row = divmod(a + dy, 2)
                    col, sub_col = divmod(b + dx, 2)
                    first = (2 * sub_row + sub_col) * channels
                    w2[row + 1, col + 1, first : first + channels, 2 * a + b] += k[dy + 1, dx + 1, :, 0]
    w = np.zeros((5, 5, w1.shape[2], 4))
    for dy in range(3):
        for dx in range(3):
            for ey in range(3):
                for ex in range(3):
                    w[dy + ey, dx + ex] += w1[ey, ex] @ w2[dy, dx]
    b2 = np.repeat(b_tail, 4)
    b = b2 + np.einsum("yxco,c->o", w2, b1)
    as32 = lambda v: v.astype(np.float32)  # noqa: E731
    return {"w1": as32(w1), "b1": as32(b1), "w2": as32(w2), "b2": as32(b2), "w": as32(w), "b": as32(b)}


def apply_folded_tail(features, weights: dict):
    """[B, h, w, C] trunk features -> [B, 2h, 2w, 1] float32: the folded tail, the image edge done exactly."""
    import tensorflow as tf

    def two_stage(x):
        pre = tf.nn.conv2d(x, weights["w1"], 1, "SAME") + weights["b1"]
        return tf.nn.conv2d(pre, weights["w2"], 1, "SAME") + weights["b2"]

    out = tf.nn.conv2d(features, weights["w"], 1, "SAME") + weights["b"]
    shape = features.shape
    if shape[1] is None or shape[2] is None or min(shape[1], shape[2]) < 3:
        out = two_stage(features)  # unknown size, or no interior: the exact form everywhere
    else:
        top = two_stage(features[:, :3])[:, :1]
        bottom = two_stage(features[:, -3:])[:, -1:]
        left = two_stage(features[:, :, :3])[:, 1:-1, :1]
        right = two_stage(features[:, :, -3:])[:, 1:-1, -1:]
        middle = tf.concat([left, out[:, 1:-1, 1:-1], right], axis=2)
        out = tf.concat([top, middle, bottom], axis=1)
    return tf.nn.depth_to_space(out, 2)


class XLAGenerator:
    """A float32 XLA inference form of an SR generator: float32 [B, h, w, 1] + quant step [B] -> [B, sh, sw, 1]."""

    def __init__(self, generator, *, fold: bool = True) -> None:
        import keras
        import tensorflow as tf

        from mammo_tf.models.precision import float32_copy

        copy = float32_copy(generator)
        consistency = copy.get_layer("consistency")
        self.scale = consistency.scale
        last_up = copy.get_layer(f"up{int(np.log2(self.scale)) - 1}_conv")
        tail = copy.get_layer("tail")
        self.folded = fold_tail(last_up, tail) if fold else None
        lr = copy.inputs[0]
        if self.folded is None:
            network = keras.Model(lr, tail.output)
        else:
            trunk = keras.Model(lr, last_up.input)
            weights = {name: tf.constant(value) for name, value in self.folded.items()}
            network = lambda x: apply_folded_tail(trunk(x, training=False), weights)  # noqa: E731
        bicubic = copy.get_layer("bicubic")
        # Static shapes (no reduce_retracing): XLA compiles per shape anyway, and the folded tail needs them.
        residual = tf.function(lambda x: network(x), jit_compile=True)
        finish = tf.function(lambda base, res, x, q: consistency.project_output(base + res, x, q), jit_compile=True)
        self._run = tf.function(lambda x, q: finish(bicubic(x), residual(x), x, q))

    def __call__(self, tiles, quant_steps):
        return self._run(tiles, quant_steps)


def generator_flops(generator, height: int, width: int) -> int:
    """Floating-point operations of one generator pass on an LR input of height x width, counted from its layers.

    2 x kh x kw x C_in x C_out per output pixel of every Conv2D, at that convolution's resolution (each pixel
    shuffle multiplies it). Biases, activations, the bicubic skip and the projection are left out (< 1 %).
    This counts the architecture as trained; the xla engine's folded tail computes fewer.
    """
    import keras

    from mammo_tf.models.blocks import PixelShuffle

    pixels, flops = height * width, 0
    for layer in generator.layers:
        if isinstance(layer, PixelShuffle):
            pixels *= layer.factor**2
        elif isinstance(layer, keras.layers.Conv2D):
            kh, kw = layer.kernel_size
            flops += 2 * kh * kw * int(layer.kernel.shape[2]) * layer.filters * pixels
    return flops
