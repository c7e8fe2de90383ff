"""The calcification classifier, its tasks, the synthetic mix, train-classifier and detect."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
from click.testing import CliRunner
from saving import assert_saves_and_reloads
from scipy.stats import ks_2samp

from mammo_tf.data.catalog import load_catalog
from mammo_tf.data.phantom import cached_phantom_dir
from mammo_tf.data.samplers import sample_patches
from mammo_tf.data.schema import BENIGN, MALIGNANT, NORMAL
from mammo_tf.data.tasks import intensity, matched_task, positions
from mammo_tf.errors import MammoError
from mammo_tf.models.classifier import CalcificationClassifier, compiled_classifier
from mammo_tf.training.classifier_trainer import mix_synthetic, read_synthetic, train_classifier
from mammo_tf_cli.main import cli


def _data(labels: list[int], size: int = 16):
    rng = np.random.default_rng(0)
    x = rng.random((len(labels), size, size, 1)).astype(np.float32)
    return tf.data.Dataset.from_tensors((x, np.array(labels, np.int32))).repeat()


def test_train_step_moves_the_loss_and_masks_the_malignancy_head() -> None:
    model = compiled_classifier(16, 4)
    first = model.fit(_data([0, 1, 2, 0]), steps_per_epoch=1, epochs=1, verbose=0, shuffle=False).history
    second = model.fit(_data([0, 1, 2, 0]), steps_per_epoch=1, epochs=1, verbose=0, shuffle=False).history
    assert first["loss"][0] != second["loss"][0]
    only_normal = model.fit(_data([0, 0, 0, 0]), steps_per_epoch=1, epochs=1, verbose=0, shuffle=False).history
    assert only_normal["malignant_loss"][0] == 0.0  # benign-vs-malignant loss only on calcification patches


def test_classifier_round_trip(tmp_path: Path) -> None:
    model = compiled_classifier(16, 4)
    model.fit(_data([0, 1, 2, 1]), steps_per_epoch=2, epochs=1, verbose=0, shuffle=False)
    x = np.random.default_rng(1).random((3, 16, 16, 1)).astype(np.float32)
    loaded = assert_saves_and_reloads(model, x, tmp_path, optimizers=("optimizer",))
    assert isinstance(loaded, CalcificationClassifier) and set(loaded(x)) == {"calc", "malignant"}


def test_matched_task_matches_intensity_and_position() -> None:
    catalog = load_catalog(None)
    patches = sample_patches(catalog, normal_per_image=24, seed=0)
    matched = matched_task(patches, catalog, ratio=2.0, seed=0)
    assert np.sum(matched.labels != NORMAL) == np.sum(patches.labels != NORMAL)  # every positive kept

    def gap(p) -> float:
        pos, neg = p.labels != NORMAL, p.labels == NORMAL
        features = np.column_stack([intensity(p)[:, 0], positions(p, catalog)])
        return max(ks_2samp(features[pos, j], features[neg, j]).statistic for j in range(features.shape[1]))

    assert gap(matched) < gap(patches)


def test_synthetic_folder_and_mix(tmp_path: Path) -> None:
    folder = tmp_path / "synth"
    folder.mkdir()
    rows = []
    for i, name in enumerate(["normal", "benign", "malignant"] * 2):
        np.save(folder / f"p{i}.npy", np.full((16, 16), i / 10, np.float32))
        rows.append({"file": f"p{i}.npy", "class": name, "seed": 0, "model_id": "m"})
    pd.DataFrame(rows).to_csv(folder / "manifest.csv", index=False)
    synthetic = read_synthetic(folder)
    assert synthetic.images.shape == (6, 16, 16, 1) and list(synthetic.labels[:3]) == [NORMAL, BENIGN, MALIGNANT]
    real = sample_patches(load_catalog(None), patch_size=16, normal_per_image=1, seed=0)
    mixed = mix_synthetic(real, synthetic, 1.0, seed=0)
    for label in (NORMAL, BENIGN, MALIGNANT):
        n_real = np.sum(real.labels == label)
        assert np.sum(mixed.labels == label) == 2 * n_real
    assert set(mixed.patient_id) - set(real.patient_id) == {"synthetic"}


@pytest.fixture(scope="module")
def classifier_run(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("cls") / "run"
    train_classifier(None, run, preset="tiny", verbose=0)
    return run


def test_train_classifier_run_directory(classifier_run: Path) -> None:
    config = json.loads((classifier_run / "config.json").read_text())
    assert config["kind"] == "classifier" and config["task"] == "easy"
    metrics = json.loads((classifier_run / "metrics.json").read_text())
    assert metrics["steps"] == 4 and metrics["val_patches"] > 0
    assert (classifier_run / "classifier.keras").is_file()
    catalog = load_catalog(None)
    val_patients = set(catalog.images.loc[catalog.images["split"] != "train", "patient_id"])
    assert not set(config["train_patients"]) & val_patients


def test_a_run_extended_to_steps_off_its_validation_interval_resumes(tmp_path: Path, classifier_run: Path) -> None:
    """The validation interval follows the steps (gcd of the preset's and the steps: tiny 2 at 4 steps, 5 at 10
    with val_every 5): --resume --steps 10 must extend the 4-step run from step 4, off the new interval."""
    import shutil

    run = tmp_path / "extended"
    shutil.copytree(classifier_run, run)
    train_classifier(None, run, preset="tiny", steps=10, val_every=5, resume=True, verbose=0)
    assert json.loads((run / "state.json").read_text())["step"] == 10
    assert json.loads((run / "config.json").read_text())["val_every"] == 5
    validated = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert {5, 10} <= set(validated)  # the partial interval 4..5, then 5..10


def test_the_training_spacing_is_recorded_and_a_target_spacing_resamples(tmp_path: Path, classifier_run: Path) -> None:
    """Without --spacing-mm a run learns its images' own spacing; with it, the images are resampled to it
    first; either way config.json, the model's card and detect (training_spacing) agree."""
    from mammo_tf.data.phantom import phantom_spacing_mm
    from mammo_tf.inference.spacing import training_spacing

    native = phantom_spacing_mm(int(load_catalog(None).images["width"].iloc[0]))
    config = json.loads((classifier_run / "config.json").read_text())
    assert config["spacing_mm"] is None and config["training_spacing_mm"] == pytest.approx(native)
    assert training_spacing(classifier_run / "classifier.keras") == pytest.approx(native)
    coarse = train_classifier(None, tmp_path / "coarse", preset="tiny", spacing_mm=2 * native, steps=2, verbose=0)
    config = json.loads((coarse / "config.json").read_text())
    assert config["spacing_mm"] == config["training_spacing_mm"] == pytest.approx(2 * native)
    assert training_spacing(coarse / "classifier.keras") == pytest.approx(2 * native)
    with pytest.raises(MammoError, match="spacing_mm must be None or a positive number"):
        train_classifier(None, tmp_path / "bad", preset="tiny", spacing_mm=-1.0, verbose=0)
    assert not (tmp_path / "bad").exists()


