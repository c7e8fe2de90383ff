"""The cluster distance behind evaluate-insert's closest-training-cluster check: invariances it must have, a far
cluster scoring larger, and a check that flags copied layouts and passes new ones."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mammo_tf.evaluation.layout_memorisation import (
    ALPHA,
    Cluster,
    closest_training_clusters,
    cluster_distance,
    copy_test,
    layout_cluster,
    real_clusters,
)

# an irregular 7-speck cluster (px): no symmetry, so only the right rotation brings a copy back onto it
BASE = np.array([[0.0, 0.0], [3.0, 1.0], [-2.0, 4.0], [5.0, -3.0], [-4.0, -2.0], [1.0, 7.0], [-6.0, 5.0]])


def _rotate(points: np.ndarray, degrees: float, mirror: bool = False) -> np.ndarray:
    t = np.deg2rad(degrees)
    turn = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    return (points * ([1.0, -1.0] if mirror else [1.0, 1.0])) @ turn.T


def _rms(points: np.ndarray) -> float:
    return float(np.sqrt(((points - points.mean(axis=0)) ** 2).sum(axis=1).mean()))


def test_identical_shifted_and_reordered_copies_are_at_distance_zero() -> None:
    assert cluster_distance(BASE, BASE) == pytest.approx(0.0, abs=1e-9)
    assert cluster_distance(BASE, BASE + [40.0, -13.5]) == pytest.approx(0.0, abs=1e-9)  # centring
    assert cluster_distance(BASE, BASE[::-1]) == pytest.approx(0.0, abs=1e-9)  # a set, not a sequence


@pytest.mark.parametrize("degrees", [30.0, 90.0, 185.0])
@pytest.mark.parametrize("mirror", [False, True])
def test_a_rotated_or_mirrored_copy_on_the_grid_is_at_distance_zero(degrees: float, mirror: bool) -> None:
    assert cluster_distance(BASE, _rotate(BASE, degrees, mirror) + [7.0, 2.0]) == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize("degrees", [37.5, 123.4])
def test_a_rotated_copy_between_grid_angles_stays_within_the_stated_bound(degrees: float) -> None:
    d = cluster_distance(BASE, _rotate(BASE, degrees))
    radius = np.linalg.norm(BASE - BASE.mean(axis=0), axis=1).max()
    assert d <= 2 * radius * np.sin(np.deg2rad(5.0) / 4) + 1e-9  # 5 degree grid: at most 2 r sin(step / 4)
    assert d < 0.05 * _rms(BASE)


def test_a_far_cluster_scores_larger_than_a_perturbed_copy() -> None:
    rng = np.random.default_rng(0)
    near = BASE + rng.normal(0.0, 0.3, BASE.shape)
    spread = BASE * 3.0  # the same arrangement three times as wide
    other = rng.normal(0.0, 5.0, (7, 2))  # another random cluster of the same count and size
    d_near, d_spread, d_other = (cluster_distance(BASE, x) for x in (near, spread, other))
    assert 0.0 < d_near < 0.5
    assert d_spread > 5.0 and d_other > 1.0 and d_other > 3 * d_near
    fewer = cluster_distance(BASE, BASE[:4])  # a part of the cluster: the missing specks count
    assert fewer > 1.0


def test_the_distance_is_symmetric() -> None:
    other = np.random.default_rng(1).normal(0.0, 4.0, (5, 2))
    assert cluster_distance(BASE, other) == pytest.approx(cluster_distance(other, BASE), rel=1e-12)


def test_bad_points_are_refused() -> None:
    with pytest.raises(ValueError, match="finite points"):
        cluster_distance(np.zeros((0, 2)), BASE)
    with pytest.raises(ValueError, match="finite points"):
        cluster_distance(BASE, np.full((3, 2), np.nan))


def test_a_layout_is_read_relative_to_its_recorded_centre() -> None:
    centre = (29.5, 36.0)  # off the patch centre (jittered insertion)
    record = {"klass": "benign", "centre": centre,
              "specks": [{"row": centre[0] + dy, "col": centre[1] + dx} for dy, dx in BASE]}  # fmt: skip
    cluster = layout_cluster(record, "benign_00000")
    np.testing.assert_allclose(cluster.points, BASE)
    assert cluster.klass == "benign" and cluster.name == "benign_00000"
    empty = layout_cluster({"klass": "malignant", "centre": centre, "specks": []}, "x")
    assert empty.points.shape == (0, 2)


def test_real_clusters_group_by_finding_and_keep_the_patch_window() -> None:
    specks = pd.DataFrame(
        {"finding": [4, 4, 4, 9], "patient_id": ["p1"] * 3 + ["p2"], "image_id": ["a"] * 3 + ["b"],
         "klass": ["malignant"] * 3 + ["benign"], "dy": [0.0, -32.0, 31.5, 2.0], "dx": [0.0, 0.0, 32.0, 1.0]}
    )  # fmt: skip
    every = real_clusters(specks)
    assert [(c.name, c.klass, len(c.points)) for c in every] == [("p1/a#4", "malignant", 3), ("p2/b#9", "benign", 1)]
    window = real_clusters(specks, patch_size=64)  # rows and columns -32 .. 31 around the centre
    np.testing.assert_allclose(window[0].points, [[0.0, 0.0], [-32.0, 0.0]])


def _clusters(prefix: str, klass: str, points: list[np.ndarray]) -> list[Cluster]:
    return [Cluster(f"{prefix}{i}", klass, p) for i, p in enumerate(points)]


def _random_clusters(rng: np.random.Generator, n: int) -> list[np.ndarray]:
    return [rng.normal(0.0, 6.0, (int(rng.integers(4, 9)), 2)) for _ in range(n)]


def test_the_check_flags_copied_layouts_and_passes_new_ones() -> None:
    rng = np.random.default_rng(7)
    train = _clusters("t", "malignant", _random_clusters(rng, 10))
    heldout = _clusters("h", "malignant", _random_clusters(rng, 25))
    copies = [_rotate(c.points, float(rng.uniform(0, 360)), bool(rng.integers(2))) + 50.0 for c in train] * 3
    copied_table, copied = closest_training_clusters(_clusters("c", "malignant", copies), train, heldout)
    assert copied["passed"] is False and copied["fraction_below"] == 1.0 and copied["min_inserted"] < 0.3
    assert copied["threshold_rule"] == "minimum of 25 held-out distances"
    inserted = copied_table[copied_table["set"] == "inserted"]
    assert (inserted["nearest"] == [c.name for c in train] * 3).all()  # each copy finds its own original

    fresh = _clusters("n", "malignant", _random_clusters(rng, 60))
    table, summary = closest_training_clusters(fresh, train, heldout)
    assert summary["passed"] is True and summary["fraction_below"] < 0.2
    assert summary["min_inserted"] > copied["min_inserted"] and summary["min_heldout"] == copied["min_heldout"]
    assert list(table["set"].value_counts().sort_index()) == [25, 60]
    assert summary["closest"][0]["distance"] == summary["min_inserted"]


def test_small_clusters_and_other_classes_are_not_measured() -> None:
    rng = np.random.default_rng(3)
    train = _clusters("t", "malignant", _random_clusters(rng, 3)) + [Cluster("tb", "benign", BASE[:2])]
    layouts = [
        Cluster("two", "malignant", BASE[:2]),
        Cluster("benign", "benign", BASE),
        Cluster("ok", "malignant", BASE),
    ]
    heldout = _clusters("h", "malignant", _random_clusters(rng, 3))
    table, summary = closest_training_clusters(layouts, train, heldout)
    distance = table.set_index("name")["distance"]
    assert np.isnan(distance["two"])  # two specks: too few to have an arrangement
    assert np.isnan(distance["benign"])  # the only benign training cluster has two specks
    assert np.isfinite(distance["ok"])
    assert summary["n_training_clusters"] == {"benign": 0, "malignant": 3}
    assert summary["threshold_rule"] == "minimum of 3 held-out distances" and summary["expected_fraction"] == 0.25
    no_heldout = closest_training_clusters(layouts, train, [])[1]
    assert no_heldout["passed"] is None and no_heldout["threshold"] is None


@pytest.mark.parametrize("n_heldout", [4, 25, 99])
def test_the_copy_test_keeps_its_false_alarm_rate_when_nothing_is_copied(n_heldout: int) -> None:
    """Exchangeable distances (a model that does not copy): about ALPHA of draws fail, even when the threshold is
    the minimum of 4 values (a plain binomial test against k / (H + 1) fails far more often there)."""
    rng = np.random.default_rng(n_heldout)
    results = [copy_test(rng.gamma(4.0, 1.0, 200), rng.gamma(4.0, 1.0, n_heldout)) for _ in range(1000)]
    failed = np.mean([not r["passed"] for r in results])
    assert failed <= ALPHA + 0.02
    expected = results[0]["expected_fraction"]
    assert np.mean([r["fraction_below"] for r in results]) == pytest.approx(expected, rel=0.15)
    if n_heldout == 99:
        assert expected == 0.05 and "order statistic 5" in results[0]["threshold_rule"]


def test_the_copy_test_fails_when_layouts_sit_closer_than_held_out_clusters() -> None:
    rng = np.random.default_rng(0)
    heldout = rng.gamma(4.0, 1.0, 25)
    closer = np.concatenate([rng.gamma(4.0, 1.0, 150), np.full(50, 0.05)])  # a quarter of the layouts copied
    result = copy_test(closer, heldout)
    assert result["passed"] is False and result["n_below"] >= 50 and result["threshold"] == heldout.min()
    # 4 held-out clusters (MIAS): the minimum of 4 is a loose threshold, only wholesale copying shows
    assert copy_test(closer, heldout[:4])["passed"] is True
    assert copy_test(np.full(200, 0.05), heldout[:4])["passed"] is False
