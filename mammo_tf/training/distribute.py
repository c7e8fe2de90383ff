"""Strategy and precision: the two machine-dependent choices every trainer makes the same way.

Trainers build models, optimizers and metrics inside ``strategy().scope()`` and average losses over the
GLOBAL batch (``tf.nn.compute_average_loss``), so mirrored or multi-worker training can be added here
later without reshaping a trainer. Today only the default strategy is offered.

Precision: ``resolve_precision("auto")`` picks ``mixed_bfloat16`` only where it is a measured speed-up
(a GPU, or a CPU with ``avx512_bf16`` or AMX; on a CPU without them a bf16 SR step took 8.96x the
float32 time, BENCHMARKS.md) and float32 otherwise. The choice is recorded in the run's config.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from mammo_tf.config import PRECISIONS
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


def strategy():
    """The tf.distribute strategy trainers build under (the default, single-device strategy today)."""
    import tensorflow as tf

    return tf.distribute.get_strategy()
