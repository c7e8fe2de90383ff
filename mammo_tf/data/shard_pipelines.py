"""tf.data pipelines over sr-pairs and patches shard folders (data/sample_shards.py), for the trainers.

`sr_shard_dataset` and `patch_shard_dataset` yield what `sr_dataset` and `patch_dataset`
(pipelines.py) yield from arrays in memory, so a trainer swaps one for the other; the stages are

    per epoch (seeded by (seed, epoch), pipelines.seeded_epochs): this worker's files in a permuted order
    -> interleave(TFRecordDataset, cycle_length, deterministic) -> parse (parallel map, deterministic)
    -> every shuffle_buffer consecutive records permuted; epochs one after the other (repeat)
    -> counter-seeded augment -> batch -> prefetch

the last three pipelines.py's own (the same augmentation for the same seed and element position).
Nothing is cached: the set is never held in memory, only the shuffle buffer (shuffle_buffer
elements: 2048 96-px pairs are 94 MB) and the interleave's open files. The shuffle is a window's,
not the whole set's as in memory: files are reshuffled every epoch and read cycle_length at a
time, records mixed within each window (pairs are written in the sampler's random order; patches
image by image, so the window should span many images). Every order is drawn from (seed, epoch)
alone, so every iterator of one dataset yields the same stream (pipelines.py says why that matters).

Workers: `input_context`, a `tf.distribute.InputContext` or a (num_workers, worker_index) pair,
gives worker w the files w, w + W, w + 2W, ... of each series (balanced patches: of each class),
its files only verified and read; the dataset's auto-shard policy is then OFF (it is sharded
already). A folder with fewer files (of a class) than workers is refused: rewrite it with a smaller
--shard-size. Without input_context the policy stays AUTO, as for the in-memory pipelines. The
trainers pass training/distribute.input_shard's pair under --strategy multiworker.

Before a pipeline is built, each of its files' size and SHA-256 is checked against shards.json
(io/shard_images.check_shard_file, once per process and unchanged file): a corrupt, truncated or
mismatched shard is one line naming it (MammoError). TensorFlow is imported inside the functions.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mammo_tf.data.pipelines import _finish, permutation, seeded_epochs  # the in-memory pipelines' tail and order
from mammo_tf.data.sample_shards import sample_manifest
from mammo_tf.errors import located
from mammo_tf.io.shard_images import check_shard_file

if TYPE_CHECKING:  # pragma: no cover - typing only, keeps TF out of module import
    import tensorflow as tf

SHUFFLE_BUFFER = 2048  # elements
CYCLE_LENGTH = 8  # files read at once by the interleave
_DTYPE_NAMES = ("uint8", "uint16", "float32")  # io/shard_images.encode_pixels' encodings, in switch order


def _workers(input_context: Any) -> tuple[int, int]:
    """(num_workers, worker_index) of an InputContext-like object or a pair of ints; (1, 0) for None."""
    if input_context is None:
        return 1, 0
    if hasattr(input_context, "num_input_pipelines"):
        count, index = input_context.num_input_pipelines, input_context.input_pipeline_id
    else:
        count, index = input_context
    if not (isinstance(count, int) and isinstance(index, int) and 0 <= index < count):
        raise ValueError(f"input_context must give 0 <= worker index < number of workers, got {input_context!r}")
    return count, index


def _series(folder: Path, manifest: Mapping, label: int | None) -> list[Path]:
    """The folder's shard files in manifest order (label: only those of that patch class)."""
    return [folder / f["name"] for f in manifest["files"] if label is None or f.get("label") == label]


def worker_files(
    folder: str | Path, manifest: Mapping, input_context: Any = None, label: int | None = None
) -> list[Path]:
    """The shard files one worker reads, in manifest order: every num_workers-th from worker_index on.

    label: only the files of that patch class. MammoError naming the folder when there are fewer
    files than workers (a worker would have none).
    """
    count, index = _workers(input_context)
    files = _series(Path(folder), manifest, label)
    if len(files) < count:
        what = f"{manifest['what']} shard files" if label is None else f"shard files of class {label}"
        raise located(
            Path(folder),
            f"{len(files)} {what} for {count} workers: each worker reads files of its own "
            "(write the shards again with a smaller --shard-size)",
        )
    return files[index::count]


def _worker_records(folder: Path, manifest: Mapping, input_context: Any, label: int | None, *, key, cycle_length):
    """One epoch of the serialised examples of this worker's files, each verified first: its files (in an
    order drawn from `key`, int64 [2], unless None) -> interleave."""
    import tensorflow as tf

    mine = worker_files(folder, manifest, input_context, label)
    for file in mine:
        check_shard_file(file)
    files = tf.constant([str(f) for f in mine])
    if key is not None:
        files = tf.gather(files, permutation(len(mine), tf.random.experimental.stateless_fold_in(key, 0)))
    return tf.data.Dataset.from_tensor_slices(files).interleave(
        tf.data.TFRecordDataset,
        cycle_length=max(1, min(cycle_length, len(mine))),
        block_length=1,
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )


