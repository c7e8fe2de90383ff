"""The study's numbers without training anything: DeLong, Holm, sensitivity at a fixed specificity, and a
summary of a made-up pool whose every AUC is derived again from the predictions file."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm
from sklearn.metrics import roc_auc_score, roc_curve

from mammo_tf.config import resolve_study_config
from mammo_tf.data.samplers import Patches
from mammo_tf.evaluation.stats import auc_rows, delong_test, holm
from mammo_tf.workflows.study.plan import REAL, SYNTHETIC_ONLY, TEXTURE, inserted, low_data_task, mixed
from mammo_tf.workflows.study.report import PREDICTIONS, render_markdown, write_study_report
from mammo_tf.workflows.study.summary import (
    PREDICTION_COLUMNS,
    Pool,
    sensitivity,
    sensitivity_at_specificity_rows,
    specificity,
    summarise,
)


def test_delong_on_a_hand_checked_case() -> None:
    # Two positives, two negatives; b ties a positive with a negative (0.4 vs 0.4 counts one half).
    # a: AUC 3/4, per-positive components V10 = [1, 1/2], per-negative V01 = [1/2, 1].
    # b: AUC 2.5/4, V10 = [1, 1/4], V01 = [1/2, 3/4].
    # a - b: V10 [0, 1/4] and V01 [0, 1/4], each of variance 1/32 (ddof 1), over m = n = 2:
    # var = 1/64 + 1/64 = 1/32, so se = 0.1768, z = 0.125 / se = 1 / sqrt(2).
    labels = np.array([1, 1, 0, 0])
    a = np.array([0.9, 0.6, 0.7, 0.2])
    b = np.array([0.8, 0.4, 0.5, 0.4])
    result = delong_test(labels, a, b)
    assert (result.auc_a, result.auc_b, result.difference) == pytest.approx((0.75, 0.625, 0.125))
    assert result.se == pytest.approx(np.sqrt(1 / 32))
    assert result.z == pytest.approx(1 / np.sqrt(2))
    assert result.p == pytest.approx(2 * norm.sf(1 / np.sqrt(2))) and result.p == pytest.approx(0.4795, abs=1e-4)
    swapped = delong_test(labels, b, a)
    assert (swapped.difference, swapped.z, swapped.p) == pytest.approx((-0.125, -1 / np.sqrt(2), result.p))


def _delong_by_definition(labels: np.ndarray, a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """DeLong et al. (1988) written out over every positive-negative pair: (difference, se)."""
    components = []
    for s in (a, b):
        pos, neg = s[labels == 1], s[labels == 0]
        psi = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])  # [m, n]
        components.append((psi.mean(), psi.mean(axis=1), psi.mean(axis=0)))
    (auc_a, v10_a, v01_a), (auc_b, v10_b, v01_b) = components
    var = np.var(v10_a - v10_b, ddof=1) / len(v10_a) + np.var(v01_a - v01_b, ddof=1) / len(v01_a)
    return auc_a - auc_b, float(np.sqrt(var))


def test_delong_fast_algorithm_equals_the_pairwise_definition_with_ties() -> None:
    rng = np.random.default_rng(4)
    labels = rng.integers(0, 2, 60)
    a = rng.integers(0, 6, 60) + 2 * labels  # coarse integer scores: many ties
    b = rng.integers(0, 6, 60) + labels
    difference, se = _delong_by_definition(labels, a, b)
    result = delong_test(labels, a, b)
    assert result.difference == pytest.approx(difference) and result.se == pytest.approx(se)


def test_delong_of_identical_scores_finds_no_difference() -> None:
    rng = np.random.default_rng(5)
    labels = np.repeat([0, 1], 30)
    scores = rng.random(60) + 0.2 * labels
    result = delong_test(labels, scores, scores.copy())
    assert (result.difference, result.se, result.z, result.p) == (0.0, 0.0, 0.0, 1.0)


def test_delong_standard_error_matches_a_bootstrap_of_the_difference() -> None:
    # Two correlated models (a shared component) on 300 independent items; the bootstrap resamples positives
    # and negatives separately (DeLong's variance is conditional on the class sizes). With 2,000 resamples
    # the bootstrap's own SD estimate varies by ~2 %; 10 % leaves room for the finite-sample gap.
    rng = np.random.default_rng(6)
    labels = np.repeat([0, 1], 150)
    shared = rng.normal(size=300)
    a = labels + shared + rng.normal(size=300)
    b = 0.7 * labels + shared + rng.normal(size=300)
    positives, negatives = np.flatnonzero(labels == 1), np.flatnonzero(labels == 0)
    draws = []
    for _ in range(2000):
        i = np.concatenate([rng.choice(positives, positives.size), rng.choice(negatives, negatives.size)])
        draws.append(roc_auc_score(labels[i], a[i]) - roc_auc_score(labels[i], b[i]))
    assert delong_test(labels, a, b).se == pytest.approx(np.std(draws), rel=0.10)


@pytest.mark.parametrize(
    ("p_values", "adjusted"),
    [
        # Wikipedia's Holm-Bonferroni example (also R's p.adjust(..., "holm")): sorted 0.005, 0.01, 0.03,
        # 0.04 times 4, 3, 2, 1 = 0.02, 0.03, 0.06, 0.04, then the running maximum.
        ([0.01, 0.04, 0.03, 0.005], [0.03, 0.06, 0.06, 0.02]),
        ([0.5, 0.6], [1.0, 1.0]),  # 0.5 x 2 = 1; the running maximum lifts 0.6 x 1 to 1
        ([0.01, float("nan"), 0.02], [0.02, float("nan"), 0.02]),  # NaN is not counted in m
        ([], []),
    ],
)
def test_holm_adjustment(p_values: list[float], adjusted: list[float]) -> None:
    assert holm(p_values) == pytest.approx(adjusted, nan_ok=True)


@pytest.mark.parametrize(
    ("specificity", "sensitivity"),
    [
        (0.95, 0.25),  # no false positive allowed: the threshold is 0.95
        (0.90, 0.50),  # one false positive (0.9): the smallest such threshold is 0.85, which takes a 2nd positive
        (0.50, 0.75),  # five (0.5-0.9): the threshold is 0.5, where a positive ties a negative
    ],
)
def test_sensitivity_at_specificity(specificity: float, sensitivity: float) -> None:
    labels = np.array([0] * 10 + [1] * 4)
    scores = np.array([*np.arange(10) / 10, 0.95, 0.85, 0.5, 0.05])
    assert sensitivity_at_specificity_rows(labels, scores, specificity).tolist() == [pytest.approx(sensitivity)]
    assert np.isnan(sensitivity_at_specificity_rows(np.zeros(3, int), np.arange(3.0), specificity)).all()


def _roc_sensitivity_at_specificity(labels: np.ndarray, scores: np.ndarray, specificity: float) -> float:
    """The definition, read off scikit-learn's ROC curve: its highest point whose specificity is >= the target."""
    fpr, tpr, _ = roc_curve(labels, scores, drop_intermediate=False)
    return float(tpr[1 - fpr >= specificity - 1e-12].max())


