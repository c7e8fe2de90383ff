"""--strategy on every trainer: a batch split over replicas trains as on one device; runs resume across strategies.

Mirrored runs use 2 logical CPU devices, which must be configured before TensorFlow initialises, so each
trainer's runs go in a child process (tests/distribute_child.py, two children at a time, bounded in time): the
default strategy, then mirrored, on the same global batches and seed (tiny preset, float32, 4 steps; SR 6: 2
pretraining, 4 GAN). After them every variable of the checkpoint (the networks, the EMA generator, ADA's p, the
history buffer, the spectral-norm vectors, each optimizer's step count and moments) must agree.

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
  steps of up to one learning rate, different in each run (measured: up to 1e-4 after 4 steps).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import invoke

from mammo_tf.errors import MammoError

CHILD = Path(__file__).with_name("distribute_child.py")
KINDS = ("sr", "gan", "classifier", "insert")
STEPS = 4
SR_STEPS = 6  # 2 pretraining + 4 GAN: the discriminator's relativistic losses need a few steps to differ per replica
RESUMED = "insert"  # the trainer resumed across strategies (two networks, two optimizers, a history buffer)
TIMEOUT_S = 300  # per child; each takes 20-60 s on 2 shared cores
RTOL, ATOL = 5e-3, 1e-6
ZERO_GRADIENT = {"sr": r"d_logits/bias", "gan": r"(project|up\d+_(conv\d+|skip))/bias"}  # with their EMA copies
ZERO_GRADIENT_LR = 1e-4  # per step: SR's lr_gan_d, synthesis lr_g (tiny presets)
OPTIMIZERS = ("optimizer", "g_optimizer", "d_optimizer", "r_optimizer")


def _specs(kind: str, root: Path) -> list[str]:
    """The child's runs: default and mirrored; for RESUMED also 2 steps under one strategy, 2 more under the other."""
    steps = SR_STEPS if kind == "sr" else STEPS
    specs = [f"{root / 'default'},default,{steps}", f"{root / 'mirrored'},mirrored,{steps}"]
    if kind == RESUMED:
        for first, then in (("mirrored", "default"), ("default", "mirrored")):
            run = root / f"{first}-then-{then}"
            specs += [f"{run},{first},{STEPS // 2}", f"{run},{then},{STEPS},resume"]
    return specs


def _run_child(kind: str, root: Path) -> subprocess.CompletedProcess:
    """Every run of `kind` in one child process (bounded in time)."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    command = [sys.executable, str(CHILD), kind, *_specs(kind, root)]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)


@pytest.fixture(scope="module")
def children(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """kind -> the folder of its runs; every child finished (its stderr shown if not)."""
    from mammo_tf.data.phantom import cached_phantom_dir

    cached_phantom_dir()  # the default phantom, written once here: two children would race to write it
    roots = {kind: tmp_path_factory.mktemp(f"distribute-{kind}") for kind in KINDS}
    with ThreadPoolExecutor(max_workers=2) as pool:
        done = dict(zip(KINDS, pool.map(lambda kind: _run_child(kind, roots[kind]), KINDS), strict=True))
    for kind, child in done.items():
        assert child.returncode == 0, f"{kind}: {child.stderr[-3000:]}"
    return roots


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
    mirrored, default = _logs(root / "mirrored"), _logs(root / "default")  # losses are logged as global means
    assert [sorted(r) for r in mirrored] == [sorted(r) for r in default]
    for ours, theirs in zip(mirrored, default, strict=True):
        for key, value in theirs.items():
            expected = value if isinstance(value, str) else pytest.approx(value, rel=RTOL, abs=ATOL)
            assert ours[key] == expected, (theirs["step"], key)
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


def test_a_run_saved_before_the_strategy_existed_resumes(tmp_path: Path) -> None:
    """A config.json without strategy, strategy_resolved and replicas (written by an older version) resumes under
    the default request; the predated value of the field is 'default', what those runs used. The same for
    spacing_mm (None: the images as they are) and the training_spacing_mm record."""
    from mammo_tf.config import ClassifierConfig
    from mammo_tf.training.classifier_trainer import train_classifier

    run = tmp_path / "old"
    common = dict(preset="tiny", val_every=2, precision="float32", verbose=0)
    train_classifier(None, run, steps=2, **common)
    config = _record(run, "config.json")
    newer = ("strategy", "strategy_resolved", "replicas", "spacing_mm", "training_spacing_mm")
    old = {k: v for k, v in config.items() if k not in newer}
    (run / "config.json").write_text(json.dumps(old))
    assert ClassifierConfig.from_dict({k: old[k] for k in ClassifierConfig.field_names() if k in old}).strategy == (
        "default"
    )
    train_classifier(None, run, steps=4, resume=True, **common)
    assert _record(run, "state.json")["step"] == 4
    config = _record(run, "config.json")
    assert (config["strategy"], config["strategy_resolved"], config["replicas"]) == ("auto", "default", 1)
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


def test_resolve_strategy_on_this_machine() -> None:
    import tensorflow as tf

    from mammo_tf.config import resolve
    from mammo_tf.training.distribute import resolve_strategy, strategy_name

    default = resolve_strategy("default")
    assert default is tf.distribute.get_strategy() and strategy_name(default) == "default"
    if len(tf.config.list_logical_devices("GPU")) < 2:
        assert strategy_name(resolve_strategy("auto")) == "default"
    with pytest.raises(MammoError, match="multiworker is not implemented yet"):
        resolve_strategy("multiworker")
    with pytest.raises(MammoError, match="strategy must be one of auto, default, mirrored"):
        resolve_strategy("tpu")
    with pytest.raises(MammoError, match="sr config: strategy 'multiworker' is not implemented yet"):
        resolve("sr", "tiny", strategy="multiworker")
    assert resolve("synthesis", "tiny").strategy == "auto"


@pytest.mark.parametrize("command", ["train-sr", "train-gan", "train-classifier", "train-insert"])
def test_every_trainer_offers_the_strategy(command: str) -> None:
    text = " ".join(invoke(command, "--help").output.split())
    assert "--strategy [auto|default|mirrored]" in text
    assert "correctness path" in text and "not a speed-up" in text
