"""train-gan / synth / evaluate-gan end to end on the default phantom at 16 px, and their bad inputs."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

pytest.importorskip("tensorflow")

from cli_helpers import invoke, one_error_line

TINY_TRAIN = ["--patch-size", "16", "--precision", "float32", "--seed", "0"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A finished 2-step train-gan run on the default phantom (quick preset at 16 px)."""
    run = tmp_path_factory.mktemp("gan") / "run"
    result = invoke("train-gan", *TINY_TRAIN, "--steps", 2, "--val-every", 2, "--run-dir", run)
    assert result.exit_code == 0, result.output
    return run


def test_train_gan_run_directory_contract(run_dir: Path) -> None:
    config = json.loads((run_dir / "config.json").read_text())
    assert config["kind"] == "synthesis" and config["patch_size"] == 16 and config["steps"] == 2
    assert config["train_patients"] and sum(config["train_patches"].values()) > 0
    assert config["precision_resolved"] == "float32" and config["preset"] == "quick"
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert any("ada_p" in r and "val_mean_gap" in r for r in records)  # logged at validation
    assert any("d_loss" in r and "g_loss" in r for r in records)
    final = json.loads((run_dir / "metrics.json").read_text())
    assert final["steps"] == 2 and "ada_p" in final and np.isfinite(final["final"]["d_loss"])
    for name in ("checkpoints/last.keras", "generator.keras", "samples/real-0000000.png",
                 "samples/samples-0000002.png"):  # fmt: skip
        assert (run_dir / name).is_file(), name
    grid = cv2.imread(str(run_dir / "samples" / "samples-0000002.png"), cv2.IMREAD_UNCHANGED)
    assert grid.shape == (3 * 16 + 2 * 2, 8 * 16 + 7 * 2)  # one row of 8 per class
    assert not list(run_dir.rglob("*.part*"))


def test_train_gan_resume_extends_and_refusals(run_dir: Path, tmp_path: Path) -> None:
    import shutil

    import keras

    import mammo_tf.models.synthesis  # noqa: F401  (registers SynthesisGAN)

    resumed = tmp_path / "resumed"
    shutil.copytree(run_dir, resumed)
    result = invoke("train-gan", *TINY_TRAIN, "--steps", 3, "--val-every", 2, "--run-dir", resumed, "--resume")
    assert result.exit_code == 0, result.output
    state = json.loads((resumed / "state.json").read_text())
    assert state["step"] == 3 and state["finished"]
    model = keras.models.load_model(resumed / "checkpoints" / "last.keras")
    assert int(model.d_optimizer.iterations) == int(model.g_optimizer.iterations) == 3
    one_error_line(invoke("train-gan", *TINY_TRAIN, "--steps", 2, "--run-dir", run_dir), "not empty")
    one_error_line(
        invoke("train-gan", *TINY_TRAIN[:-1], "5", "--steps", 3, "--run-dir", run_dir, "--resume"), "another config"
    )


def test_train_gan_refuses_a_wrong_patch_size_before_writing(tmp_path: Path) -> None:
    run = tmp_path / "bad"
    one_error_line(invoke("train-gan", "--patch-size", 48, "--steps", 1, "--run-dir", run), "patch_size", "48")
    assert not run.exists()
    one_error_line(invoke("train-gan", "--patch-size", 16, "--steps", 0, "--run-dir", run), "steps")
    assert not run.exists()


