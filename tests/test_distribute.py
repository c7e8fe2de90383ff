"""--strategy on every trainer: a batch split over replicas trains as on one device; runs resume across strategies.

Mirrored runs use 2 logical CPU devices, which must be configured before TensorFlow initialises, so each
trainer's runs go in a child process (tests/distribute_child.py, two children at a time, bounded in time): the
default strategy, then mirrored, on the same global batches and seed (tiny preset, float32, 4 steps; SR 6: 2
pretraining, 4 GAN). After them every variable of the checkpoint (the networks, the EMA generator, ADA's p, the
history buffer, the spectral-norm vectors, each optimizer's step count and moments) must agree.

Multi-worker runs: two worker processes on 127.0.0.1 (TF_CONFIG, free ports, bounded in time, both stopped by
the test) train every trainer one after the other under their one MultiWorkerMirroredStrategy, then resume a
2-step single-device run to the end; the chief's runs are compared with the single-device runs above, within the
same tolerance (measured: bit for bit the weights of the mirrored runs, the same 2 replicas summing in the same
order). Only the chief's run directories may exist afterwards, and neither worker's TMPDIR may keep a file.

Tolerance, per variable: max |mirrored - default| <= RTOL x max |default| + ATOL, Adam's second moments
compared as their square roots (in gradient units).
- RTOL = 5e-3, ATOL = 1e-6. The two runs add the same float32 numbers in another order (each replica sums its
  half of the batch, then gradients and global means are summed across replicas). Measured: at most 1.2e-3 of
  a variable's largest value (the classifier's first bias, whose gradient sums thousands of terms that nearly
  cancel), 2.5e-4 elsewhere, most below 1e-5; 4e-8 in absolute terms where the values are tiny. Each of these
  errors, put in on purpose, was 4x to 300x over the bound: the relativistic mean of SR taken per replica (2e-2),
  noise drawn alike on every replica, the minibatch std or the refiner's history mix per replica, dropout masks
  per replica (0.5 to 1.6), a loss averaged per replica instead of over the global batch (1: doubled gradients).
- ZERO_GRADIENT parameters: ATOL = one learning rate (1e-4) per step. Their true gradient is exactly zero: the
  SR discriminator's last bias under the relativistic losses (they see only differences of logits), and at the
  tiny width the biases feeding the synthesis generator's group norms (one channel per group: a per-channel
  shift cancels). Adam divides a gradient by its own running size, so it turns the round-off it sees there into
  steps of up to one learning rate, different in each run (measured: up to 1e-4 after 4 steps). Also the SR
  generator's output bias, whose gradient is nearly zero: the consistency projection removes any constant
  shift from the output the pixel loss sees, and only the raw-output L1 reaches it, as a mean of signs that
  nearly cancel. Two single-device runs of the same code in one process differed there by 7.2e-6 (> 2.7e-6,
  the general bound) in 3 of 7 runs, from the first GAN step on.
- Batches: every run must see the same stream. Until data/pipelines.seeded_epochs, each new iterator (one per
  validation interval) drew its epoch orders from a state the previous one's read-ahead had advanced by a
  timing-dependent amount, so in some processes the default SR run's GAN phase trained on other batches
  (block0_conv1/bias 1.38e-5 from the mirrored run, in CI; now 6e-11, measured in three concurrent children).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import invoke

from mammo_tf.errors import MammoError

CHILD = Path(__file__).with_name("distribute_child.py")
KINDS = ("sr", "gan", "classifier", "insert")
LONGEST_FIRST = ("gan", "insert", "sr", "classifier")  # the children alone on 2 AMD cores: 76, 72, 45, 22 s
STEPS = 4
SR_STEPS = 6  # 2 pretraining + 4 GAN: the discriminator's relativistic losses need a few steps to differ per replica
RESUMED = "insert"  # the trainer resumed across strategies (two networks, two optimizers, a history buffer)
TIMEOUT_S = 300  # per child; each takes 20-60 s on 2 shared cores
MULTIWORKER_TIMEOUT_S = 300  # both workers, all their runs: about 80 s on 2 shared cores
RTOL, ATOL = 5e-3, 1e-6
ZERO_GRADIENT = {"sr": r"(d_logits|head)/bias", "gan": r"(project|up\d+_(conv\d+|skip))/bias"}  # with their EMA copies
ZERO_GRADIENT_LR = 1e-4  # per step: SR's lr_gan_d, synthesis lr_g (tiny presets)
OPTIMIZERS = ("optimizer", "g_optimizer", "d_optimizer", "r_optimizer")


def _specs(kind: str, root: Path) -> list[str]:
    """The child's runs: default and mirrored; for RESUMED also 2 steps under one strategy, 2 more under the other,
    and 2 steps on one device that the multi-worker test resumes."""
    steps = SR_STEPS if kind == "sr" else STEPS
    specs = [f"{kind},{root / 'default'},default,{steps}", f"{kind},{root / 'mirrored'},mirrored,{steps}"]
    if kind == RESUMED:
        for first, then in (("mirrored", "default"), ("default", "mirrored")):
            run = root / f"{first}-then-{then}"
            specs += [f"{kind},{run},{first},{STEPS // 2}", f"{kind},{run},{then},{STEPS},resume"]
        specs.append(f"{kind},{root / 'default-half'},default,{STEPS // 2}")  # resumed under multiworker
    return specs


def _run_child(kind: str, root: Path) -> subprocess.CompletedProcess:
    """Every run of `kind` in one child process (bounded in time)."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    command = [sys.executable, str(CHILD), *_specs(kind, root)]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)


