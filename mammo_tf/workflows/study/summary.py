"""The study's numbers: predictions pooled over folds, bootstrap statistics and a verdict per arm.

Every arm adds, per task, fold and seed, its scores on the test items and its predictions at the threshold
chosen on the validation patients (Pool.add). summarise() then, per task: stacks the folds of each seed in
fold order (one row per seed), takes AUC, sensitivity and specificity with patient-level bootstrap CIs and
paired differences against the task's reference arm on the same draws (evaluation.stats.paired_bootstrap),
and gives each arm under test its verdict (stats.verdict); the other arms are baselines.
"""

from __future__ import annotations

from dataclasses import asdict

import numpy as np
import pandas as pd

from mammo_tf.data.samplers import Patches
from mammo_tf.data.schema import NORMAL
from mammo_tf.workflows.study.plan import Arm, reference_arm


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


def summarise(pool: Pool, config, catalog, audit: dict, localisation: list[bool]) -> dict:
    """The study's metrics (metrics.json without the timings): config, data, per-task arms, audit, localisation."""
    tasks = {task: summarise_task(pool, task, config.seeds, config.bootstrap) for task in pool.arms}
    return {
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


def summarise_task(pool: Pool, task: str, n_seeds: int, n_resamples: int) -> dict:
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
    arms_out = {}
    for arm in arms:
        name = arm.name
        arms_out[name] = {
            "auc": auc[name]["value"].as_dict(),
            "auc_difference_vs_reference": auc[name]["difference"].as_dict(),
            "verdict": judge(arm, reference, auc[name]["difference"]),
            "sensitivity": sens[name]["value"].as_dict(),
            "specificity": spec[name]["value"].as_dict(),
            "fold_auc_by_seed": [
                [fold_auc(y[folds == f], row[folds == f]) for f in np.unique(folds)] for row in scores[name]
            ],
        }
    return {
        "reference": reference,
        "n_items": int(len(y)),
        "n_positive": int(y.sum()),
        "n_patients": int(len(set(groups))),
        "arms": arms_out,
        "roc": {a.name: roc(y, scores[a.name][0]) for a in arms},
    }


def judge(arm: Arm, reference: str, difference) -> str:
    """'reference'; for an arm under test, the verdict of its paired difference's CI; else 'baseline'."""
    from mammo_tf.evaluation.stats import verdict

    if arm.name == reference:
        return "reference"
    return verdict(difference) if arm.tested else "baseline"


def sensitivity(labels: np.ndarray, predicted: np.ndarray) -> float:
    return float(predicted[labels == 1].mean()) if (labels == 1).any() else float("nan")


def specificity(labels: np.ndarray, predicted: np.ndarray) -> float:
    return float(1 - predicted[labels == 0].mean()) if (labels == 0).any() else float("nan")


def fold_auc(y: np.ndarray, s: np.ndarray) -> float | None:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, s)) if 0 < y.sum() < y.size else None


def roc(y: np.ndarray, s: np.ndarray) -> dict:
    from sklearn.metrics import roc_curve

    if not 0 < y.sum() < y.size:
        return {"fpr": [], "tpr": []}
    fpr, tpr, _ = roc_curve(y, s)
    return {"fpr": fpr.round(4).tolist(), "tpr": tpr.round(4).tolist()}
