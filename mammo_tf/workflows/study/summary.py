"""The study's numbers: predictions pooled over folds, bootstrap statistics and a verdict per arm.

Every arm adds, per task, fold and seed, its scores on the test items and its predictions at the threshold
chosen on the validation patients (Pool.add). summarise() then, per task: stacks the folds of each seed in
fold order (one row per seed), takes AUC, sensitivity at a fixed specificity, and sensitivity and
specificity at the validation threshold, with patient-level bootstrap CIs and paired differences against
the task's reference arm on the same draws (evaluation.stats.paired_bootstrap); the mean of the per-fold
AUCs beside the pooled one (pooling mixes the calibrations of the fold models); DeLong's test of each arm
under test against the reference per seed, Holm-adjusted across the task's arms under test; and each arm
under test's verdict (stats.verdict, from the bootstrap CI); the other arms are baselines. Pool.table()
holds every prediction, so that each number can be derived again (predictions.csv.gz). With positive
fractions, low_data_curve() reads the low-data curve off the tasks' entries.
"""

from __future__ import annotations

from dataclasses import asdict
from functools import partial

import numpy as np
import pandas as pd

from mammo_tf.config.study import LOW_DATA_RATIO
from mammo_tf.data.samplers import Patches
from mammo_tf.data.schema import NORMAL
from mammo_tf.workflows.study.plan import FILM_TASK, Arm, inserted, low_data_task, reference_arm


def patch_labels(patches: Patches) -> np.ndarray:
    """int [N]: 1 for a calcification patch (benign or malignant), 0 for normal tissue."""
    return (patches.labels != NORMAL).astype(int)


def val_threshold(labels: np.ndarray, scores: np.ndarray) -> float:
    """The threshold maximising sensitivity + specificity on validation items (0.5 when one class is missing)."""
    from sklearn.metrics import roc_curve

    if not 0 < labels.sum() < labels.size:
        return 0.5
    fpr, tpr, thr = roc_curve(labels, scores)
    return float(thr[int(np.argmax(tpr - fpr))])


# The columns of Pool.table() (predictions.csv.gz): one row per test item of every task, arm and seed.
PREDICTION_COLUMNS = (
    "task",
    "arm",
    "seed",
    "fold",
    "patient_id",
    "image_id",
    "row",
    "col",
    "label",
    "score",
    "predicted",
)


class Pool:
    """Test items, scores and thresholded predictions per (task, arm name, seed), one entry per fold."""

    def __init__(self) -> None:
        self.items: dict[tuple[str, str, int], list[pd.DataFrame]] = {}
        self.scores: dict[tuple[str, str, int], list[np.ndarray]] = {}
        self.predicted: dict[tuple[str, str, int], list[np.ndarray]] = {}
        self.arms: dict[str, dict[str, Arm]] = {}  # task -> arm name -> arm, in the order first added

    def add(
        self, task: str, arm: Arm, fold: int, seed: int, patches: Patches, scores: np.ndarray, threshold: float
    ) -> None:
        items = pd.DataFrame(
            {
                "fold": fold,
                "patient_id": patches.patient_id,
                "label": patch_labels(patches),
                "image_id": patches.image_id,
                "row": patches.centre_row,
                "col": patches.centre_col,
            }
        )
        key = (task, arm.name, seed)
        self.arms.setdefault(task, {}).setdefault(arm.name, arm)
        self.items.setdefault(key, []).append(items)
        self.scores.setdefault(key, []).append(np.asarray(scores, np.float64))
        self.predicted.setdefault(key, []).append((np.asarray(scores) >= threshold).astype(float))

    def stack(self, values: dict, task: str, arm: str, n_seeds: int) -> np.ndarray:
        """float [S, N]: one row per seed, the items of every fold in fold order."""
        seeds = [s for s in range(n_seeds) if (task, arm, s) in values]
        return np.stack([np.concatenate(values[(task, arm, s)]) for s in seeds])

    def table(self) -> pd.DataFrame:
        """Every out-of-fold prediction, one row per (task, arm, seed, test item): PREDICTION_COLUMNS, with
        label 0/1, score the arm's float score and predicted 0/1 at the validation threshold."""
        frames = []
        for key, items in self.items.items():
            frame = pd.concat(items, ignore_index=True)
            frame["task"], frame["arm"], frame["seed"] = key
            frame["score"] = np.concatenate(self.scores[key])
            frame["predicted"] = np.concatenate(self.predicted[key]).astype(int)
            frames.append(frame)
        return pd.concat(frames, ignore_index=True)[list(PREDICTION_COLUMNS)]