@pytest.fixture(scope="module")
def children(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """kind -> the folder of its runs; every child finished (its stderr shown if not)."""
    from mammo_tf.data.phantom import cached_phantom_dir

    cached_phantom_dir()  # the default phantom, written once here: two children would race to write it
    roots = {kind: tmp_path_factory.mktemp(f"distribute-{kind}") for kind in KINDS}
    with ThreadPoolExecutor(max_workers=2) as pool:  # longest first: the two slots finish closer together
        done = dict(
            zip(LONGEST_FIRST, pool.map(lambda kind: _run_child(kind, roots[kind]), LONGEST_FIRST), strict=True)
        )
    for kind, child in done.items():
        assert child.returncode == 0, f"{kind}: {child.stderr[-3000:]}"
    return roots


def _free_ports(n: int) -> list[int]:
    """n ports of 127.0.0.1 free now (bound to port 0 together, then released for the workers to bind)."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(n)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]


def _wait(processes: list[subprocess.Popen], timeout: float) -> None:
    """Until every process has exited, one has failed (the others would wait for it at their next collective
    op) or `timeout` seconds have passed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        codes = [process.poll() for process in processes]
        if None not in codes or any(code for code in codes):
            return
        time.sleep(0.2)


LOST_WORKER = "a worker of the cluster stopped or cannot be reached"  # loop._lost_worker's message


def _run_cluster(base: Path, children: dict[str, Path]) -> list[subprocess.Popen]:
    """Two workers running every trainer under multiworker into base/runs; both stopped when they finish,
    when one fails and at the timeout."""
    root = base / "runs"
    shutil.copytree(children[RESUMED] / "default-half", root / "default-then-multiworker")
    specs = [f"{kind},{root / kind},multiworker,{SR_STEPS if kind == 'sr' else STEPS}" for kind in KINDS]
    specs.append(f"{RESUMED},{root / 'default-then-multiworker'},multiworker,{STEPS},resume")
    cluster = {"worker": [f"127.0.0.1:{port}" for port in _free_ports(2)]}
    workers: list[subprocess.Popen] = []
    with contextlib.ExitStack() as stack:
        for index in range(2):
            (base / f"tmp-{index}").mkdir()
            task = {"type": "worker", "index": index}
            env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "TMPDIR": str(base / f"tmp-{index}")}
            env["TF_CONFIG"] = json.dumps({"cluster": cluster, "task": task})
            log = stack.enter_context(open(base / f"worker-{index}.log", "w"))
            worker = subprocess.Popen([sys.executable, str(CHILD), *specs], env=env, stdout=log, stderr=log)
            stack.callback(worker.wait)
            stack.callback(worker.kill)  # runs first (LIFO); a no-op once the worker has exited
            workers.append(worker)
        _wait(workers, MULTIWORKER_TIMEOUT_S)
    return workers


