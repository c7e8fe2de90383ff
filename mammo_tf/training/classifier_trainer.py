"""train-classifier: the calcification classifier on the training patients, real and optionally synthetic.

Validation on the validation patients' patches: AUC of calcification vs normal (scikit-learn), and the
threshold that maximises sensitivity + specificity there (recorded for detect and the study). The run
directory follows training/runs.py; the trained model is exported as ``classifier.keras``.

`--data` may also be a patches shard folder (`mammo-tf data shard --what patches`): the training patches
then stream from it (data/shard_pipelines.py) and validation is on `--val-data`'s validation patients.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mammo_tf.config import ClassifierConfig, resolve_classifier_config
from mammo_tf.data.samplers import Patches
from mammo_tf.data.schema import NORMAL
from mammo_tf.errors import MammoError, located
from mammo_tf.training.loop import Phase, Trainer

MODEL_NAME = "classifier.keras"


def read_synthetic(folder: str | Path) -> Patches:
    """Patches written by `mammo-tf synth` or `insert` (manifest.csv with file and class columns; PNG or .npy)."""
    import pandas as pd

    from mammo_tf.data.schema import CLASS_NAMES
    from mammo_tf.io.images import read_image

    folder = Path(folder)
    manifest = folder / "manifest.csv"
    if not manifest.is_file():
        raise located(folder, "no manifest.csv: not a folder written by `mammo-tf synth`")
    table = pd.read_csv(manifest)
    if not {"file", "class"} <= set(table.columns):
        raise located(manifest, "needs the columns file and class")
    unknown = set(table["class"]) - set(CLASS_NAMES)
    if unknown:
        raise located(manifest, f"unknown classes {sorted(unknown)} (expected {', '.join(CLASS_NAMES)})")
    images = []
    for name in table["file"]:
        path = folder / name
        images.append(np.load(path) if path.suffix == ".npy" else read_image(path).pixels)
    images = np.stack([np.asarray(i, np.float32).reshape(i.shape[0], i.shape[1], 1) for i in images])
    n = len(table)
    return Patches(
        images=images,
        labels=np.array([CLASS_NAMES.index(c) for c in table["class"]], np.int32),
        image_id=np.array([f"synthetic:{f}" for f in table["file"]]),
        patient_id=np.array(["synthetic"] * n),
        centre_row=np.zeros(n, np.int64),
        centre_col=np.zeros(n, np.int64),
    )


def without_backgrounds(patches: Patches, folder: str | Path) -> Patches:
    """`patches` less the normal ones that share a pixel with a background an `insert` folder drew into.

    An inserted positive keeps its real tissue; the same tissue as a negative of the same training set would
    teach the classifier that the inserted specks alone separate the classes, on identical pixels. Folders
    without background columns (synth output) change nothing.
    """
    import pandas as pd

    from mammo_tf.data.tasks import subset

    table = pd.read_csv(Path(folder) / "manifest.csv")
    if "background_image" not in table.columns:
        return patches
    size = patches.images.shape[1]
    drop = np.zeros(len(patches.labels), bool)
    for row in table.itertuples():
        drop |= (
            (patches.labels == NORMAL)
            & (patches.image_id == row.background_image)
            & (np.abs(patches.centre_row - row.background_row) < size)
            & (np.abs(patches.centre_col - row.background_col) < size)
        )
    return subset(patches, np.flatnonzero(~drop))


def mix_synthetic(real: Patches, synthetic: Patches, ratio: float, seed: int) -> Patches:
    """Real patches plus round(ratio x n_real(class)) synthetic patches of each class present in both."""
    from mammo_tf.data.tasks import concat, subset

    if ratio <= 0:
        return real
    rng = np.random.default_rng(seed)
    picks = []
    for label in np.unique(real.labels):
        pool = np.flatnonzero(synthetic.labels == label)
        want = int(round(ratio * np.sum(real.labels == label)))
        if pool.size and want:
            picks.append(rng.choice(pool, size=want, replace=want > pool.size))
    return concat([real, subset(synthetic, np.concatenate(picks))]) if picks else real


def synthetic_positives(real: Patches, folder: str | Path) -> Patches:
    """The real NORMAL patches of `real` (less those overlapping a background of `folder`) plus the folder's
    calcification patches: a training set whose every positive is synthetic."""
    from mammo_tf.data.tasks import concat, subset

    negatives = without_backgrounds(subset(real, np.flatnonzero(real.labels == NORMAL)), folder)
    synthetic = read_synthetic(folder)
    if synthetic.images.shape[1:] != real.images.shape[1:]:
        size, want = synthetic.images.shape[1], real.images.shape[1]
        raise located(folder, f"{size} px patches; the classifier trains on {want} px patches")
    positives = subset(synthetic, np.flatnonzero(synthetic.labels != NORMAL))
    if len(positives.labels) == 0:
        raise located(folder, "no calcification patches: nothing to train on as positives")
    return concat([negatives, positives])


def task_patches(catalog, config: ClassifierConfig, split: str, seed: int) -> Patches:
    """Real patches of `split` for config.task (easy, or matched negatives)."""
    from mammo_tf.data.samplers import sample_patches
    from mammo_tf.data.tasks import TASK_OVERSAMPLE, matched_task

    matched = config.task == "matched"
    normals = config.normal_per_image * (TASK_OVERSAMPLE if matched else 1)
    patches = sample_patches(
        catalog,
        patch_size=config.patch_size,
        per_cluster=config.per_cluster,
        jitter=config.jitter,
        normal_per_image=normals,
        split=split,
        seed=seed,
    )
    return matched_task(patches, catalog, seed=seed) if matched else patches


def real_patches_for(catalog, config: ClassifierConfig) -> tuple[Patches, Patches]:
    """The (train, val) real patches a classifier run of `config` trains and validates on."""
    return task_patches(catalog, config, "train", config.seed), task_patches(catalog, config, "val", config.seed + 1)


def predict(model, images: np.ndarray, batch: int = 256) -> dict[str, np.ndarray]:
    """{'calc', 'malignant'} probabilities float [N] for float32 [N, P, P, 1] patches."""
    outs = [model(images[i : i + batch], training=False) for i in range(0, len(images), batch)]
    return {k: np.concatenate([np.asarray(o[k]) for o in outs]) if outs else np.zeros(0) for k in ("calc", "malignant")}


def scores(model, patches: Patches) -> dict[str, float]:
    """Validation AUCs and the sensitivity + specificity maximising threshold."""
    from sklearn.metrics import roc_auc_score, roc_curve

    probs = predict(model, patches.images)
    is_calc = (patches.labels != NORMAL).astype(int)
    out: dict[str, float] = {}
    if 0 < is_calc.sum() < len(is_calc):
        out["val_auc"] = float(roc_auc_score(is_calc, probs["calc"]))
        fpr, tpr, thr = roc_curve(is_calc, probs["calc"])
        best = int(np.argmax(tpr - fpr))
        out.update(
            threshold=float(min(thr[best], 1.0)), val_sensitivity=float(tpr[best]), val_specificity=float(1 - fpr[best])
        )
    calc = patches.labels != NORMAL
    malignant = (patches.labels[calc] == 2).astype(int)
    if 0 < malignant.sum() < len(malignant):
        out["val_auc_malignant_exploratory"] = float(roc_auc_score(malignant, probs["malignant"][calc]))
    return out


def _no_patches(size: int) -> Patches:
    """No patches (float32 [0, size, size, 1]): the validation set of a run that is not validated."""
    ids = np.zeros(0, str)
    return Patches(np.zeros((0, size, size, 1), np.float32), np.zeros(0, np.int32), ids, ids, *[np.zeros(0, int)] * 2)


def _refuse_for_shards(data, manifest: dict, config: ClassifierConfig, real_only: dict[str, object]) -> None:
    """MammoError (one line naming the folder) for what a patches shard folder cannot train: the matched task,
    any synthetic or transformed patches (`real_only`: those options by name, set or not), a single class."""
    if config.task != "easy":
        raise MammoError(f"{data}: --task {config.task} needs --data a dataset (patches shards hold the easy task)")
    given = [name for name, value in real_only.items() if value]
    if given:
        raise MammoError(f"{data}: {', '.join(given)} needs --data a dataset, not a patches shard folder")
    counts = manifest["counts"]
    calcifications = counts["benign"] + counts["malignant"]
    if not (counts["normal"] and calcifications):
        held = "normal" if counts["normal"] else "calcification"
        raise MammoError(f"{data}: the patches shards hold only {held} patches; the classifier needs both")


def _shard_trainer(data, manifest: dict, config: ClassifierConfig, val_data, init_from) -> ClassifierTrainer:
    """The trainer of a run on a patches shard folder, validated on `val_data`'s validation patients (None:
    not validated, as a train-sr run on pair shards). Builds its record before TensorFlow."""
    from mammo_tf.data.catalog import load_catalog
    from mammo_tf.data.resample import at_training_spacing
    from mammo_tf.data.sample_shards import shard_record
    from mammo_tf.data.schema import CLASS_NAMES

    catalog = None if val_data is None else at_training_spacing(load_catalog(val_data), config.spacing_mm)[0]
    val = _no_patches(config.patch_size) if catalog is None else task_patches(catalog, config, "val", config.seed + 1)
    n = int(manifest["counts"]["patches"])
    record = {
        **config.to_dict(),
        "kind": "classifier",
        **shard_record(data, manifest, "patch_shards"),
        "synthetic": None,
        "synthetic_only": False,
        "synthetic_positives_only": False,
        "transform": None,
        "init_from": str(init_from) if init_from is not None else None,
        "train_patches": {"real": n, "total": n, **{c: int(manifest["counts"][c]) for c in CLASS_NAMES}},
        "val_data": None if catalog is None else str(catalog.root),
    }
    return ClassifierTrainer(config, record, None, val, init_from, patch_shards=manifest)


def train_classifier(
    data: str | Path | None,
    run_dir: str | Path,
    *,
    preset: str = "standard",
    synthetic: str | Path | None = None,
    resume: bool = False,
    verbose: int | str = "auto",
    catalog=None,
    synthetic_only: bool = False,
    synthetic_positives_only: bool = False,
    patch_transform=None,
    real_patches: tuple[Patches, Patches] | None = None,
    init_from: str | Path | None = None,
    val_data: str | Path | None = None,
    **overrides,
) -> Path:
    """Train a CalcificationClassifier; returns the run directory (classifier.keras, metrics.json inside).

    catalog: an already loaded catalog (the study passes one fold's, its split column set per fold).
    synthetic_only: train on the synthetic patches alone (validation stays on real patients).
    synthetic_positives_only: train on the real NORMAL patches (less those overlapping a background the
    folder's patches were inserted into) plus the folder's calcification patches: no real positive
    (evaluate-insert's train-on-synthetic, test-on-real arms).
    patch_transform: Patches -> Patches applied to training and validation patches (e.g. SR of their LR).
    real_patches: (train, val) already drawn by `real_patches_for` for this config (the study reuses them
    across arms instead of sampling the films again).
    init_from: a classifier.keras of the same patch size and width whose network weights the new model starts
    from instead of random ones (pretraining, then fine-tuning here; a new optimizer); recorded in config.json.
    A resumed run starts from its checkpoint.
    resume: continue the run in `run_dir` from its last checkpoint (same config; `steps` may grow).
    data may also be a patches shard folder sampled at this config's patch_size and spacing_mm (easy task,
    real patches only, both classes): the training patches stream from it, class-balanced, and validation
    is on val_data's validation patients (an image dataset; None: no validation). config.json then records
    the shards' patients, sampling, catalog hash, pixel size and counts (data/sample_shards.shard_record).
    Every refusal is one line before TensorFlow is imported and before the run directory is made.
    """
    from mammo_tf.data.catalog import load_catalog
    from mammo_tf.data.resample import at_training_spacing
    from mammo_tf.data.sample_shards import patch_sampling, trainer_shards
    from mammo_tf.training.loop import train
    from mammo_tf.training.runs import Run

    Run.precheck(run_dir, resume=resume)  # before the patches are drawn
    config = resolve_classifier_config(preset, **overrides)
    if init_from is not None and not Path(init_from).is_file():
        raise located(Path(init_from), "no classifier to start from (init_from needs a classifier.keras file)")
    if config.synthetic_ratio > 0 and synthetic is None:
        raise MammoError("--synthetic-ratio needs --synthetic DIR (patches written by `mammo-tf synth`)")
    shards = trainer_shards(data, "patches", patch_sampling(config)) if catalog is None else None
    if shards is not None:
        real_only = {
            "--synthetic": synthetic,
            "synthetic_only": synthetic_only,
            "synthetic_positives_only": synthetic_positives_only,
            "patch_transform": patch_transform,
            "real_patches": real_patches,
        }
        _refuse_for_shards(data, shards, config, real_only)
        trainer = _shard_trainer(data, shards, config, val_data, init_from)
        return train(trainer, run_dir, resume=resume, verbose=verbose)
    if val_data is not None:
        raise MammoError("--val-data is for --data a patches shard folder (a dataset validates on its own patients)")
    catalog = catalog if catalog is not None else load_catalog(data)
    catalog, spacing_mm = at_training_spacing(catalog, config.spacing_mm)
    train_patches, val = real_patches if real_patches is not None else real_patches_for(catalog, config)
    if patch_transform is not None:
        train_patches, val = patch_transform(train_patches), patch_transform(val)
    real_train = train_patches
    if synthetic_only and synthetic_positives_only:
        raise MammoError("synthetic_only and synthetic_positives_only exclude each other")
    if synthetic_positives_only:
        if synthetic is None:
            raise MammoError("synthetic_positives_only needs the synthetic patches folder")
        train_patches = synthetic_positives(train_patches, synthetic)
    elif synthetic_only:
        if synthetic is None:
            raise MammoError("synthetic_only needs the synthetic patches folder")
        train_patches = read_synthetic(synthetic)
    elif synthetic is not None:
        train_patches = without_backgrounds(train_patches, synthetic)
        train_patches = mix_synthetic(train_patches, read_synthetic(synthetic), config.synthetic_ratio, config.seed)
    if len(np.unique(train_patches.labels != NORMAL)) < 2:
        raise MammoError(f"{catalog.root}: the training patients give only one class of patches")
    record = {
        **config.to_dict(),
        "kind": "classifier",
        "data": str(catalog.root),
        "source": catalog.source,
        "training_spacing_mm": spacing_mm,
        "synthetic": str(synthetic) if synthetic else None,
        "synthetic_only": synthetic_only,
        "synthetic_positives_only": synthetic_positives_only,
        "transform": getattr(patch_transform, "__name__", None) if patch_transform else None,
        "init_from": str(init_from) if init_from is not None else None,
        # The real training patients, also for synthetic-only arms (their synthetic data came from them).
        "train_patients": sorted(set(real_train.patient_id.tolist())),
        "train_patches": {"real": int(len(real_train.labels)), "total": int(len(train_patches.labels))},
    }
    trainer = ClassifierTrainer(config, record, train_patches, val, init_from)
    return train(trainer, run_dir, resume=resume, verbose=verbose)


def start_from(model, path: Path) -> None:
    """Copy the network weights of the classifier saved at `path` into `model` (a new CalcificationClassifier);
    MammoError naming the file when it cannot be loaded or its network differs in shape (patch size, width)."""
    import keras

    try:
        source = keras.models.load_model(path, compile=False)
    except Exception as err:  # a damaged or foreign file: one line naming it
        first = (str(err).strip().splitlines() or [""])[0][:200]
        raise located(path, f"init_from: cannot load it ({type(err).__name__}: {first})") from None
    network = getattr(source, "network", None)
    shapes = [tuple(w.shape) for w in model.network.weights]
    if network is None or [tuple(w.shape) for w in network.weights] != shapes:
        raise located(path, "init_from: not a classifier of this patch size and width")
    model.network.set_weights(network.get_weights())


class ClassifierTrainer(Trainer):
    """One phase ("train") of class-balanced patches; at each validation classifier.keras and the val AUC."""

    kind = "classifier"

    def __init__(
        self,
        config: ClassifierConfig,
        record: dict,
        train: Patches | None,
        val: Patches,
        init_from: str | Path | None = None,
        patch_shards: dict | None = None,
    ) -> None:
        from mammo_tf.models.classifier import CalcificationClassifier

        super().__init__(config, record)
        self.model_class = CalcificationClassifier
        self.train_patches, self.val, self.init_from = train, val, init_from
        self.patch_shards = patch_shards  # the manifest when the training patches stream from a shard folder

    def build(self):
        from mammo_tf.models.classifier import compiled_classifier

        model = compiled_classifier(self.config.patch_size, self.config.width, self.config.learning_rate)
        if self.init_from is not None:
            start_from(model, Path(self.init_from))
        return model

    def dataset(self):
        """Class-balanced training batches: (float32 [B, P, P, 1], int32 [B]), B the global batch."""
        from mammo_tf.data.pipelines import patch_dataset

        config = self.config
        if self.patch_shards is not None:
            from mammo_tf.data.shard_pipelines import trainer_patch_batches
            from mammo_tf.training.distribute import input_shard

            return trainer_patch_batches(self.record()["data"], config, input_shard(config.strategy))
        return patch_dataset(self.train_patches, config.batch_size, balanced=True, seed=config.seed)

    def phases(self, step: int) -> list[Phase]:
        return [Phase("train", 0, self.config.steps, self.config.val_every)]

    def validate(self, run, model, step: int) -> dict[str, float]:
        from mammo_tf.training.runs import save_keras_atomic

        save_keras_atomic(model, run.path / MODEL_NAME)
        return scores(model, self.val) if len(self.val.labels) else {}

    def finish(self, run, model) -> dict:
        final = scores(model, self.val) if len(self.val.labels) else {}
        return {**final, "val_patches": int(len(self.val.labels))}