def summarise(
    pool: Pool, config, catalog, audit: dict, localisation: list[bool], compute: dict[str, dict] | None = None
) -> dict:
    """The study's metrics (metrics.json without the timings): config, data, per-task arms, audit, localisation.

    compute: task -> arm name -> the compute that arm took (Units.compute), put beside the arm's numbers.
    """
    compute = compute or {}
    tasks = {
        task: summarise_task(
            pool, task, config.seeds, config.bootstrap, config.fixed_specificity, compute.get(task, {})
        )
        for task in pool.arms
    }
    metrics = {
        "config": asdict(config),
        "data": str(catalog.root),
        "source": catalog.source,
        "tasks": tasks,
        "audit": audit,
        "film_localisation": {
            "clusters_films": len(localisation),
            "top_region_in_circle": float(np.mean(localisation)) if localisation else None,
        },
    }
    if config.positive_fractions:
        metrics["low_data"] = low_data_curve(tasks, config, audit)
    return metrics


def low_data_curve(tasks: dict, config, audit: dict) -> dict[str, list[dict]]:
    """Per patch task, one point per positive fraction (ascending) present in `tasks`: the pooled AUCs of real
    only and real + inserted x LOW_DATA_RATIO, their paired difference and its verdict, and the positive
    training patients of each fold (from audit["models"]); fraction 1 is the full-data task."""
    arm = inserted(LOW_DATA_RATIO).name
    curve = {}
    for task in (t for t in config.tasks if t != FILM_TASK):
        points = []
        for fraction in sorted(config.positive_fractions):
            name = task if fraction == 1 else low_data_task(task, fraction)
            entry = tasks.get(name)
            if entry is None or arm not in entry["arms"]:
                continue
            points.append(
                {
                    "fraction": fraction,
                    "task": name,
                    "positive_patients_per_fold": positive_patients_per_fold(audit, fraction),
                    "auc_real": entry["arms"][entry["reference"]]["auc"],
                    "auc_inserted": entry["arms"][arm]["auc"],
                    "difference": entry["arms"][arm]["auc_difference_vs_reference"],
                    "verdict": entry["arms"][arm]["verdict"],
                }
            )
        curve[task] = points
    return curve


def positive_patients_per_fold(audit: dict, fraction: float) -> list[int] | None:
    """How many training patients give real positives in each fold at `fraction` (audit["models"]' low_data
    records; at 1, all those patients); None when the records do not say."""
    counts = []
    for record in audit.get("models", []):
        points = record.get("low_data") or []
        if fraction == 1 and points:
            counts.append(len(points[0]["positive_patients"]) + len(points[0]["left_out_patients"]))
        else:
            counts += [len(p["positive_patients"]) for p in points if p["fraction"] == fraction]
    return counts or None


def summarise_task(
    pool: Pool,
    task: str,
    n_seeds: int,
    n_resamples: int,
    fixed_specificity: float = 0.90,
    compute: dict[str, dict] | None = None,
) -> dict:
    """One task's arms: pooled and per-fold AUCs, sensitivity at `fixed_specificity` and at the validation
    threshold, paired bootstrap differences, DeLong p-values (Holm-adjusted) and verdicts (module docstring)."""
    from mammo_tf.evaluation.stats import paired_bootstrap

    arms = list(pool.arms[task].values())
    reference = reference_arm(arms).name
    # Reference first, then the arms under test, then the baselines and probes.
    arms.sort(key=lambda a: (a.name != reference, not a.tested))
    items = pd.concat(pool.items[(task, reference, 0)], ignore_index=True)
    y, groups, folds = items["label"].to_numpy(), items["patient_id"].to_numpy(), items["fold"].to_numpy()
    scores = {a.name: pool.stack(pool.scores, task, a.name, n_seeds) for a in arms}
    predicted = {a.name: pool.stack(pool.predicted, task, a.name, n_seeds) for a in arms}
    auc = paired_bootstrap(y, groups, scores, reference=reference, n_resamples=n_resamples)
    sens = paired_bootstrap(y, groups, predicted, reference=reference, metric=sensitivity, n_resamples=n_resamples)
    spec = paired_bootstrap(y, groups, predicted, reference=reference, metric=specificity, n_resamples=n_resamples)
    at_spec = paired_bootstrap(
        y,
        groups,
        scores,
        reference=reference,
        metric=partial(sensitivity_at_specificity_rows, specificity=fixed_specificity),
        n_resamples=n_resamples,
    )
    tested = [a.name for a in arms if a.tested] if 0 < y.sum() < y.size else []
    delong = delong_against_reference(y, scores, reference, tested)
    arms_out = {}
    for arm in arms:
        name = arm.name
        by_seed = [[fold_auc(y[folds == f], row[folds == f]) for f in np.unique(folds)] for row in scores[name]]
        arms_out[name] = {
            "auc": auc[name]["value"].as_dict(),
            "auc_difference_vs_reference": auc[name]["difference"].as_dict(),
            "verdict": judge(arm, reference, auc[name]["difference"]),
            "sensitivity": sens[name]["value"].as_dict(),
            "specificity": spec[name]["value"].as_dict(),
            "sensitivity_at_fixed_specificity": at_spec[name]["value"].as_dict(),
            "sensitivity_at_fixed_specificity_difference_vs_reference": at_spec[name]["difference"].as_dict(),
            "fold_auc_by_seed": by_seed,
            "fold_auc_mean": mean_of_present(by_seed),
            "delong_vs_reference": delong.get(name),
            "compute": (compute or {}).get(name),
        }
    return {
        "reference": reference,
        "n_items": int(len(y)),
        "n_positive": int(y.sum()),
        "n_patients": int(len(set(groups))),
        "folds": [int(f) for f in np.unique(folds)],  # the order of each arm's fold_auc_by_seed rows
        "fixed_specificity": fixed_specificity,
        "holm": {
            "adjusted": "delong_vs_reference.p_median (the median over seeds of DeLong's two-sided p against "
            "the reference), into delong_vs_reference.p_holm",
            "family": tested,
        },
        "arms": arms_out,
        "roc": {a.name: roc(y, scores[a.name][0]) for a in arms},
    }


