"""Adversarial losses, the R1 penalty and the SR speck penalty, all PER EXAMPLE.

Every loss returns a float32 tensor of shape [B]: logits of any shape [B, ...] (a scalar head [B, 1] or a
patch map [B, h, w, 1]) are cast to float32 and averaged over their non-batch axes. The trainer then averages
over the GLOBAL batch, which is what a tf.distribute strategy needs (gradients are summed over replicas)::

    per_example = hinge_d(real_logits, fake_logits)                  # [B_replica]
    loss = tf.nn.compute_average_loss(per_example, global_batch_size=B_replica * replicas)

Conventions: a logit > 0 means "real". Losses are to be minimised.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import tensorflow as tf

from mammo_tf.models.replicas import global_mean

if TYPE_CHECKING:  # pragma: no cover
    import keras


def _per_example(x: tf.Tensor) -> tf.Tensor:
    """float32 [B, ...] -> float32 [B]: mean over every non-batch axis (identity for [B])."""
    x = tf.cast(x, tf.float32)
    if x.shape.rank is not None and x.shape.rank <= 1:
        return tf.reshape(x, [-1])
    return tf.reduce_mean(tf.reshape(x, [tf.shape(x)[0], -1]), axis=1)


def hinge_d(real_logits: tf.Tensor, fake_logits: tf.Tensor) -> tf.Tensor:
    """Hinge discriminator loss relu(1 - D(real)) + relu(1 + D(fake)), float32 [B] (Lim & Ye 2017)."""
    real = tf.cast(real_logits, tf.float32)
    fake = tf.cast(fake_logits, tf.float32)
    return _per_example(tf.nn.relu(1.0 - real)) + _per_example(tf.nn.relu(1.0 + fake))


def hinge_g(fake_logits: tf.Tensor) -> tf.Tensor:
    """Hinge generator loss -D(fake), float32 [B]."""
    return -_per_example(fake_logits)


def nonsaturating_d(real_logits: tf.Tensor, fake_logits: tf.Tensor) -> tf.Tensor:
    """Logistic discriminator loss softplus(-D(real)) + softplus(D(fake)), float32 [B] (BCE from logits)."""
    real = tf.cast(real_logits, tf.float32)
    fake = tf.cast(fake_logits, tf.float32)
    return _per_example(tf.nn.softplus(-real)) + _per_example(tf.nn.softplus(fake))


def nonsaturating_g(fake_logits: tf.Tensor) -> tf.Tensor:
    """Non-saturating generator loss softplus(-D(fake)) = -log sigmoid(D(fake)), float32 [B]."""
    return _per_example(tf.nn.softplus(-tf.cast(fake_logits, tf.float32)))


def _relativistic(real_logits: tf.Tensor, fake_logits: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """(D(real) - E[D(fake)], D(fake) - E[D(real)]), float32, same shapes as the inputs.

    The expectation is over the whole batch (all axes), as in ESRGAN/BasicSR; under a strategy over the GLOBAL
    batch (all-reduced across replicas, models/replicas.py), so a split batch gives the single-device loss.
    """
    real = tf.cast(real_logits, tf.float32)
    fake = tf.cast(fake_logits, tf.float32)
    return real - global_mean(fake), fake - global_mean(real)


def relativistic_average_d(real_logits: tf.Tensor, fake_logits: tf.Tensor) -> tf.Tensor:
    """ESRGAN relativistic-average discriminator loss, float32 [B].

    BCE(1, D(real) - E[D(fake)]) + BCE(0, D(fake) - E[D(real)]), BCE from logits, each term averaged over the
    non-batch axes. real_logits and fake_logits: [B, ...] (same shape).
    """
    real_rel, fake_rel = _relativistic(real_logits, fake_logits)
    return _per_example(tf.nn.softplus(-real_rel)) + _per_example(tf.nn.softplus(fake_rel))


def relativistic_average_g(real_logits: tf.Tensor, fake_logits: tf.Tensor) -> tf.Tensor:
    """ESRGAN relativistic-average generator loss, float32 [B].

    BCE(0, D(real) - E[D(fake)]) + BCE(1, D(fake) - E[D(real)]): the generator gets gradients from both the
    real and the fake logits. real_logits and fake_logits: [B, ...] (same shape).
    """
    real_rel, fake_rel = _relativistic(real_logits, fake_logits)
    return _per_example(tf.nn.softplus(real_rel)) + _per_example(tf.nn.softplus(-fake_rel))


def r1_penalty(
    discriminator: keras.Model, real: tf.Tensor, labels: Any | None, gamma: float, *, training: bool = True
) -> tf.Tensor:
    """R1 gradient penalty (gamma / 2) * ||dD(x)/dx||^2 on real images, float32 [B] (Mescheder et al. 2018).

    discriminator: called as ``discriminator([real, labels])``, or ``discriminator(real)`` when labels is None,
        with ``training``; any logit shape [B, ...] (summed per example, so a patch map counts every output).
        training=False skips a spectral-norm power iteration when D already ran on this step.
    real: float32 [B, H, W, C], the images D sees (augmented, if D is trained on augmented reals).
    Differentiable with respect to the discriminator's weights (double back-propagation): call it inside the
    outer tape that computes D's loss.
    """
    real = tf.cast(real, tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(real)
        logits = discriminator(real if labels is None else [real, labels], training=training)
        # The scalar must be built INSIDE the tape (it records only what runs inside); else the gradient is None.
        total = tf.reduce_sum(tf.cast(logits, tf.float32))
    grads = tape.gradient(total, real)
    squared = tf.reduce_sum(tf.square(tf.reshape(grads, [tf.shape(grads)[0], -1])), axis=1)
    return 0.5 * float(gamma) * squared


SPECK_WINDOW = 9  # px, HR: the speck detector's white top-hat has a radius-4 disk (evaluation/sr_eval.py)
SPECK_MARGIN = 2.0 / 255.0  # top-hat excess below two 8-bit grey levels is not a speck


def white_tophat(x: tf.Tensor, size: int = SPECK_WINDOW) -> tf.Tensor:
    """x minus its grey opening by a size x size square: bright details narrower than the window, float32
    [B, H, W, 1] >= 0 (a differentiable stand-in for the speck detector's disk top-hat)."""
    x = tf.cast(x, tf.float32)
    eroded = -tf.nn.max_pool2d(-x, size, 1, "SAME")
    return x - tf.nn.max_pool2d(eroded, size, 1, "SAME")


def speck_excess(sr: tf.Tensor, hr: tf.Tensor, margin: float = SPECK_MARGIN) -> tf.Tensor:
    """float32 [B]: mean over pixels of relu(tophat(sr) - tophat(hr) - margin), the speck-like brightness SR
    adds where HR has less: an invented speck, or a real one brightened; SR darker than HR costs nothing.
    The SPECK_WINDOW // 2 px at the crop's edges are left out: the opening sees half a window there."""
    edge = SPECK_WINDOW // 2
    excess = tf.nn.relu(white_tophat(sr) - white_tophat(hr) - margin)
    return _per_example(excess[:, edge:-edge, edge:-edge, :])


D_LOSSES = {"hinge": hinge_d, "nonsaturating": nonsaturating_d}
G_LOSSES = {"hinge": hinge_g, "nonsaturating": nonsaturating_g}
