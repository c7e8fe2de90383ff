"""Batch-wide operations that give the same numbers on one device and on a batch split over replicas.

Under a tf.distribute strategy, ``fit`` splits each global batch of B rows into R consecutive pieces of
b = B / R rows, replica r getting rows [r b, (r + 1) b), and runs ``train_step`` on every piece. Anything
that looks beyond one example then needs the other replicas:

- a mean over the batch (a relativistic average, a minibatch statistic): ``global_sum`` / ``global_mean``,
  all-reduced across replicas, differentiable (the gradient of an all-reduce is the all-reduced gradient);
- random draws per example: ``own_rows(draw(B), b)``. Every replica draws the GLOBAL batch's values from
  the same seed and keeps its own rows, so each example gets the value it would get on one device (one
  ``SeedGenerator`` or stateless seed alone gives every replica the same draws, STACK_NOTES section 6);
- rows of the whole batch (a history buffer): ``all_rows``.

With one replica (the default strategy, or no strategy at all) every helper returns its input or the plain
batch operation, adding no op, so single-device numbers stay bit for bit what they were. Collective ops may
not run inside ``tf.cond`` / ``tf.while_loop`` under MirroredStrategy (merge_call in control flow).
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf


def replicas() -> int:
    """How many replicas run this code in sync: 1 outside a strategy's ``run`` (train_step under ``fit``), and
    in the cross-replica context of a strategy's scope (building the model, validating it)."""
    context = tf.distribute.get_replica_context()
    return 1 if context is None else int(context.num_replicas_in_sync)


def replica_id() -> Any:
    """This replica's index in [0, replicas()): an int32 scalar tensor under a strategy, else 0."""
    context = tf.distribute.get_replica_context()
    return 0 if context is None else context.replica_id_in_sync_group


def global_batch(batch: Any) -> Any:
    """The global batch size of a replica holding `batch` rows (every replica holds the same number)."""
    n = replicas()
    return batch if n == 1 else batch * n


def own_rows(values: Any, batch: Any) -> Any:
    """This replica's `batch` rows of `values` drawn for the global batch ([global_batch(batch), ...])."""
    if replicas() == 1:
        return values
    start = tf.cast(replica_id(), tf.int32) * tf.cast(batch, tf.int32)
    return values[start : start + batch]


def global_sum(value: Any) -> Any:
    """`value` summed over replicas (all-reduce; differentiable); `value` itself with one replica."""
    if replicas() == 1:
        return value
    return tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, value)


def global_mean(x: Any) -> Any:
    """The mean of every element of `x` on every replica (float32 scalar); tf.reduce_mean(x) with one replica."""
    x = tf.cast(x, tf.float32)
    if replicas() == 1:
        return tf.reduce_mean(x)
    totals = global_sum(tf.stack([tf.reduce_sum(x), tf.cast(tf.size(x), tf.float32)]))
    return tf.math.divide_no_nan(totals[0], totals[1])


def all_rows(x: Any) -> Any:
    """Every replica's rows of `x`, in global batch order (all-gather on axis 0); `x` with one replica."""
    if replicas() == 1:
        return x
    # all_gather sends to the device its input is on. Under MultiWorkerMirroredStrategy a step's inputs (the
    # batch fit passes in) carry none ("destinations can not be empty"); an identity made here takes the
    # replica's device.
    return tf.distribute.get_replica_context().all_gather(tf.identity(x), axis=0)
