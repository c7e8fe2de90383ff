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
