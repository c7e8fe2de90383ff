"""Bootstrap confidence intervals, resampling whole groups (patients) when groups are given; DeLong's test of
two correlated AUCs; Holm's step-down adjustment of p-values.

Images of one patient are not independent: resampling images would make intervals too narrow. A group
bootstrap draws patients with replacement and takes every value of each drawn patient. Seeded NumPy,
percentile intervals. DeLong's test, by contrast, treats every item as independent (see delong_test).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

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


def auc_rows(labels: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """float [K]: the ROC AUC of each row of scores [K, N] (or [N]) against labels int [N] (1 = positive); NaN
    for every row when a class is missing. The Mann-Whitney U of the positives over the negatives from SciPy's
    ranks (ties share their mean rank, so they count one half), divided by n_pos x n_neg: scikit-learn's
    roc_auc_score for all rows in one call, which the bootstrap's thousands of resamples need (about 0.2 ms
    for 3 rows of 300 items, against 6 ms per row for roc_auc_score)."""
    from scipy.stats import rankdata

    scores = np.atleast_2d(scores)
    positive = np.asarray(labels) == 1
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if not (n_pos and n_neg):
        return np.full(len(scores), np.nan)
    u = rankdata(scores, axis=1)[:, positive].sum(axis=1) - n_pos * (n_pos + 1) / 2
    return u / (n_pos * n_neg)


def paired_bootstrap(
    labels: np.ndarray,
    groups: np.ndarray,
    scores: dict[str, np.ndarray],
    *,
    reference: str,
    metric: Callable[[np.ndarray, np.ndarray], np.ndarray] = auc_rows,
    n_resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> dict[str, dict[str, Interval]]:
    """Metric per arm and its paired difference to `reference`, with patient-level bootstrap CIs.

    labels: int [N] (1 = positive); groups: [N] patient ids; scores: arm -> float [S, N], one row per
    training seed, all arms scored on the same N items. metric(labels [n], scores [S, n]) -> float [S], one
    value per row (auc_rows). Each resample draws patients with replacement;
    every arm is scored on the same draw, averaged over seeds, and the reference's value is subtracted
    (so arms are judged by paired differences, never by overlapping intervals).
    Returns arm -> {"value": Interval, "difference": Interval}.
    """
    labels, groups = np.asarray(labels), np.asarray(groups)
    rng = np.random.default_rng(seed)
    members = [np.flatnonzero(groups == g) for g in dict.fromkeys(groups.tolist())]
    rows = {arm: np.atleast_2d(np.asarray(s, np.float64)) for arm, s in scores.items()}

    def value(arm: str, index: np.ndarray) -> float:
        values = metric(labels[index], rows[arm][:, index])
        values = values[~np.isnan(values)]  # a seed's row without a class has no value (NaN)
        return float(values.mean()) if values.size else float("nan")

    everything = np.arange(labels.size)
    point = {arm: value(arm, everything) for arm in rows}
    draws = {arm: np.empty(n_resamples) for arm in rows}
    for b in range(n_resamples):
        index = np.concatenate([members[i] for i in rng.integers(len(members), size=len(members))])
        for arm in rows:
            draws[arm][b] = value(arm, index)
    alpha = (1.0 - level) / 2.0

    def interval(estimate: float, samples: np.ndarray) -> Interval:
        samples = samples[~np.isnan(samples)]  # resamples without both classes have no value
        low, high = np.quantile(samples, [alpha, 1.0 - alpha]) if samples.size else (np.nan, np.nan)
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


@dataclass(frozen=True)
class DeLong:
    """DeLong's test of AUC(a) - AUC(b) on the same items: the difference, its standard error, z and p."""

    auc_a: float
    auc_b: float
    difference: float
    se: float
    z: float
    p: float

    def as_dict(self) -> dict:
        return asdict(self)


def delong_test(labels: np.ndarray, scores_a: np.ndarray, scores_b: np.ndarray) -> DeLong:
    """DeLong's test of two correlated ROC AUCs (two models scored on the same items), two-sided.

    labels: int [N] (1 = positive, both classes present); scores_a, scores_b: float [N]. The fast algorithm
    of Sun & Xu (2014): the structural components of DeLong et al. (1988) from midranks (ties count one half),
    so O(N log N). The items are taken as independent: for patches clustered in patients the standard error
    is too small, and the patient bootstrap (paired_bootstrap) is the one to judge arms by. When the
    standard error is 0 (e.g. identical scores) z is 0 and p is 1 if the difference is 0, else z is +-inf
    and p is 0; with a single item of a class it is NaN, and so are z and p.
    """
    from scipy.stats import norm, rankdata

    labels = np.asarray(labels)
    scores = np.stack([np.asarray(scores_a, np.float64), np.asarray(scores_b, np.float64)])
    positive, negative = scores[:, labels == 1], scores[:, labels == 0]
    m, n = positive.shape[1], negative.shape[1]
    if m == 0 or n == 0:
        raise ValueError("DeLong's test needs positive and negative items")
    ranks_all = rankdata(np.concatenate([positive, negative], axis=1), axis=1)  # midranks: ties share the mean
    ranks_positive = rankdata(positive, axis=1)
    ranks_negative = rankdata(negative, axis=1)
    auc = (ranks_all[:, :m].sum(axis=1) / m - (m + 1) / 2) / n
    v_positive = (ranks_all[:, :m] - ranks_positive) / n  # [2, m]: share of negatives below each positive
    v_negative = 1 - (ranks_all[:, m:] - ranks_negative) / m  # [2, n]: share of positives above each negative
    covariance = np.cov(v_positive) / m + np.cov(v_negative) / n  # [2, 2], ddof 1 as in DeLong et al.
    difference = float(auc[0] - auc[1])
    se = float(np.sqrt(max(covariance[0, 0] + covariance[1, 1] - 2 * covariance[0, 1], 0.0)))
    if se > 0:
        z = difference / se
    elif se == 0:
        z = 0.0 if difference == 0 else float(np.copysign(np.inf, difference))
    else:  # NaN: a class with a single item has no variance estimate
        z = float("nan")
    return DeLong(float(auc[0]), float(auc[1]), difference, se, float(z), float(2 * norm.sf(abs(z))))


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjustment (family-wise error) of p-values, in their input order, each in [0, 1].

    The k-th smallest of m p-values is multiplied by m - k + 1, the running maximum is taken and capped at 1.
    NaN p-values stay NaN and do not count in m.
    """
    p = np.asarray(p_values, np.float64)
    adjusted = np.full(p.shape, np.nan)
    present = np.flatnonzero(~np.isnan(p))
    order = present[np.argsort(p[present], kind="stable")]
    m = order.size
    adjusted[order] = np.minimum(np.maximum.accumulate(p[order] * (m - np.arange(m))), 1.0)
    return adjusted.tolist()
