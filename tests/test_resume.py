"""Every trainer survives `kill -9` mid-run: --resume continues from the last checkpoint to the same end.

Each trainer runs in a child process on the default phantom (tiny preset), is killed with SIGKILL once it
has written a checkpoint past its first, and is resumed here with the same arguments.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # a child process per trainer, killed and resumed

# (module, function, keyword arguments): enough steps that the child is still training when it is killed (at
# least 5 checkpoints after KILL_AFTER_STEP, several seconds), few enough that the resumed run is short.
TRAINERS = {
    "sr": ("mammo_tf.workflows.training", "train_sr", {"preset": "tiny", "pretrain_steps": 14, "gan_steps": 2}),
    "gan": ("mammo_tf.training.gan_trainer", "train_gan", {"preset": "tiny", "steps": 16, "val_every": 2}),
    "classifier": (
        "mammo_tf.training.classifier_trainer",
        "train_classifier",
        {"preset": "tiny", "steps": 24, "val_every": 2},
    ),
}
KILL_AFTER_STEP = 4  # two checkpoints written: the kill lands between checkpoints, not before the first
TIMEOUT_S = 180


def _state(run: Path) -> dict:
    try:
        return json.loads((run / "state.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


@pytest.mark.parametrize("kind", sorted(TRAINERS))
def test_kill_9_then_resume_finishes_the_run(kind: str, tmp_path: Path) -> None:
    module, function, kwargs = TRAINERS[kind]
    run = tmp_path / kind
    code = f"from {module} import {function} as train\ntrain(None, {str(run)!r}, verbose=0, **{kwargs!r})\n"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    child = subprocess.Popen([sys.executable, "-c", code], env=env, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + TIMEOUT_S
        while _state(run).get("step", 0) < KILL_AFTER_STEP:
            assert child.poll() is None, f"the {kind} trainer ended before it was killed: {child.stderr.read()}"
            assert time.monotonic() < deadline, f"no checkpoint past step {KILL_AFTER_STEP} in {TIMEOUT_S} s"
            time.sleep(0.05)
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == -signal.SIGKILL
    killed_at = _state(run)["step"]
    assert not _state(run)["finished"]

    import importlib

    train = getattr(importlib.import_module(module), function)
    train(None, run, resume=True, verbose=0, **kwargs)

    state = _state(run)
    total = kwargs.get("steps") or kwargs["pretrain_steps"] + kwargs["gan_steps"]
    assert state["finished"] and state["step"] == total > killed_at
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(steps), "records logged after the last checkpoint must not be repeated"
    assert (run / "metrics.json").is_file() and not list(run.rglob("*.part*"))
