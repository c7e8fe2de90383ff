"""Is an inserted cluster layout a copy of a training cluster? Distances between calcification clusters as point
sets, and the data-copying check of evaluate-insert (NumPy/SciPy/pandas, no TensorFlow).

Why: the layouts are drawn from a model fitted on the training patients' real clusters (data/layouts.py). A
model that reproduced one of those clusters speck for speck would show the classifier a training cluster
again, not a new one. The check follows the feature-space memorisation of evaluate-gan (evaluation/gan.py,
Meehan et al. 2020): each inserted layout's distance to its nearest training cluster, against how close
genuinely new real clusters (held-out patients') come to the same training clusters.

Cluster distance (`cluster_distance`), between point sets A [n, 2] and B [m, 2] of speck centres (px):
  1. each set is centred on its own centroid (where a cluster sits in its patch is not its layout);
  2. symmetric Chamfer distance: C(A, B) = (mean_a min_b |a - b| + mean_b min_a |a - b|) / 2, in px: how far a
     speck of either cluster is, on average, from the nearest speck of the other. It is 0 only when the two
     sets coincide, and it grows with a count mismatch (extra specks of one side are far from the other's);
  3. minimised over the orthogonal transforms T of B: rotations by multiples of 360 / N_ANGLES degrees, each
     with and without a reflection. The layout model draws every cluster's orientation uniformly, so a copy
     would be a rotated (or mirrored) one. The grid step bounds what an exact rotated copy can score: its
     specks at radius r from the centroid lie at most 2 r sin(step / 4) from the grid's nearest rotation
     (5 degree step: 0.044 r, e.g. 0.4 px at r = 10 px).
  It is symmetric (the transforms form a group) and costs O(2 N_ANGLES n m) per pair. Only positions count:
  the layout model draws each speck's area and contrast independently of where the speck is, and the renderer
  rescales contrast to the local background, so positions are what a copied cluster would keep.

Clusters with fewer than MIN_SPECKS specks are left out on both sides: after centring and rotation one speck
is a point and two specks are one spacing, so small clusters coincide by chance without anything being copied.

Check (`closest_training_clusters`): each inserted layout and each held-out real cluster gets its distance to
the nearest training cluster OF ITS CLASS. threshold: the PERCENTILE-th percentile of the H held-out distances
(pooled over classes) as an order statistic, the k-th smallest with k = max(1, floor(PERCENTILE / 100 (H + 1)));
with fewer than 39 held-out clusters that is their minimum. A model that does not copy places its layouts as far
from the training clusters as new real clusters are (their distances exchangeable with the held-out ones): then
a fraction k / (H + 1) of the layouts falls below the threshold on average, and the count below follows a
beta-binomial (n layouts, Beta(k, H + 1 - k)): the threshold is itself random, which matters with few held-out
clusters; a plain binomial test would flag a model that does not copy). passed: the one-sided beta-binomial
p-value of the count below (scipy.stats.betabinom) is >= ALPHA. With a handful of held-out clusters (mini-MIAS
has 4 of 3 specks or more) the threshold is loose and only wholesale copying fails the test: read the closest
layouts and their distances beside the closest held-out cluster's.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
from scipy.stats import betabinom

N_ANGLES = 72  # 5 degree rotation grid
MIN_SPECKS = 3
PERCENTILE = 5.0
ALPHA = 0.05
N_CLOSEST = 5  # closest inserted layouts named in the summary


class Cluster(NamedTuple):
    """A cluster as the check sees it: name (unique in its set), klass ("benign"/"malignant"), points float64
    [n, 2] (row, col offsets in px from any fixed origin: the distance centres them)."""

    name: str
    klass: str
    points: np.ndarray


def _transforms(n_angles: int) -> np.ndarray:
    """float64 [2 n_angles, 2, 2]: rotations by k 360 / n_angles degrees, then the same after a reflection."""
    theta = np.arange(n_angles) * (2.0 * np.pi / n_angles)
    cos, sin = np.cos(theta), np.sin(theta)
    rotations = np.stack([np.stack([cos, -sin], axis=-1), np.stack([sin, cos], axis=-1)], axis=-2)
    return np.concatenate([rotations, rotations @ np.diag([1.0, -1.0])])


def _points(points: np.ndarray, name: str) -> np.ndarray:
    array = np.asarray(points, dtype=np.float64)
    if array.ndim != 2 or array.shape[1] != 2 or len(array) == 0 or not np.isfinite(array).all():
        raise ValueError(f"{name} must be finite points [n >= 1, 2], got shape {array.shape}")
    return array - array.mean(axis=0)


def cluster_distance(a: np.ndarray, b: np.ndarray, n_angles: int = N_ANGLES) -> float:
    """Symmetric Chamfer distance (px) between two speck point sets, each centred on its centroid, minimised over
    rotations by multiples of 360 / n_angles degrees and reflections (module docstring).

    a, b: float [n, 2] and [m, 2] speck centres (row, col) in px, any origin. Returns a float >= 0.
    """
    a0, b0 = _points(a, "a"), _points(b, "b")
    turned = np.einsum("kij,mj->kmi", _transforms(n_angles), b0)  # [K, m, 2]
    d = np.linalg.norm(a0[None, :, None, :] - turned[:, None, :, :], axis=-1)  # [K, n, m]
    chamfer = 0.5 * (d.min(axis=2).mean(axis=1) + d.min(axis=1).mean(axis=1))
    return float(chamfer.min())


def nearest_cluster(query: Cluster, references: Sequence[Cluster], n_angles: int = N_ANGLES) -> tuple[float, int]:
    """(distance, index in references) of the nearest reference of the query's class; (NaN, -1) if none."""
    best, index = np.inf, -1
    for i, ref in enumerate(references):
        if ref.klass == query.klass:
            d = cluster_distance(query.points, ref.points, n_angles)
            if d < best:
                best, index = d, i
    return (float(best), index) if index >= 0 else (float("nan"), -1)


