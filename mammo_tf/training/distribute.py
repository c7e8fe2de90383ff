"""Strategy and precision: the two machine-dependent choices every trainer makes the same way.

Strategy: ``resolve_strategy(config.strategy)`` gives the tf.distribute strategy the lifecycle
(training/loop.py) builds the model, its optimizers and metrics under:
- "default": TensorFlow's default strategy, one device (what every run used before the choice existed);
- "mirrored": ``MirroredStrategy`` over the local GPUs, or, without a GPU, over the logical CPU devices when
  more than one is configured (``tf.config.set_logical_device_configuration`` before TensorFlow starts: the
  tests do, to exercise the path; on the same cores it is slower than one device, never a speed-up); one
  strategy per process and device set, shared by the runs a process trains;
- "auto": mirrored when more than one GPU is visible, else default;
- "multiworker": ``MultiWorkerMirroredStrategy`` over the processes listed in TF_CONFIG (one or several
  machines, each process with all its GPUs, else its CPU), run by the same command in every process. It sets
  up TensorFlow's collective ops, which is possible only before TensorFlow runs its first op, and only once
  per process: the lifecycle resolves the strategy before anything else, and a process that trains several
  runs keeps its one strategy. ``cluster_from_env`` reads TF_CONFIG without TensorFlow (who is the chief, how
  many workers); the chief alone writes the run directory (training/runs.py).
The lifecycle trains through two helpers: ``distribute_rows`` gives each worker its rows of every global batch,
and ``distributed_fit`` patches Keras' ``fit`` for a strategy (one dataset iterator; the multi-worker fixes).
A trainer reading shard files asks ``input_shard`` which files are this worker's (each worker reads its own).
The dataset yields GLOBAL batches; ``fit`` splits each over the replicas, and every train_step averages its
per-example losses over the global batch (``tf.nn.compute_average_loss``: gradients are summed over
replicas) and draws its noise for the global batch (models/replicas.py), so a run gives the single-device
numbers on any number of replicas, up to float summation order.

Precision: ``resolve_precision("auto")`` picks ``mixed_bfloat16`` only where it is a measured speed-up
(a GPU, or a CPU with ``avx512_bf16`` or AMX; on a CPU without them a bf16 SR step took 8.96x the
float32 time, BENCHMARKS.md) and float32 otherwise. The choice is recorded in the run's config.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from mammo_tf.config import PRECISIONS, STRATEGIES
from mammo_tf.errors import MammoError
from mammo_tf.machine import native_bfloat16


def resolve_precision(requested: str, *, flags: set[str] | None = None, gpu: bool | None = None) -> str:
    """'float32' or 'mixed_bfloat16' for a requested 'auto' | 'float32' | 'mixed_bfloat16'."""
    if requested not in PRECISIONS:
        raise MammoError(f"precision must be one of {', '.join(PRECISIONS)}, got {requested!r}")
    if requested != "auto":
        return requested
    return "mixed_bfloat16" if native_bfloat16(flags=flags, gpu=gpu) else "float32"


@contextlib.contextmanager
def precision_and_seed(policy: str, seed: int | None = None) -> Iterator[None]:
    """Build and train under a dtype policy (and a global Keras seed); the previous policy comes back after.

    The policy is global in Keras and must be set before layers are built; a process that trains several
    models (the study, the tests) must not leak one run's policy into the next.
    """
    import keras

    previous = keras.mixed_precision.dtype_policy().name
    set_precision(policy)
    if seed is not None:
        keras.utils.set_random_seed(int(seed))
    try:
        yield
    finally:
        set_precision(previous)


def set_precision(policy: str) -> None:
    """Set the global Keras dtype policy. Must run BEFORE layers are built (layers keep the policy of their build)."""
    import keras

    keras.mixed_precision.set_dtype_policy(policy)


def resolve_strategy(requested: str):
    """The tf.distribute.Strategy for a requested 'auto' | 'default' | 'mirrored' | 'multiworker' (module docstring).

    Call outside any strategy scope, and for 'multiworker' before TensorFlow has run any op in this process.
    MammoError for an unknown name, and for 'multiworker' without a valid TF_CONFIG.
    """
    if requested not in STRATEGIES:
        raise MammoError(f"strategy must be one of {', '.join(STRATEGIES)}, got {requested!r}")
    if requested == "multiworker":
        cluster_from_env()  # a clear error before TensorFlow reads it
        return _multiworker_strategy()
    import tensorflow as tf

    gpus = tf.config.list_logical_devices("GPU")
    if requested == "default" or (requested == "auto" and len(gpus) < 2):
        return tf.distribute.get_strategy()
    return _mirrored_strategy(tuple(device.name for device in gpus or tf.config.list_logical_devices("CPU")))


@functools.cache
def _mirrored_strategy(devices: tuple[str, ...]):
    """The process's one MirroredStrategy over `devices`. Every new one numbers its collective ops from the
    same keys, so a process that trains two different models under two of them (the study, several runs)
    fails in the second's collective ops ("Shape mismatch in the collective instance"; TF 2.21)."""
    import tensorflow as tf

    return tf.distribute.MirroredStrategy(list(devices))


