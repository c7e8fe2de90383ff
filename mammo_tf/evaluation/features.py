"""The project's own feature network for FD / KID / precision-recall / memorisation (no downloaded weights).

A small CNN is trained on REAL TRAINING patches only, to tell calcification (benign or malignant) from normal
tissue; its penultimate layer (a linear 64-d projection of globally pooled features) is the feature space.
ImageNet features would let ImageNet class structure drive the scores and say little about mammograms
(Kynkäänniemi et al. 2023); random-initialised features barely separate real from synthetic patches and hide failures.

The trained weights are cached on disk under a SHA-256 of the training arrays and the configuration, so the
same data gives the same network (and name) without retraining::

    net = feature_extractor(train_patches, steps=400, seed=0)
    net.name                      # "mammo-featnet-v1-<hash12>": put it beside every number
    feats = net.embed(images)     # float32 [N, 64]

Files: ``<cache_dir>/<name>.weights.h5`` and ``<name>.json`` (metadata, written last), both atomically;
a shipped copy, ``saved_models/featnet/<name>.keras`` and ``<name>.json`` (``shipped_dir``), is used first.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mammo_tf.data.samplers import Patches
from mammo_tf.data.schema import NORMAL
from mammo_tf.errors import MammoError
from mammo_tf.io.atomic import write_bytes_atomic

if TYPE_CHECKING:  # pragma: no cover
    import keras

VERSION = "mammo-featnet-v1"


@dataclass(frozen=True)
class FeatureConfig:
    """How the feature network is built and trained; part of the cache key."""

    steps: int = 400
    batch_size: int = 32
    width: int = 16  # channels of the first conv; doubled per pooling level
    dim: int = 64  # feature dimension
    learning_rate: float = 1e-3
    seed: int = 0
    stem_mean: float = 0.5
    stem_std: float = 0.25
    stem_highpass_sigma: float = 1.5
    stem_highpass_gain: float = 40.0  # mini-MIAS training patches: high-pass std 0.0076 -> ~0.3

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def shipped_dir() -> Path:
    """saved_models/featnet/: the feature networks the shipped reports used, looked up before the cache.

    Trained from the same data and seed on another CPU, the network's weights differ (float rounding in
    the kernels differs), and so do FD and KID: shipping the weights keeps the numbers comparable.
    """
    from mammo_tf.inference.registry import models_root

    return models_root() / "featnet"


def default_cache_dir() -> Path:
    from mammo_tf.paths import cache_root

    return cache_root() / "features"


def training_hash(images: np.ndarray, labels: np.ndarray, config: FeatureConfig) -> str:
    """SHA-256 (hex) of the version, the configuration, and the training arrays' shapes and bytes."""
    images = np.ascontiguousarray(images, dtype=np.float32)
    labels = np.ascontiguousarray(labels, dtype=np.int32)
    digest = hashlib.sha256()
    digest.update(VERSION.encode())
    digest.update(json.dumps(config.to_dict(), sort_keys=True).encode())
    digest.update(json.dumps([list(images.shape), list(labels.shape)]).encode())
    digest.update(images.tobytes())
    digest.update(labels.tobytes())
    return digest.hexdigest()