def test_the_bootstrap_metrics_score_every_row_as_one_row_at_a_time() -> None:
    # The bootstrap scores all of an arm's seeds in one call; each row must be what scikit-learn gives it alone.
    rng = np.random.default_rng(5)
    labels = (rng.random(60) < 0.3).astype(int)
    scores = rng.integers(0, 8, (4, 60)) / 8  # many ties, which count one half
    expected = [roc_auc_score(labels, row) for row in scores]
    np.testing.assert_allclose(auc_rows(labels, scores), expected, rtol=0, atol=1e-12)
    assert auc_rows(labels, scores[0]) == pytest.approx(expected[0])  # one row as [N]
    assert np.isnan(auc_rows(np.zeros(5, int), np.ones((2, 5)))).all()  # a class missing: no AUC
    predicted = (scores >= 0.5).astype(int)
    np.testing.assert_allclose(sensitivity(labels, predicted), [p[labels == 1].mean() for p in predicted])
    np.testing.assert_allclose(specificity(labels, predicted), [1 - p[labels == 0].mean() for p in predicted])
    for target in (0.5, 0.9, 0.95, 1 / 3, 0.99):  # 0.99 allows no false positive among 42 negatives
        rows = sensitivity_at_specificity_rows(labels, scores, target)
        assert rows.tolist() == [_roc_sensitivity_at_specificity(labels, row, target) for row in scores], target