@functools.cache
def _multiworker_strategy():
    """The process's one MultiWorkerMirroredStrategy (a second one cannot set up collective ops again)."""
    import tensorflow as tf

    return tf.distribute.MultiWorkerMirroredStrategy()


def strategy_name(strategy) -> str:
    """'default', 'mirrored' or 'multiworker': what config.json records as ``strategy_resolved``."""
    import tensorflow as tf

    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return "multiworker"
    return "mirrored" if isinstance(strategy, tf.distribute.MirroredStrategy) else "default"


def strategy():
    """The tf.distribute strategy in scope (the default strategy outside any scope)."""
    import tensorflow as tf

    return tf.distribute.get_strategy()


def distribute_rows(dataset, strategy):
    """`dataset` (GLOBAL batches) set to give each worker of a multi-worker strategy its rows of every batch.

    fit splits each global batch into one piece per replica; auto-sharding by DATA then hands worker w the
    pieces of its replicas, so the replicas together see the global batch a single device would. A dataset
    whose pipeline chose a sharding policy itself keeps it (a shard reader given ``input_shard``: OFF, its
    files its own); other strategies get `dataset` unchanged.
    """
    if strategy_name(strategy) != "multiworker":
        return dataset
    import tensorflow as tf

    policy = tf.data.experimental.AutoShardPolicy
    if dataset.options().experimental_distribute.auto_shard_policy != policy.AUTO:
        return dataset
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = policy.DATA
    return dataset.with_options(options)


@contextlib.contextmanager
def distributed_fit(model) -> Iterator[None]:
    """Under a tf.distribute strategy, patch this model's ``fit`` (on the instance, for one call) to train as on
    one device; without a strategy this changes nothing. Keras' TensorFlowTrainer is private: keras is pinned.

    - Every strategy: one iterator over the dataset, as on one device. Keras' fit first takes a batch from an
      iterator of its own to build the model symbolically (``_maybe_symbolic_build``), then trains from a new
      one; the trainers' datasets are reshuffled (seeded) by every new iterator, so that extra one would change
      the batch stream. The lifecycle builds the model, its optimizers and metrics before fit: the build needs
      no batch, it gets none. Under MultiWorkerMirroredStrategy this also avoids Keras' ``strategy.reduce`` of
      the nested first batch, which fails there (keras-team/keras#20585, tensorflow/tensorflow#72388:
      "Attempt to convert a value (PerReplica...) to a Tensor").
    - MultiWorkerMirroredStrategy only: fit reduces every log with ``strategy.reduce("MEAN", v, axis=0)``,
      which fails for the scalar logs of a custom train_step ("Invalid reduction dimension 0 for input with 0
      dimensions", the same upstream issues); each log is returned as shape [1], and the reduction makes it a
      scalar again (the mean over replicas of values that agree: the trackers are all-reduced).
    """
    strategy = getattr(model, "_distribute_strategy", None)
    if strategy is None:
        yield
        return
    import keras
    import tensorflow as tf

    def build_without_a_batch(iterator=None, data_batch=None) -> None:
        with model.distribute_strategy.scope():
            model._symbolic_build(data_batch=data_batch)

    def train_step_with_rank_1_logs(data):
        return keras.tree.map_structure(lambda value: tf.reshape(value, [1]), train_step(data))

    patches = {"_maybe_symbolic_build": build_without_a_batch}
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        train_step = model.train_step
        patches["train_step"] = train_step_with_rank_1_logs
    for name, patch in patches.items():
        setattr(model, name, patch)
    try:
        yield
    finally:
        for name in patches:
            delattr(model, name)


@dataclass(frozen=True)
class Cluster:
    """This process's place in a multi-worker cluster (TF_CONFIG): `workers` processes in all, `task` this one
    (e.g. 'worker 1'), `chief` True for the one that writes the run directory, `index` its number among the
    workers (0 the chief, then the workers in order: tf.distribute's input pipeline id)."""

    workers: int
    task: str
    chief: bool
    index: int


