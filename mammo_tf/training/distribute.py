"""Strategy and precision: the two machine-dependent choices every trainer makes the same way.

Strategy: ``resolve_strategy(config.strategy)`` gives the tf.distribute strategy the lifecycle
(training/loop.py) builds the model, its optimizers and metrics under:
- "default": TensorFlow's default strategy, one device (what every run used before the choice existed);
- "mirrored": ``MirroredStrategy`` over the local GPUs, or, without a GPU, over the logical CPU devices when
  more than one is configured (``tf.config.set_logical_device_configuration`` before TensorFlow starts: the
  tests do, to exercise the path; on the same cores it is slower than one device, never a speed-up);
- "auto": mirrored when more than one GPU is visible, else default.
Multi-worker training (MultiWorkerMirroredStrategy from TF_CONFIG) is not implemented yet.
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
from collections.abc import Iterator

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
    """The tf.distribute.Strategy for a requested 'auto' | 'default' | 'mirrored' (module docstring).

    Call outside any strategy scope. MammoError for an unknown name, and for 'multiworker' (not implemented).
    """
    import tensorflow as tf

    if requested == "multiworker":
        raise MammoError("--strategy multiworker is not implemented yet (use mirrored on one machine)")
    if requested not in STRATEGIES:
        raise MammoError(f"strategy must be one of {', '.join(STRATEGIES)}, got {requested!r}")
    gpus = tf.config.list_logical_devices("GPU")
    if requested == "default" or (requested == "auto" and len(gpus) < 2):
        return tf.distribute.get_strategy()
    devices = gpus or tf.config.list_logical_devices("CPU")
    return tf.distribute.MirroredStrategy([device.name for device in devices])


def strategy_name(strategy) -> str:
    """'default' or 'mirrored': what config.json records as ``strategy_resolved``."""
    import tensorflow as tf

    return "mirrored" if isinstance(strategy, tf.distribute.MirroredStrategy) else "default"


def strategy():
    """The tf.distribute strategy in scope (the default strategy outside any scope)."""
    import tensorflow as tf

    return tf.distribute.get_strategy()