def _patches(fold: int, n: int, rng: np.random.Generator) -> Patches:
    labels = np.tile([0, 1], n // 2).astype(np.int32)
    return Patches(
        images=np.zeros((n, 1, 1, 1), np.float32),
        labels=labels,
        image_id=np.array([f"f{fold}i{i}" for i in range(n)]),
        patient_id=np.array([f"f{fold}p{i // 4}" for i in range(n)]),  # 4 patches per patient
        centre_row=rng.integers(0, 100, n),
        centre_col=rng.integers(0, 100, n),
    )


@pytest.fixture(scope="module")
def made_up_study() -> tuple[Pool, dict]:
    """Two folds x two seeds; the reference, two arms under test (one better, one noise) and a baseline."""
    rng = np.random.default_rng(7)
    pool, arms = Pool(), [REAL, mixed(1.0), SYNTHETIC_ONLY, TEXTURE]
    signal = {REAL: 1.0, mixed(1.0): 3.0, SYNTHETIC_ONLY: 0.0, TEXTURE: 0.5}
    for fold in (0, 1):
        patches = _patches(fold, 40, rng)
        for seed in (0, 1):
            for arm in arms:
                scores = signal[arm] * patches.labels + rng.normal(size=40) + fold  # folds calibrated apart
                pool.add("easy", arm, fold, seed, patches, scores, threshold=fold + 0.5)
    config = resolve_study_config("quick", seeds=2)
    catalog = SimpleNamespace(root="made-up", source="made up")
    compute = {"easy": {REAL.name: {"units": 4, "seconds": 12.5}}}
    return pool, summarise(pool, config, catalog, {"folds": []}, [], compute)


def test_summary_reports_fold_aucs_sensitivity_at_specificity_delong_and_holm(made_up_study) -> None:
    pool, metrics = made_up_study
    easy = metrics["tasks"]["easy"]
    arms = easy["arms"]
    assert easy["fixed_specificity"] == 0.90
    assert easy["holm"]["family"] == ["real+synthetic x1", "synthetic only"]  # the arms under test only
    y = np.concatenate([frame["label"] for frame in pool.items["easy", "real", 0]])  # the folds in order
    for name, arm in arms.items():
        scores = pool.stack(pool.scores, "easy", name, 2)
        assert arm["fold_auc_mean"] == pytest.approx(np.mean(arm["fold_auc_by_seed"]))
        expected = np.mean([_roc_sensitivity_at_specificity(y, row, 0.90) for row in scores])
        assert arm["sensitivity_at_fixed_specificity"]["estimate"] == pytest.approx(expected)
    # pooling folds whose scores are shifted apart lowers the pooled AUC below the mean of the fold AUCs
    assert arms["real"]["auc"]["estimate"] < arms["real"]["fold_auc_mean"]
    reference = pool.stack(pool.scores, "easy", "real", 2)
    medians = []
    for name in easy["holm"]["family"]:
        test = arms[name]["delong_vs_reference"]
        rows = pool.stack(pool.scores, "easy", name, 2)
        assert [t["p"] for t in test["by_seed"]] == [
            pytest.approx(delong_test(y, row, ref).p) for row, ref in zip(rows, reference, strict=True)
        ]
        medians.append(test["p_median"])
    assert [arms[n]["delong_vs_reference"]["p_holm"] for n in easy["holm"]["family"]] == holm(medians)
    assert arms["real+synthetic x1"]["delong_vs_reference"]["p_holm"] < 0.05  # signal 3 against 1, 80 items
    assert arms["real"]["delong_vs_reference"] is None and arms[TEXTURE.name]["delong_vs_reference"] is None
    assert arms["real"]["compute"] == {"units": 4, "seconds": 12.5} and arms[TEXTURE.name]["compute"] is None


def test_every_auc_is_derived_again_from_the_predictions_file(made_up_study, tmp_path) -> None:
    pool, metrics = made_up_study
    write_study_report(tmp_path, metrics, pool.table())
    table = pd.read_csv(tmp_path / PREDICTIONS)
    assert tuple(table.columns) == PREDICTION_COLUMNS
    assert len(table) == 2 * 2 * 4 * 40  # folds x seeds x arms x items
    saved = json.loads((tmp_path / "metrics.json").read_text())["tasks"]["easy"]["arms"]
    for (task, arm), rows in table.groupby(["task", "arm"]):
        per_seed = [roc_auc_score(r["label"], r["score"]) for _, r in rows.groupby("seed")]
        assert saved[arm]["auc"]["estimate"] == pytest.approx(np.mean(per_seed), abs=1e-12), (task, arm)
    real = table[(table["arm"] == "real") & (table["seed"] == 0)]
    assert (real["predicted"] == (real["score"] >= real["fold"] + 0.5)).all()  # each fold's own threshold


def test_the_report_shows_the_new_numbers(made_up_study) -> None:
    _, metrics = made_up_study
    report = render_markdown(metrics, [])
    header = next(line for line in report.splitlines() if line.startswith("| arm |"))
    for column in ("pooled AUC", "mean fold AUC", "DeLong p", "Holm p", "sensitivity at 0.90 specificity"):
        assert column in header
    arm = metrics["tasks"]["easy"]["arms"]["real+synthetic x1"]
    row = next(line for line in report.splitlines() if line.startswith("| real+synthetic x1 |"))
    assert f"| {arm['fold_auc_mean']:.3f} |" in row and f"| {arm['delong_vs_reference']['p_holm']:.3g} |" in row
    assert (
        "Holm adjusted the DeLong p-values (median over seeds) across this task's 2 arms under test "
        "(real+synthetic x1, synthetic only)" in report
    )


def test_the_low_data_curve_is_read_off_the_tasks_and_reported(tmp_path) -> None:
    # Fraction 0.5 is a task of its own; fraction 1 is the full-data task; the curve's numbers are those tasks'.
    rng = np.random.default_rng(8)
    pool, arms = Pool(), [REAL, inserted(1.0)]
    half = low_data_task("easy", 0.5)
    for fold in (0, 1):
        patches = _patches(fold, 40, rng)
        for task, signal in (("easy", {REAL: 2.0, inserted(1.0): 2.0}), (half, {REAL: 0.5, inserted(1.0): 2.5})):
            for arm in arms:
                scores = signal[arm] * patches.labels + rng.normal(size=40)
                pool.add(task, arm, fold, 0, patches, scores, threshold=0.5)
    small = dict(folds=2, seeds=1, bootstrap=100)
    config = resolve_study_config("standard", arms=("insert",), positive_fractions=(1.0, 0.5), **small)
    audit = {
        "models": [
            {
                "fold": f,
                "low_data": [{"fraction": 0.5, "positive_patients": ["a"] * (2 + f), "left_out_patients": ["b"]}],
            }
            for f in (0, 1)
        ]
    }
    metrics = summarise(pool, config, SimpleNamespace(root="made-up", source="made up"), audit, [])
    curve = metrics["low_data"]
    assert list(curve) == ["easy", "matched"] and curve["matched"] == []  # no matched task in this pool
    points = curve["easy"]
    assert [(p["fraction"], p["task"], p["positive_patients_per_fold"]) for p in points] == [
        (0.5, half, [2, 3]),
        (1.0, "easy", [3, 4]),
    ]
    for p in points:
        arms_out = metrics["tasks"][p["task"]]["arms"]
        assert p["auc_real"] == arms_out["real"]["auc"] and p["auc_inserted"] == arms_out["real+inserted x1"]["auc"]
        assert p["difference"] == arms_out["real+inserted x1"]["auc_difference_vs_reference"]
    assert points[0]["verdict"] == "helps"  # signal 2.5 against 0.5 on 80 items
    write_study_report(tmp_path, metrics, pool.table())
    assert (tmp_path / "low_data.png").is_file()
    report = (tmp_path / "report.md").read_text()
    assert "## Low-data curve" in report and "![low_data.png](low_data.png)" in report
    row = next(line for line in report.splitlines() if line.startswith("| easy | 0.5 |"))
    assert "| 2, 3 |" in row and row.endswith("| helps |")
    plain = resolve_study_config("standard", **small)
    without = summarise(pool, plain, SimpleNamespace(root="", source=""), {}, [])
    assert "low_data" not in without  # no positive fractions, no curve: metrics.json keeps its keys


def test_the_report_lists_each_folds_models_and_its_gan_quality() -> None:
    from mammo_tf.workflows.study.report import fold_models_lines

    gan = {"steps": 3000, "seconds": 5400.0, "quality": {"groups": {"all": {"kid": 3.1, "kid_floor": 1.83}}}}
    sr = {"steps": 4500, "seconds": 7200.0, "val_gain_db": 0.355}
    easy = {"folds": [0, 1], "arms": {"synthetic only": {"fold_auc_by_seed": [[0.7, 0.9], [0.8, None]]}}}
    metrics = {"audit": {"models": [{"fold": 0, "gan": gan, "insert": {"steps": 3000, "seconds": 1800.0}, "sr": sr},
                                    {"fold": 1, "gan": None, "insert": None, "sr": None}]},
               "tasks": {"easy": easy}}  # fmt: skip
    lines = fold_models_lines(metrics)
    assert lines[-1] == "| 0 | 3000, 1.50 h | 3,100 / 1,830 | 0.750 | 3000, 0.50 h | - | 4500, 2.00 h | +0.355 |"
    assert fold_models_lines({"audit": {"models": [metrics["audit"]["models"][1]]}, "tasks": {}}) == []
