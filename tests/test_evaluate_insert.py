"""evaluate-insert on the phantom: a tiny insertion run scored by tiny classifiers; KID beside its real-vs-real
floor; the closest training cluster of each layout; the leakage refusal; the train_classifier option that trains
on synthetic positives and real negatives only."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from cli_helpers import invoke, one_error_line

from mammo_tf.data.catalog import load_catalog
from mammo_tf.data.samplers import Patches
from mammo_tf.data.schema import BENIGN, MALIGNANT, NORMAL
from mammo_tf.errors import MammoError
from mammo_tf.workflows.training import train_insert


@pytest.fixture(scope="module")
def insert_run(tmp_path_factory) -> Path:
    """A finished tiny insertion run on the default phantom (32 px, 4 steps)."""
    run = tmp_path_factory.mktemp("runs") / "insert"
    train_insert(None, run, preset="tiny", verbose=0)
    return run


@pytest.fixture(scope="module")
def evaluated(insert_run: Path, tmp_path_factory) -> tuple[Path, dict]:
    from mammo_tf.evaluation.insert_report import evaluate_insert

    out = tmp_path_factory.mktemp("eval") / "report"
    metrics = evaluate_insert(
        insert_run, None, out, n=24, classifier_preset="tiny", classifier_steps=4, bootstrap=50, seed=1, feature_steps=4
    )
    return out, metrics


def _test_patients() -> set[str]:
    catalog = load_catalog(None)
    return set(catalog.images.loc[catalog.images["split"] == "test", "patient_id"])


def test_writes_the_report_metrics_and_grids(evaluated) -> None:
    out, metrics = evaluated
    assert sorted(p.name for p in out.iterdir()) == ["cluster_distances.csv", "grids.png", "metrics.json", "report.md"]
    assert (out / "grids.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((out / "metrics.json").read_text())["model"] == metrics["model"]
    report = (out / "report.md").read_text()
    assert "test patients" in report and "Realism" in report and "nn_spacing" in report
    assert "KID against the real-vs-real floor" in report and "Closest training cluster of each layout" in report
    for task in ("easy", "matched"):
        arms = metrics["tstr"][task]["arms"]
        assert list(arms) == ["real only", "inserted, rendered", "inserted, refined"]
        assert arms["real only"]["difference"]["estimate"] == 0.0
    for detector in ("cnn", "texture"):
        assert set(metrics["realism"][detector]["arms"]) == {"inserted, rendered", "inserted, refined"}
    stats = {(r["class"], r["statistic"], r["set"]) for r in metrics["specks"]}
    assert ("malignant", "nn_spacing", "inserted, refined") in stats
    # synth-64 makes 64 px patches, the tiny insertion model 32 px: the default GAN arm is skipped, saying why
    assert metrics["gan_model"] is None and "32" in metrics["gan_skipped"]


def test_kid_of_each_set_stands_beside_the_real_vs_real_floor(evaluated) -> None:
    _, metrics = evaluated
    kid = metrics["kid"]
    assert kid["feature_network"].startswith("mammo-featnet-v1-")
    real = metrics["counts"]["real_calcification_patches"]
    assert set(kid["groups"]) == {"all", "benign", "malignant"}  # the phantom's test patients have both classes
    for group, g in kid["groups"].items():
        classes = ["benign", "malignant"] if group == "all" else [group]
        assert g["n_real"] == sum(real["test"][c] for c in classes)  # the test patients' real patches
        assert g["floor"]["n"] == sum(real["train"][c] for c in classes)  # against the training patients' real ones
        inserted = sum(metrics["counts"]["inserted"][c] for c in classes)
        for name in ("floor", "inserted, rendered", "inserted, refined"):
            assert np.isfinite(g[name]["kid"]) and g[name]["kid_std"] >= 0, (group, name)
        for name in ("inserted, rendered", "inserted, refined"):
            assert g[name]["n"] == inserted
            ratio = g[name]["ratio_to_floor"]
            assert (
                ratio == pytest.approx(g[name]["kid"] / g["floor"]["kid"]) if g["floor"]["kid"] > 0 else ratio is None
            )


def test_each_layout_gets_its_closest_training_cluster(evaluated) -> None:
    out, metrics = evaluated
    c = metrics["closest_training_cluster"]
    table = pd.read_csv(out / "cluster_distances.csv", keep_default_na=False, na_values=[""])
    inserted = table[table["set"] == "inserted"]
    assert len(inserted) == metrics["n_inserted"] and inserted["name"].is_unique
    measured = inserted.dropna(subset=["distance"])
    assert len(measured) == c["groups"]["inserted"]["all"]["n_checked"] > 0
    assert (measured["distance"] >= 0).all() and (measured["n_specks"] >= c["min_specks"]).all()
    assert c["min_inserted"] == pytest.approx(measured["distance"].min())
    # held-out: the real clusters of val and test patients, none of them seen by the layout model
    held = table[table["set"] == "held-out"]
    assert len(held) and c["heldout_splits"] and set(c["heldout_splits"]) <= {"val", "test"}
    held_patients = {name.split("/")[0] for name in held["name"]}
    assert not held_patients & set(metrics["model_patients"])
    # each nearest cluster is a training cluster the layouts were fitted on, of the same class
    fitted = set(metrics["model_patients"])
    assert {name.split("/")[0] for name in measured["nearest"]} <= fitted
    for key in ("threshold", "fraction_below", "expected_fraction", "p_value", "min_heldout"):
        assert np.isfinite(c[key]), key
    assert 0 <= c["fraction_below"] <= 1 and isinstance(c["passed"], bool)
    assert c["closest"][0]["distance"] == pytest.approx(c["min_inserted"])


class _PixelStatsNet:
    """A stand-in feature network: three pixel statistics per patch."""

    name = "pixel-stats"
    meta: dict = {}

    @staticmethod
    def embed(images: np.ndarray) -> np.ndarray:
        flat = np.asarray(images, np.float64).reshape(len(images), -1)
        return np.stack([flat.mean(axis=1), flat.std(axis=1), flat.max(axis=1)], axis=1)


def _patches(images: np.ndarray, labels: np.ndarray) -> Patches:
    n = len(labels)
    ids = np.array([f"p{i}" for i in range(n)])
    return Patches(images[..., None], labels, ids, ids, np.zeros(n, int), np.zeros(n, int))


def test_the_kid_floor_is_the_training_patients_real_patches_against_the_test_ones() -> None:
    from mammo_tf.evaluation.gan import kid
    from mammo_tf.evaluation.gan_report import KID_SUBSETS
    from mammo_tf.evaluation.insert_kid import kid_against_floor

    rng = np.random.default_rng(0)
    labels = np.array([BENIGN, MALIGNANT] * 10, np.int32)
    real_test = _patches(rng.random((20, 8, 8), np.float32), labels)
    floor = _patches(rng.random((30, 8, 8), np.float32) ** 2, np.array([BENIGN, MALIGNANT] * 15, np.int32))
    far = rng.random((20, 8, 8), np.float32) * 0.2
    net = _PixelStatsNet()
    sets = {"copy of the floor": (floor.images[..., 0], floor.labels), "far": (far, labels)}
    result = kid_against_floor(net, real_test, floor, sets, seed=3)
    benign = result["groups"]["benign"]
    expected = kid(
        net.embed(floor.images[floor.labels == BENIGN]),
        net.embed(real_test.images[labels == BENIGN]),
        KID_SUBSETS,
        5,
        3,
    )  # fmt: skip  (subsets of half the 10 real benign patches)
    assert (benign["floor"]["kid"], benign["floor"]["kid_std"]) == pytest.approx(expected)
    assert benign["floor"]["kid"] > 0 and benign["copy of the floor"]["ratio_to_floor"] == pytest.approx(1.0)
    assert benign["far"]["ratio_to_floor"] > 1.0
    assert result["groups"]["all"]["n_real"] == 20 and result["groups"]["all"]["floor"]["n"] == 30


def test_every_classifier_records_patients_disjoint_from_the_test_patients(evaluated) -> None:
    _, metrics = evaluated
    test = _test_patients()
    assert set(metrics["test_patients"]) == test and metrics["n_test_patients"] == len(test)
    names = [c["name"] for c in metrics["classifiers"]]
    assert len(names) == 2 * 3 + 2 and len(set(names)) == len(names)  # 2 tasks x 3 arms, 2 realism detectors
    for c in metrics["classifiers"]:
        assert c["train_patients"] and c["val_patients"], c["name"]
        assert not set(c["all_patients"]) & test, c["name"]
    assert not set(metrics["model_patients"]) & test


def test_a_model_whose_fit_saw_a_test_patient_is_refused(insert_run: Path, tmp_path: Path) -> None:
    leaky = tmp_path / "leaky"
    shutil.copytree(insert_run, leaky, ignore=shutil.ignore_patterns("checkpoints", "tb", "samples"))
    fit = json.loads((leaky / "insertion.json").read_text())
    patient = sorted(_test_patients())[0]
    fit["layouts"]["patients"] = sorted([*fit["layouts"]["patients"], patient])
    (leaky / "insertion.json").write_text(json.dumps(fit))
    out = tmp_path / "out"
    result = invoke("evaluate-insert", "--model", leaky, "--out", out, "--n", 10, "--gan-model", "none")
    one_error_line(result, "test patient", patient)
    assert not out.exists()
    with pytest.raises(MammoError, match="saw 1 test patient"):
        from mammo_tf.evaluation.insert_report import evaluate_insert

        evaluate_insert(leaky, None, out, n=10, classifier_preset="tiny", gan_model="none")
    assert not out.exists()


def test_train_classifier_on_synthetic_positives_has_no_real_positive(
    insert_run: Path, tmp_path: Path, monkeypatch
) -> None:
    import mammo_tf.training.loop as loop
    from mammo_tf.training.classifier_trainer import train_classifier

    folder = tmp_path / "inserted"
    result = invoke("insert", "--n", 6, "--model", insert_run, "--out", folder, "--format", "npy", "--no-refine")
    assert result.exit_code == 0, result.stderr
    seen = {}
    real_train = loop.train

    def capture(trainer, *args, **kwargs):
        seen["patches"] = trainer.train_patches
        return real_train(trainer, *args, **kwargs)

    monkeypatch.setattr(loop, "train", capture)
    run = train_classifier(
        None, tmp_path / "run", preset="tiny", verbose=0, synthetic=folder, synthetic_positives_only=True, patch_size=32
    )  # insert writes patches of the size the (tiny) refiner was trained at
    patches = seen["patches"]
    synthetic = patches.patient_id == "synthetic"
    assert (patches.labels[~synthetic] == NORMAL).all() and (~synthetic).any()  # real: normals only
    assert (patches.labels[synthetic] != NORMAL).all() and synthetic.sum() == 6  # every positive inserted
    record = json.loads((run / "config.json").read_text())
    assert record["synthetic_positives_only"] is True and (run / "classifier.keras").is_file()
    assert np.isfinite(json.loads((run / "metrics.json").read_text())["val_auc"])
    with pytest.raises(MammoError, match="32 px patches; the classifier trains on 64 px"):
        train_classifier(None, tmp_path / "r1", preset="tiny", synthetic=folder, synthetic_positives_only=True)
    with pytest.raises(MammoError, match="exclude each other"):
        train_classifier(None, tmp_path / "r2", preset="tiny", synthetic=folder, synthetic_only=True,
                         synthetic_positives_only=True)  # fmt: skip
    with pytest.raises(MammoError, match="needs the synthetic patches folder"):
        train_classifier(None, tmp_path / "r3", preset="tiny", synthetic_positives_only=True)