def test_init_from_starts_from_the_saved_network_and_is_recorded(tmp_path: Path, classifier_run: Path) -> None:
    # With a vanishing learning rate a run ends where it starts: from the saved network with init_from, from
    # random weights without; init_from is recorded; a missing file or a network of another width is refused.
    saved = classifier_run / "classifier.keras"
    common = dict(preset="tiny", steps=2, val_every=2, learning_rate=1e-12, seed=1, verbose=0)
    tuned = train_classifier(None, tmp_path / "tuned", init_from=saved, **common)
    fresh = train_classifier(None, tmp_path / "fresh", **common)
    source = keras.models.load_model(saved, compile=False).network.trainable_weights
    for run, same in ((tuned, True), (fresh, False)):
        weights = keras.models.load_model(run / "classifier.keras", compile=False).network.trainable_weights
        close = [np.allclose(np.asarray(a), np.asarray(b), atol=1e-6) for a, b in zip(source, weights, strict=True)]
        assert all(close) if same else not any(close), run
    assert json.loads((tuned / "config.json").read_text())["init_from"] == str(saved)
    assert json.loads((fresh / "config.json").read_text())["init_from"] is None
    with pytest.raises(MammoError, match="no classifier to start from"):
        train_classifier(None, tmp_path / "missing", init_from=tmp_path / "none.keras", **common)
    with pytest.raises(MammoError, match="not a classifier of this patch size and width"):
        train_classifier(None, tmp_path / "wider", init_from=saved, **{**common, "width": 8})
    assert not (tmp_path / "missing").exists() and not (tmp_path / "wider").exists()


