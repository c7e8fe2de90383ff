"""The run-directory contract, shared by every trainer (train-sr, train-gan, train-classifier). READY.

A run directory holds everything one training run wrote, and nothing else writes there:

    config.json        the resolved config, written (atomically) before step one
    state.json         {"step", "phase", "seconds", "finished"}: where the last checkpoint stands
    checkpoints/last.keras   the whole wrapper model (networks + optimizer state), saved atomically
    metrics.jsonl      one JSON object per log/validation event: {"step", "phase", "seconds", ...}
    metrics.json       the final metrics, written when the run finishes
    tb/                TensorBoard event files (scalars and images)
    train.log          optional: the console output of a background run (may exist before the run starts)
    samples/           images written at each validation (e.g. LR/bicubic/SR/HR crops, sample grids)
    <artifact files>   models the trainer exports (e.g. generator.keras)

Under a multi-worker strategy (several processes, TF_CONFIG) the chief alone writes the run directory; every
other worker runs the same code (the same collective ops) on a temporary folder of its own, which starts
with a copy of the chief's config, state and checkpoint when resuming and is removed at the end
(``worker_run_dir``).

Rules:
- A new run refuses a folder that exists and is not empty unless ``resume=True``.
- ``resume=True`` refuses a folder without a checkpoint, and a folder whose config.json differs from the
  new resolved config in anything but the keys listed in ``RESUMABLE_KEYS`` (total steps may grow).
- Checkpoints are written to a temporary name in the same folder and renamed, so a killed process leaves
  the previous checkpoint intact. They are written only while every logged loss is finite (NaN guard).

Usage (a trainer)::

    run = Run.create(run_dir, config_dict, resume=resume)          # MammoError on a bad folder / config
    model = run.load_checkpoint() if run.resumed else build_and_compile()
    fit_in_run(model, dataset, run, phase="pretrain", start=run.step, end=n_steps, interval=500,
               on_validate=lambda model, step: {"val_psnr": ...})
    run.finish({"val_psnr": ...})
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from mammo_tf.errors import MammoError, located, write_failure
from mammo_tf.io.atomic import write_bytes_atomic

CONFIG_NAME = "config.json"
STATE_NAME = "state.json"
CHECKPOINT = Path("checkpoints") / "last.keras"
JSONL_NAME = "metrics.jsonl"
LOG_NAME = "train.log"
FINAL_NAME = "metrics.json"
# Keys of the resolved config that may differ on --resume (the rest must match exactly).
# A resumed run may be extended (GAN phase); what a trainer records after opening the run is not compared.
# The strategy may change too: a checkpoint holds plain values, and a batch split over replicas trains as on
# one device, so a run started under one strategy continues under another (config.json records the last).
# training_spacing_mm follows from the data and spacing_mm, which are compared; runs made before it was
# recorded lack it (as they lack workers: the processes of a multi-worker strategy, 1 otherwise).
# val_every follows the steps (the classifier's is the gcd of the preset's and the steps): an extended run
# may validate at another interval, from the step it resumes at (loop.segments).
RESUMABLE_KEYS = frozenset(
    {
        "gan_steps",
        "steps",
        "val_every",
        "precision_resolved",
        "machine",
        "strategy",
        "strategy_resolved",
        "replicas",
        "workers",
        "training_spacing_mm",
    }
)
RESUME_FILES = (CONFIG_NAME, STATE_NAME, CHECKPOINT)  # what a run resumes from


def _dumps(obj: Any) -> str:
    return json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n"


def _json_default(value: Any) -> Any:
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _step_of(line: str) -> float:
    """The step of one JSONL record; infinity for a line that is not a whole record."""
    try:
        return float(json.loads(line).get("step", 0))
    except (ValueError, AttributeError):
        return math.inf


def _config_diff(old: dict, new: dict) -> list[str]:
    keys = (set(old) | set(new)) - RESUMABLE_KEYS
    return sorted(k for k in keys if old.get(k) != new.get(k))


class Run:
    """One run directory. Create with ``Run.create``; the trainer owns the model, this class the files."""

    def __init__(self, path: Path, config: dict, state: dict, resumed: bool) -> None:
        self.path = path
        self.config = config
        self.state = state
        self.resumed = resumed
        self._writer = None
        self._started = time.monotonic() - float(state.get("seconds", 0.0))
        self.existed = True

    # -- opening ------------------------------------------------------------------------------------
    @staticmethod
    def precheck(path: str | Path, *, resume: bool = False) -> None:
        """The folder checks of ``create`` alone (no config needed): trainers call it before importing TF.

        A worker that TF_CONFIG names other than the chief does not refuse the folder of a new run: the chief,
        started first, may have made it already (``create`` checks the folder the process really writes).
        """
        from mammo_tf.training.distribute import writes_the_run

        path = Path(path)
        if path.exists() and not path.is_dir():
            raise located(path, "run directory is a file, not a folder")
        if resume:
            if not (path / CHECKPOINT).is_file() or not (path / STATE_NAME).is_file():
                raise located(path, "--resume: no checkpoint in this run directory")
        elif path.is_dir() and any(p.name != LOG_NAME for p in path.iterdir()) and writes_the_run():
            raise located(path, "run directory exists and is not empty (use --resume, or another --run-dir)")

    @classmethod
    def create(cls, path: str | Path, config: dict, *, resume: bool = False, predated: dict | None = None) -> Run:
        """Open a new run (folder absent or empty) or resume one (same config, a checkpoint present).

        predated: the values a config.json saved before a field existed meant by it (Config.predated_values),
        so that adding a field does not refuse the resume of older runs.
        """
        path = Path(path)
        config = json.loads(_dumps(config))  # exactly what config.json will hold
        cls.precheck(path, resume=resume)
        if resume:
            old = json.loads((path / CONFIG_NAME).read_text())
            old = {**json.loads(_dumps({k: v for k, v in (predated or {}).items() if k in config})), **old}
            changed = _config_diff(old, config)
            if changed:
                raise located(
                    path, f"--resume: run directory was made with another config (differs in {', '.join(changed)})"
                )
            state = json.loads((path / STATE_NAME).read_text())
            run = cls(path, config, state, resumed=True)
            run._forget_after(run.step)
            run._remove_interrupted_writes()
        else:
            existed = path.is_dir()
            try:
                path.mkdir(parents=True, exist_ok=True)
            except OSError as err:
                raise located(path, f"cannot create run directory: {err.strerror or err}") from None
            run = cls(path, config, {"step": 0, "phase": None, "seconds": 0.0, "finished": False}, resumed=False)
            run.existed = existed
        write_bytes_atomic(path / CONFIG_NAME, _dumps(config).encode())
        return run

    def add_to_config(self, key: str, value: Any) -> None:
        """Add a value the trainer learns after opening the run (e.g. the resolved precision) to config.json."""
        self.config[key] = json.loads(_dumps(value))
        write_bytes_atomic(self.path / CONFIG_NAME, _dumps(self.config).encode())

    def discard(self) -> None:
        """Undo a new run that failed before its first checkpoint: nothing half-written stays behind."""
        if self.resumed or (self.path / CHECKPOINT).exists():
            return
        self._writer = None
        shutil.rmtree(self.path, ignore_errors=True)
        if self.existed:
            self.path.mkdir(exist_ok=True)

    def _forget_after(self, step: int) -> None:
        """Drop log records past the checkpoint (a run killed or out of disk after it logs them again)."""
        path = self.path / JSONL_NAME
        if not path.is_file():
            return
        lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
        kept = [line for line in lines if _step_of(line) <= step]  # a line cut short by a kill goes too
        if len(kept) < len(lines):
            write_bytes_atomic(path, "".join(line + "\n" for line in kept).encode())

    def _remove_interrupted_writes(self) -> None:
        """Remove the temporary files and folders of atomic writes a kill cut short (``.{name}.*.part*``: io/atomic,
        save_keras_atomic); the files they were replacing are whole (the rename never happened)."""
        for stale in sorted(self.path.rglob(".*.part*"), reverse=True):  # a folder's contents before it
            if stale.is_dir():
                shutil.rmtree(stale, ignore_errors=True)
            else:
                stale.unlink(missing_ok=True)

    # -- state ----------------------------------------------------------------------------------------
    @property
    def step(self) -> int:
        return int(self.state.get("step", 0))

    @property
    def seconds(self) -> float:
        """Training wall time so far, summed over resumed sessions."""
        return time.monotonic() - self._started

    # -- checkpoints ----------------------------------------------------------------------------------
    def save_checkpoint(self, model, step: int, phase: str, extra: dict | None = None) -> None:
        """Save the wrapper model (with optimizer state) atomically, then record the step."""
        target = self.path / CHECKPOINT
        save_keras_atomic(model, target)
        self.state = {"step": int(step), "phase": phase, "seconds": round(self.seconds, 1), "finished": False}
        if extra:
            self.state.update(extra)
        write_bytes_atomic(self.path / STATE_NAME, _dumps(self.state).encode())

    def load_checkpoint(self):
        """The model saved by the last checkpoint (the defining modules must be imported)."""
        import keras

        try:
            return keras.models.load_model(self.path / CHECKPOINT, compile=True)
        except Exception as err:  # a damaged file (the disk, not the atomic writer): one line, the run stays
            first = (str(err).strip().splitlines() or [""])[0][:200]
            raise located(
                self.path / CHECKPOINT, f"--resume: cannot load the checkpoint ({type(err).__name__}: {first})"
            ) from None

    # -- logs -----------------------------------------------------------------------------------------
    def log(self, step: int, phase: str, values: dict[str, float]) -> None:
        """Append one JSONL record and write the same scalars to TensorBoard."""
        record = {"step": int(step), "phase": phase, "seconds": round(self.seconds, 1)}
        record.update({k: float(v) for k, v in values.items()})
        try:
            with open(self.path / JSONL_NAME, "a") as handle:
                handle.write(json.dumps(record, default=_json_default) + "\n")
        except OSError as err:
            raise (write_failure(err, self.path / JSONL_NAME) or err) from None
        writer = self._tensorboard()
        import tensorflow as tf

        with writer.as_default():
            for key, value in values.items():
                tf.summary.scalar(f"{phase}/{key}", float(value), step=int(step))
        writer.flush()

    def image(self, name: str, step: int, pixels: np.ndarray) -> Path:
        """Write float32 [H, W] in [0, 1] to samples/<name>-<step>.png (8-bit, for looking) and to TensorBoard."""
        from mammo_tf.io.images import write_image

        out = self.path / "samples" / f"{name}-{int(step):07d}.png"
        write_image(out, pixels, 8)
        import tensorflow as tf

        with self._tensorboard().as_default():
            tf.summary.image(name, np.clip(pixels, 0, 1)[None, ..., None], step=int(step))
        return out

    def finish(self, metrics: dict) -> Path:
        """Write metrics.json and mark the run finished."""
        out = self.path / FINAL_NAME
        write_bytes_atomic(out, _dumps(metrics).encode())
        self.state["finished"] = True
        self.state["seconds"] = round(self.seconds, 1)
        write_bytes_atomic(self.path / STATE_NAME, _dumps(self.state).encode())
        return out

    def records(self) -> list[dict]:
        """Every JSONL record written so far (for curves and reports)."""
        path = self.path / JSONL_NAME
        if not path.is_file():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def _tensorboard(self):
        if self._writer is None:
            import tensorflow as tf

            self._writer = tf.summary.create_file_writer(str(self.path / "tb"))
        return self._writer


@contextlib.contextmanager
def worker_run_dir(run_dir: str | Path, *, resume: bool, task: str | None = None) -> Iterator[Path]:
    """The folder this process writes its run to: `run_dir` itself for the process that writes the run (the
    chief, or a run of one process: task None); for another worker of a multi-worker strategy (task: its name
    in the cluster, e.g. 'worker 1') a new temporary folder, removed when the block ends (also on failure).

    Resuming, the temporary folder starts with a copy of the chief's config, state and checkpoint. The chief
    rewrites them only at its next checkpoint, after training steps every worker joins, so the copy is whole.
    """
    run_dir = Path(run_dir)
    if task is None:
        yield run_dir
        return
    if resume:
        Run.precheck(run_dir, resume=True)
    folder = Path(tempfile.mkdtemp(prefix=f"mammo-tf-{task.replace(' ', '')}-{run_dir.name}-"))
    try:
        for name in RESUME_FILES if resume else ():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(run_dir / name, folder / name)
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def save_keras_atomic(model, target: str | Path) -> None:
    """``model.save`` to a temporary ``.keras`` beside target, then rename (Keras insists on the suffix)."""
    target = Path(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.stem}.", suffix=".part.keras", dir=target.parent)
    except OSError as err:
        raise (write_failure(err, target) or err) from None
    os.close(fd)
    try:
        model.save(tmp)
        os.replace(tmp, target)
    except BaseException as err:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        failure = write_failure(err, target)
        if failure is not None:  # a full disk: the previous file at `target` is untouched
            raise failure from None
        raise


class NonFiniteLoss(MammoError):
    """A loss became NaN or Inf; the last good checkpoint is kept."""


def fit_in_run(
    model,
    dataset,
    run: Run,
    *,
    phase: str,
    start: int,
    end: int,
    interval: int,
    on_validate: Callable[[Any, int], dict[str, float]] | None = None,
    log_every: int = 50,
    verbose: int | str = "auto",
    checkpoint_extra: Callable[[], dict] | None = None,
) -> int:
    """Train ``model`` with ``fit`` from step ``start`` to ``end`` in epochs of ``interval`` steps.

    dataset: an infinite tf.data.Dataset; on resume it is advanced by ``start`` batches so the stream is
        the one an uninterrupted run would have seen.
    At every epoch end: ``on_validate(model, step)`` (its values are logged), then an atomic checkpoint.
    Every ``log_every`` steps the running losses are logged (JSONL + TensorBoard).
    A NaN/Inf loss stops training and raises NonFiniteLoss naming the step; the checkpoint stays the last
    good one. Returns the step reached (== end).
    """
    from mammo_tf.training.distribute import distributed_fit

    if end <= start:
        return start
    if (end - start) % interval:
        raise ValueError(f"steps {start}..{end} are not a whole number of epochs of {interval}")
    model.train_function = None  # phase switches change what train_step traces
    guard = _RunCallback(run, phase, start, interval, on_validate, log_every, checkpoint_extra)
    with distributed_fit(model):
        model.fit(
            dataset.skip(start) if start else dataset,
            steps_per_epoch=interval,
            epochs=end // interval,
            initial_epoch=start // interval,
            callbacks=[guard],
            verbose=verbose,
            shuffle=False,
        )
    if guard.bad_step is not None:
        raise NonFiniteLoss(
            f"{run.path}: loss became {guard.bad_value} at step {guard.bad_step} ({phase}); "
            f"training stopped, last good checkpoint at step {run.step}"
        )
    return end


class _RunCallback:
    """Keras callback (built lazily so this module imports without TensorFlow)."""

    def __new__(cls, *args, **kwargs):
        import keras

        class RunCallback(keras.callbacks.Callback):
            def __init__(self, run, phase, start, interval, on_validate, log_every, checkpoint_extra):
                super().__init__()
                self.run, self.phase, self.step = run, phase, start
                self.interval, self.on_validate, self.log_every = interval, on_validate, log_every
                self.checkpoint_extra = checkpoint_extra
                self.bad_step = None
                self.bad_value = None

            def on_train_batch_end(self, batch, logs=None):
                self.step += 1
                values = {k: float(v) for k, v in (logs or {}).items()}
                bad = [v for v in values.values() if not math.isfinite(v)]
                if bad:
                    self.bad_step, self.bad_value = self.step, bad[0]
                    self.model.stop_training = True
                    return
                if self.step % self.log_every == 0:
                    self.run.log(self.step, self.phase, values)

            def on_epoch_end(self, epoch, logs=None):
                if self.bad_step is not None:
                    return
                values = self.on_validate(self.model, self.step) if self.on_validate else {}
                if values:
                    self.run.log(self.step, self.phase, values)
                extra = self.checkpoint_extra() if self.checkpoint_extra else None
                self.run.save_checkpoint(self.model, self.step, self.phase, extra)

        return RunCallback(*args, **kwargs)