@pytest.fixture(scope="module")
def multiworker(children: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder of the multi-worker runs (runs/: what the chief wrote; tmp-<i>/: each worker's TMPDIR;
    worker-<i>.log): every trainer, and RESUMED's half run on one device resumed to STEPS.

    A cluster whose workers both report losing the other (TensorFlow aborts the collectives when a process
    is starved for long, as when CI shares its 2 cores with other work) is started once more, afresh.
    """
    for attempt in range(2):
        base = tmp_path_factory.mktemp("multiworker")
        workers = _run_cluster(base, children)
        logs = [(base / f"worker-{index}.log").read_text() for index in range(2)]
        if attempt == 0 and all(LOST_WORKER in log for log in logs):
            continue
        break
    for index, worker in enumerate(workers):
        assert worker.returncode == 0, f"worker {index} (exit {worker.returncode}): {logs[index][-3000:]}"
    return base


def _variables(run: Path) -> list[tuple[str, np.ndarray]]:
    """Every variable of a run's last checkpoint: the model's, then each optimizer's, in a fixed order."""
    import keras

    import mammo_tf.models.classifier
    import mammo_tf.models.refiner
    import mammo_tf.models.sr
    import mammo_tf.models.synthesis  # noqa: F401  (register the classes)

    model = keras.models.load_model(run / "checkpoints" / "last.keras")
    variables = list(model.weights)
    for name in OPTIMIZERS:
        if getattr(model, name, None) is not None:
            variables += list(getattr(model, name).variables)
    return [(v.path, np.asarray(v)) for v in variables]


def _assert_same_training(run: Path, reference: Path, kind: str) -> None:
    """Every variable of `run` equals the one of `reference` within the module docstring's tolerance."""
    ours, theirs = _variables(run), _variables(reference)
    zero_gradient = re.compile(ZERO_GRADIENT.get(kind, "$^"))
    steps = SR_STEPS if kind == "sr" else STEPS
    assert len(ours) == len(theirs)
    for (name, a), (_, b) in zip(ours, theirs, strict=True):
        assert a.shape == b.shape, name
        if a.size == 0:
            continue
        a, b = a.astype(np.float64), b.astype(np.float64)
        if name.endswith("_velocity"):  # Adam's second moment: squared gradients
            a, b = np.sqrt(np.abs(a)), np.sqrt(np.abs(b))
        diff = float(np.max(np.abs(a - b)))
        atol = ZERO_GRADIENT_LR * steps if zero_gradient.fullmatch(name) else ATOL
        bound = RTOL * float(np.max(np.abs(b))) + atol
        assert diff <= bound, f"{run.name} vs {reference.name}: {name} differs by {diff:.3g} (> {bound:.3g})"


def _assert_same_logs(run: Path, reference: Path) -> None:
    """The logged losses and validation values (global means) of `run` equal those of `reference`."""
    ours, theirs = _logs(run), _logs(reference)
    assert [sorted(r) for r in ours] == [sorted(r) for r in theirs]
    for mine, expected in zip(ours, theirs, strict=True):
        for key, value in expected.items():
            wanted = value if isinstance(value, str) else pytest.approx(value, rel=RTOL, abs=ATOL)
            assert mine[key] == wanted, (expected["step"], key)


def _record(run: Path, name: str) -> dict:
    return json.loads((run / name).read_text())


def _logs(run: Path) -> list[dict]:
    """metrics.jsonl without the wall time (none when nothing was logged)."""
    path = run / "metrics.jsonl"
    lines = path.read_text().splitlines() if path.is_file() else []
    return [{k: v for k, v in json.loads(line).items() if k != "seconds"} for line in lines]


@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS)
def test_mirrored_on_two_devices_trains_as_one_device(kind: str, children: dict[str, Path]) -> None:
    root = children[kind]
    _assert_same_training(root / "mirrored", root / "default", kind)
    _assert_same_logs(root / "mirrored", root / "default")
    for strategy, replicas in (("default", 1), ("mirrored", 2)):
        config, metrics = _record(root / strategy, "config.json"), _record(root / strategy, "metrics.json")
        assert (config["strategy"], config["strategy_resolved"], config["replicas"]) == (strategy, strategy, replicas)
        steps = SR_STEPS if kind == "sr" else STEPS
        assert (metrics["strategy"], metrics["replicas"], metrics["steps"]) == (strategy, replicas, steps)


