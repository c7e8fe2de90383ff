"""The project's own feature network: trained on real training patches, cached by a hash of its data."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

pytest.importorskip("tensorflow")

from mammo_tf.data.samplers import Patches  # noqa: E402
from mammo_tf.errors import MammoError  # noqa: E402
from mammo_tf.evaluation import features  # noqa: E402
from mammo_tf.evaluation.features import feature_extractor  # noqa: E402

STEPS = 12


def _patches(n: int = 24, size: int = 16, seed: int = 0) -> Patches:
    """Grey tissue; calcification patches (labels 1, 2) get bright specks."""
    rng = np.random.default_rng(seed)
    images = rng.uniform(0.35, 0.55, (n, size, size, 1)).astype(np.float32)
    labels = (np.arange(n) % 3).astype(np.int32)
    for i in np.flatnonzero(labels > 0):
        rows, cols = rng.integers(2, size - 2, (2, 4))
        images[i, rows, cols, 0] = 0.95
    ids = np.array([f"p{i // 2}" for i in range(n)])
    zeros = np.zeros(n, np.int64)
    return Patches(images, labels, ids, ids, zeros, zeros)


@pytest.fixture(scope="module")
def cached(tmp_path_factory):
    folder = tmp_path_factory.mktemp("featcache")
    patches = _patches()
    net = feature_extractor(patches, steps=STEPS, seed=0, cache_dir=folder)
    return folder, patches, net


def test_trains_names_and_writes_the_cache(cached):
    folder, patches, net = cached
    assert not net.cached
    assert net.name.startswith("mammo-featnet-v1-") and len(net.name) == len("mammo-featnet-v1-") + 12
    meta = json.loads((folder / f"{net.name}.json").read_text())
    assert meta["sha256"].startswith(net.name[-12:]) and meta["n_train"] == len(patches.images)
    assert meta["config"]["steps"] == STEPS and (folder / f"{net.name}.weights.h5").is_file()
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]  # no temporary files left behind


def test_same_data_is_a_cache_hit_with_identical_embeddings(cached, monkeypatch):
    folder, patches, net = cached

    def no_training(*args, **kwargs):
        raise AssertionError("the cache should have been used")

    monkeypatch.setattr(features, "_train", no_training)
    again = feature_extractor(patches, steps=STEPS, seed=0, cache_dir=folder)
    assert again.cached and again.name == net.name
    np.testing.assert_array_equal(again.embed(patches.images), net.embed(patches.images))


def test_a_shipped_network_is_used_before_the_cache(cached, tmp_path, monkeypatch):
    """saved_models/featnet/ holds the weights the shipped reports used: every machine gets the same ones."""
    import shutil

    folder, patches, net = cached
    shipped = tmp_path / "models" / "featnet"
    shipped.mkdir(parents=True)
    net.classifier.save(shipped / f"{net.name}.keras")
    shutil.copy(folder / f"{net.name}.json", shipped / f"{net.name}.json")
    monkeypatch.setenv("MAMMO_MODELS", str(tmp_path / "models"))
    monkeypatch.setattr(features, "default_cache_dir", lambda: tmp_path / "empty-cache")

    def no_training(*args, **kwargs):
        raise AssertionError("the shipped network should have been used")

    monkeypatch.setattr(features, "_train", no_training)
    again = feature_extractor(patches, steps=STEPS, seed=0)
    assert again.cached and again.name == net.name and not (tmp_path / "empty-cache").exists()
    np.testing.assert_array_equal(again.embed(patches.images), net.embed(patches.images))


def test_embeddings_are_deterministic_float32_and_checked(cached):
    _, patches, net = cached
    feats = net.embed(patches.images)
    assert feats.shape == (len(patches.images), net.dim) == (24, 64) and feats.dtype == np.float32
    np.testing.assert_array_equal(feats, net.embed(patches.images))  # same inputs and shapes: same bytes
    # Another batch size (5 rows, or chunks of 7) is another oneDNN kernel, summing in another order: up to
    # 1.2e-7 measured on AVX2 for features of size 0.1-0.8. atol 1e-5 leaves ~100x margin; a flipped,
    # transposed or misaligned patch moves them by 4e-2 or more.
    np.testing.assert_allclose(feats[:5], net.embed(patches.images[:5, ..., 0]), rtol=0, atol=1e-5)  # [N, P, P]
    np.testing.assert_allclose(feats, net.embed(patches.images, batch_size=7), rtol=0, atol=1e-5)
    probs = net.calcification_probability(patches.images)
    assert probs.shape == (24,) and np.all((probs >= 0) & (probs <= 1))
    with pytest.raises(MammoError, match="16x16"):
        net.embed(np.zeros((2, 32, 32, 1), np.float32))


def test_different_data_or_config_gives_a_different_hash():
    patches = _patches()
    config = features.FeatureConfig(steps=STEPS)
    base = features.training_hash(patches.images, patches.labels, config)
    changed = patches.images.copy()
    changed[3, 4, 4, 0] += 0.01
    assert features.training_hash(changed, patches.labels, config) != base
    assert features.training_hash(patches.images, patches.labels[::-1].copy(), config) != base
    assert features.training_hash(patches.images, patches.labels, dataclasses.replace(config, seed=1)) != base
    assert features.training_hash(patches.images.copy(), patches.labels.copy(), config) == base


def test_needs_both_classes(tmp_path):
    patches = _patches()
    normal_only = dataclasses.replace(patches, labels=np.zeros_like(patches.labels))
    with pytest.raises(MammoError, match="both"):
        feature_extractor(normal_only, steps=2, cache_dir=tmp_path)