def test_detect_heatmap_and_regions(tmp_path: Path, classifier_run: Path) -> None:
    film = cached_phantom_dir() / "mdb001.pgm"
    result = CliRunner().invoke(
        cli,
        [
            "detect",
            str(film),
            "--out",
            str(tmp_path / "d"),
            "--model",
            str(classifier_run),
            "--stride",
            "32",
            "--top",
            "3",
        ],
    )
    assert result.exit_code == 0, result.output
    table = pd.read_csv(tmp_path / "d" / "detections.csv")
    assert 1 <= len(table) <= 3 and list(table["rank"]) == list(range(1, len(table) + 1))
    assert (table["score"].diff().dropna() <= 0).all()
    from mammo_tf.io.images import read_image

    heat = read_image(tmp_path / "d" / "mdb001_heatmap.png").pixels
    assert heat.shape == read_image(film).pixels.shape


def test_the_compiled_heatmap_scores_every_patch_as_the_keras_call(classifier_run: Path, monkeypatch) -> None:
    """detect's XLA scorer, its last batch padded, against the float32 network's eager call patch by patch.

    Tolerance 1e-4 in probability: XLA sums in another order, and the stem's per-patch normalisation divides
    by the patch's standard deviation, which amplifies that round-off on flat patches (measured on 4 MIAS
    films with a width-16 classifier: at most 9e-5; graph mode without XLA: 2e-7); 1e-3 in logit (at least 4x that:
    a probability moves at most a quarter as much as its logit; measured here: 1.5e-7). The CPU is taken as
    one without native bfloat16, so that a bfloat16 model (the tiny preset on an Intel CPU) is scored in float32 too.
    """
    from scipy.special import expit

    import mammo_tf.machine
    from mammo_tf.inference.detect import heatmap, load_classifier
    from mammo_tf.io.images import read_image
    from mammo_tf.models.precision import float32_copy

    monkeypatch.setattr(mammo_tf.machine, "native_bfloat16", lambda: False)
    model, _, patch = load_classifier(classifier_run)
    pixels = read_image(cached_phantom_dir() / "mdb001.pgm").pixels
    half, stride = patch // 2, 32
    rows = np.arange(half, pixels.shape[0] - half + 1, stride)[::2][:3]
    cols = np.arange(half, pixels.shape[1] - half + 1, stride)[::2][:3]
    mask = np.zeros(pixels.shape, bool)
    mask[np.ix_(rows, cols)] = True  # 9 centres one patch apart: every one is a region (no suppression)
    result = heatmap(model, pixels, mask, patch, stride=stride, batch=4, top=9)  # 4, 4, then 1 padded to 4
    tiles = np.stack([pixels[r - half : r + half, c - half : c + half] for r in rows for c in cols])[..., None]
    logits = float32_copy(model.network)(tiles.astype(np.float32), training=False)["calc"]
    logits = np.asarray(logits, np.float64).reshape(rows.size, cols.size)
    eager = expit(logits)
    assert len(result.regions) == 9
    for region in result.regions.itertuples():
        at = list(rows).index(region.row), list(cols).index(region.col)
        assert region.score == pytest.approx(eager[at], abs=1e-4), region
        assert region.logit == pytest.approx(logits[at], abs=1e-3), region
    assert result.score == pytest.approx(eager.max(), abs=1e-4)
    assert result.logit == pytest.approx(logits.max(), abs=1e-3)


def test_heatmap_ranks_patches_by_logits_whose_probabilities_round_to_one(classifier_run: Path, monkeypatch) -> None:
    """Every patch's logit lifted by 40: its probability is 1.0 even in float64, a tie; the logits keep the order,
    and the film's logit is the top region's. (Scored in float32 on every CPU, as in the test above: a bfloat16
    network's coarser features could tie two logits.)"""
    import mammo_tf.machine
    from mammo_tf.inference.detect import heatmap, load_classifier
    from mammo_tf.io.images import read_image

    monkeypatch.setattr(mammo_tf.machine, "native_bfloat16", lambda: False)
    model, _, patch = load_classifier(classifier_run)
    bias = model.network.get_layer("calc_logit").bias
    bias.assign(bias + 40.0)
    pixels = read_image(cached_phantom_dir() / "mdb001.pgm").pixels
    result = heatmap(model, pixels, np.ones(pixels.shape, bool), patch, stride=64, top=5)
    assert len(result.regions) == 5 and (result.regions["score"] == 1.0).all() and result.score == 1.0  # a tie
    logits = result.regions["logit"].to_numpy()
    assert result.logit == logits[0] and (np.diff(logits) < 0).all()  # still ranked
    assert logits[-1] > 37