def _build(patch_size: int, config: FeatureConfig) -> tuple[keras.Model, keras.Model]:
    """(classifier: image -> calcification logit [B, 1], embedder: image -> features [B, dim]), all float32."""
    import keras
    from keras import layers

    from mammo_tf.models.synthesis_layers import InputStem

    counter = iter(range(1, 10_000))

    def init() -> keras.initializers.Initializer:
        return keras.initializers.GlorotUniform(seed=(config.seed * 7_919 + next(counter)) % (2**31 - 1))

    image = keras.Input((patch_size, patch_size, 1), name="image")
    h = InputStem(
        config.stem_mean, config.stem_std, config.stem_highpass_sigma, config.stem_highpass_gain, name="stem"
    )(image)
    levels = max(1, min(3, int(np.log2(patch_size)) - 3))  # 64 px: 64 -> 32 -> 16 -> 8
    channels = config.width
    for level in range(levels + 1):
        for repeat in range(2 if level == 0 else 1):
            h = layers.Conv2D(
                channels, 3, padding="same", activation="relu", kernel_initializer=init(), dtype="float32",
                name=f"conv{level}_{repeat}",
            )(h)  # fmt: skip
        if level < levels:
            h = layers.MaxPooling2D(2, dtype="float32", name=f"pool{level}")(h)
            channels *= 2
    h = layers.GlobalAveragePooling2D(dtype="float32", name="gap")(h)
    features = layers.Dense(config.dim, kernel_initializer=init(), dtype="float32", name="features")(h)
    hidden = layers.LeakyReLU(0.2, dtype="float32", name="act")(features)
    logit = layers.Dense(1, kernel_initializer=init(), dtype="float32", name="logit")(hidden)
    classifier = keras.Model(image, logit, name="featnet_classifier")
    embedder = keras.Model(image, features, name="featnet_embedder")
    return classifier, embedder


def _batches(images: np.ndarray, target: np.ndarray, config: FeatureConfig):
    """Endless balanced batches (half calcification, half normal) with random dihedral transforms."""
    rng = np.random.default_rng(np.random.SeedSequence([config.seed, 0xFEA7]))
    positives, negatives = np.flatnonzero(target == 1), np.flatnonzero(target == 0)
    half = config.batch_size // 2
    while True:
        index = np.concatenate([rng.choice(positives, config.batch_size - half), rng.choice(negatives, half)])
        batch = images[index, ..., 0]
        flips = rng.integers(0, 2, len(index)).astype(bool)
        batch[flips] = batch[flips, :, ::-1]
        turns = rng.integers(0, 4, len(index))
        batch = np.stack([np.rot90(b, k) for b, k in zip(batch, turns, strict=True)])
        yield batch[..., None].astype(np.float32), target[index].astype(np.float32)[:, None]


