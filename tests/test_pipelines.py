"""tf.data pipelines: shapes, alignment of LR/HR under augmentation, determinism, balanced sampling.

All inputs are small synthetic arrays built here; no sampler, phantom or MIAS is needed.
"""

from __future__ import annotations

import subprocess
import sys
from collections import Counter

import numpy as np
import pytest

from mammo_tf.data.pipelines import patch_dataset, sr_dataset
from mammo_tf.data.samplers import Patches, SRPairs
from mammo_tf.data.schema import BENIGN, MALIGNANT, NORMAL


def _upsample(lr: np.ndarray, scale: int) -> np.ndarray:
    """Nearest-neighbour upsampling of [..., h, w, C] -> [..., h*scale, w*scale, C]."""
    return lr.repeat(scale, axis=-3).repeat(scale, axis=-2)


def _pairs(n: int = 24, h: int = 6, w: int = 6, scale: int = 2, seed: int = 0) -> SRPairs:
    """Random LR crops with HR = nearest upsample of LR, so alignment can be checked exactly."""
    lr = np.random.default_rng(seed).random((n, h, w, 1), dtype=np.float32)
    ids = np.array([f"i{i}" for i in range(n)])
    return SRPairs(lr=lr, hr=_upsample(lr, scale), image_id=ids, patient_id=ids, scale=scale)


def _patches(labels: list[int], size: int = 8, seed: int = 0) -> Patches:
    """Random patches whose mean encodes the label: pixels are label/3 + noise in [0, 0.3), so floor(3*mean) = label."""
    n = len(labels)
    rng = np.random.default_rng(seed)
    lab = np.asarray(labels, dtype=np.int32)
    images = (lab[:, None, None, None] / 3.0 + rng.random((n, size, size, 1)) * 0.3).astype(np.float32)
    zeros = np.zeros(n, dtype=np.int64)
    ids = np.array([f"i{i}" for i in range(n)])
    return Patches(images=images, labels=lab, image_id=ids, patient_id=ids, centre_row=zeros, centre_col=zeros)


def _take(ds, n_batches: int) -> list[tuple[np.ndarray, ...]]:
    return [tuple(t.numpy() for t in batch) for batch in ds.take(n_batches)]


def _dihedral(image: np.ndarray) -> list[np.ndarray]:
    """The 8 flips/rotations of an [H, W, C] image."""
    out = []
    for base in (image, image[::-1]):
        out += [np.rot90(base, k, axes=(0, 1)) for k in range(4)]
    return out


def test_import_does_not_load_tensorflow() -> None:
    code = "import mammo_tf.data.pipelines, sys; assert 'tensorflow' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("augment", [True, False])
def test_sr_shapes_dtypes_ranges_and_static_spec(augment: bool) -> None:
    ds = sr_dataset(_pairs(), 5, augment=augment)
    lr_spec, hr_spec = ds.element_spec
    assert lr_spec.shape.as_list() == [5, 6, 6, 1] and hr_spec.shape.as_list() == [5, 12, 12, 1]
    assert lr_spec.dtype.name == "float32" and hr_spec.dtype.name == "float32"
    for lr, hr in _take(ds, 8):  # 40 samples > 24: crosses an epoch boundary
        assert lr.shape == (5, 6, 6, 1) and hr.shape == (5, 12, 12, 1)
        assert lr.dtype == np.float32 and hr.dtype == np.float32
        assert lr.min() >= 0.0 and lr.max() <= 1.0 and hr.min() >= 0.0 and hr.max() <= 1.0


@pytest.mark.parametrize(("h", "w"), [(6, 6), (4, 7)])
def test_sr_augmentation_keeps_lr_and_hr_aligned(h: int, w: int) -> None:
    ds = sr_dataset(_pairs(h=h, w=w, scale=3), 4, seed=5)
    for lr, hr in _take(ds, 30):
        assert lr.shape[1:3] == (h, w)  # non-square crops are never turned by 90 degrees
        np.testing.assert_array_equal(hr, _upsample(lr, 3))


def test_sr_augmentation_happens_and_only_moves_pixels() -> None:
    pairs = _pairs(n=16)
    plain = np.concatenate([lr for lr, _ in _take(sr_dataset(pairs, 4, shuffle=False, augment=False), 4)])
    np.testing.assert_array_equal(plain, pairs.lr)  # no shuffle, no augment: the input order, untouched
    augmented = np.concatenate([lr for lr, _ in _take(sr_dataset(pairs, 4, shuffle=False, augment=True), 4)])
    changed = [not np.array_equal(a, p) for a, p in zip(augmented, plain, strict=True)]
    assert sum(changed) >= 8  # 7 of 8 dihedral transforms change a random crop
    for a, p in zip(augmented, plain, strict=True):
        assert any(np.array_equal(a, d) for d in _dihedral(p))


def test_sr_determinism_by_seed() -> None:
    pairs = _pairs()
    first = _take(sr_dataset(pairs, 4, seed=7), 10)
    again = _take(sr_dataset(pairs, 4, seed=7), 10)
    other = _take(sr_dataset(pairs, 4, seed=8), 10)
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])
    assert any(not np.array_equal(a[0], b[0]) for a, b in zip(first, other, strict=True))


