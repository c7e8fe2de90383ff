"""The consistency projection: SR outputs that, box-averaged back down, give their LR input.

For the area (binning) degradation D with factor s, D(x) is the mean of each s x s block. The projection
returns the image nearest to x in the sense of a per-block shift whose block means lie where the input
allows them (a Consistency Enforcing Module, Bahat & Michaeli 2020, for this kernel), while staying inside [0, 1]:

1. Quantisation-aware target. A file with b bits fixes the true LR only to within half a grey step
   q = 1 / (2^b - 1): each block mean m = D(x)_ij is moved to the nearest point of the cell
   [lr - q/2, lr + q/2] (and of [0, 1]); a mean already inside the cell is left alone. q = 0 (float
   input) gives the strict projection D(out) = lr.
2. Clip-aware shift. The block gets one shift c such that mean(clip(x + c, 0, 1)) = target: what clipping
   removes from saturated pixels is redistributed over the unsaturated pixels of that block. c is found by
   bisection (the mean is monotone in c), then one exact correction spreads the last residual over the
   unsaturated pixels. Error after the projection: ~1e-7 (float32).

Gradients: the block-mean part of the shift is differentiated exactly (I - up(D) where the cell binds);
the small clipping-dependent remainder is treated as a constant. Runs in float32 whatever the policy.
"""

from __future__ import annotations

import keras
from keras import layers, ops

BISECTION_STEPS = 26


def block_mean(x, scale: int):
    """[B, H, W, 1] -> [B, H/s, W/s, 1]: the exact s x s box average."""
    import tensorflow as tf

    return tf.nn.avg_pool2d(x, scale, scale, "VALID")


def nearest_up(y, scale: int):
    """[B, h, w, C] -> [B, h*s, w*s, C]: each value repeated over its s x s block (the pseudo-inverse of D)."""
    return ops.repeat(ops.repeat(y, scale, axis=1), scale, axis=2)


def project(x, lr, quant_step, scale: int, steps: int = BISECTION_STEPS):
    """Project SR output x onto the images consistent with lr (see the module docstring).

    x: float32 [B, H, W, 1] (any values); lr: float32 [B, H/s, W/s, 1] in [0, 1];
    quant_step: float32 [B] (0 for float inputs, 1/255 for 8-bit, 1/65535 for 16-bit files).
    Returns float32 [B, H, W, 1] in [0, 1] with |D(out) - lr| <= quant_step / 2 (+ ~1e-7).
    """
    import tensorflow as tf

    x = tf.cast(x, tf.float32)
    lr = tf.cast(lr, tf.float32)
    half = tf.reshape(tf.cast(quant_step, tf.float32), [-1, 1, 1, 1]) / 2.0
    mean = block_mean(x, scale)
    target = tf.clip_by_value(tf.clip_by_value(mean, lr - half, lr + half), 0.0, 1.0)
    linear = target - mean  # the shift without clipping: differentiable part

    xs = tf.stop_gradient(x)
    pool = lambda v: block_mean(v, scale)  # noqa: E731
    # Bracket: with c = -max(block) every pixel is <= 0 (mean 0); with c = 1 - min(block), all >= 1 (mean 1).
    lo = -tf.nn.max_pool2d(xs, scale, scale, "VALID")
    hi = 1.0 + tf.nn.max_pool2d(-xs, scale, scale, "VALID")
    tgt = tf.stop_gradient(target)

    def body(i, lo, hi):
        mid = (lo + hi) / 2.0
        above = pool(tf.clip_by_value(xs + nearest_up(mid, scale), 0.0, 1.0)) > tgt
        return i + 1, tf.where(above, lo, mid), tf.where(above, mid, hi)

    _, lo, hi = tf.while_loop(lambda i, lo, hi: i < steps, body, (tf.constant(0), lo, hi))
    shift = (lo + hi) / 2.0
    shifted = tf.clip_by_value(xs + nearest_up(shift, scale), 0.0, 1.0)
    # Exact finish: spread the remaining block residual over the block's unsaturated pixels.
    free = tf.cast((shifted > 0.0) & (shifted < 1.0), tf.float32)
    free_fraction = pool(free)
    residual = tgt - pool(shifted)
    per_free = tf.math.divide_no_nan(residual, free_fraction)
    final = shifted + free * nearest_up(per_free, scale)
    # Forward value: `final`. Backward: d(x + up(target - D(x)))/dx on the unsaturated pixels, 0 on clipped ones.
    differentiable = x + nearest_up(linear, scale)
    out = tf.stop_gradient(final) + free * (differentiable - tf.stop_gradient(differentiable))
    return tf.clip_by_value(out, 0.0, 1.0)  # guards float round-off only


@keras.saving.register_keras_serializable(package="mammo_tf")
class ConsistencyProjection(layers.Layer):
    """Layer form of ``project``: inputs [x, lr, quant_step] -> float32 [B, H, W, 1] in [0, 1].

    enabled=False only clips x to [0, 1] (the projection switched off, for ablations).
    training=True returns x itself (float32, neither projected nor clipped): SRGAN.train_step projects it
    with ``project_output`` and can then also put a loss on the raw output, which the projection hides.
    """

    def __init__(self, scale: int, steps: int = BISECTION_STEPS, enabled: bool = True, **kwargs) -> None:
        kwargs["dtype"] = "float32"
        super().__init__(**kwargs)
        self.scale, self.steps, self.enabled = int(scale), int(steps), bool(enabled)

    def call(self, inputs, training=None):
        if training:
            return ops.cast(inputs[0], "float32")
        return self.project_output(*inputs)

    def project_output(self, x, lr, quant_step):
        """What the layer does at inference: project (or, disabled, clip) x."""
        if not self.enabled:
            return ops.clip(ops.cast(x, "float32"), 0.0, 1.0)
        return project(x, lr, quant_step, self.scale, self.steps)

    def compute_output_shape(self, shapes):
        return shapes[0]

    def get_config(self) -> dict:
        config = super().get_config()
        config.pop("dtype", None)
        return {**config, "scale": self.scale, "steps": self.steps, "enabled": self.enabled}
