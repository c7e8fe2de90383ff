"""evaluate-insert on the phantom: a tiny insertion run scored by tiny classifiers; the leakage refusal; the
train_classifier option that trains on synthetic positives and real negatives only."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import invoke, one_error_line

from mammo_tf.data.catalog import load_catalog
from mammo_tf.data.schema import NORMAL
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
        insert_run, None, out, n=24, classifier_preset="tiny", classifier_steps=4, bootstrap=50, seed=1
    )
    return out, metrics


def _test_patients() -> set[str]:
    catalog = load_catalog(None)
    return set(catalog.images.loc[catalog.images["split"] == "test", "patient_id"])


def test_writes_the_report_metrics_and_grids(evaluated) -> None:
    out, metrics = evaluated
    assert sorted(p.name for p in out.iterdir()) == ["grids.png", "metrics.json", "report.md"]
    assert (out / "grids.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((out / "metrics.json").read_text())["model"] == metrics["model"]
    report = (out / "report.md").read_text()
    assert "test patients" in report and "Realism" in report and "nn_spacing" in report
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