def _stream_of_iterators(ds, first: int, then: int) -> tuple[list, list]:
    """(the first `first` + `then` batches of one iterator, the first `first` of another iterator that
    read ahead for a while, then `then` from a third iterator over ds.skip(first)): what training does at
    every validation interval (training/runs.fit_in_run)."""
    import time

    import tensorflow as tf

    whole = [b[0].numpy() for b in ds.take(first + then)]
    iterator = iter(ds)
    head = [next(iterator)[0].numpy() for _ in range(first)]
    time.sleep(0.5)  # the prefetch reads ahead into the next epochs
    del iterator
    tf.random.set_seed(123)  # another global seed: the stream must not depend on it
    tail = [b[0].numpy() for b in ds.skip(first).take(then)]
    return whole, head + tail


@pytest.mark.parametrize("balanced", [False, True])
def test_every_iterator_of_a_dataset_yields_the_same_stream(balanced: bool) -> None:
    # Before: tf.data's reshuffle_each_iteration gave each new iterator an order drawn from a state the previous
    # iterator's read-ahead had advanced by a timing-dependent amount, so a run's batches after its first
    # validation differed from one process to the next (the distribute test's SR failures).
    datasets = [sr_dataset(_pairs(n=6), 4, seed=3), patch_dataset(_patches([0, 0, 1, 2, 2]), 4, seed=3, balanced=True)]
    whole, pieced = _stream_of_iterators(datasets[balanced], first=3, then=9)  # 12 batches: 8 epochs of 6 pairs
    for a, b in zip(whole, pieced, strict=True):
        np.testing.assert_array_equal(a, b)
    if not balanced:  # each epoch a permutation of the 6 pairs, not the same one every epoch
        plain = sr_dataset(_pairs(n=6), 3, seed=3, augment=False)
        order = np.concatenate([lr[:, 0, 0, 0] for lr, _ in _take(plain, 16)])
        epochs = [order[i : i + 6] for i in range(0, 48, 6)]
        assert all(np.array_equal(np.sort(e), np.sort(_pairs(n=6).lr[:, 0, 0, 0])) for e in epochs)
        assert len({tuple(e) for e in epochs}) > 1


def test_sr_single_pass_keeps_the_remainder() -> None:
    ds = sr_dataset(_pairs(n=10), 4, repeat=False, augment=False, seed=1)
    assert ds.element_spec[0].shape.as_list() == [None, 6, 6, 1]
    batches = _take(ds, 100)
    assert [len(lr) for lr, _ in batches] == [4, 4, 2]
    seen = np.concatenate([lr for lr, _ in batches]).reshape(10, -1)
    expected = _pairs(n=10).lr.reshape(10, -1)
    assert not np.array_equal(seen, expected)  # shuffled...
    np.testing.assert_array_equal(np.unique(seen, axis=0), np.unique(expected, axis=0))  # ...each sample once


@pytest.mark.parametrize("balanced", [False, True])
def test_patch_shapes_labels_follow_images(balanced: bool) -> None:
    patches = _patches([NORMAL] * 10 + [BENIGN] * 6 + [MALIGNANT] * 4)
    ds = patch_dataset(patches, 8, balanced=balanced, seed=2)
    img_spec, lab_spec = ds.element_spec
    assert img_spec.shape.as_list() == [8, 8, 8, 1] and img_spec.dtype.name == "float32"
    assert lab_spec.shape.as_list() == [8] and lab_spec.dtype.name == "int32"
    for images, labels in _take(ds, 10):
        assert images.dtype == np.float32 and labels.dtype == np.int32
        assert images.min() >= 0.0 and images.max() <= 1.0
        # The mean encodes the label; flips and rotations keep the mean, so the pair must still agree.
        np.testing.assert_array_equal(np.floor(images.mean(axis=(1, 2, 3)) * 3).astype(np.int32), labels)


def test_patch_determinism_by_seed_balanced() -> None:
    patches = _patches([NORMAL] * 20 + [BENIGN] * 3 + [MALIGNANT] * 3)
    first = _take(patch_dataset(patches, 6, balanced=True, seed=3), 8)
    again = _take(patch_dataset(patches, 6, balanced=True, seed=3), 8)
    other = _take(patch_dataset(patches, 6, balanced=True, seed=4), 8)
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])
    assert any(not np.array_equal(a[0], b[0]) for a, b in zip(first, other, strict=True))


def test_balanced_sampling_evens_out_an_imbalanced_set() -> None:
    patches = _patches([NORMAL] * 90 + [BENIGN] * 5 + [MALIGNANT] * 5)
    labels = np.concatenate([lab for _, lab in _take(patch_dataset(patches, 30, balanced=True, seed=0), 20)])
    assert len(labels) == 600
    freq = {c: n / len(labels) for c, n in Counter(labels.tolist()).items()}
    assert set(freq) == {NORMAL, BENIGN, MALIGNANT}
    assert all(0.25 <= f <= 0.42 for f in freq.values()), freq


def test_balanced_sampling_skips_absent_classes() -> None:
    patches = _patches([NORMAL] * 30 + [MALIGNANT] * 2)
    labels = np.concatenate([lab for _, lab in _take(patch_dataset(patches, 20, balanced=True, seed=1), 10)])
    counts = Counter(labels.tolist())
    assert set(counts) == {NORMAL, MALIGNANT}
    assert 0.35 <= counts[MALIGNANT] / len(labels) <= 0.65


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="infinite"):
        patch_dataset(_patches([NORMAL, BENIGN]), 2, balanced=True, repeat=False)
    with pytest.raises(ValueError, match="batch_size"):
        sr_dataset(_pairs(), 0)
    with pytest.raises(ValueError, match="no SR pairs"):
        sr_dataset(_pairs(n=0), 2)
    bad = _pairs()
    with pytest.raises(ValueError, match="scale"):
        sr_dataset(SRPairs(bad.lr, bad.hr, bad.image_id, bad.patient_id, scale=3), 2)