@pytest.mark.slow
@pytest.mark.parametrize(("first", "then"), [("mirrored", "default"), ("default", "mirrored")])
def test_a_run_resumes_under_another_strategy(first: str, then: str, children: dict[str, Path]) -> None:
    root = children[RESUMED]
    run = root / f"{first}-then-{then}"
    state, config = _record(run, "state.json"), _record(run, "config.json")
    assert state["finished"] and state["step"] == STEPS
    replicas = 2 if then == "mirrored" else 1
    assert (config["strategy"], config["strategy_resolved"], config["replicas"]) == (then, then, replicas)
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(steps) and steps[-1] == STEPS
    _assert_same_training(run, root / "default", RESUMED)  # as if it had run uninterrupted on one device


@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS)
def test_two_workers_train_as_one_device(kind: str, children: dict[str, Path], multiworker: Path) -> None:
    run = multiworker / "runs" / kind
    _assert_same_training(run, children[kind] / "default", kind)
    _assert_same_logs(run, children[kind] / "default")
    config, metrics = _record(run, "config.json"), _record(run, "metrics.json")
    recorded = ("strategy", "strategy_resolved", "replicas", "workers")
    assert [config[k] for k in recorded] == ["multiworker", "multiworker", 2, 2]
    assert [metrics[k] for k in ("strategy", "replicas", "workers")] == ["multiworker", 2, 2]


@pytest.mark.slow
def test_a_run_resumes_under_multiworker(children: dict[str, Path], multiworker: Path) -> None:
    """A checkpoint of one device, resumed by two workers: each reads the chief's run directory."""
    run = multiworker / "runs" / "default-then-multiworker"
    assert _record(run, "state.json")["finished"] and _record(run, "state.json")["step"] == STEPS
    assert _record(run, "config.json")["strategy_resolved"] == "multiworker"
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(steps) and steps[-1] == STEPS
    _assert_same_training(run, children[RESUMED] / "default", RESUMED)


@pytest.mark.slow
def test_only_the_chief_writes_a_run_directory(multiworker: Path) -> None:
    """The other worker trained in a temporary folder of its TMPDIR, removed at the end; the chief wrote the runs."""
    assert sorted(p.name for p in (multiworker / "runs").iterdir()) == sorted([*KINDS, "default-then-multiworker"])
    for index in range(2):
        assert not any((multiworker / f"tmp-{index}").iterdir()), f"worker {index} left files in its TMPDIR"


def test_a_run_saved_before_the_strategy_existed_resumes(tmp_path: Path) -> None:
    """A config.json without strategy, strategy_resolved, replicas and workers (written by older versions) resumes under
    the default request; the predated value of the field is 'default', what those runs used. The same for
    spacing_mm (None: the images as they are) and the training_spacing_mm record."""
    from mammo_tf.config import ClassifierConfig
    from mammo_tf.training.classifier_trainer import train_classifier

    run = tmp_path / "old"
    common = dict(preset="tiny", val_every=2, precision="float32", verbose=0)
    train_classifier(None, run, steps=2, **common)
    config = _record(run, "config.json")
    newer = ("strategy", "strategy_resolved", "replicas", "workers", "spacing_mm", "training_spacing_mm")
    old = {k: v for k, v in config.items() if k not in newer}
    (run / "config.json").write_text(json.dumps(old))
    assert ClassifierConfig.from_dict({k: old[k] for k in ClassifierConfig.field_names() if k in old}).strategy == (
        "default"
    )
    train_classifier(None, run, steps=4, resume=True, **common)
    assert _record(run, "state.json")["step"] == 4
    config = _record(run, "config.json")
    assert [config[k] for k in ("strategy", "strategy_resolved", "replicas", "workers")] == ["auto", "default", 1, 1]
    assert config["spacing_mm"] is None and config["training_spacing_mm"] > 0