def _decode_pixels(parsed: dict, prefix: str, size: int) -> tf.Tensor:
    """float32 [size, size, 1] from a record's pixels/dtype/maxval, as io/shard_images reads them."""
    import tensorflow as tf

    raw, dtype = parsed[f"{prefix}pixels"], parsed[f"{prefix}dtype"]
    scale = tf.cast(parsed[f"{prefix}maxval"], tf.float32)
    branches = [
        lambda: tf.cast(tf.io.decode_raw(raw, tf.uint8), tf.float32) / scale,
        lambda: tf.cast(tf.io.decode_raw(raw, tf.uint16), tf.float32) / scale,
        lambda: tf.io.decode_raw(raw, tf.float32),
    ]
    index = tf.argmax(tf.cast(tf.equal(dtype, _DTYPE_NAMES), tf.int32), output_type=tf.int32)
    return tf.reshape(tf.switch_case(index, branches), [size, size, 1])


def _pixel_spec(prefix: str) -> dict:
    import tensorflow as tf

    return {
        f"{prefix}pixels": tf.io.FixedLenFeature([], tf.string),
        f"{prefix}dtype": tf.io.FixedLenFeature([], tf.string),
        f"{prefix}maxval": tf.io.FixedLenFeature([], tf.int64),
    }


def _quantise(lr: tf.Tensor, bit_depth: tf.Tensor) -> tf.Tensor:
    """float32 [0, 1] values rounded (half to even) to the 2**bit_depth grey levels, as io.images.quantize(as_float)."""
    import tensorflow as tf

    maxval = tf.cast(tf.bitwise.left_shift(tf.constant(1, tf.int64), bit_depth) - 1, tf.float32)
    return tf.round(tf.clip_by_value(lr, 0.0, 1.0) * maxval) / maxval


def _check_batch(batch_size: int) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")


