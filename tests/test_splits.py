"""Patient-level splits: no patient on two sides, stratified, deterministic."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mammo_tf.data.splits import assign_splits, patient_kfold, patient_labels, split_images


def _labels(n: int = 60) -> pd.Series:
    kinds = ["normal"] * (n - 12) + ["calc-B"] * 5 + ["calc-M"] * 5 + ["other"] * 2
    return pd.Series(kinds, index=[f"p{i:03d}" for i in range(n)])


def test_split_images_keeps_patients_whole_and_is_stratified() -> None:
    images = pd.DataFrame({"image_id": [f"i{i}" for i in range(120)], "patient_id": [f"p{i // 2}" for i in range(120)]})
    labels = pd.Series(["normal"] * 120, index=images["image_id"], dtype="string")
    labels.iloc[[1, 11, 21, 31, 41]] = "calc-M"
    split = split_images(images, labels, seed=3)
    assert (images.assign(split=split).groupby("patient_id")["split"].nunique() == 1).all()
    malignant_patients = images.loc[[1, 11, 21, 31, 41], "patient_id"]
    assert set(split[malignant_patients.index]) == {"train", "val", "test"}
    assert split.tolist() == split_images(images, labels, seed=3).tolist()
    assert split.tolist() != split_images(images, labels, seed=4).tolist()


def test_assign_splits_fractions_and_rare_strata() -> None:
    split = assign_splits(_labels(), seed=0)
    counts = split.value_counts()
    assert counts["train"] == 42 and counts["val"] + counts["test"] == 18
    single = assign_splits(pd.Series(["calc-M"], index=["p0"]))
    assert single.tolist() == ["train"]


def test_patient_labels_take_the_most_severe() -> None:
    labels = patient_labels(pd.Series(["a", "a", "b"]), pd.Series(["normal", "calc-M", "other"]))
    assert labels.to_dict() == {"a": "calc-M", "b": "other"}


@pytest.mark.parametrize("k", [2, 5])
def test_kfold_partitions_patients(k: int) -> None:
    labels = _labels()
    folds = patient_kfold(labels, k=k, seed=1)
    tests = np.concatenate([test for _, test in folds])
    assert sorted(tests) == sorted(labels.index)
    for train, test in folds:
        assert not set(train) & set(test)
        assert labels[test].eq("calc-M").any()


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        assign_splits(_labels(), fractions=(0.5, 0.5, 0.5))
    with pytest.raises(ValueError):
        patient_kfold(_labels(4), k=5)