def test_synth_writes_patches_and_manifest_same_seed_same_bytes(run_dir: Path, tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    for out in (a, b):
        result = invoke("synth", "--n", 7, "--model", run_dir, "--out", out, "--seed", 3)
        assert result.exit_code == 0, result.output
    manifest = pd.read_csv(a / "manifest.csv")
    assert list(manifest.columns) == ["file", "class", "class_id", "seed", "index", "truncation", "model"]
    assert manifest["class"].value_counts().to_dict() == {"normal": 3, "benign": 2, "malignant": 2}
    assert (manifest["seed"] == 3).all() and manifest["model"].str.startswith("generator@").all()
    assert sorted(p.name for p in a.iterdir()) == sorted([*manifest["file"], "manifest.csv"])
    for name in manifest["file"]:
        assert (a / name).read_bytes() == (b / name).read_bytes()
    image = cv2.imread(str(a / manifest["file"][0]), cv2.IMREAD_UNCHANGED)
    assert image.dtype == np.uint16 and image.shape == (16, 16)

    other = tmp_path / "c"
    invoke("synth", "--n", 7, "--model", run_dir, "--out", other, "--seed", 4)
    assert (other / manifest["file"][0]).read_bytes() != (a / manifest["file"][0]).read_bytes()
    result = invoke("synth", "--n", 2, "--class", "malignant", "--format", "npy", "--model", run_dir, "--out", a,
                    "--overwrite")  # fmt: skip
    assert result.exit_code == 0, result.output
    arrays = sorted(a.glob("*.npy"))
    assert [p.name for p in arrays] == ["malignant_00000.npy", "malignant_00001.npy"]
    patch = np.load(arrays[0])
    assert patch.dtype == np.float32 and patch.shape == (16, 16) and 0 <= patch.min() <= patch.max() <= 1
    assert not list(a.glob("*.png")) and not list(tmp_path.glob(".*"))  # replaced whole, no temporaries


def test_synth_bad_inputs_write_nothing(run_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    one_error_line(invoke("synth", "--n", 0, "--model", run_dir, "--out", out), "--n")
    one_error_line(invoke("synth", "--n", 2, "--class", "calcified", "--model", run_dir, "--out", out), "--class")
    assert not out.exists()
    import keras

    plain = tmp_path / "plain.keras"
    keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)]).save(plain)
    one_error_line(invoke("synth", "--n", 2, "--model", plain, "--out", out), "synth needs a synthesis model")
    one_error_line(invoke("synth", "--n", 2, "--model", tmp_path / "missing.keras", "--out", out), "not found")
    assert not out.exists()
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("keep me")
    one_error_line(invoke("synth", "--n", 2, "--model", run_dir, "--out", busy), "not empty", "--overwrite")
    one_error_line(invoke("synth", "--n", 2, "--model", run_dir, "--out", busy, "--overwrite"), "manifest.csv")
    assert [p.name for p in busy.iterdir()] == ["notes.txt"]


def test_evaluate_gan_report_beside_floors(run_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    result = invoke("evaluate-gan", "--model", run_dir, "--out", out, "--feature-steps", 5)
    assert result.exit_code == 0, result.output
    assert "mammo-featnet-v1-" in result.output and "floor" in result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["feature_network"].startswith("mammo-featnet-v1-") and metrics["patch_size"] == 16
    pooled = metrics["groups"]["all"]
    for side in ("synthetic", "floor"):
        assert pooled[side]["fd"] is not None and pooled[side]["kid"] is not None
        assert pooled[side]["n"] == pooled["synthetic"]["n"]  # floor and synthetic: the same sizes
    assert set(metrics["memorisation"]) == {"features", "pixels"}
    assert metrics["memorisation"]["features"]["closest"]
    assert metrics["specks"] and "wasserstein_floor" in metrics["specks"][0]
    report = (out / "report.md").read_text()
    assert metrics["feature_network"] in report and "floor" in report
    for name in ("grids.png", "closest_pairs.png", "specks.csv"):
        assert (out / name).is_file(), name
    one_error_line(invoke("evaluate-gan", "--model", run_dir, "--out", out, "--feature-steps", 5), "not empty")


@pytest.mark.parametrize(
    ("start", "end", "every", "expected"),
    [
        (0, 6, 2, [(0, 6, 2)]),
        (0, 7, 2, [(0, 6, 2), (6, 7, 1)]),
        (6, 10, 4, [(6, 8, 2), (8, 10, 2)]),
        (5, 17, 4, [(5, 8, 3), (8, 16, 4), (16, 17, 1)]),
        (3, 3, 4, []),
    ],
)
def test_segments_cover_the_steps_in_whole_epochs(start, end, every, expected) -> None:
    from mammo_tf.training.loop import segments

    pieces = segments(start, end, every)
    assert pieces == expected
    for a, b, interval in pieces:  # what fit_in_run needs: one or more whole epochs of `interval`
        assert (b - a) % interval == 0 and b // interval - a // interval == (b - a) // interval