def test_a_batch_that_does_not_split_over_the_replicas_is_refused(tmp_path: Path, monkeypatch) -> None:
    import mammo_tf.training.distribute as distribute
    from mammo_tf.training.classifier_trainer import train_classifier

    class ThreeReplicas:
        num_replicas_in_sync = 3

    monkeypatch.setattr(distribute, "resolve_strategy", lambda requested: ThreeReplicas())
    with pytest.raises(MammoError, match="batch size 8 does not split over the 3 replicas"):
        train_classifier(None, tmp_path / "run", preset="tiny", steps=2, val_every=2, verbose=0)
    assert not (tmp_path / "run").exists()  # a new run that failed before its first checkpoint is removed


def test_resolve_strategy_on_this_machine(monkeypatch) -> None:
    import tensorflow as tf

    from mammo_tf.config import resolve
    from mammo_tf.training.distribute import resolve_strategy, strategy_name

    default = resolve_strategy("default")
    assert default is tf.distribute.get_strategy() and strategy_name(default) == "default"
    if len(tf.config.list_logical_devices("GPU")) < 2:
        assert strategy_name(resolve_strategy("auto")) == "default"
    assert resolve_strategy("mirrored") is resolve_strategy("mirrored")  # one per process: distinct collective keys
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(MammoError, match="--strategy multiworker needs TF_CONFIG"):
        resolve_strategy("multiworker")  # refused before a strategy exists (this process has run TensorFlow)
    with pytest.raises(MammoError, match="strategy must be one of auto, default, mirrored, multiworker"):
        resolve_strategy("tpu")
    assert resolve("sr", "tiny", strategy="multiworker").strategy == "multiworker"
    assert resolve("synthesis", "tiny").strategy == "auto"


def _tf_config(task: dict | None = None, **cluster) -> dict[str, str]:
    return {"TF_CONFIG": json.dumps({"cluster": cluster or {"worker": ["a:1", "b:2"]}, "task": task})}


@pytest.mark.parametrize(
    ("environ", "workers", "task", "chief", "index"),
    [
        (_tf_config({"type": "worker", "index": 0}), 2, "worker 0", True, 0),
        (_tf_config({"type": "worker", "index": 1}), 2, "worker 1", False, 1),
        (_tf_config({"type": "chief", "index": 0}, chief=["c:0"], worker=["a:1"]), 2, "chief 0", True, 0),
        (_tf_config({"type": "worker", "index": 0}, chief=["c:0"], worker=["a:1"]), 2, "worker 0", False, 1),
    ],
)
def test_the_cluster_comes_from_tf_config(environ: dict, workers: int, task: str, chief: bool, index: int) -> None:
    from mammo_tf.training.distribute import Cluster, cluster_from_env, writes_the_run

    assert cluster_from_env(environ) == Cluster(workers=workers, task=task, chief=chief, index=index)
    assert writes_the_run(environ) is chief


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({}, "needs TF_CONFIG"),
        ({"TF_CONFIG": "{'cluster': 1}"}, "TF_CONFIG is not valid JSON"),
        ({"TF_CONFIG": '{"task": {"type": "worker", "index": 0}}'}, 'no "cluster" with a "worker" list'),
        (_tf_config({"type": "worker", "index": 0}, worker=["a:1"], ps=["p:0"]), "not ps"),
        (_tf_config({"type": "worker", "index": 0}, worker=["a"]), '"worker" must be a list of "host:port"'),
        (_tf_config({"type": "worker", "index": 0}, worker=["a:1"], chief=["b:2", "c:3"]), "more than one"),
        (_tf_config(None), '"task" type must be a job of the cluster'),
        (_tf_config({"type": "evaluator", "index": 0}), "got 'evaluator'"),
        (_tf_config({"type": "worker", "index": 2}), '"task" index must be 0..1 for worker, got 2'),
        (_tf_config({"type": "worker", "index": "1"}), "got '1'"),
    ],
)
def test_a_bad_tf_config_is_one_line_naming_what_is_wrong(environ: dict, message: str) -> None:
    from mammo_tf.training.distribute import cluster_from_env, writes_the_run

    with pytest.raises(MammoError, match=re.escape(message)):
        cluster_from_env(environ)
    assert writes_the_run(environ)  # the strict reading is resolve_strategy's


