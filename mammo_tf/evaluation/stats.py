"""Bootstrap confidence intervals, resampling whole groups (patients) when groups are given.

Images of one patient are not independent: resampling images would make intervals too narrow. A group
bootstrap draws patients with replacement and takes every value of each drawn patient. Seeded NumPy,
percentile intervals.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Interval:
    estimate: float
    low: float
    high: float
    level: float
    n_resamples: int

    def as_dict(self) -> dict:
        return {
            "estimate": self.estimate,
            "low": self.low,
            "high": self.high,
            "level": self.level,
            "n_resamples": self.n_resamples,
        }


def bootstrap_ci(
    values: np.ndarray,
    groups: np.ndarray | None = None,
    *,
    statistic: Callable[[np.ndarray], float] = np.mean,
    n_resamples: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> Interval:
    """Percentile bootstrap CI of statistic(values), resampling `groups` (e.g. patient ids) if given."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        nan = float("nan")
        return Interval(nan, nan, nan, level, 0)
    rng = np.random.default_rng(seed)
    if groups is None:
        index = [np.array([i]) for i in range(values.size)]
    else:
        groups = np.asarray(groups)
        index = [np.flatnonzero(groups == g) for g in dict.fromkeys(groups.tolist())]
    draws = np.empty(n_resamples)
    for b in range(n_resamples):
        picked = rng.integers(len(index), size=len(index))
        draws[b] = statistic(values[np.concatenate([index[i] for i in picked])])
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(draws, [alpha, 1.0 - alpha])
    return Interval(float(statistic(values)), float(low), float(high), level, n_resamples)


def _auc(labels: np.ndarray, scores: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(labels, scores)) if 0 < labels.sum() < labels.size else float("nan")


def paired_bootstrap(
    labels: np.ndarray,
    groups: np.ndarray,
    scores: dict[str, np.ndarray],
    *,
    reference: str,
    metric: Callable[[np.ndarray, np.ndarray], float] = _auc,
    n_resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> dict[str, dict[str, Interval]]:
    """Metric per arm and its paired difference to `reference`, with patient-level bootstrap CIs.

    labels: int [N] (1 = positive); groups: [N] patient ids; scores: arm -> float [S, N], one row per
    training seed, all arms scored on the same N items. Each resample draws patients with replacement;
    every arm is scored on the same draw, averaged over seeds, and the reference's value is subtracted
    (so arms are judged by paired differences, never by overlapping intervals).
    Returns arm -> {"value": Interval, "difference": Interval}.
    """
    labels, groups = np.asarray(labels), np.asarray(groups)
    rng = np.random.default_rng(seed)
    members = [np.flatnonzero(groups == g) for g in dict.fromkeys(groups.tolist())]
    rows = {arm: np.atleast_2d(np.asarray(s, np.float64)) for arm, s in scores.items()}

    def value(arm: str, index: np.ndarray) -> float:
        return float(np.nanmean([metric(labels[index], row[index]) for row in rows[arm]]))

    everything = np.arange(labels.size)
    point = {arm: value(arm, everything) for arm in rows}
    draws = {arm: np.empty(n_resamples) for arm in rows}
    for b in range(n_resamples):
        index = np.concatenate([members[i] for i in rng.integers(len(members), size=len(members))])
        for arm in rows:
            draws[arm][b] = value(arm, index)
    alpha = (1.0 - level) / 2.0

    def interval(estimate: float, samples: np.ndarray) -> Interval:
        low, high = np.nanquantile(samples, [alpha, 1.0 - alpha])
        return Interval(float(estimate), float(low), float(high), level, n_resamples)

    return {
        arm: {
            "value": interval(point[arm], draws[arm]),
            "difference": interval(point[arm] - point[reference], draws[arm] - draws[reference]),
        }
        for arm in rows
    }


def verdict(difference: Interval) -> str:
    """'helps', 'hurts' or 'no detectable effect' from a CI of a paired difference (higher = better)."""
    if difference.low > 0:
        return "helps"
    if difference.high < 0:
        return "hurts"
    return "no detectable effect"
