"""The CLI is quiet: TensorFlow's start-up lines never reach the user, so a failure is exactly one line.

Each case runs `mammo-tf` in a fresh process (TensorFlow prints at import, which an in-process runner
would have done long before), with a bad input that fails only after TensorFlow was imported, one per
command group: data, train-*, upscale / synth / detect, evaluate-*, export.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from mammo_tf.data.phantom import cached_phantom_dir
from mammo_tf.io.quiet import is_startup_noise

REPO = Path(__file__).resolve().parents[1]
SR_MODEL = REPO / "saved_models" / "sr-x2" / "model.keras"


def mammo_tf(*args: str | Path, verbose: bool = False) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "MAMMO_VERBOSE")}
    if verbose:
        env["MAMMO_VERBOSE"] = "1"
    command = [sys.executable, "-m", "mammo_tf_cli.main", *map(str, args)]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def broken_sr(tmp_path_factory) -> Path:
    """An SR model whose config reads fine (so the kind check passes) but whose weights are damaged:
    the error comes from Keras, after TensorFlow was imported."""
    path = tmp_path_factory.mktemp("models") / "broken.keras"
    with zipfile.ZipFile(SR_MODEL) as source, zipfile.ZipFile(path, "w") as target:
        for name in source.namelist():
            data = source.read(name)
            target.writestr(name, b"damaged" if name.endswith(".h5") else data)
    return path


@pytest.fixture(scope="module")
def foreign_run(tmp_path_factory) -> Path:
    """A run directory made with another config: train-gan --resume refuses it after importing TensorFlow."""
    run = tmp_path_factory.mktemp("runs") / "other"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.keras").write_bytes(b"PK")
    (run / "state.json").write_text(json.dumps({"step": 2, "finished": False}))
    (run / "config.json").write_text(json.dumps({"kind": "synthesis", "seed": 99}))
    return run


CASES = {
    "data": lambda m, r, out: ("data", "info", "--data", out / "missing-folder"),
    "train": lambda m, r, out: ("train-gan", "--preset", "quick", "--run-dir", r, "--resume"),
    "upscale": lambda m, r, out: ("upscale", cached_phantom_dir() / "mdb001.pgm", "--model", m, "--out", out / "o"),
    "evaluate": lambda m, r, out: ("evaluate-sr", "--model", m, "--out", out / "o"),
    "export": lambda m, r, out: ("export", m, "--name", "broken", "--out", out / "o"),
}


@pytest.mark.parametrize("group", sorted(CASES))
@pytest.mark.slow
def test_a_failing_command_prints_exactly_one_line(
    group: str, broken_sr: Path, foreign_run: Path, tmp_path: Path
) -> None:
    result = mammo_tf(*CASES[group](broken_sr, foreign_run, tmp_path))
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1 and lines[0].startswith("mammo-tf"), result.stderr
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_a_successful_command_says_nothing_about_cuda(tmp_path: Path) -> None:
    result = mammo_tf("synth", "--n", "4", "--out", tmp_path / "synth")
    assert result.returncode == 0, result.stderr
    assert "CUDA" not in result.stderr and "cuInit" not in result.stderr, result.stderr
    assert "absl::InitializeLog" not in result.stderr
    assert "wrote 4 patches" in result.stdout


@pytest.mark.parametrize(
    "line",
    [
        "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
        "I0000 00:00:1796540617.844853    2266 cudart_stub.cc:31] Could not find cuda drivers on your machine, "
        "GPU will not be used.",
        "I0000 00:00:1796540617.892304    2266 cpu_feature_guard.cc:227] This TensorFlow binary is optimized to "
        "use available CPU instructions in performance-critical operations.",
        "To enable the following instructions: AVX2 FMA, in other operations, rebuild TensorFlow with the "
        "appropriate compiler flags.",
        "E0000 00:00:1796540622.400487    2266 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error: "
        "Failed call to cuInit: UNKNOWN ERROR (303)",
    ],
)
def test_known_start_up_lines_are_noise(line: str) -> None:
    assert is_startup_noise(line)


@pytest.mark.parametrize(
    "line",
    [
        "mammo-tf: error: x.keras: not a .keras archive",
        "W0000 00:00:1796540617.1 2266 op_kernel.cc:1857] OP_REQUIRES failed at save_restore.cc: No space left",
        "Traceback (most recent call last):",
        "UserWarning: something a user should see",
    ],
)
def test_anything_else_passes_through(line: str) -> None:
    assert not is_startup_noise(line)