def real_clusters(specks: pd.DataFrame, patch_size: int | None = None) -> list[Cluster]:
    """The real clusters of extract_specks' table, one per finding, named "<patient_id>/<image_id>#<finding>".

    points: (dy, dx) of each speck from the annotated centre. patch_size: keep only the specks a patch of that
    side centred on the annotated centre shows (-(P // 2) <= dy, dx <= P - 1 - P // 2), as render.py keeps
    only the specks inside the patch: a copied cluster would be cut the same way. None: every speck.
    A finding whose specks all fall outside the window is left out.
    """
    keep = np.ones(len(specks), bool)
    if patch_size is not None:
        low, high = -(patch_size // 2), patch_size - 1 - patch_size // 2
        keep = specks["dy"].between(low, high).to_numpy() & specks["dx"].between(low, high).to_numpy()
    return [
        Cluster(f"{g['patient_id'].iloc[0]}/{g['image_id'].iloc[0]}#{finding}", str(g["klass"].iloc[0]),
                g[["dy", "dx"]].to_numpy(np.float64))
        for finding, g in specks[keep].groupby("finding", sort=True)
    ]  # fmt: skip


def layout_cluster(record: dict[str, Any], name: str) -> Cluster:
    """An inserted layout from its render record (render.render_cluster): the drawn specks' (row, col) minus
    record["centre"] (the cluster centre in patch coordinates, not necessarily the patch centre).
    A record without drawn specks gives an empty points array [0, 2]."""
    centre = np.asarray(record["centre"], np.float64)
    points = np.array([(s["row"], s["col"]) for s in record["specks"]], np.float64).reshape(-1, 2)
    return Cluster(name, str(record["klass"]), points - centre)


def _summary(distances: np.ndarray) -> dict[str, Any]:
    """n, n_checked (finite distances), min, p5 (the PERCENTILE-th percentile) and median (None if none)."""
    finite = distances[np.isfinite(distances)]
    have = finite.size > 0
    return {
        "n": int(distances.size),
        "n_checked": int(finite.size),
        "min": float(finite.min()) if have else None,
        f"p{PERCENTILE:g}": float(np.percentile(finite, PERCENTILE)) if have else None,
        "median": float(np.median(finite)) if have else None,
    }


def copy_test(inserted: np.ndarray, heldout: np.ndarray) -> dict[str, Any]:
    """Are the inserted distances below the held-out ones more often than exchangeable draws would be?

    inserted [n], heldout [H]: distances (px) to the nearest training cluster, finite, n, H >= 1. Returns
    threshold (the k-th smallest held-out distance, module docstring), threshold_rule (in words), n_below and
    fraction_below (inserted strictly below it), expected_fraction (k / (H + 1)), p_value (one-sided
    beta-binomial: P(count >= n_below) when the two sets are exchangeable) and passed (p_value >= ALPHA).
    """
    inserted, heldout = np.asarray(inserted, np.float64), np.sort(np.asarray(heldout, np.float64))
    n, h = len(inserted), len(heldout)
    k = max(1, int(PERCENTILE / 100.0 * (h + 1)))
    threshold = float(heldout[k - 1])
    below = int((inserted < threshold).sum())
    p_value = float(betabinom.sf(below - 1, n, k, h + 1 - k))
    rule = (
        f"minimum of {h} held-out distance{'s' if h > 1 else ''}"
        if k == 1
        else f"{PERCENTILE:g}th percentile of {h} held-out distances (order statistic {k})"
    )
    return {
        "threshold": threshold,
        "threshold_rule": rule,
        "n_below": below,
        "fraction_below": below / n,
        "expected_fraction": k / (h + 1),
        "p_value": p_value,
        "passed": p_value >= ALPHA,
    }


def closest_training_clusters(
    layouts: Sequence[Cluster],
    train: Sequence[Cluster],
    heldout: Sequence[Cluster],
    *,
    min_specks: int = MIN_SPECKS,
    n_angles: int = N_ANGLES,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The data-copying check of the module docstring.

    layouts: the inserted layouts; train: the real clusters the layout model was fitted on; heldout: real
    clusters of patients it never saw. Returns (table, summary).
    table: one row per layout and held-out cluster: set ("inserted" / "held-out"), name, klass, n_specks,
    distance (px; NaN when it or every training cluster of its class has fewer than min_specks specks),
    nearest (the training cluster's name, "" when none).
    summary (JSON-ready): per set and class ("all" pooled) n, n_checked, min, p5, median of the distances;
    copy_test's threshold, threshold_rule, n_below, fraction_below, expected_fraction, p_value and passed (all None
    when no layout or no held-out cluster could be measured); min_inserted, min_heldout; closest (the N_CLOSEST
    closest inserted layouts and their training clusters).
    """
    refs = [c for c in train if len(c.points) >= min_specks]
    rows = []
    for what, clusters in (("inserted", layouts), ("held-out", heldout)):
        for c in clusters:
            d, i = nearest_cluster(c, refs, n_angles) if len(c.points) >= min_specks else (np.nan, -1)
            rows.append({"set": what, "name": c.name, "klass": c.klass, "n_specks": len(c.points), "distance": d,
                         "nearest": refs[i].name if i >= 0 else ""})  # fmt: skip
    table = pd.DataFrame(rows, columns=["set", "name", "klass", "n_specks", "distance", "nearest"])
    groups: dict[str, dict[str, Any]] = {}
    for what in ("inserted", "held-out"):
        part = table[table["set"] == what]
        groups[what] = {k: _summary(g["distance"].to_numpy(float)) for k, g in part.groupby("klass")}
        groups[what]["all"] = _summary(part["distance"].to_numpy(float))
    inserted = table.loc[table["set"] == "inserted", "distance"].dropna()
    held = table.loc[table["set"] == "held-out", "distance"].dropna().to_numpy()
    summary: dict[str, Any] = {
        "distance": f"symmetric Chamfer (px) of speck centres, each cluster centred on its centroid, minimised over "
        f"{n_angles} rotations and their reflections",
        "min_specks": int(min_specks),
        "n_training_clusters": {k: int(sum(c.klass == k for c in refs)) for k in sorted({c.klass for c in train})},
        "groups": groups,
        "min_inserted": float(inserted.min()) if len(inserted) else None,
        "min_heldout": float(held.min()) if held.size else None,
        "threshold": None, "threshold_rule": None, "n_below": None, "fraction_below": None,
        "expected_fraction": None, "p_value": None, "passed": None,
    }  # fmt: skip
    if held.size and len(inserted):
        summary.update(copy_test(inserted.to_numpy(), held))
    order = table[table["set"] == "inserted"].dropna(subset=["distance"]).sort_values("distance", kind="stable")
    summary["closest"] = order.head(N_CLOSEST)[["name", "klass", "n_specks", "distance", "nearest"]].to_dict("records")
    return table, summary
