"""The augmentation study: statistics with known answers, patient-disjoint folds, and the quick study end to end."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from cli_helpers import invoke, one_error_line
from study_helpers import assert_status_counts_what_was_trained

from mammo_tf.config import resolve_study_config
from mammo_tf.data.catalog import load_catalog
from mammo_tf.errors import MammoError
from mammo_tf.evaluation.stats import bootstrap_ci, paired_bootstrap, verdict
from mammo_tf.workflows.study import Study, evaluate_aug, fold_catalog
from mammo_tf.workflows.study.plan import (
    SR_TASK,
    SR_TRAINED_TASK,
    UPSCALINGS,
    Arm,
    Fold,
    StudyPlan,
    Unit,
    check_disjoint,
    reference_arm,
    sr_cell,
)
from mammo_tf.workflows.study.saved_units import restore_units, save_units
from mammo_tf.workflows.study.units import FILM_SCORES_VERSION, Busy, Units, WorkFolder, cached_film_scores

pytestmark = pytest.mark.slow  # the quick study trains every arm once per module


def test_bootstrap_ci_of_a_mean_matches_the_normal_theory_interval() -> None:
    values = np.random.default_rng(0).normal(0.0, 1.0, 400)
    ci = bootstrap_ci(values, n_resamples=4000, seed=1)
    half = 1.96 * values.std(ddof=1) / np.sqrt(values.size)  # the textbook 95 % interval of a mean
    assert ci.low == pytest.approx(values.mean() - half, abs=0.02)
    assert ci.high == pytest.approx(values.mean() + half, abs=0.02)


def test_group_bootstrap_is_wider_than_the_naive_one_for_clustered_data() -> None:
    rng = np.random.default_rng(2)
    patient_effect = rng.normal(0, 1, 20)
    groups = np.repeat(np.arange(20), 10)
    values = patient_effect[groups] + rng.normal(0, 0.1, 200)
    naive, grouped = bootstrap_ci(values), bootstrap_ci(values, groups)
    assert (grouped.high - grouped.low) > 2 * (naive.high - naive.low)


def test_paired_bootstrap_known_answers() -> None:
    rng = np.random.default_rng(3)
    labels = np.repeat([0, 1], 50)
    groups = np.arange(100) // 2
    noisy = rng.random((2, 100)) + 0.3 * labels
    result = paired_bootstrap(
        labels,
        groups,
        {"ref": noisy, "same": noisy.copy(), "perfect": labels[None] + 0.0},
        reference="ref",
        n_resamples=100,
    )
    same = result["same"]["difference"]
    assert same.estimate == same.low == same.high == 0.0 and verdict(same) == "no detectable effect"
    assert result["perfect"]["value"].estimate == 1.0 and result["perfect"]["value"].low == 1.0
    assert verdict(result["perfect"]["difference"]) == "helps"


def test_fold_catalog_keeps_patients_on_one_side() -> None:
    catalog = load_catalog(None)
    patients = sorted(set(catalog.images["patient_id"]))
    cat = fold_catalog(catalog, set(patients[:2]), 0.2, seed=0)
    per_patient = cat.images.groupby("patient_id")["split"].nunique()
    assert (per_patient == 1).all()
    assert set(cat.images.loc[cat.images["split"] == "test", "patient_id"]) == set(patients[:2])
    assert (cat.images["split"] == "val").any() and (cat.images["split"] == "train").any()


def test_arms_are_frozen_dataclasses_and_units_keep_the_work_folder_names() -> None:
    plan = StudyPlan(resolve_study_config("quick"), folds=())
    arms = plan.arms()
    assert all(dataclasses.is_dataclass(a) for a in arms)
    with pytest.raises(dataclasses.FrozenInstanceError):
        arms[0].name = "other"  # type: ignore[misc]
    assert [(a.name, a.kind, a.ratio, a.tested) for a in arms] == [
        ("real", "real", None, False),
        ("real+synthetic x0.5", "mixed", 0.5, True),
        ("real+synthetic x1", "mixed", 1.0, True),
        ("synthetic only", "synthetic_only", None, True),
    ]
    assert arms[1].train_kwargs("folder") == {"synthetic": "folder", "synthetic_ratio": 0.5}
    assert reference_arm(list(arms[::-1])) == arms[0]
    # the work-folder names of studies made before the arms were dataclasses, so that they resume
    names = [u.name for u in plan.units(1, "easy")]
    assert names[:2] == ["fold1/easy/real/seed0", "fold1/easy/real+synthetic x0.5/seed0"]
    assert plan.film_units(0)[0].name == "fold0/easy/real/seed0"
    assert Unit(0, "easy", 2, sr_cell("SR", "SR")).name == "fold0/easy/trained on SR/seed2"
    with pytest.raises(MammoError, match="ratio"):
        Arm("real+synthetic", "mixed")
    with pytest.raises(MammoError, match="unknown arm kind"):
        Arm("gan", "generative")


def test_a_leakage_check_raises_mammo_error(tmp_path) -> None:
    check_disjoint({"a", "b"}, {"c"}, "the GAN")  # disjoint: nothing to say
    with pytest.raises(MammoError, match="the GAN saw held-out patients \\['b'\\]"):
        check_disjoint(["a", "b"], {"b", "c"}, "the GAN")
    # a finished GAN unit whose record says it trained on a test patient is refused, not used
    catalog = load_catalog(None)
    patients = sorted(set(catalog.images["patient_id"]))
    fold = Fold(0, frozenset(patients[:2]))
    run = tmp_path / "work" / "fold0" / "gan"
    run.mkdir(parents=True)
    (run / "metrics.json").write_text("{}")
    (run / "config.json").write_text(json.dumps({"train_patients": patients[1:]}))
    units = Units(catalog, StudyPlan(resolve_study_config("quick"), (fold,)), WorkFolder(tmp_path / "work"))
    with pytest.raises(MammoError, match="fold 0: the GAN saw held-out patients"):
        units.synthetic(0, fold.catalog(catalog, 0.2), 3)
    assert not (tmp_path / "work" / "fold0" / "synthetic").exists()


@pytest.fixture(scope="module")
def quick_study(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("study")
    out = root / "report"
    return out, evaluate_aug(None, out=out, preset="quick", arms=("gan", "sr"))  # an SR model per fold


def test_quick_study_end_to_end(quick_study) -> None:
    out, metrics = quick_study
    for name in ("report.md", "metrics.json", "roc.png", "forest.png"):
        assert (out / name).is_file(), name
    assert json.loads((out / "metrics.json").read_text())["tasks"].keys() == metrics["tasks"].keys()
    tasks = metrics["tasks"]
    assert {"easy", "matched", "film"} <= set(tasks)
    easy = tasks["easy"]["arms"]
    for arm in (
        "real",
        "real+synthetic x0.5",
        "real+synthetic x1",
        "synthetic only",
        "texture logistic regression",
        "speck detector (patch maximum)",
        "probe: intensity only",
        "probe: position only",
    ):
        assert arm in easy, arm
        assert 0.0 <= easy[arm]["auc"]["estimate"] <= 1.0
        assert easy[arm]["verdict"] in ("reference", "helps", "hurts", "no detectable effect", "baseline")
    assert easy["real"]["verdict"] == "reference" and easy["probe: position only"]["verdict"] == "baseline"
    assert list(easy)[0] == "real"
    report = (out / "report.md").read_text()
    assert "no detectable effect" in report or "helps" in report or "hurts" in report
    x1 = easy["real+synthetic x1"]
    sentence = f"real+synthetic x1 {x1['verdict']} ({x1['auc_difference_vs_reference']['estimate']:+.3f}"
    assert "**Verdict.** easy, against real: " in report and sentence in report


def test_no_patient_across_folds_and_no_model_saw_its_test_patients(quick_study) -> None:
    out, metrics = quick_study
    folds = [set(f) for f in metrics["audit"]["folds"]]
    assert not folds[0] & folds[1]
    assert set().union(*folds) == set(load_catalog(None).images["patient_id"])
    for test, gan in zip(folds, metrics["audit"]["gan_patients"], strict=True):
        assert not test & set(gan)  # the fold's GAN trained only on that fold's training patients
    for config in (out / "work").rglob("config.json"):
        record = json.loads(config.read_text())
        fold = int(config.relative_to(out / "work").parts[0].removeprefix("fold"))
        assert not set(record["train_patients"]) & folds[fold], config


def _predictions(out: Path) -> pd.DataFrame:
    return pd.read_csv(out / "predictions.csv.gz", dtype={"patient_id": str, "image_id": str})


def test_metrics_json_records_every_models_patients_and_ids(quick_study) -> None:
    out, _ = quick_study
    saved = json.loads((out / "metrics.json").read_text())
    models = saved["audit"]["models"]
    assert [m["fold"] for m in models] == [0, 1]
    sr_task = (table := _predictions(out))[table["task"] == SR_TASK]
    recorded = set()
    for record, test in zip(models, saved["audit"]["folds"], strict=True):
        test = set(test)
        assert set(record["test_patients"]) == test
        for group in record["classifiers"]:
            assert not test & (set(group["train_patients"]) | set(group["val_patients"]))
            for unit in group["units"]:
                run_record = json.loads((out / "work" / unit / "config.json").read_text())
                assert run_record["train_patients"] == group["train_patients"], unit
            recorded |= set(group["units"])
        gan = record["gan"]
        assert gan["run"] == f"work/fold{record['fold']}/gan" and gan["model"].startswith("generator@")
        assert not test & set(gan["train_patients"]) and gan["seconds"] > 0
        quality = gan["quality"]  # how good each fold's GAN was: KID beside its real-vs-real floor
        assert (out / quality["report"] / "report.md").is_file() and "all" in quality["groups"]
        assert set(quality["groups"]["all"]) == {"kid", "kid_floor"}
        # the fold's own SR model: trained on its training patients, tested on every test patient
        sr, fold = record["sr"], record["fold"]
        assert sr["run"] == f"work/fold{fold}/sr" and sr["model"].startswith("generator@") and sr["seconds"] > 0
        assert (sr["pretrain_steps"], sr["gan_steps"], sr["steps"]) == (4, 2, 6)  # the tiny SR preset
        assert np.isfinite(sr["val_gain_db"]) and not test & set(sr["train_patients"])
        easy = table[(table["task"] == "easy") & (table["arm"] == "real") & (table["fold"] == fold)]
        assert set(sr_task.loc[sr_task["fold"] == fold, "patient_id"]) == set(easy["patient_id"])
    trained = {run.parent.relative_to(out / "work").as_posix() for run in (out / "work").rglob("classifier.keras")}
    assert recorded == trained  # every classifier the study trained, and only those


def test_every_unit_trains_in_the_studys_precision(quick_study) -> None:
    """float32 on every CPU (StudyConfig.precision): on one with native bfloat16, 'auto' would resolve to
    mixed_bfloat16, and a study resumed there would mix the two."""
    out, _ = quick_study
    resolved = {
        path.parent.relative_to(out).as_posix(): json.loads(path.read_text()).get("precision_resolved")
        for path in (out / "work").rglob("config.json")
    }
    trained = {run: precision for run, precision in resolved.items() if precision is not None}
    assert any("/gan" in run for run in trained) and any("/sr" in run for run in trained)
    assert any("/real/" in run for run in trained), sorted(trained)
    assert set(trained.values()) == {"float32"}, trained


def test_metrics_json_records_the_compute_of_each_arm(quick_study) -> None:
    out, metrics = quick_study
    lines = (out / "work" / "progress.jsonl").read_text().splitlines()
    seconds = {entry["unit"]: entry["seconds"] for entry in map(json.loads, lines)}
    real = metrics["tasks"]["easy"]["arms"]["real"]["compute"]
    assert real == {
        "units": 2,
        "seconds": pytest.approx(seconds["fold0/easy/real/seed0"] + seconds["fold1/easy/real/seed0"]),
    }
    assert metrics["tasks"]["easy"]["arms"]["texture logistic regression"]["compute"] is None  # trains no unit


def test_every_auc_in_metrics_json_is_derived_again_from_the_predictions(quick_study) -> None:
    from sklearn.metrics import roc_auc_score

    out, _ = quick_study
    table = _predictions(out)
    saved = json.loads((out / "metrics.json").read_text())["tasks"]
    assert set(table["task"]) == set(saved)
    for (task, arm), rows in table.groupby(["task", "arm"]):
        per_seed = [
            roc_auc_score(r["label"], r["score"]) if r["label"].nunique() == 2 else np.nan
            for _, r in rows.groupby("seed")
        ]
        expected = saved[task]["arms"][arm]["auc"]["estimate"]
        if expected is None:  # NaN in memory: no seed had both classes
            assert np.isnan(per_seed).all(), (task, arm)
        else:
            assert np.nanmean(per_seed) == pytest.approx(expected, abs=1e-12), (task, arm)
    real = table[(table["task"] == "easy") & (table["arm"] == "real") & (table["seed"] == 0)]
    assert saved["easy"]["n_items"] == len(real) and saved["easy"]["n_patients"] == real["patient_id"].nunique()


def test_sr_utility_is_a_3x3_on_every_test_patient(quick_study) -> None:
    out, metrics = quick_study
    assert metrics["sr_model"] is None and metrics["audit"]["sr_patients_excluded"] == [[], []]
    hr, trained = metrics["tasks"][SR_TASK], metrics["tasks"][SR_TRAINED_TASK]
    # SR is judged against bicubic at the same LR, twice: for the classifier trained on HR, and for
    # classifiers trained on what they are tested on; HR is the upper bound beside them
    assert list(hr["arms"]) == [sr_cell("HR", "bicubic").name, sr_cell("HR", "SR").name, sr_cell("HR", "HR").name]
    assert hr["arms"]["trained on HR, tested on HR"]["verdict"] == "baseline"
    assert trained["reference"] == "trained on bicubic, tested on bicubic"
    assert set(trained["arms"]) == {sr_cell(a, b).name for a in UPSCALINGS[1:] for b in UPSCALINGS}
    tested = {arm for arm, a in trained["arms"].items() if a["verdict"] not in ("reference", "baseline")}
    assert tested == {"trained on SR, tested on SR"}
    # trained on HR, tested on HR: the easy task's real-only classifier on the same patches, the same scores
    table = _predictions(out)
    key = ["fold", "seed", "image_id", "row", "col"]
    real = table[(table["task"] == "easy") & (table["arm"] == "real")].set_index(key)["score"]
    cell = table[(table["task"] == SR_TASK) & (table["arm"] == "trained on HR, tested on HR")].set_index(key)["score"]
    assert len(cell) == len(real) and np.allclose(cell.sort_index(), real.sort_index(), atol=1e-6)
    report = (out / "report.md").read_text()
    assert "| trained on | tested on HR | tested on bicubic | tested on SR |" in report
    assert "SR preset `tiny`" in report and "## Per-fold models" in report


def test_a_given_sr_model_leaves_out_the_patients_it_saw(tmp_path) -> None:
    from types import SimpleNamespace

    from mammo_tf.data.samplers import Patches

    catalog = load_catalog(None)
    patients = sorted(set(catalog.images["patient_id"]))
    fold = Fold(0, frozenset(patients[:2]))
    given = (SimpleNamespace(model_id="sr@0123", scale=2), set(patients[:2]))  # it saw both test patients
    units = Units(catalog, StudyPlan(resolve_study_config("quick"), (fold,)), WorkFolder(tmp_path), sr=given)
    test = Patches(
        images=np.zeros((2, 8, 8, 1), np.float32),
        labels=np.array([0, 1], np.int32),
        image_id=np.array(["a", "b"]),
        patient_id=np.array(patients[:2]),
        centre_row=np.zeros(2, np.int64),
        centre_col=np.zeros(2, np.int64),
    )
    units.sr_arms(0, 0, fold.catalog(catalog, 0.2), test, real=None)
    assert units.audit["sr_patients_excluded"] == [patients[:2]]
    assert units.model_record(0)["sr"] == {"model": "sr@0123", "train_patients": patients[:2]}
    assert not units.pool.arms and not list(tmp_path.iterdir())  # nothing scored, nothing trained


def test_only_fold_reuses_finished_units_and_writes_no_report(quick_study) -> None:
    out, _ = quick_study
    progress = (out / "work" / "progress.jsonl").read_text()
    report = (out / "report.md").read_text()
    assert evaluate_aug(None, out=out, preset="quick", only_fold=1) is None
    assert (out / "work" / "progress.jsonl").read_text() == progress  # every unit of fold 1 was already done
    assert (out / "report.md").read_text() == report
    with pytest.raises(MammoError, match="fold 2 does not exist"):
        evaluate_aug(None, out=out, preset="quick", only_fold=2)


def test_status_counts_every_unit_the_study_trained(quick_study) -> None:
    assert_status_counts_what_was_trained(None, quick_study[0], preset="quick", arms=("gan", "sr"))


def test_status_of_a_folder_without_a_study_is_one_line_exit_2(tmp_path) -> None:
    result = invoke("evaluate-aug", "--preset", "quick", "--out", str(tmp_path), "--status")
    one_error_line(result, str(tmp_path), "no study here")


def test_a_precision_the_study_does_not_know_is_exit_2(tmp_path) -> None:
    result = invoke("evaluate-aug", "--preset", "quick", "--out", str(tmp_path), "--precision", "float16")
    one_error_line(result, "--precision", "float16")
    assert not any(tmp_path.iterdir())  # nothing written


def test_a_unit_is_claimed_by_one_process_at_a_time(tmp_path) -> None:
    work = WorkFolder(tmp_path)
    with work.claim("fold0/easy/real/seed0"):
        with (
            pytest.raises(Busy, match=rf"fold0/easy/real/seed0 \(process {os.getpid()}\)"),
            work.claim("fold0/easy/real/seed0"),
        ):
            pass
        with work.claim("fold0/easy/real/seed1"):  # another unit is free
            pass
    with work.claim("fold0/easy/real/seed0"):  # released at the end of the block
        pass


def test_training_passes_share_units_and_skip_what_another_process_holds(quick_study, tmp_path) -> None:
    """Two processes training one study: a unit held by the other is skipped with the units that need it, and
    a later pass trains it; the report refuses to start while a unit is held."""
    out = tmp_path / "report"
    shutil.copytree(quick_study[0] / "work", out / "work")
    work = out / "work"
    needs_gan, free = work / "fold0/easy/real+synthetic x1/seed0", work / "fold1/easy/real+synthetic x1/seed0"
    shutil.rmtree(needs_gan)
    shutil.rmtree(free)
    study = Study(load_catalog(None), resolve_study_config("quick", arms=("gan", "sr")), out)
    with study.work.claim("fold0/gan"):  # another process would be training fold 0's GAN
        skipped = study.training_pass()
        with pytest.raises(MammoError, match="fold0/gan .* is being trained by another process"):
            study.run()
    assert skipped[0].startswith("fold0/gan (process") and all(s.startswith("fold0/") for s in skipped)
    assert any(s.startswith("fold0/easy/real+synthetic x1/seed0") for s in skipped)
    assert (free / "metrics.json").is_file() and not needs_gan.exists()
    assert study.training_pass() == [] and (needs_gan / "metrics.json").is_file()
    result = invoke("evaluate-aug", "--preset", "quick", "--arms", "gan,sr", "--out", out, "--train-only")
    assert result.exit_code == 0, result.output
    assert "every unit done" in result.output and "without --train-only" in result.output


def test_an_interrupted_generative_unit_resumes_from_its_checkpoint(tmp_path) -> None:
    """Per-fold GANs, insertion and SR models take hours: a session stop must not throw their progress away."""
    catalog = load_catalog(None)
    patients = sorted(set(catalog.images["patient_id"]))
    fold = Fold(0, frozenset(patients[:2]))
    units = Units(catalog, StudyPlan(resolve_study_config("quick"), (fold,)), WorkFolder(tmp_path))
    calls = []

    def train(run: Path, resume: bool) -> None:
        calls.append((resume, sorted(p.name for p in run.rglob("*") if p.is_file()) if run.exists() else None))
        (run / "checkpoints").mkdir(parents=True, exist_ok=True)
        (run / "config.json").write_text(json.dumps({"train_patients": patients[2:]}))
        (run / "metrics.json").write_text("{}")

    interrupted = tmp_path / "fold0" / "sr"
    (interrupted / "checkpoints").mkdir(parents=True)
    (interrupted / "checkpoints" / "last.keras").write_bytes(b"weights")
    units.generative(0, "sr", "SR model", catalog, train)
    assert calls == [(True, ["last.keras"])]  # resumed in place, its checkpoint kept
    units.generative(0, "sr", "SR model", catalog, train)
    assert len(calls) == 1  # finished: reused
    partial = tmp_path / "fold0" / "gan"
    partial.mkdir()
    (partial / "half-written.txt").write_text("")  # stopped before its first checkpoint: started again, clean
    units.generative(0, "gan", "GAN", catalog, train)
    assert calls[-1] == (False, None)


def test_a_study_moved_to_another_machine_resumes_from_its_saved_units(quick_study, tmp_path) -> None:
    """`make study-units` then `make study` elsewhere: the saved units (no classifier model among them) give
    the same numbers, and no classifier or per-fold model is trained again."""
    out, metrics = quick_study
    saved = save_units(out / "work", tmp_path / "units")
    assert {"fold0/gan", "fold0/sr", "fold0/gan-quality", "fold0/easy/real/seed0"} <= set(saved)
    models = {p.relative_to(tmp_path / "units").as_posix() for p in (tmp_path / "units").rglob("*.keras")}
    assert models == {f"fold{k}/{name}/generator.keras" for k in (0, 1) for name in ("gan", "sr")}
    moved = tmp_path / "moved"
    assert sorted(restore_units(tmp_path / "units", moved / "work")) == sorted(saved)
    again = evaluate_aug(None, out=moved, preset="quick", arms=("gan", "sr"))
    assert not list((moved / "work").rglob("classifier.keras"))  # scored from the saved scores
    assert not (moved / "work" / "progress.jsonl").exists()  # nothing trained, no film scored again
    real = again["tasks"]["easy"]["arms"]["real"]["compute"]  # restored units: their runs' own training time
    hours = [
        json.loads((moved / "work" / f"fold{k}/easy/real/seed0/metrics.json").read_text())["hours"] for k in (0, 1)
    ]
    assert real == {"units": 2, "seconds": pytest.approx(3600 * sum(hours), abs=0.2)} and real["seconds"] > 0
    for task, results in metrics["tasks"].items():
        for arm, result in results["arms"].items():
            assert again["tasks"][task]["arms"][arm]["auc"] == result["auc"], (task, arm)


def test_stale_film_scores_of_restored_units_come_from_a_twin_classifier(quick_study, tmp_path) -> None:
    """Restored units keep no model: films whose scores are of an older version are scored by a twin (same recipe
    and seed, in work/fold{k}/film classifier/seed{s}); the unit's patch scores stay as saved."""
    out, metrics = quick_study
    save_units(out / "work", tmp_path / "units")
    moved = tmp_path / "moved"
    restore_units(tmp_path / "units", moved / "work")
    for k in (0, 1):
        cache = moved / "work" / f"fold{k}" / "film-seed0.json"
        cache.write_text(json.dumps({**json.loads(cache.read_text()), "version": FILM_SCORES_VERSION - 1}))
    units = sorted((moved / "work").glob("fold*/easy/real/seed0"))
    before = {run: (run / "scores.npz").read_bytes() for run in units}
    again = evaluate_aug(None, out=moved, preset="quick", arms=("gan", "sr"))
    assert {run: (run / "scores.npz").read_bytes() for run in units} == before
    assert not any((run / "classifier.keras").exists() for run in units)
    work = moved / "work"
    models = work.glob("fold*/film classifier/seed0/classifier.keras")
    twins = sorted(model.parent.relative_to(work).as_posix() for model in models)
    assert twins == ["fold0/film classifier/seed0", "fold1/film classifier/seed0"]
    for k in (0, 1):
        assert json.loads((work / f"fold{k}" / "film-seed0.json").read_text())["version"] == FILM_SCORES_VERSION
    for arm, result in metrics["tasks"]["easy"]["arms"].items():
        assert again["tasks"]["easy"]["arms"][arm]["auc"] == result["auc"], arm


