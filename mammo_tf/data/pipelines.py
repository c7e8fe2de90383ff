"""tf.data pipelines for SR pairs and labelled patches.

Both builders share one chain of stages:

    per epoch a stateless permutation of the samples, seeded by (seed, epoch) -> the samples in that order
    -> zip with an element counter -> parallel augment map (deterministic order)
    -> batch (drop_remainder when repeating) -> prefetch(AUTOTUNE)

Augmentation is a random dihedral transform (up/down flip, left/right flip, rot90 by k in 0..3). Its random
draw comes from stateless ops seeded with ``(seed, element index)``, so:

- the images of one element (LR and HR of a pair) get the **same** transform;
- a freshly built dataset with the same arguments yields identical batches, whatever the number of parallel
  map calls (no hidden RNG state shared between threads); a different ``seed`` gives different batches;
- each epoch of a repeated dataset gets new draws, because the counter keeps running across epochs;
- every iterator of one dataset yields the same stream (seeded_epochs): training makes a new one per
  validation interval (``dataset.skip(step)``), and tf.data's own reshuffle_each_iteration would give each
  a new order drawn from a state the previous iterator's read-ahead had advanced by a timing-dependent
  amount (measured: the same run's batches differed from one process to the next).

TensorFlow is imported inside the functions so that importing this module (and the CLI's ``--help``) stays
light.

GPU readiness: the pipelines run on the host CPU and end in ``prefetch``; Keras ``fit`` copies each batch to
the accelerator itself, so no ``prefetch_to_device`` is needed here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from mammo_tf.data.samplers import Patches, SRPairs

if TYPE_CHECKING:  # pragma: no cover - typing only, keeps TF out of module import
    import tensorflow as tf

# Mixed into the per-element stateless seed so augmentation draws are not the same Philox stream as any
# other op that a caller might seed with (seed, i).
_AUGMENT_STREAM = 0x6D616D6D  # "mamm"
_SHUFFLE_STREAM = 0x73687566  # "shuf": the same for the epoch seeds of seeded_epochs


def augment_images(images: tuple[tf.Tensor, ...], seed: tf.Tensor, *, allow_transpose: bool = True) -> tuple:
    """Apply one random dihedral transform, identical for every image of the tuple.

    images: tuple of float32 [H_i, W_i, C] tensors (e.g. ``(lr, hr)``); values are only moved, never changed,
            so a [0, 1] range is kept exactly.
    seed: int64 [2] stateless seed; the same seed always gives the same transform.
    allow_transpose: False restricts rot90 to k in {0, 2} (no 90-degree turns), which keeps the shape of
            non-square images.
    Returns the transformed tuple; square images keep their shape.
    """
    import tensorflow as tf

    # One draw for the whole tuple: that is what keeps LR and HR aligned.
    draws = tf.random.stateless_uniform([3], seed=seed, minval=0, maxval=4, dtype=tf.int32)
    flip_ud = draws[0] % 2 == 1
    flip_lr = draws[1] % 2 == 1
    k = draws[2] if allow_transpose else 2 * (draws[2] % 2)

    def one(image: tf.Tensor) -> tf.Tensor:
        image = tf.cond(flip_ud, lambda: tf.reverse(image, axis=[0]), lambda: image)
        image = tf.cond(flip_lr, lambda: tf.reverse(image, axis=[1]), lambda: image)
        return tf.image.rot90(image, k=k)

    return tuple(one(image) for image in images)


def _all_square(arrays: tuple[np.ndarray, ...]) -> bool:
    return all(a.shape[1] == a.shape[2] for a in arrays)


def _options() -> tf.data.Options:
    import tensorflow as tf

    options = tf.data.Options()
    options.deterministic = True  # element order never depends on thread timing
    return options


def seeded_epochs(one_epoch, seed: int, *, repeat: bool) -> tf.data.Dataset:
    """one_epoch(key) for epochs e = 0, 1, 2, ... one after the other (only e = 0 without repeat), key an int64
    [2] stateless seed from (seed, e) alone: one_epoch orders its elements with stateless ops seeded by key
    (permutation), so epoch e has one order whichever iterator reads it, whatever the global seed, and
    ``skip(k)`` continues a stream exactly."""
    import tensorflow as tf

    base = tf.constant([seed, _SHUFFLE_STREAM], tf.int64)
    epochs = tf.data.Dataset.counter() if repeat else tf.data.Dataset.range(1)
    return epochs.flat_map(lambda e: one_epoch(tf.random.experimental.stateless_fold_in(base, e)))


def permutation(n, key: tf.Tensor) -> tf.Tensor:
    """int64 [n]: a permutation of 0..n-1 drawn from the stateless seed `key` (int64 [2]); n an int or a
    scalar tensor >= 1."""
    import tensorflow as tf

    n = tf.cast(n, tf.int64)
    return tf.random.experimental.index_shuffle(tf.range(n), key, n - 1)


def _stream(tensors: tuple[np.ndarray, ...], *, shuffle: bool, repeat: bool, seed: int) -> tf.data.Dataset:
    """The source stages, one element per sample: in order, or each epoch a permutation of the whole set
    (a perfect shuffle; seeded_epochs) read from the arrays in memory."""
    import tensorflow as tf

    if not shuffle:
        ds = tf.data.Dataset.from_tensor_slices(tensors)
        return ds.repeat() if repeat else ds
    n, columns = len(tensors[0]), tuple(tf.constant(t) for t in tensors)
    order = seeded_epochs(lambda key: tf.data.Dataset.from_tensor_slices(permutation(n, key)), seed, repeat=repeat)
    return order.map(
        lambda i: tuple(tf.gather(c, i) for c in columns), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True
    )


def _finish(
    ds: tf.data.Dataset, batch_size: int, *, augment: bool, seed: int, n_images: int, square: bool, drop: bool
) -> tf.data.Dataset:
    """The shared tail: counter-seeded augment map -> batch -> prefetch, with deterministic options.

    Elements are tuples whose first ``n_images`` members are images transformed together; the rest (labels)
    ride along untouched.
    """
    import tensorflow as tf

    if augment:
        counter = tf.data.Dataset.counter(dtype=tf.int64)
        base = tf.constant([seed, _AUGMENT_STREAM], dtype=tf.int64)

        def transform(element: tuple, index: tf.Tensor) -> tuple:
            # Per-element seed from (seed, position in the stream): independent of map thread scheduling.
            element_seed = tf.random.experimental.stateless_fold_in(base, index)
            images = augment_images(element[:n_images], element_seed, allow_transpose=square)
            return images + tuple(element[n_images:])

        ds = tf.data.Dataset.zip((ds, counter)).map(transform, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.batch(batch_size, drop_remainder=drop, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.prefetch(tf.data.AUTOTUNE).with_options(_options())


def _check_batch(batch_size: int, n: int, what: str) -> None:
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if n == 0:
        raise ValueError(f"no {what} to build a dataset from")


def sr_dataset(
    pairs: SRPairs,
    batch_size: int,
    *,
    shuffle: bool = True,
    augment: bool = True,
    repeat: bool = True,
    seed: int = 0,
) -> tf.data.Dataset:
    """A dataset of ``(lr, hr)`` batches for super-resolution training.

    pairs: ``SRPairs`` with lr float32 [N, h, w, 1] and hr float32 [N, h*scale, w*scale, 1], both in [0, 1].
    batch_size: B, samples per batch.
    shuffle: a new order of the whole set every epoch (seeded by ``seed`` and the epoch).
    augment: random flips and rot90, the same for LR and HR of a pair (rot90 by odd k only for square crops).
    repeat: repeat forever and drop the last partial batch, so the batch dimension is static (training);
            False gives one pass with the remainder kept (evaluation).
    seed: drives shuffling and augmentation; a fresh dataset with the same seed yields the same batches.

    Yields ``(lr, hr)``: float32 [B, h, w, 1] and float32 [B, H, W, 1], values in [0, 1].
    """
    lr = np.asarray(pairs.lr, dtype=np.float32)
    hr = np.asarray(pairs.hr, dtype=np.float32)
    _check_batch(batch_size, len(lr), "SR pairs")
    if lr.ndim != 4 or hr.ndim != 4 or len(lr) != len(hr):
        raise ValueError(f"SR pairs must be [N, h, w, C] and [N, H, W, C] arrays, got {lr.shape} and {hr.shape}")
    if hr.shape[1:3] != (lr.shape[1] * pairs.scale, lr.shape[2] * pairs.scale):
        raise ValueError(f"hr {hr.shape[1:3]} is not lr {lr.shape[1:3]} times scale {pairs.scale}")
    ds = _stream((lr, hr), shuffle=shuffle, repeat=repeat, seed=seed)
    square = _all_square((lr, hr))
    return _finish(ds, batch_size, augment=augment, seed=seed, n_images=2, square=square, drop=repeat)


def _balanced_stream(images: np.ndarray, labels: np.ndarray, *, shuffle: bool, seed: int) -> Any:
    """Draw each present class with equal probability from per-class infinite streams (always infinite)."""
    import tensorflow as tf

    classes = np.unique(labels)  # absent classes are simply not in this list
    streams = [
        _stream(
            (images[labels == c], labels[labels == c]),
            shuffle=shuffle,
            repeat=True,
            seed=seed + 1 + int(c),
        )
        for c in classes
    ]
    weights = [1.0 / len(classes)] * len(classes)
    return tf.data.Dataset.sample_from_datasets(streams, weights=weights, seed=seed)


def patch_dataset(
    patches: Patches,
    batch_size: int,
    *,
    balanced: bool = False,
    shuffle: bool = True,
    augment: bool = True,
    repeat: bool = True,
    seed: int = 0,
) -> tf.data.Dataset:
    """A dataset of ``(images, labels)`` batches for patch classification and conditional synthesis.

    patches: ``Patches`` with images float32 [N, P, P, 1] in [0, 1] and labels int [N] in
             {NORMAL, BENIGN, MALIGNANT}.
    batch_size: B, samples per batch.
    balanced: draw every class present in ``labels`` with equal probability (classes with no patch are
             skipped). A balanced dataset is **infinite** (each class is repeated on its own), so it needs
             ``repeat=True``; count epochs in steps.
    shuffle, augment, repeat, seed: as in ``sr_dataset``.

    Yields ``(images, labels)``: float32 [B, P, P, 1] in [0, 1] and int32 [B].
    """
    images = np.asarray(patches.images, dtype=np.float32)
    labels = np.asarray(patches.labels, dtype=np.int32)
    _check_batch(batch_size, len(images), "patches")
    if images.ndim != 4 or labels.shape != (len(images),):
        raise ValueError(f"patches must be [N, P, P, C] with labels [N], got {images.shape} and {labels.shape}")
    if balanced and not repeat:
        raise ValueError("balanced patch datasets are infinite: use repeat=True and count steps")
    if balanced:
        ds = _balanced_stream(images, labels, shuffle=shuffle, seed=seed)
    else:
        ds = _stream((images, labels), shuffle=shuffle, repeat=repeat, seed=seed)

    return _finish(ds, batch_size, augment=augment, seed=seed, n_images=1, square=_all_square((images,)), drop=repeat)