def test_multiworker_with_a_malformed_tf_config_exits_2(tmp_path: Path, monkeypatch) -> None:
    from cli_helpers import one_error_line

    monkeypatch.setenv("TF_CONFIG", '{"cluster": {"worker": ["127.0.0.1:1"]}, "task": {"type": "worker"}, }')
    run = tmp_path / "run"
    args = ("train-classifier", "--preset", "quick", "--steps", "2", "--strategy", "multiworker", "--run-dir", run)
    one_error_line(invoke(*args), "TF_CONFIG is not valid JSON")
    assert not run.exists()


def test_a_worker_other_than_the_chief_writes_a_temporary_folder(tmp_path: Path, monkeypatch) -> None:
    """It may open the chief's new run (already made); resuming, it starts from a copy of the chief's files."""
    from mammo_tf.training.runs import CHECKPOINT, Run, worker_run_dir

    shared = tmp_path / "run"
    for name, text in (("config.json", "{}"), ("state.json", '{"step": 2}'), (CHECKPOINT, "weights")):
        (shared / name).parent.mkdir(parents=True, exist_ok=True)
        (shared / name).write_text(text)
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr("tempfile.tempdir", None)  # TMPDIR is read again
    monkeypatch.setenv("TF_CONFIG", _tf_config({"type": "worker", "index": 1})["TF_CONFIG"])
    Run.precheck(shared)  # not refused: the chief's
    with worker_run_dir(shared, resume=False) as folder:
        assert folder == shared
    with pytest.raises(RuntimeError), worker_run_dir(shared, resume=True, task="worker 1") as folder:
        assert folder.parent == tmp_path / "tmp" and folder.name.startswith("mammo-tf-worker1-run-")
        assert (folder / CHECKPOINT).read_text() == "weights" and (folder / "state.json").read_text() == '{"step": 2}'
        raise RuntimeError("a failed run")
    assert not any((tmp_path / "tmp").iterdir())  # removed, also after a failure
    monkeypatch.setenv("TF_CONFIG", _tf_config({"type": "worker", "index": 0})["TF_CONFIG"])
    with pytest.raises(MammoError, match="run directory exists and is not empty"):
        Run.precheck(shared)


def test_a_worker_lost_mid_run_is_one_line(tmp_path: Path, monkeypatch) -> None:
    """Another worker's failure makes the collective ops fail on every worker: one line saying what to do."""
    import tensorflow as tf

    import mammo_tf.training.loop as loop
    from mammo_tf.training.classifier_trainer import train_classifier

    def lost(trainer, run, verbose) -> None:
        raise tf.errors.UnavailableError(None, None, "failed to connect to all addresses")

    monkeypatch.setattr(loop, "_train", lost)  # no strategy is made in this process
    monkeypatch.setenv("TF_CONFIG", _tf_config({"type": "worker", "index": 0})["TF_CONFIG"])
    with pytest.raises(MammoError, match="a worker of the cluster stopped.*no checkpoint yet: the new run was removed"):
        train_classifier(None, tmp_path / "run", preset="tiny", steps=2, val_every=2, strategy="multiworker", verbose=0)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("command", ["train-sr", "train-gan", "train-classifier", "train-insert"])
def test_every_trainer_offers_the_strategy(command: str) -> None:
    text = " ".join(invoke(command, "--help").output.split())
    assert "--strategy [auto|default|mirrored|multiworker]" in text
    assert "correctness path" in text and "not a speed-up" in text and "TF_CONFIG" in text