def test_film_scores_of_an_older_version_are_scored_again(tmp_path) -> None:
    """Versions 1 and 2 saved probabilities (float32, float64), which tie at 1.0: a study resumed from them rescores
    those films; the current version saves logits."""
    path = tmp_path / "film-seed0.json"
    assert cached_film_scores(path) is None
    current = {"version": FILM_SCORES_VERSION, "films": [{"image_id": "mdb001", "score": 41.5}], "localised": []}
    path.write_text(json.dumps(current))
    assert cached_film_scores(path) == current
    path.write_text(json.dumps({"films": [{"image_id": "mdb001", "score": 1.0}], "localised": []}))  # version 1
    assert cached_film_scores(path) is None
    path.write_text(json.dumps({"version": 2, "films": [{"image_id": "mdb001", "score": 1.0}], "localised": []}))
    assert cached_film_scores(path) is None


def test_saved_units_keep_only_what_resumes_a_unit(tmp_path) -> None:
    """A classifier is saved only once scored, without its model; a first pretraining stage without scores;
    a restored first stage lacking its model is trained again (WorkFolder.needs_model)."""
    work = tmp_path / "work"

    def unit(name: str, kind: str, *files: str) -> Path:
        run = work / name
        run.mkdir(parents=True)
        (run / "config.json").write_text(json.dumps({"kind": kind}))
        for file in ("metrics.json", *files):
            (run / file).write_text("{}")
        return run

    unit("fold0/easy/real/seed0", "classifier", "classifier.keras", "scores.npz", "state.json")
    unit("fold0/easy/real/seed1", "classifier", "classifier.keras")  # finished, not scored yet
    stage = unit("fold0/easy/inserted pretraining/seed0", "classifier", "classifier.keras")
    unit("fold0/sr", "sr", "generator.keras", "state.json")
    assert save_units(work, tmp_path / "units") == [
        "fold0/easy/inserted pretraining/seed0", "fold0/easy/real/seed0", "fold0/sr"
    ]  # fmt: skip
    listing = {p.relative_to(tmp_path / "units").as_posix() for p in (tmp_path / "units").rglob("*") if p.is_file()}
    assert listing == {
        "fold0/easy/inserted pretraining/seed0/config.json", "fold0/easy/inserted pretraining/seed0/metrics.json",
        "fold0/easy/real/seed0/config.json", "fold0/easy/real/seed0/metrics.json", "fold0/easy/real/seed0/scores.npz",
        "fold0/sr/config.json", "fold0/sr/metrics.json", "fold0/sr/generator.keras", "fold0/sr/state.json",
    }  # fmt: skip
    WorkFolder.needs_model(stage, "classifier.keras")
    assert stage.is_dir()  # has its model: kept
    moved = tmp_path / "moved"
    restore_units(tmp_path / "units", moved)
    WorkFolder.needs_model(moved / "fold0/easy/inserted pretraining/seed0", "classifier.keras")
    assert not (moved / "fold0/easy/inserted pretraining").joinpath("seed0").exists()  # trained again
