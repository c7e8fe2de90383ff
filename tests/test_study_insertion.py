"""The quick study with the insertion arms and one low-data point, end to end at tiny size.

The default phantom holds one benign cluster in a fold's training patients, too few for a layout model, so
this study runs on a phantom of 28 films (14 patients): the smallest of those tried whose two folds each
keep two clusters per class in half of their training patients with calcifications.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from study_helpers import assert_status_counts_what_was_trained

from mammo_tf.data.catalog import load_catalog
from mammo_tf.data.phantom import write_phantom
from mammo_tf.workflows.study import evaluate_aug, fold_catalog
from mammo_tf.workflows.study.plan import calcification_patients, low_data_task, split_patients

pytestmark = pytest.mark.slow  # trains two insertion models and eight classifiers per fold and task

INSERTION_ARMS = (
    "real+inserted x1",
    "real+inserted x1, rendered (no refiner)",
    "inserted only (real negatives)",
    "inserted pretraining, real fine-tuning",
)
STUDY = dict(
    preset="quick", tasks=("easy", "matched"), arms=("insert",), insert_ratios=(1.0,), positive_fractions=(0.5, 1.0)
)
HALF = {task: low_data_task(task, 0.5) for task in ("easy", "matched")}


@pytest.fixture(scope="module")
def insertion_study(tmp_path_factory) -> tuple[Path, Path, dict]:
    root = tmp_path_factory.mktemp("insertion-study")
    data = write_phantom(root / "phantom", 28, seed=0)
    out = root / "report"
    return data, out, evaluate_aug(data, out=out, **STUDY)


def _fold_catalogs(data: Path, metrics: dict) -> list:
    catalog = load_catalog(data)
    return [fold_catalog(catalog, set(test), 0.2, seed=k) for k, test in enumerate(metrics["audit"]["folds"])]


def test_the_insertion_arms_and_the_low_data_curve_have_numbers(insertion_study) -> None:
    _, out, metrics = insertion_study
    for name in ("report.md", "metrics.json", "predictions.csv.gz", "roc.png", "forest.png", "low_data.png"):
        assert (out / name).is_file(), name
    saved = json.loads((out / "metrics.json").read_text())
    assert set(saved["tasks"]) >= {"easy", "matched", *HALF.values()}
    for task in ("easy", "matched"):
        arms = saved["tasks"][task]["arms"]
        # the reference first, then the arms under test (metrics.json sorts its keys; the summary keeps order)
        assert list(metrics["tasks"][task]["arms"])[: 1 + len(INSERTION_ARMS)] == ["real", *INSERTION_ARMS]
        assert not any("synthetic" in arm for arm in arms)  # the GAN family was not asked for
        for arm in INSERTION_ARMS:
            assert 0.0 <= arms[arm]["auc"]["estimate"] <= 1.0, (task, arm)
            assert arms[arm]["verdict"] in ("helps", "hurts", "no detectable effect")
            assert arms[arm]["delong_vs_reference"]["p_holm"] is not None
        assert saved["tasks"][task]["holm"]["family"] == list(INSERTION_ARMS)
        assert arms["real+inserted x1"]["compute"]["units"] == 2  # one per fold
        assert arms["inserted pretraining, real fine-tuning"]["compute"]["units"] == 4  # two stages per fold
        low = saved["tasks"][HALF[task]]["arms"]
        assert set(low) == {"real", "real+inserted x1"} and low["real+inserted x1"]["verdict"] != "baseline"
        curve = saved["low_data"][task]
        assert [(p["fraction"], p["task"]) for p in curve] == [(0.5, HALF[task]), (1.0, task)]
        assert all(0.0 <= p["auc_inserted"]["estimate"] <= 1.0 for p in curve)
    report = (out / "report.md").read_text()
    assert "insertion preset `tiny`" in report and "## Low-data curve" in report and "| matched | 0.5 |" in report


def test_every_insertion_model_and_its_patches_saw_only_its_folds_training_patients(insertion_study) -> None:
    data, out, metrics = insertion_study
    saved = json.loads((out / "metrics.json").read_text())
    for record, cat in zip(saved["audit"]["models"], _fold_catalogs(data, saved), strict=True):
        k, test, train = record["fold"], set(record["test_patients"]), split_patients(cat, "train")
        assert test == split_patients(cat, "test")
        model = record["insert"]
        assert model["run"] == f"work/fold{k}/insert" and model["model"].startswith("refiner@")
        assert model["seconds"] > 0 and model["inserted"] > 0
        for key in ("train_patients", "layout_patients", "background_patients"):
            assert set(model[key]) and set(model[key]) <= train, key  # the fold's training patients only
            assert not set(model[key]) & test, key
        (point,) = record["low_data"]
        positive, left_out = set(point["positive_patients"]), set(point["left_out_patients"])
        assert point["fraction"] == 0.5 and left_out and not positive & left_out
        assert positive | left_out == set(calcification_patients(cat, "train"))
        low = point["insert"]
        assert low["run"] == f"work/fold{k}/insert positives 0.5"
        assert set(low["layout_patients"]) <= positive  # the layouts of the kept clusters only
        assert not (set(low["train_patients"]) | set(low["background_patients"])) & (left_out | test)
        inserted = pd.read_csv(out / "work" / f"fold{k}" / "inserted positives 0.5" / "refined" / "manifest.csv")
        assert len(inserted) == low["inserted"] and set(inserted["class"]) == {"benign", "malignant"}
    for config in (out / "work").rglob("config.json"):  # every model the study trained
        fold = int(config.relative_to(out / "work").parts[0].removeprefix("fold"))
        record = json.loads(config.read_text())
        assert not set(record["train_patients"]) & set(saved["audit"]["folds"][fold]), config


def test_low_data_classifiers_train_on_fewer_real_positives_and_the_same_negatives(insertion_study) -> None:
    _, out, _ = insertion_study
    for k in (0, 1):
        full = json.loads((out / "work" / f"fold{k}/easy/real/seed0/config.json").read_text())
        half = json.loads((out / "work" / f"fold{k}/easy positives 0.5/real/seed0/config.json").read_text())
        assert half["train_patches"]["real"] < full["train_patches"]["real"]
        assert half["train_patients"] == full["train_patients"]  # negatives from every training patient


def test_the_pretraining_arm_fine_tunes_from_its_first_stage_within_the_budget(insertion_study) -> None:
    _, out, metrics = insertion_study
    work = out / "work" / "fold1" / "matched"
    stage = json.loads((work / "inserted pretraining" / "seed0" / "config.json").read_text())
    tuned = json.loads((work / "inserted pretraining+real fine-tuning" / "seed0" / "config.json").read_text())
    assert stage["synthetic_positives_only"] and stage["init_from"] is None
    assert tuned["init_from"] == str(work / "inserted pretraining" / "seed0" / "classifier.keras")
    assert tuned["synthetic"] is None and stage["steps"] + tuned["steps"] == metrics["config"]["classifier_steps"]


def test_every_auc_is_derived_again_from_the_predictions(insertion_study) -> None:
    from sklearn.metrics import roc_auc_score

    _, out, _ = insertion_study
    table = pd.read_csv(out / "predictions.csv.gz", dtype={"patient_id": str, "image_id": str})
    saved = json.loads((out / "metrics.json").read_text())["tasks"]
    assert set(table["task"]) == set(saved)
    for (task, arm), rows in table.groupby(["task", "arm"]):
        if rows["label"].nunique() == 2:
            expected = saved[task]["arms"][arm]["auc"]["estimate"]
            assert roc_auc_score(rows["label"], rows["score"]) == pytest.approx(expected, abs=1e-12), (task, arm)
    easy, half = (table[(table["task"] == t) & (table["arm"] == "real")] for t in ("easy", HALF["easy"]))
    assert np.array_equal(easy["image_id"], half["image_id"])  # the low-data point is tested on the same patches


def test_a_resumed_fold_trains_nothing_again(insertion_study) -> None:
    data, out, _ = insertion_study
    progress = (out / "work" / "progress.jsonl").read_text()
    assert evaluate_aug(data, out=out, only_fold=0, **STUDY) is None
    assert (out / "work" / "progress.jsonl").read_text() == progress  # insertion models and patches reused


def test_status_counts_every_unit_of_the_insertion_study(insertion_study) -> None:
    data, out, _ = insertion_study
    assert_status_counts_what_was_trained(data, out, **STUDY)