def cluster_from_env(environ: Mapping[str, str] | None = None) -> Cluster:
    """The cluster TF_CONFIG describes, read without TensorFlow; MammoError naming what is missing or wrong.

    TF_CONFIG: {"cluster": {"worker": ["host:port", ...], "chief": ["host:port"] (optional)},
    "task": {"type": "worker" | "chief", "index": i}}. The chief is the "chief" task, else worker 0.
    """
    text = (os.environ if environ is None else environ).get("TF_CONFIG", "")
    if not text.strip():
        raise MammoError("--strategy multiworker needs TF_CONFIG: the cluster's workers and this process's task")
    try:
        config = json.loads(text)
    except json.JSONDecodeError as err:
        raise MammoError(f"TF_CONFIG is not valid JSON ({err.msg} at character {err.pos})") from None
    cluster = config.get("cluster") if isinstance(config, dict) else None
    if not isinstance(cluster, dict) or not cluster.get("worker"):
        raise MammoError('TF_CONFIG: no "cluster" with a "worker" list of "host:port" addresses')
    other = sorted(set(cluster) - {"worker", "chief"})
    if other:
        raise MammoError(f"TF_CONFIG: --strategy multiworker takes workers and one chief, not {', '.join(other)}")
    jobs = {job: cluster.get(job, []) for job in ("chief", "worker")}
    for job, addresses in jobs.items():
        if not isinstance(addresses, list) or not all(isinstance(a, str) and ":" in a for a in addresses):
            raise MammoError(f'TF_CONFIG: cluster "{job}" must be a list of "host:port" addresses')
    if len(jobs["chief"]) > 1:
        raise MammoError('TF_CONFIG: cluster "chief" lists more than one address')
    task = config.get("task")
    kind, index = (task.get("type"), task.get("index", 0)) if isinstance(task, dict) else (None, None)
    if kind not in ("chief", "worker") or not jobs[kind]:
        raise MammoError(f'TF_CONFIG: "task" type must be a job of the cluster (chief or worker), got {kind!r}')
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(jobs[kind]):
        raise MammoError(f'TF_CONFIG: "task" index must be 0..{len(jobs[kind]) - 1} for {kind}, got {index!r}')
    chief = kind == "chief" or (not jobs["chief"] and index == 0)
    number = 0 if kind == "chief" else index + len(jobs["chief"])  # multi_worker_util.id_in_cluster's rule
    workers = len(jobs["chief"]) + len(jobs["worker"])
    return Cluster(workers=workers, task=f"{kind} {index}", chief=chief, index=number)


def input_shard(requested: str, environ: Mapping[str, str] | None = None) -> tuple[int, int] | None:
    """(num_workers, worker_index) of this process when a run's strategy is multiworker, else None.

    requested: the run's --strategy; only 'multiworker' resolves to MultiWorkerMirroredStrategy ('auto' never
    does), so this needs no TensorFlow and no strategy in scope (a trainer builds its dataset outside it).
    A shard reader (data/shard_pipelines.py) given the pair reads the files w, w + W, ... and sets its
    auto-shard policy OFF, which ``distribute_rows`` keeps. Its batch_size stays the GLOBAL batch B:
    Keras' fit distributes with ``experimental_distribute_dataset``, which rebatches each worker's batches
    into W x R pieces (``batch_sizes_for_worker``: summed over the workers, each step takes B rows) and
    gives each of its R replicas one piece a step: a worker takes B / W rows of its own stream a step, and
    a step's global batch is B rows (checked with 2 processes on 127.0.0.1, B = 8: 4 rows a worker from its
    own stream). A per-worker batch B / W would make it B / W rows. The stream then differs from one device's
    (each worker shuffles its own files), and a resumed run skips B-row batches of it per step trained
    (training/runs.fit_in_run), W times what a worker consumed: the rest of the stream is still its own
    files', not what an uninterrupted run would have read.
    """
    if requested != "multiworker":
        return None
    cluster = cluster_from_env(environ)
    return cluster.workers, cluster.index


def writes_the_run(environ: Mapping[str, str] | None = None) -> bool:
    """False when TF_CONFIG names this process a worker other than the chief (it then writes elsewhere,
    training/runs.py); True otherwise, also when TF_CONFIG is unset or malformed (cluster_from_env says why)."""
    try:
        return cluster_from_env(environ).chief
    except MammoError:
        return True