def delong_against_reference(
    labels: np.ndarray, scores: dict[str, np.ndarray], reference: str, tested: list[str]
) -> dict[str, dict]:
    """DeLong's test of each arm in `tested` against `reference`, seed by seed on the same pooled items.

    labels: int [N] with both classes; scores: arm -> float [S, N] (rows: seeds, paired row by row). Per arm:
    by_seed (stats.DeLong fields, difference = arm - reference), p_median over seeds, and p_holm: the
    p_medians Holm-adjusted across `tested` (one family per task).
    """
    from mammo_tf.evaluation.stats import delong_test, holm

    out = {}
    for arm in tested:
        tests = [delong_test(labels, a, r) for a, r in zip(scores[arm], scores[reference], strict=True)]
        out[arm] = {"by_seed": [t.as_dict() for t in tests], "p_median": float(np.median([t.p for t in tests]))}
    for arm, p in zip(tested, holm([out[a]["p_median"] for a in tested]), strict=True):
        out[arm]["p_holm"] = p
    return out


def judge(arm: Arm, reference: str, difference) -> str:
    """'reference'; for an arm under test, the verdict of its paired difference's CI; else 'baseline'."""
    from mammo_tf.evaluation.stats import verdict

    if arm.name == reference:
        return "reference"
    return verdict(difference) if arm.tested else "baseline"


def sensitivity(labels: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """float [K]: the share of positives called positive per row of predicted (0/1) [K, N]; NaN without any."""
    predicted = np.atleast_2d(predicted)
    return predicted[:, labels == 1].mean(axis=1) if (labels == 1).any() else np.full(len(predicted), np.nan)


def specificity(labels: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """float [K]: the share of negatives called negative per row of predicted (0/1) [K, N]; NaN without any."""
    predicted = np.atleast_2d(predicted)
    return 1 - predicted[:, labels == 0].mean(axis=1) if (labels == 0).any() else np.full(len(predicted), np.nan)


def sensitivity_at_specificity_rows(labels: np.ndarray, scores: np.ndarray, specificity: float = 0.90) -> np.ndarray:
    """float [K]: per row of scores [K, N] (or [N]), the sensitivity at the smallest threshold whose specificity
    on these same items' negatives is >= `specificity`; NaN for every row when a class is missing.

    labels: int [N] (1 = positive); higher score = more likely positive (score >= threshold is called
    positive); specificity in (0, 1). The threshold is not chosen on validation patients: this is the height of
    the items' own ROC curve at a false positive rate of 1 - specificity, an operating point comparable between
    arms scored on the same items. With k the most false positives allowed, the smallest such threshold lies
    just above the (k+1)-th highest negative score, so the sensitivity is the share of positives above it
    (equal to reading scikit-learn's roc_curve, ties included: tested; vectorised for the bootstrap).
    """
    scores = np.atleast_2d(scores)
    positive = np.asarray(labels) == 1
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if not (n_pos and n_neg):
        return np.full(len(scores), np.nan)
    # 1e-12: k / n_negatives may miss the target by a rounding
    allowed = int(np.flatnonzero(1 - np.arange(n_neg + 1) / n_neg >= specificity - 1e-12).max())
    if allowed == n_neg:
        return np.ones(len(scores))
    cut = -np.sort(-scores[:, ~positive], axis=1)[:, allowed]
    return (scores[:, positive] > cut[:, None]).mean(axis=1)


def fold_auc(y: np.ndarray, s: np.ndarray) -> float | None:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, s)) if 0 < y.sum() < y.size else None


def mean_of_present(values: list[list[float | None]]) -> float | None:
    """The mean of the per-fold AUCs of every seed, leaving out the folds without both classes (None)."""
    present = [v for row in values for v in row if v is not None]
    return float(np.mean(present)) if present else None


def roc(y: np.ndarray, s: np.ndarray) -> dict:
    from sklearn.metrics import roc_curve

    if not 0 < y.sum() < y.size:
        return {"fpr": [], "tpr": []}
    fpr, tpr, _ = roc_curve(y, s)
    return {"fpr": fpr.round(4).tolist(), "tpr": tpr.round(4).tolist()}
