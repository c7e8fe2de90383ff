"""The insertion refiner (SimGAN): rendered calcification specks made to look real, layout and background kept.

One file for the two small networks, their two layers and the wrapper (about 480 lines): the history buffer
and the masked residual are read together with the train step that uses them.

Classes are the patch classes of ``mammo_tf.data.schema`` (NORMAL=0, BENIGN=1, MALIGNANT=2); inserted clusters
are benign or malignant.

- ``build_refiner(config)``: [rendered float32 [B, H, W, 1] in [0, 1], mask float32 [B, H, W, 1] in {0, 1}] ->
  float32 [B, H, W, 1]. Image and mask stacked -> reflect-padded 3x3 conv -> ``r_blocks`` residual blocks of
  ``r_width`` filters -> a 3x3 conv to one channel (float32, initialised near zero) -> ``MaskedResidual``:
  ``where(mask > 0, clip(rendered + mask * 0.25 tanh(raw), 0, 1), rendered)``. Outside the mask the output
  IS the input (bit for bit, any precision); inside it moves by at most RESIDUAL_BOUND; the untrained refiner
  is (nearly) the identity. Fully convolutional.
- ``build_local_discriminator(config)``: [image float32 [B, P, P, 1], label int32 [B]] -> logits float32
  [B, P/4, P/4, 1]: four convolutions (3x3, 4x4/2, 4x4/2, 3x3; ``d_width``, 2x, 4x, 4x filters, leaky ReLU)
  and a class projection head per position (logit = w.h + b + embed(y).h, Miyato & Koyama 2018). Each logit
  sees a 20 x 20 px window (stride 4 px): it judges local speck texture, not the whole patch (SimGAN's local
  adversarial loss).
- ``local_weights(mask, background_weight)``: how much each of D's windows counts. Real and inserted patches
  share the same real tissue away from the specks, so a plain mean over the local map is mostly windows with
  nothing to tell apart (measured: D left chance only after ~1,500 steps). Windows that see a speck mask
  (inserted: the rendered mask; real: the detector's specks, dilated alike) weigh 1, the others
  ``background_weight``; the per-example loss is the weighted mean. background_weight 1 is SimGAN's plain mean.
- ``RefinerGAN``: the wrapper that trains both (``train_step``), with SimGAN's history buffer of refined
  patches and self-regularisation; ``refine`` for inference.
- ``build_refiner_gan(config)``: the above, compiled, optimizers built.

The config (``InsertConfig``) is in ``mammo_tf.config`` (config/insert.py).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import keras
import numpy as np
import tensorflow as tf
from keras import layers, ops

from mammo_tf.config import N_CLASSES, InsertConfig
from mammo_tf.models.paired import PairedOptimizers
from mammo_tf.models.replicas import all_rows, global_batch, replica_id, replicas
from mammo_tf.models.synthesis_layers import ReflectPad

__all__ = [
    "RESIDUAL_BOUND",
    "ClassProjection",
    "MaskedResidual",
    "RefinerGAN",
    "build_local_discriminator",
    "build_refiner",
    "build_refiner_gan",
    "local_weights",
]

RESIDUAL_BOUND = 0.25  # the refiner changes a masked pixel by at most this much (speck contrasts are ~0.05-0.3)
TAIL_STDDEV = 1e-3  # the refiner's last conv: near zero, so refinement starts at (nearly) the identity


class _Seeds:
    """Distinct integer seeds for the initializers of one network, so building is deterministic per seed."""

    def __init__(self, seed: int, salt: int) -> None:
        self.base, self.count = int(seed) * 1_000_003 + int(salt), 0

    def __call__(self) -> int:
        self.count += 1
        return (self.base + self.count) % (2**31 - 1)


# ------------------------------------------------------------------------------------------------ layers


@keras.saving.register_keras_serializable(package="mammo_tf")
class MaskedResidual(layers.Layer):
    """[rendered, mask, raw] (each [B, H, W, 1]) -> ``where(mask > 0, clip(rendered + mask * r, 0, 1), rendered)``
    with ``r = bound * tanh(raw)``, in float32.

    The ``where`` makes the outside of the mask the input itself, bit for bit (even -0.0, even if raw is not
    finite); inside, the bounded residual is added and clipped to [0, 1].
    """

    def __init__(self, bound: float = RESIDUAL_BOUND, **kwargs: Any) -> None:
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.bound = float(bound)

    def call(self, inputs: list) -> Any:
        rendered, mask, raw = inputs
        residual = self.bound * ops.tanh(ops.cast(raw, "float32"))
        mask = ops.cast(mask, "float32")
        refined = ops.clip(rendered + mask * residual, 0.0, 1.0)
        return ops.where(mask > 0, refined, rendered)

    def compute_output_shape(self, input_shape: list) -> tuple:
        return tuple(input_shape[0])

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "bound": self.bound}


@keras.saving.register_keras_serializable(package="mammo_tf")
class ClassProjection(layers.Layer):
    """Per-position class-projection head: [h [B, H, W, C], labels int [B]] -> float32 [B, H, W, 1],
    ``w . h + b + embed(label) . h`` (Miyato & Koyama 2018, applied at every position of a local map)."""

    def __init__(self, n_classes: int = N_CLASSES, seed: int | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.n_classes = int(n_classes)
        self.seed = seed

    def build(self, input_shape: list) -> None:
        channels = int(input_shape[0][-1])
        seed = None if self.seed is None else int(self.seed)
        self.kernel = self.add_weight(
            name="kernel", shape=(channels, 1), initializer=keras.initializers.GlorotUniform(seed=seed)
        )
        self.bias = self.add_weight(name="bias", shape=(1,), initializer="zeros")
        self.embedding = self.add_weight(
            name="embedding",
            shape=(self.n_classes, channels),
            initializer=keras.initializers.RandomNormal(
                stddev=1.0 / math.sqrt(channels), seed=None if seed is None else seed + 1
            ),
        )
        self.built = True

    def call(self, inputs: list) -> Any:
        h, labels = inputs
        h = ops.cast(h, self.compute_dtype)
        embedded = ops.take(self.embedding, ops.reshape(ops.cast(labels, "int32"), (-1,)), axis=0)  # [B, C]
        projection = ops.sum(h * embedded[:, None, None, :], axis=-1, keepdims=True)
        return ops.matmul(h, self.kernel) + self.bias + projection

    def compute_output_shape(self, input_shape: list) -> tuple:
        return (*tuple(input_shape[0])[:-1], 1)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "n_classes": self.n_classes, "seed": self.seed}


# ------------------------------------------------------------------------------------------------ networks


def build_refiner(config: InsertConfig, *, seed: int | None = None, name: str = "refiner") -> keras.Model:
    """The refiner of the module docstring; ``seed`` (None: the config's) fixes its initial weights."""
    seeds = _Seeds(config.seed if seed is None else seed, salt=0x52)
    width = config.r_width

    def conv(x: Any, filters: int, label: str, activation: str | None = "relu", **kw: Any) -> Any:
        x = ReflectPad(1, name=f"{label}_pad")(x)
        kw.setdefault("kernel_initializer", keras.initializers.HeNormal(seed=seeds()))
        return layers.Conv2D(filters, 3, padding="valid", activation=activation, name=label, **kw)(x)

    rendered = keras.Input((None, None, 1), name="rendered")
    mask = keras.Input((None, None, 1), name="mask")
    x = conv(layers.Concatenate(name="stack")([rendered, mask]), width, "head")
    for i in range(config.r_blocks):
        y = conv(x, width, f"block{i}_conv1")
        y = conv(y, width, f"block{i}_conv2", activation=None)
        x = layers.Add(name=f"block{i}_add")([x, y])
    raw = conv(
        x, 1, "tail", activation=None, dtype="float32",
        kernel_initializer=keras.initializers.RandomNormal(stddev=TAIL_STDDEV, seed=seeds()),
    )  # fmt: skip
    refined = MaskedResidual(RESIDUAL_BOUND, name="refine")([rendered, mask, raw])
    return keras.Model([rendered, mask], refined, name=name)


def build_local_discriminator(
    config: InsertConfig, *, seed: int | None = None, name: str = "local_discriminator"
) -> keras.Model:
    """The local discriminator of the module docstring; ``seed`` (None: the config's) fixes its weights."""
    seeds = _Seeds(config.seed if seed is None else seed, salt=0x44)
    width = config.d_width
    image = keras.Input((None, None, 1), name="image")
    label = keras.Input((), dtype="int32", name="label")
    x = image
    # (filters, kernel, stride): receptive field 3 -> 6 -> 12 -> 20 px, output stride 4.
    for i, (filters, kernel, stride) in enumerate(
        [(width, 3, 1), (2 * width, 4, 2), (4 * width, 4, 2), (4 * width, 3, 1)]
    ):
        x = layers.Conv2D(
            filters, kernel, strides=stride, padding="same", name=f"d_conv{i}",
            kernel_initializer=keras.initializers.GlorotUniform(seed=seeds()),
        )(x)  # fmt: skip
        x = layers.LeakyReLU(0.2, name=f"d_act{i}")(x)
    logits = ClassProjection(N_CLASSES, seed=seeds(), name="d_logits")([x, label])
    return keras.Model([image, label], logits, name=name)


LOGIT_STRIDE = 4  # px between neighbouring logits of the local discriminator
WINDOW_REACH = 2  # logits on each side whose 20 px window still covers a pixel of a given logit's cell


def local_weights(mask: tf.Tensor, background_weight: float) -> tf.Tensor:
    """float32 [B, P/4, P/4, 1] in [background_weight, 1]: 1 where the discriminator's window overlaps the
    mask (float [B, P, P, 1] in {0, 1}; P a multiple of 4), background_weight elsewhere (module docstring)."""
    mask = tf.cast(mask, tf.float32)
    cells = tf.nn.max_pool2d(mask, LOGIT_STRIDE, LOGIT_STRIDE, "VALID")
    near = tf.nn.max_pool2d(cells, 2 * WINDOW_REACH + 1, 1, "SAME")
    return background_weight + (1.0 - background_weight) * near


def _weighted_mean(values: tf.Tensor, weights: tf.Tensor) -> tf.Tensor:
    """float32 [B]: per-example weighted mean of values [B, h, w, 1] (weights > 0)."""
    values = tf.cast(values, tf.float32)
    return tf.reduce_sum(values * weights, axis=[1, 2, 3]) / tf.reduce_sum(weights, axis=[1, 2, 3])


# ------------------------------------------------------------------------------------------------ the GAN


@keras.saving.register_keras_serializable(package="mammo_tf")
class RefinerGAN(PairedOptimizers, keras.Model):
    """SimGAN-style refiner + local discriminator, with a history buffer of refined patches.

    Args:
        refiner: from ``build_refiner``.
        discriminator: from ``build_local_discriminator``.
        config: an InsertConfig (or its dict): patch_size, lr_r, lr_d, reg_weight, history_size,
            background_weight.
        seed: seeds the training-time randomness (buffer reads and writes): stateless functions of (seed, D
            optimizer step), the same on every replica, so a run is deterministic by seed and a resumed run
            continues exactly.

    ``train_step(((rendered, mask, labels), (real, real_mask, real_labels)))``: float32 [B, P, P, 1], float32
    [B, P, P, 1] in {0, 1}, int32 [B] (1 benign, 2 malignant), float32 [B, P, P, 1], float32 [B, P, P, 1] in
    {0, 1} (the detector's specks, dilated like the rendered masks), int32 [B]. One D step, one refiner step:

    - fakes for D: the first B - B//2 are this step's refined patches, the other B//2 are drawn (distinct
      slots) from the history buffer once it holds at least B//2 patches (before that: this step's);
    - D: BCE with logits, the local map's mean weighted by ``local_weights`` of each patch's mask, real -> 1
      (with the real labels), fake -> 0;
    - refiner: adversarial BCE (refined -> 1, weighted alike) + reg_weight x the mean |refined - rendered|
      (reg_norm "l1") or (refined - rendered)^2 ("l2") over the mask's pixels (self-regularisation; over the
      whole patch, as SimGAN's refiner that changes every pixel, it was ~50x weaker per changed pixel, and a
      3,000-step run painted the masks as bright discs);
    - then the first max(1, B//2) of this step's refined patches (all replicas', gathered) go to the buffer,
      with their masks and labels: into its empty slots first, then over random ones.

    Losses are per example, averaged over the global batch. Trackers: d_loss, g_loss (adv + reg_weight x reg),
    adv_loss, reg_loss (the unweighted L1 in the mask). The buffer (``history_images`` and ``history_masks`` float32
    [history_size, P, P, 1], ``history_labels`` int32 [history_size], ``history_count`` int32: filled slots,
    always a prefix) is model
    state: saved with the model. B is the global batch: under a strategy every replica holds the same buffer
    (identical updates, ONLY_FIRST_REPLICA) and its own rows of the global batch's mix, so a batch split
    over replicas trains as on one device.

    Example:
        gan = build_refiner_gan(resolve("insert", "quick"), seed=0)
        gan.fit(dataset, steps_per_epoch=100, epochs=1, shuffle=False)
        refined = gan.refine(rendered, masks)          # float32 [N, P, P]
    """

    OPTIMIZERS: ClassVar[dict[str, str]] = {"r_optimizer": "refiner", "d_optimizer": "discriminator"}
    SUBMODELS: ClassVar[tuple[str, ...]] = ("refiner", "discriminator")

    def __init__(
        self,
        refiner: keras.Model,
        discriminator: keras.Model,
        config: InsertConfig | dict | None = None,
        seed: int | None = None,
        **kwargs: Any,
    ) -> None:
        # float32: the wrapper computes nothing itself, and a mixed policy here would cast the inputs of
        # ``call`` to bfloat16 (rounding the pixels the refiner must return unchanged outside the mask).
        kwargs["dtype"] = "float32"
        super().__init__(**kwargs)
        if config is None:
            config = InsertConfig()
        self.config = config if isinstance(config, InsertConfig) else InsertConfig.from_dict(config)
        self.refiner = refiner
        self.discriminator = discriminator
        self.seed = self.config.seed if seed is None else int(seed)
        size, history = self.config.patch_size, self.config.history_size
        buffer = dict(trainable=False, autocast=False, aggregation="only_first_replica")
        self.history_images = self.add_weight(
            name="history_images", shape=(history, size, size, 1), initializer="zeros", dtype="float32", **buffer
        )
        self.history_masks = self.add_weight(
            name="history_masks", shape=(history, size, size, 1), initializer="zeros", dtype="float32", **buffer
        )
        self.history_labels = self.add_weight(
            name="history_labels", shape=(history,), initializer="zeros", dtype="int32", **buffer
        )
        self.history_count = self.add_weight(
            name="history_count", shape=(), initializer="zeros", dtype="int32", **buffer
        )
        self.d_loss_tracker = keras.metrics.Mean(name="d_loss")
        self.g_loss_tracker = keras.metrics.Mean(name="g_loss")
        self.adv_loss_tracker = keras.metrics.Mean(name="adv_loss")
        self.reg_loss_tracker = keras.metrics.Mean(name="reg_loss")
        self.r_optimizer: keras.optimizers.Optimizer | None = None
        self.d_optimizer: keras.optimizers.Optimizer | None = None
        self.built = True  # every variable exists already (the networks are built functional models)

    # ---- structure

    @property
    def patch_size(self) -> int:
        return int(self.config.patch_size)

    @property
    def metrics(self) -> list[keras.metrics.Metric]:
        return [self.d_loss_tracker, self.g_loss_tracker, self.adv_loss_tracker, self.reg_loss_tracker]

    def call(self, inputs: Any, training: bool = False) -> Any:
        """[rendered float32 [B, H, W, 1], mask float32 [B, H, W, 1]] -> refined float32 [B, H, W, 1]."""
        rendered, mask = inputs
        return self.refiner([rendered, mask], training=False)

    # ---- compile / optimizers

    def compile(
        self,
        r_optimizer: keras.optimizers.Optimizer | None = None,
        d_optimizer: keras.optimizers.Optimizer | None = None,
        **kwargs: Any,
    ) -> None:
        """Set both optimizers (Adam from the config's lr_r / lr_d, beta_1 0.5, when None)."""
        super().compile(optimizer=None, **kwargs)  # None: no unused default optimizer
        cfg = self.config
        self.r_optimizer = r_optimizer or keras.optimizers.Adam(cfg.lr_r, beta_1=0.5, name="r_adam")
        self.d_optimizer = d_optimizer or keras.optimizers.Adam(cfg.lr_d, beta_1=0.5, name="d_adam")

    # ---- serialisation

    def get_config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "trainable": self.trainable,
            "refiner": keras.saving.serialize_keras_object(self.refiner),
            "discriminator": keras.saving.serialize_keras_object(self.discriminator),
            "config": self.config.to_dict(),
            "seed": self.seed,
        }

    # ---- the history buffer

    def _step_seeds(self) -> tuple[tf.Tensor, tf.Tensor]:
        """(read, write) int64 [2] stateless seeds of this step, from (seed, D optimizer step) and the same on
        every replica: every replica picks the same history entries for the global batch and computes the same
        buffer update. The step counter is saved with the optimizer, so a resumed run draws what an
        uninterrupted one would have."""
        base = tf.random.experimental.stateless_fold_in(
            tf.constant([self.seed, 0x5E6F], dtype=tf.int64), tf.cast(self.d_optimizer.iterations, tf.int64)
        )
        read = tf.random.experimental.stateless_fold_in(  # (the fold-in of replica 0 kept: the same draws as before)
            tf.random.experimental.stateless_fold_in(base, 0), tf.constant(0, tf.int64)
        )
        return read, tf.random.experimental.stateless_fold_in(base, 1)

    @property
    def _history(self) -> tuple:
        """The buffer's (images, masks, labels) variables, in the order _mix_history and _update_history use."""
        return self.history_images, self.history_masks, self.history_labels

    def _mix_history(self, fakes: tuple[tf.Tensor, ...], seed: tf.Tensor) -> tuple[tf.Tensor, ...]:
        """D's fakes from this step's (refined, masks, labels): the first B - n of each, then n = B//2 distinct
        buffer entries if the buffer holds >= n, else this step's last n (n <= history_size). B is the global
        batch: under a strategy each replica holds its rows of that mix."""
        size = self.config.history_size
        batch = tf.shape(fakes[0])[0]
        n = tf.minimum(global_batch(batch) // 2, size)
        count = tf.convert_to_tensor(self.history_count)
        noise = tf.random.stateless_uniform([size], seed=seed, dtype=tf.float32)
        scores = tf.where(tf.range(size) < count, noise, -1.0)  # filled slots first, in random order
        picks = tf.math.top_k(scores, k=n, sorted=True).indices
        use = tf.logical_and(count >= n, n > 0)
        if replicas() > 1:
            return self._own_rows_of_mix(fakes, picks, use)
        keep = batch - n
        return tuple(
            tf.concat([new[:keep], tf.where(use, tf.gather(tf.convert_to_tensor(old), picks), new[keep:])], axis=0)
            for new, old in zip(fakes, self._history, strict=True)
        )

    def _own_rows_of_mix(self, fakes: tuple[tf.Tensor, ...], picks: tf.Tensor, use: tf.Tensor) -> tuple:
        """``_mix_history`` on one replica of several: global row g of the mix is history entry picks[g - (B - n)]
        for the last n rows of the global batch (when `use`), else this step's own row g."""
        batch = tf.shape(fakes[0])[0]
        n = tf.shape(picks)[0]
        rows = tf.cast(replica_id(), tf.int32) * batch + tf.range(batch)  # this replica's global rows
        slot = rows - (global_batch(batch) - n)
        from_history = tf.logical_and(use, slot >= 0)
        entries = tf.gather(picks, tf.clip_by_value(slot, 0, n - 1))
        mixed = []
        for new, old in zip(fakes, self._history, strict=True):
            chosen = tf.reshape(from_history, [-1] + [1] * (new.shape.rank - 1))
            mixed.append(tf.where(chosen, tf.gather(tf.convert_to_tensor(old), entries), new))
        return tuple(mixed)

    def _update_history(self, fakes: tuple[tf.Tensor, ...], seed: tf.Tensor) -> None:
        """Write the first max(1, B//2) of this step's (refined, masks, labels) of the global batch (gathered
        over replicas, so every replica writes the same) into the buffer: the empty slots first (lowest index
        first, so the filled slots stay a prefix), then random filled ones."""
        size = self.config.history_size
        fakes = tuple(all_rows(t) for t in fakes)
        n = tf.maximum(tf.shape(fakes[0])[0] // 2, 1)
        fakes = tuple(t[:n] for t in fakes)
        k = tf.minimum(tf.shape(fakes[0])[0], size)
        count = tf.convert_to_tensor(self.history_count)
        slot = tf.range(size)
        empty_first = 2.0 + tf.cast(size - slot, tf.float32) / float(size)  # in (2, 3], lowest slot highest
        noise = tf.random.stateless_uniform([size], seed=seed, dtype=tf.float32)  # in [0, 1)
        slots = tf.math.top_k(tf.where(slot >= count, empty_first, noise), k=k, sorted=True).indices[:, None]
        for new, variable in zip(fakes, self._history, strict=True):
            variable.assign(tf.tensor_scatter_nd_update(tf.convert_to_tensor(variable), slots, new[:k]))
        self.history_count.assign(tf.minimum(count + k, size))

    # ---- training

    # No AutoGraph: the step has no Python control flow on tensors.
    @tf.autograph.experimental.do_not_convert
    def train_step(self, data: Any) -> dict[str, tf.Tensor]:
        if self.r_optimizer is None or self.d_optimizer is None:
            raise RuntimeError("compile() the RefinerGAN before training it")
        (rendered, mask, labels), (real, real_mask, real_labels) = data
        rendered, mask, real, real_mask = (tf.cast(t, tf.float32) for t in (rendered, mask, real, real_mask))
        floor = self.config.background_weight
        labels = tf.reshape(tf.cast(labels, tf.int32), [-1])
        real_labels = tf.reshape(tf.cast(real_labels, tf.int32), [-1])
        total_batch = global_batch(tf.shape(rendered)[0])
        read_seed, write_seed = self._step_seeds()
        d_vars = self.discriminator.trainable_variables
        r_vars = self.refiner.trainable_variables

        with tf.GradientTape() as r_tape:
            refined = self.refiner([rendered, mask], training=True)
            with r_tape.stop_recording():
                # Discriminator step: reals against half current, half history fakes.
                fakes, fake_masks, fake_labels = self._mix_history((tf.stop_gradient(refined), mask, labels), read_seed)
                with tf.GradientTape() as d_tape:
                    real_logits = self.discriminator([real, real_labels], training=True)
                    fake_logits = self.discriminator([fakes, fake_labels], training=True)
                    d_per_example = _weighted_mean(  # [B]: BCE, real -> 1, fake -> 0
                        tf.nn.softplus(-real_logits), local_weights(real_mask, floor)
                    ) + _weighted_mean(tf.nn.softplus(fake_logits), local_weights(fake_masks, floor))
                    d_total = tf.nn.compute_average_loss(d_per_example, global_batch_size=total_batch)
                grads = d_tape.gradient(d_total, d_vars)
                self.d_optimizer.apply_gradients(zip(grads, d_vars, strict=True))
            # Refiner step against the updated D: fool it, stay close to the rendering.
            logits = self.discriminator([refined, labels], training=False)
            adv = _weighted_mean(tf.nn.softplus(-logits), local_weights(mask, floor))  # non-saturating
            area = tf.maximum(tf.reduce_sum(mask, axis=[1, 2, 3]), 1.0)
            change = refined - rendered
            change = tf.abs(change) if self.config.reg_norm == "l1" else tf.square(change)
            reg = tf.reduce_sum(change, axis=[1, 2, 3]) / area  # mean change in the mask
            r_per_example = adv + self.config.reg_weight * reg
            r_total = tf.nn.compute_average_loss(r_per_example, global_batch_size=total_batch)
        grads = r_tape.gradient(r_total, r_vars)
        self.r_optimizer.apply_gradients(zip(grads, r_vars, strict=True))

        self._update_history((tf.stop_gradient(refined), mask, labels), write_seed)

        # Trackers hold unscaled per-replica means; fit averages them over replicas.
        self.d_loss_tracker.update_state(tf.reduce_mean(d_per_example))
        self.g_loss_tracker.update_state(tf.reduce_mean(r_per_example))
        self.adv_loss_tracker.update_state(tf.reduce_mean(adv))
        self.reg_loss_tracker.update_state(tf.reduce_mean(reg))
        return {m.name: m.result() for m in self.metrics}

    # ---- inference

    def refine(self, rendered: np.ndarray, mask: np.ndarray, batch: int = 256) -> np.ndarray:
        """Refined patches, float32 [N, P, P], of rendered and mask float [N, P, P] or [N, P, P, 1]."""
        rendered, mask = np.asarray(rendered, dtype=np.float32), np.asarray(mask, dtype=np.float32)
        if rendered.shape != mask.shape:
            raise ValueError(f"rendered {rendered.shape} and mask {mask.shape} must have the same shape")
        if rendered.ndim == 3:
            rendered, mask = rendered[..., None], mask[..., None]
        if rendered.ndim != 4 or rendered.shape[-1] != 1:
            raise ValueError(f"expected [N, P, P] or [N, P, P, 1] patches, got shape {rendered.shape}")
        if batch < 1:
            raise ValueError(f"batch must be >= 1, got {batch}")
        n = rendered.shape[0]
        if n == 0:
            return np.zeros(rendered.shape[:3], np.float32)
        out = [
            np.asarray(self.refiner([rendered[i : i + batch], mask[i : i + batch]], training=False))
            for i in range(0, n, batch)
        ]
        return np.concatenate(out).astype(np.float32, copy=False)[..., 0]


def build_refiner_gan(config: InsertConfig | None = None, seed: int | None = None) -> RefinerGAN:
    """A compiled RefinerGAN (optimizers built) whose networks follow ``config``; ``seed`` (None: the config's)
    fixes initial weights and training randomness. Call under the strategy scope and the run's precision."""
    cfg = config or InsertConfig()
    seed = cfg.seed if seed is None else int(seed)
    gan = RefinerGAN(
        build_refiner(cfg, seed=seed), build_local_discriminator(cfg, seed=seed), config=cfg, seed=seed,
        name="refiner_gan",
    )  # fmt: skip
    gan.compile()
    gan.build_optimizers()
    return gan