def test_detect_scores_films_at_the_classifiers_training_spacing(tmp_path: Path, classifier_run: Path) -> None:
    """A film of 0.1 mm pixels through a classifier trained on MIAS (0.2 mm): scored at 0.2 mm, mapped back."""
    from mammo_tf.io.images import read_image

    model = tmp_path / "model"
    shutil.copytree(classifier_run, model)
    config = json.loads((model / "config.json").read_text())
    (model / "config.json").write_text(json.dumps({**config, "training_spacing_mm": 0.2}))  # as if on MIAS
    film = cached_phantom_dir() / "mdb001.pgm"
    tables = {}
    for flag in ("--resample", "--no-resample"):
        out = tmp_path / flag
        args = ["detect", film, "--out", out, "--model", model, "--input-spacing", "0.1", "--stride", "32", flag]
        result = CliRunner().invoke(cli, [str(a) for a in args])
        assert result.exit_code == 0, result.output
        tables[flag] = pd.read_csv(out / "detections.csv")
        assert read_image(out / "mdb001_heatmap.png").pixels.shape == read_image(film).pixels.shape
    resampled, native = tables["--resample"], tables["--no-resample"]
    assert (resampled["spacing_mm"] == 0.1).all() and (resampled["scored_at_mm"] == 0.2).all()
    assert (native["scored_at_mm"] == 0.1).all()
    height, width = read_image(film).pixels.shape
    assert resampled["row"].between(0, height - 1).all() and resampled["col"].between(0, width - 1).all()


def test_detect_refuses_a_model_that_is_not_a_classifier(tmp_path: Path) -> None:
    inputs = keras.Input((4,))
    other = tmp_path / "other.keras"
    keras.Model(inputs, keras.layers.Dense(1)(inputs), name="other").save(other)
    film = cached_phantom_dir() / "mdb001.pgm"
    result = CliRunner().invoke(cli, ["detect", str(film), "--out", str(tmp_path / "d"), "--model", str(other)])
    assert result.exit_code == 2 and "detect needs a calcification classifier" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_ship_run_and_the_shipped_default(tmp_path: Path, classifier_run: Path, monkeypatch) -> None:
    from mammo_tf.workflows.cards import ship_run

    folder = ship_run(classifier_run, "calc-classifier", tmp_path / "models")
    card = json.loads((folder / "card.json").read_text())
    assert card["kind"] == "classifier" and card["training"]["steps"] == 4 and (folder / "card.md").is_file()
    monkeypatch.setenv("MAMMO_MODELS", str(tmp_path / "models"))  # detect without --model: the shipped default
    film = cached_phantom_dir() / "mdb002.pgm"
    result = CliRunner().invoke(cli, ["detect", str(film), "--out", str(tmp_path / "d"), "--stride", "64"])
    assert result.exit_code == 0, result.output
    assert pd.read_csv(tmp_path / "d" / "detections.csv")["model"].str.startswith("calc-classifier@").all()


def test_a_card_of_an_unfinished_run_says_so(tmp_path: Path, classifier_run: Path) -> None:
    from mammo_tf.workflows.cards import ship_run

    run = tmp_path / "run"
    shutil.copytree(classifier_run, run)
    state = json.loads((run / "state.json").read_text())
    (run / "state.json").write_text(json.dumps({**state, "finished": False, "step": 2}))
    (run / "metrics.json").unlink()
    folder = ship_run(run, "calc-classifier", tmp_path / "models")
    text = (folder / "card.md").read_text()
    assert "not finished: this is its checkpoint at step 2 of 4" in text and "No final run metrics" in text
    assert json.loads((folder / "card.json").read_text())["training"]["finished"] is False
