"""The one training lifecycle. A trainer declares what it trains; `train` does everything around it.

A trainer (a `Trainer` subclass) says:
    kind, record()           what config.json holds (its resolved config, data, patients seen), before TF
    total_steps, seed, precision, strategy, batch_size
    model_class, build()     the wrapper model to build (inside the strategy scope) or to find on --resume
    dataset()                an infinite tf.data.Dataset of global batches (called once)
    phases(step)             [Phase(name, start, end, interval)], whole validation intervals, from `step`
    enter_phase(model, phase), start(run, model), validate(run, model, step), checkpoint_extra(), finish(...)

`train(trainer, run_dir, resume=...)` owns the rest, the same for every trainer:
    the run directory (training/runs.py: refusal of a used folder, --resume against the same config, atomic
    checkpoints, the NaN guard), precision and seed scope (set before the layers are built, restored after),
    the tf.distribute strategy (resolved before TensorFlow runs anything else: a multi-worker strategy needs
    that; recorded in config.json as strategy_resolved, replicas and workers; the model, its optimizers and
    metrics built or loaded inside its scope, the optimizers built there before fit; under several workers
    the dataset sharded by rows, unless a shard reader took its own files (distribute.input_shard), and only
    the chief writing the run directory), resuming mid-phase (under any
    strategy: a checkpoint holds plain values), removing a new run that failed before its first checkpoint,
    and the final metrics.json (with steps, hours, precision, strategy, replicas, machine and TensorFlow
    version).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mammo_tf.errors import MammoError


def segments(start: int, end: int, every: int) -> list[tuple[int, int, int]]:
    """(start, end, interval) pieces for fit_in_run: whole validation intervals, plus partial ones at the ends.

    A run may stop at a step that is not a multiple of ``every`` (``--steps``), and a resumed, extended run
    may start at such a step (its interval follows its steps: config ``adjusted``); each partial piece is one
    epoch of its own length. The lifecycle trains every phase in these pieces.
    """
    pieces, pos = [], int(start)
    while pos < end:
        if pos % every == 0 and end - pos >= every:
            stop = pos + (end - pos) // every * every
            pieces.append((pos, stop, every))
        else:
            stop = min((pos // every + 1) * every, end)
            pieces.append((pos, stop, stop - pos))
        pos = stop
    return pieces


@dataclass(frozen=True)
class Phase:
    """Steps [start, end) trained as `name`, validated and checkpointed every `interval` steps (and at `end`,
    and where a resumed run stopped off the interval: `segments`)."""

    name: str
    start: int
    end: int
    interval: int
    log_every: int = 50


class Trainer:
    """What one kind of training declares. Subclasses set `kind` and `model_class` and fill the methods.

    config: the resolved, frozen config (its `steps`, `seed`, `precision`, `strategy` and `batch_size`, the
    global batch, are the run's unless a subclass says otherwise); record: what config.json holds (the
    config's fields, kind, data, source and train_patients: the patients whose pixels the model saw), built
    before TensorFlow is imported.
    """

    kind: str = ""
    model_class: type | None = None  # what a checkpoint must hold (checked on --resume); None: not checked

    def __init__(self, config, record: dict) -> None:
        self.config = config
        self._record = record

    def record(self) -> dict:
        return self._record

    @property
    def total_steps(self) -> int:
        return int(self.config.steps)

    @property
    def seed(self) -> int:
        return int(self.config.seed)

    @property
    def precision(self) -> str:
        """'auto' | 'float32' | 'mixed_bfloat16' as requested; the loop resolves it for this machine."""
        return self.config.precision

    @property
    def strategy(self) -> str:
        """'auto' | 'default' | 'mirrored' | 'multiworker' as requested; the loop resolves it for this machine."""
        return self.config.strategy

    @property
    def batch_size(self) -> int:
        """The GLOBAL batch the dataset yields (split over the replicas by fit)."""
        return int(self.config.batch_size)

    # -- with TensorFlow --------------------------------------------------------------------------------------
    def build(self):
        """A new compiled wrapper model (called inside the strategy scope, under the run's precision)."""
        raise NotImplementedError

    def dataset(self):
        """An infinite tf.data.Dataset of global batches, built once (advanced past the checkpoint on resume)."""
        raise NotImplementedError

    def phases(self, step: int) -> list[Phase]:
        """The phases still to train from `step` (a checkpoint boundary) to `total_steps`."""
        raise NotImplementedError

    def enter_phase(self, model, phase: Phase) -> None:
        """Switch the model to `phase` (e.g. SR pretraining to GAN fine-tuning)."""

    def start(self, run, model) -> None:
        """Once before the first step of this session (e.g. write the real samples of a new run)."""

    def validate(self, run, model, step: int) -> dict[str, float]:
        """At every validation step, before the checkpoint: values to log; may write samples and models."""
        return {}

    def checkpoint_extra(self) -> dict | None:
        """Extra values kept in state.json with each checkpoint (e.g. the best validation so far)."""
        return None

    def finish(self, run, model) -> dict[str, Any]:
        """The trainer's final metrics (the loop adds steps, hours, precision, machine, tensorflow)."""
        return {}


def train(trainer: Trainer, run_dir: str | Path, *, resume: bool = False, verbose: int | str = "auto") -> Path:
    """Open (or resume) the run, train every phase, write metrics.json; returns the run directory.

    Every check a user can fail runs before TensorFlow is imported (the trainer's config and data, TF_CONFIG
    under --strategy multiworker, the folder and the config match of ``Run.create``). A new run that fails
    before its first checkpoint is removed; a resumed one keeps its last good checkpoint. A worker of a
    multi-worker strategy other than the chief trains in a temporary folder (training/runs.py).
    """
    from mammo_tf.training.distribute import cluster_from_env
    from mammo_tf.training.runs import Run, worker_run_dir

    cluster = cluster_from_env() if trainer.strategy == "multiworker" else None
    elsewhere = cluster.task if cluster and not cluster.chief else None
    with worker_run_dir(run_dir, resume=resume, task=elsewhere) as folder:
        predated = type(trainer.config).predated_values()
        run = Run.create(folder, trainer.record(), resume=resume, predated=predated)
        if run.state.get("finished") and run.step >= trainer.total_steps:
            raise MammoError(f"{run_dir}: --resume: this run already finished at step {run.step}")
        try:
            _train(trainer, run, verbose)
        except BaseException as err:
            run.discard()
            lost = _lost_worker(err, run_dir, run.step) if cluster else None
            if lost is not None:
                raise lost from None
            raise
    return Path(run_dir)


def _lost_worker(err: BaseException, run_dir: str | Path, step: int) -> MammoError | None:
    """One line for a multi-worker run stopped by another worker's failure (its collective ops then fail on
    every worker: unreachable, aborted or timed out), else None."""
    import tensorflow as tf

    if not isinstance(err, tf.errors.UnavailableError | tf.errors.AbortedError | tf.errors.DeadlineExceededError):
        return None
    then = f"with --resume (last checkpoint: step {step})" if step else "(no checkpoint yet: the new run was removed)"
    return MammoError(
        f"{run_dir}: a worker of the cluster stopped or cannot be reached ({type(err).__name__}); "
        f"stop every worker, then start them all again {then}"
    )


def _train(trainer: Trainer, run, verbose: int | str) -> None:
    # The strategy first: MultiWorkerMirroredStrategy can set up its collective ops only before TensorFlow
    # runs any op in the process.
    strategy, distributed = _strategy(trainer, run)
    import tensorflow as tf

    from mammo_tf.machine import machine_summary
    from mammo_tf.training.distribute import distribute_rows, precision_and_seed, resolve_precision
    from mammo_tf.training.runs import fit_in_run

    policy = resolve_precision(trainer.precision)
    run.add_to_config("precision_resolved", policy)
    run.add_to_config("machine", machine_summary())
    # Before the global seed is set, as every trainer did: tf.data's seeded shuffles derive their seeds from
    # it, so moving this line would change the batch stream of a run resumed from an older version.
    dataset = distribute_rows(trainer.dataset(), strategy)
    with precision_and_seed(policy, trainer.seed):
        with strategy.scope():
            model = _resume(run, trainer) if run.resumed else trainer.build()
            _build_optimizers(model)
        trainer.start(run, model)

        def validate(model, step: int) -> dict[str, float]:
            return trainer.validate(run, model, step)

        for phase in trainer.phases(run.step):
            begin = max(run.step, phase.start)
            if begin >= phase.end:
                continue
            trainer.enter_phase(model, phase)
            for start, end, interval in segments(begin, phase.end, phase.interval):
                fit_in_run(
                    model,
                    dataset,
                    run,
                    phase=phase.name,
                    start=start,
                    end=end,
                    interval=interval,
                    on_validate=validate,
                    log_every=phase.log_every,
                    verbose=verbose,
                    checkpoint_extra=trainer.checkpoint_extra,
                )
        metrics = trainer.finish(run, model)
    run.finish(
        {
            **metrics,
            "steps": trainer.total_steps,
            "hours": round(run.seconds / 3600, 6),  # 3.6 ms: a tiny run takes under 1.8 s
            "precision": policy,
            "strategy": distributed["strategy_resolved"],
            "replicas": distributed["replicas"],
            "workers": distributed["workers"],
            "machine": machine_summary(),
            "tensorflow": tf.__version__,
        }
    )


def _strategy(trainer: Trainer, run) -> tuple[Any, dict[str, Any]]:
    """The resolved tf.distribute strategy, and {strategy_resolved, replicas, workers}, recorded in config.json.

    MammoError when the global batch does not split evenly over the replicas (each replica's rows of the
    global batch's noise, models/replicas.py, assume equal pieces).
    """
    from mammo_tf.training.distribute import cluster_from_env, resolve_strategy, strategy_name

    strategy = resolve_strategy(trainer.strategy)
    name, replicas = strategy_name(strategy), int(strategy.num_replicas_in_sync)
    if trainer.batch_size % replicas:
        raise MammoError(
            f"batch size {trainer.batch_size} does not split over the {replicas} replicas of the "
            f"{name} strategy (--strategy default trains on one device)"
        )
    workers = cluster_from_env().workers if name == "multiworker" else 1
    distributed = {"strategy_resolved": name, "replicas": replicas, "workers": workers}
    for key, value in distributed.items():
        run.add_to_config(key, value)
    return strategy, distributed


def _build_optimizers(model) -> None:
    """Build every optimizer still unbuilt, inside the strategy scope: left to ``fit`` (built lazily in
    apply_gradients) it fails under tf.distribute. Trainers and checkpoint loading normally built them."""
    networks = getattr(model, "OPTIMIZERS", None) or {"optimizer": None}
    for name, network in networks.items():
        optimizer = getattr(model, name, None)
        if optimizer is not None and not optimizer.built:
            owner = getattr(model, network) if network else model
            optimizer.build(owner.trainable_variables)


def _resume(run, trainer: Trainer):
    model = run.load_checkpoint()
    if trainer.model_class is not None and not isinstance(model, trainer.model_class):
        raise MammoError(f"{run.path}: the checkpoint is not a {trainer.kind} model ({type(model).__name__})")
    return model
