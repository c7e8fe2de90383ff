"""KID of inserted calcification patches against the test patients' real ones, beside the real-vs-real floor, on
the project's feature network (evaluation/features.py). The KID itself is evaluation/gan.py's ``kid``, with
evaluate-gan's subset rule, so the numbers read like evaluate-gan's.

Why a floor: with a few dozen real test patches, even two sets of REAL calcification patches differ in KID; the
floor (training patients' real calcification patches against the same test patches, same feature network, same
subset size) is what "as close as real" means. The ratio set / floor is only given when the floor is > 0 (the
estimator is unbiased, so a floor can come out <= 0 when the real sets match).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from mammo_tf.data.samplers import Patches
from mammo_tf.data.schema import BENIGN, CLASS_NAMES, MALIGNANT

if TYPE_CHECKING:  # pragma: no cover
    from mammo_tf.evaluation.features import FeatureNet


def _kid(candidate: np.ndarray, reference: np.ndarray, seed: int) -> dict[str, Any]:
    """{"n", "kid", "kid_std"} of candidate features against reference features (None where < 2 rows)."""
    from mammo_tf.evaluation.gan import kid
    from mammo_tf.evaluation.gan_report import KID_SUBSET_SIZE, KID_SUBSETS

    out: dict[str, Any] = {"n": int(len(candidate)), "kid": None, "kid_std": None}
    if len(candidate) >= 2 and len(reference) >= 2:
        # evaluate-gan's rule (gan_report._set_metrics): subsets of half the smaller set, at most KID_SUBSET_SIZE
        subset = max(2, min(KID_SUBSET_SIZE, min(len(candidate), len(reference)) // 2))
        out["kid"], out["kid_std"] = kid(candidate, reference, KID_SUBSETS, subset, seed)
    return out


def kid_against_floor(
    net: FeatureNet, real_test: Patches, floor: Patches, sets: dict[str, tuple[np.ndarray, np.ndarray]], seed: int
) -> dict[str, Any]:
    """Per class (benign, malignant) and pooled ("all"): KID of each set and of the floor against real_test.

    net: a FeatureNet (features.feature_extractor) for patches of this size. real_test: the test patients' real
    calcification patches; floor: the training patients' (Patches, images float32 [N, P, P, 1] in [0, 1]).
    sets: name -> (images float32 [N, P, P] in [0, 1], labels int32 [N]). seed: the KID subsets' draws.
    Returns {"feature_network", "feature_network_info", "groups": {group: {"n_real", "floor": {n, kid,
    kid_std}, <set>: {n, kid, kid_std, ratio_to_floor}}}}; a group without 2 real test patches is left out.
    """
    real_feats, floor_feats = net.embed(real_test.images), net.embed(floor.images)
    set_feats = {name: (net.embed(images), np.asarray(labels)) for name, (images, labels) in sets.items()}
    groups: dict[str, Any] = {}
    for group, classes in (("all", (BENIGN, MALIGNANT)), *((CLASS_NAMES[c], (c,)) for c in (BENIGN, MALIGNANT))):
        real = real_feats[np.isin(real_test.labels, classes)]
        if len(real) < 2:
            continue
        floor_kid = _kid(floor_feats[np.isin(floor.labels, classes)], real, seed)
        row: dict[str, Any] = {"n_real": int(len(real)), "floor": floor_kid}
        for name, (feats, labels) in set_feats.items():
            entry = _kid(feats[np.isin(labels, classes)], real, seed)
            base, value = floor_kid["kid"], entry["kid"]
            entry["ratio_to_floor"] = value / base if value is not None and base is not None and base > 0 else None
            row[name] = entry
        groups[group] = row
    info = {k: net.meta.get(k) for k in ("version", "sha256", "n_train", "final_accuracy", "final_loss", "task")}
    return {"feature_network": net.name, "feature_network_info": info, "groups": groups}
