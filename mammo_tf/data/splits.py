"""Patient-level splits: a patient's images are always on one side.

Stratification is by patient label (the most severe label among the patient's
images), so each split gets its share of malignant and benign calcification
patients even when there are only a couple dozen of them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

SPLITS = ("train", "val", "test")
# Most severe first: a patient with a malignant and a normal film is stratified as malignant.
LABEL_ORDER = ("calc-M", "calc-B", "other", "normal")


def patient_labels(patient_ids: pd.Series, image_labels: pd.Series) -> pd.Series:
    """patient_id -> most severe image label. Both inputs are aligned per image."""
    rank = {label: i for i, label in enumerate(LABEL_ORDER)}
    ranks = pd.Series(image_labels.to_numpy(), dtype="string").map(lambda v: rank.get(v, len(rank)))
    best = ranks.groupby(patient_ids.to_numpy()).min()
    names = list(LABEL_ORDER) + ["unknown"]
    return best.map(lambda r: names[int(r)]).rename("label")


def assign_splits(
    labels: pd.Series, fractions: tuple[float, float, float] = (0.7, 0.15, 0.15), seed: int = 0
) -> pd.Series:
    """Assign each patient (index of `labels`) to train/val/test, stratified by label.

    Within each label the patients are shuffled with `seed` and cut by `fractions`
    (largest-remainder rounding), so a stratum of one patient goes to train and
    small strata still reach val/test before train takes a second share.
    """
    if len(fractions) != 3 or any(f < 0 for f in fractions) or not np.isclose(sum(fractions), 1.0):
        raise ValueError(f"fractions must be three non-negative numbers summing to 1, got {fractions}")
    rng = np.random.default_rng(seed)
    out = pd.Series("train", index=labels.index, dtype="string", name="split")
    for label in sorted(labels.unique()):
        members = np.array(sorted(labels.index[labels == label]))
        rng.shuffle(members)
        exact = np.array(fractions) * len(members)
        counts = np.floor(exact).astype(int)
        for i in np.argsort(-(exact - counts), kind="stable")[: len(members) - counts.sum()]:
            counts[i] += 1
        bounds = np.cumsum(counts)
        out[members[bounds[0] : bounds[1]]] = "val"
        out[members[bounds[1] :]] = "test"
    return out


def patient_kfold(labels: pd.Series, k: int = 5, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """k folds of patients, stratified by label: [(train_patient_ids, test_patient_ids), ...].

    scikit-learn's StratifiedKFold on one row per patient: grouping is exact
    because the unit being split is the patient itself.
    """
    from sklearn.model_selection import StratifiedKFold

    if k < 2 or k > len(labels):
        raise ValueError(f"k must be between 2 and the number of patients ({len(labels)}), got {k}")
    patients = np.array(labels.index)
    counts = labels.value_counts()
    # Strata smaller than k cannot be stratified; pool them so StratifiedKFold does not refuse.
    strata = labels.where(labels.map(counts) >= k, "rare").to_numpy()
    splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "least populated class has only n members"
        folds = list(splitter.split(patients, strata))
    return [(patients[train], patients[test]) for train, test in folds]


def split_images(images: pd.DataFrame, image_labels: pd.Series, seed: int = 0) -> pd.Series:
    """Per-image split column from patient-level assignment (aligned with `images`)."""
    labels = patient_labels(images["patient_id"], image_labels.reindex(images["image_id"].to_numpy()))
    per_patient = assign_splits(labels, seed=seed)
    return images["patient_id"].map(per_patient).astype("string")