class FeatureNet:
    """A trained feature network: ``embed`` for features, ``calcification_probability`` for class checks.

    name: ``"mammo-featnet-v1-<first 12 hex of the training hash>"``; cached: True when it was loaded from the
    cache rather than trained now; meta: the JSON metadata (config, hash, training counts, final accuracy).
    """

    def __init__(self, classifier: keras.Model, embedder: keras.Model, meta: dict[str, Any], cached: bool) -> None:
        self.classifier, self.embedder, self.meta, self.cached = classifier, embedder, meta, cached
        self.name: str = meta["name"]
        self.patch_size: int = int(meta["patch_size"])
        self.dim: int = int(meta["config"]["dim"])

    def _check(self, images: np.ndarray) -> np.ndarray:
        images = np.asarray(images, dtype=np.float32)
        if images.ndim == 3:
            images = images[..., None]
        if images.ndim != 4 or images.shape[1:] != (self.patch_size, self.patch_size, 1):
            raise MammoError(
                f"{self.name} embeds {self.patch_size}x{self.patch_size} grey patches, got shape {images.shape}"
            )
        return images

    def _run(self, model: keras.Model, images: np.ndarray, batch_size: int) -> np.ndarray:
        images = self._check(images)
        if len(images) == 0:
            return np.zeros((0, model.output_shape[-1]), np.float32)
        out = [np.asarray(model(images[i : i + batch_size], training=False)) for i in range(0, len(images), batch_size)]
        return np.concatenate(out).astype(np.float32)

    def embed(self, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """images float32 [N, P, P, 1] (or [N, P, P]) in [0, 1] -> float32 [N, dim] features."""
        return self._run(self.embedder, images, batch_size)

    def calcification_probability(self, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """float32 [N]: the network's probability that each patch shows calcification (benign or malignant)."""
        logits = self._run(self.classifier, images, batch_size)[:, 0]
        return (1.0 / (1.0 + np.exp(-logits.astype(np.float64)))).astype(np.float32)


def _train(classifier: keras.Model, images: np.ndarray, target: np.ndarray, config: FeatureConfig) -> dict:
    import keras

    classifier.compile(
        optimizer=keras.optimizers.Adam(config.learning_rate),
        loss=keras.losses.BinaryCrossentropy(from_logits=True),
        metrics=[keras.metrics.BinaryAccuracy(threshold=0.0, name="accuracy")],
    )
    batches = _batches(images, target, config)
    losses, accuracies = [], []
    for _ in range(config.steps):
        x, y = next(batches)
        classifier.reset_metrics()  # per-batch values, not running means
        logs = classifier.train_on_batch(x, y, return_dict=True)
        losses.append(float(logs["loss"]))
        accuracies.append(float(logs["accuracy"]))
    tail = max(1, config.steps // 10)
    return {"final_loss": float(np.mean(losses[-tail:])), "final_accuracy": float(np.mean(accuracies[-tail:]))}


def feature_extractor(
    patches: Patches,
    *,
    steps: int = 400,
    seed: int = 0,
    cache_dir: str | Path | None = None,
    config: FeatureConfig | None = None,
) -> FeatureNet:
    """The feature network for these TRAINING patches: loaded from the cache, or trained and cached.

    patches: real training patches only (images float32 [N, P, P, 1] in [0, 1], labels NORMAL/BENIGN/MALIGNANT);
        both normal and calcification patches are needed.
    steps, seed: training steps and seed (override ``config``'s). cache_dir: default
        ``mammo_tf.paths.cache_root() / "features"``.
    """
    config = dataclasses.replace(config or FeatureConfig(), steps=int(steps), seed=int(seed))
    images = np.ascontiguousarray(patches.images, dtype=np.float32)
    labels = np.ascontiguousarray(patches.labels, dtype=np.int32)
    if images.ndim != 4 or images.shape[-1] != 1 or images.shape[1] != images.shape[2] or len(images) != len(labels):
        raise MammoError(f"feature network needs square grey patches [N, P, P, 1], got {images.shape}")
    target = (labels != NORMAL).astype(np.int32)
    if target.min() == target.max():
        raise MammoError("feature network needs both normal and calcification training patches")
    if config.steps < 1:
        raise MammoError(f"feature network steps must be >= 1, got {config.steps}")
    digest = training_hash(images, labels, config)
    name = f"{VERSION}-{digest[:12]}"
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    classifier, embedder = _build(images.shape[1], config)
    weights_path, meta_path = folder / f"{name}.weights.h5", folder / f"{name}.json"
    places = [(weights_path, meta_path)]
    if cache_dir is None:  # a shipped copy is a .keras model file, as every shipped model is
        places.insert(0, (shipped_dir() / f"{name}.keras", shipped_dir() / f"{name}.json"))
    for weights_path, meta_path in places:
        if meta_path.exists() and weights_path.exists():
            meta = json.loads(meta_path.read_text())
            if meta.get("sha256") == digest:
                classifier.load_weights(weights_path)
                return FeatureNet(classifier, embedder, meta, cached=True)
    weights_path, meta_path = places[-1]
    report = _train(classifier, images, target, config)
    meta = {
        "name": name,
        "version": VERSION,
        "sha256": digest,
        "patch_size": int(images.shape[1]),
        "config": config.to_dict(),
        "n_train": int(len(images)),
        "class_counts": {str(c): int((labels == c).sum()) for c in np.unique(labels)},
        "task": "calcification (benign or malignant) vs normal, balanced batches, dihedral augmentation",
        **report,
    }
    folder.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".featnet.", dir=folder))
    try:  # Keras writes to a path; move its bytes into place atomically
        classifier.save_weights(scratch / "w.weights.h5")
        write_bytes_atomic(weights_path, (scratch / "w.weights.h5").read_bytes())
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    write_bytes_atomic(meta_path, (json.dumps(meta, indent=2, sort_keys=True) + "\n").encode())
    return FeatureNet(classifier, embedder, meta, cached=False)