def _worker_stream(
    folder: Path, manifest: Mapping, input_context: Any, label: int | None, parse, *, seed, shuffle, repeat, buffer,
    cycle_length,
):  # fmt: skip
    """This worker's records parsed into elements (parallel, in order), epoch after epoch (repeat): in the
    files' order, or with shuffle each epoch's files in a new order and every `buffer` consecutive records
    permuted, both drawn from (seed, epoch) alone (pipelines.seeded_epochs)."""
    import tensorflow as tf

    def one_epoch(key):
        records = _worker_records(folder, manifest, input_context, label, key=key, cycle_length=cycle_length)
        ds = records.map(parse, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        return ds if key is None else _window_shuffled(ds, buffer, key)

    if shuffle:
        return seeded_epochs(one_epoch, seed, repeat=repeat)
    ds = one_epoch(None)
    return ds.repeat() if repeat else ds


def _window_shuffled(ds, buffer: int, key):
    """`ds` in windows of `buffer` consecutive elements, each window in the order of a permutation drawn from
    (key, window index): a shuffle buffer's mixing, with no state across iterators (memory: a window and its
    permuted copy)."""
    import tensorflow as tf

    def permuted(window, index):
        size = tf.shape(tf.nest.flatten(window)[0])[0]
        order = permutation(size, tf.random.experimental.stateless_fold_in(key, 1 + index))
        return tf.data.Dataset.from_tensor_slices(tf.nest.map_structure(lambda t: tf.gather(t, order), window))

    return tf.data.Dataset.zip(ds.batch(buffer), tf.data.Dataset.counter()).flat_map(permuted)


def _sharded(ds, input_context: Any):
    """OFF auto-sharding for a dataset already sharded by file (see the module docstring)."""
    import tensorflow as tf

    if input_context is None:
        return ds
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    return ds.with_options(options)


def sr_shard_dataset(
    folder: str | Path,
    batch_size: int,
    *,
    seed: int,
    scale: int,
    hr_size: int,
    require: Mapping[str, object] | None = None,
    quantise_lr: bool = False,
    shuffle: bool = True,
    augment: bool = True,
    repeat: bool = True,
    input_context: Any = None,
    shuffle_buffer: int = SHUFFLE_BUFFER,
    cycle_length: int = CYCLE_LENGTH,
) -> tuple[tf.data.Dataset, dict]:
    """(a dataset of ``(lr, hr)`` batches from a sr-pairs shard folder, its manifest), as ``sr_dataset``.

    scale, hr_size: what the model trains on; a folder sampled otherwise is refused (MammoError),
    as is one not of sr-pairs; require: more sampling values that must match (e.g. {"spacing_mm": None,
    "foreground_share": 0.25}). quantise_lr: round each LR to its source's bit depth (the trainer's
    quantise_lr, bit for bit). shuffle, augment, repeat, seed: as sr_dataset (repeat also drops the
    last partial batch). input_context: this worker's share of the files (module docstring); then
    batch_size is this worker's batch under ``distribute_datasets_from_function``
    (``input_context.get_per_replica_batch_size(global_batch)``), but the global batch under Keras'
    fit, which rebatches (``experimental_distribute_dataset``; training/distribute.input_shard).

    Yields ``(lr, hr)``: float32 [B, hr_size/scale, hr_size/scale, 1] and float32 [B, hr_size, hr_size, 1],
    values in [0, 1]. The manifest's "patients" are the ids the pairs come from.
    """
    import tensorflow as tf

    _check_batch(batch_size)
    folder = Path(folder).resolve()
    manifest = sample_manifest(folder, "sr-pairs", {"scale": scale, "hr_size": hr_size, **(require or {})})
    lr_size = hr_size // scale
    spec = {
        **_pixel_spec("hr/"),
        **_pixel_spec("lr/"),
        "bit_depth": tf.io.FixedLenFeature([], tf.int64),
    }

    def parse(record: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        parsed = tf.io.parse_single_example(record, spec)
        lr = _decode_pixels(parsed, "lr/", lr_size)
        if quantise_lr:
            lr = _quantise(lr, parsed["bit_depth"])
        return lr, _decode_pixels(parsed, "hr/", hr_size)

    options = {"shuffle": shuffle, "buffer": shuffle_buffer, "cycle_length": cycle_length}
    ds = _worker_stream(folder, manifest, input_context, None, parse, seed=seed, repeat=repeat, **options)
    ds = _finish(ds, batch_size, augment=augment, seed=seed, n_images=2, square=True, drop=repeat)
    return _sharded(ds, input_context), manifest


def patch_shard_dataset(
    folder: str | Path,
    batch_size: int,
    *,
    seed: int,
    patch_size: int,
    balanced: bool = False,
    require: Mapping[str, object] | None = None,
    shuffle: bool = True,
    augment: bool = True,
    repeat: bool = True,
    input_context: Any = None,
    shuffle_buffer: int = SHUFFLE_BUFFER,
    cycle_length: int = CYCLE_LENGTH,
) -> tuple[tf.data.Dataset, dict]:
    """(a dataset of ``(images, labels)`` batches from a patches shard folder, its manifest), as ``patch_dataset``.

    patch_size: what the model trains on (a folder sampled otherwise, or not of patches, is refused);
    require: more sampling values that must match (e.g. {"per_cluster": 8, "spacing_mm": None}).
    balanced: each class present drawn with equal probability from its own files (infinite: needs
    repeat), seeds as patch_dataset's. shuffle, augment, repeat, seed, input_context, batch_size: as
    sr_shard_dataset (balanced: each class's files are shared out among the workers).

    Yields ``(images, labels)``: float32 [B, P, P, 1] in [0, 1] and int32 [B] in {NORMAL, BENIGN, MALIGNANT}.
    """
    import tensorflow as tf

    _check_batch(batch_size)
    if balanced and not repeat:
        raise ValueError("balanced patch datasets are infinite: use repeat=True and count steps")
    folder = Path(folder).resolve()
    manifest = sample_manifest(folder, "patches", {"patch_size": patch_size, **(require or {})})
    spec = {**_pixel_spec(""), "label": tf.io.FixedLenFeature([], tf.int64)}

    def parse(record: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        parsed = tf.io.parse_single_example(record, spec)
        return _decode_pixels(parsed, "", patch_size), tf.cast(parsed["label"], tf.int32)

    options = {"shuffle": shuffle, "buffer": shuffle_buffer, "cycle_length": cycle_length}
    if balanced:
        present = sorted({f["label"] for f in manifest["files"]})  # classes with no patch have no file
        streams = [
            _worker_stream(folder, manifest, input_context, c, parse, seed=seed + 1 + c, repeat=True, **options)
            for c in present
        ]
        ds = tf.data.Dataset.sample_from_datasets(streams, weights=[1.0 / len(present)] * len(present), seed=seed)
    else:
        ds = _worker_stream(folder, manifest, input_context, None, parse, seed=seed, repeat=repeat, **options)
    ds = _finish(ds, batch_size, augment=augment, seed=seed, n_images=1, square=True, drop=repeat)
    return _sharded(ds, input_context), manifest


def trainer_patch_batches(folder: str | Path, config: Any, input_context: Any = None) -> tf.data.Dataset:
    """A trainer's class-balanced training batches from a patches shard folder sampled for `config`.

    config: a ClassifierConfig or SynthesisConfig (batch_size, the GLOBAL batch; seed; patch_size and
    spacing_mm, which the folder must have been sampled with: sample_shards.patch_sampling).
    input_context: this worker's share of the files (training/distribute.input_shard; None: all of them),
    the batch still global (input_shard's docstring says why). Yields (float32 [B, P, P, 1], int32 [B]).
    """
    from mammo_tf.data.sample_shards import patch_sampling

    dataset, _ = patch_shard_dataset(
        folder,
        config.batch_size,
        seed=config.seed,
        patch_size=config.patch_size,
        balanced=True,
        require=patch_sampling(config),
        input_context=input_context,
    )
    return dataset
