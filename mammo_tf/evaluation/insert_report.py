"""evaluate-insert: an insertion model scored on the HELD-OUT (test) patients of a catalog.

About 550 lines: the protocol below is one sequence of arms sharing their patches; the report text and
figure are in insert_markdown.py, the KID in insert_kid.py, the cluster distance in layout_memorisation.py.

Protocol (also written into metrics.json and report.md):

- The model (a train-insert run folder, or a refiner .keras with insertion.json beside it) records the patients
  it saw (its fit's layout patients; config.json / card.json ``train_patients`` when present). If any is a
  test patient of ``data`` it is refused (MammoError) before anything is computed or written.
- ``n`` positives are inserted (benign and malignant alternating) into matched normal tissue of the TRAINING
  patients, rendered; the same patches are passed through the refiner (refined). Cluster centres are jittered
  off the patch centre by the model's training jitter (insertion.json; 0 for models fitted before it), as
  the real positives are.
- TSTR (train on synthetic, test on real), per task (easy, matched): CalcificationClassifiers of one preset,
  seed and step count, all validated on the validation patients' real patches and tested on the test
  patients' real patches (``task_patches(..., "test", ...)``):
    real only           the real training patches (the reference)
    inserted, rendered  the real NORMAL training patches, less those overlapping an insertion background,
    inserted, refined   plus the inserted patches as the only positives (train_classifier's
                        synthetic_positives_only)
    <gan>               the same with a whole-patch synthesis GAN's benign and malignant patches (optional)
  AUC of calcification vs normal with a patient-bootstrap 95 % CI, and the paired difference to real only.
- Realism: a detector trained to tell real calcification patches (training patients) from inserted ones
  (rendered, and separately refined), validated on the validation patients' real ones, and tested on the test
  patients' real calcification patches against a held-out part of the inserted ones (inserted patches are
  split by background patient, 60/20/20). Two detectors: the same CNN (the calc head, real = negative) and a
  logistic regression on 26 texture features (evaluation/baselines.py). AUC 0.5: indistinguishable.
  Rendered and refined are scored on the same items (same layouts and backgrounds), so their difference is
  paired.
- Speck statistics (the project detector, data/specks.py, on the whole patch): count, mean area, mean contrast
  and the mean nearest-neighbour spacing of specks per patch; 1-D Wasserstein distance inserted vs the test
  patients' real calcification patches per class, beside the floor (training patients' real patches vs the
  same test patches).
- KID (evaluation/insert_kid.py) on the project's feature network, obtained as evaluate-gan obtains it
  (features.feature_extractor of the training patients' patches at the model's patch size and this seed: its
  input is always the model's patch size, nothing is resampled; on MIAS at 64 px with seed 0 it is the shipped
  saved_models/featnet network, any other seed trains one): per class and pooled, KID(rendered | refined | GAN
  vs the test patients' real calcification patches), beside the floor KID(training patients' real calcification
  patches vs the same test patches), mean and std over subsets, and the ratio to the floor.
- Closest training cluster (evaluation/layout_memorisation.py, where the distance is defined): every inserted
  layout's distance to the nearest real cluster of its class that the layout model was fitted on, against the
  same distance for the real clusters of held-out patients (val and test splits, none seen by the model);
  written per layout to cluster_distances.csv. Pass: no more layouts below the held-out threshold than a model
  that does not copy gives.
- grids.png: per class, a test patient's real patch | rendered | refined, speck masks outlined.
"""

from __future__ import annotations

import json
import tempfile
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mammo_tf.data.samplers import Patches
from mammo_tf.data.schema import BENIGN, CLASS_NAMES, MALIGNANT, NORMAL
from mammo_tf.errors import MammoError, located
from mammo_tf.evaluation.insert_markdown import (
    REAL,
    REFINED,
    RENDERED,
    grids_png,
    render_markdown,
    summary_lines,  # noqa: F401  (the CLI prints it)
)

DEFAULT_N = 1000
DEFAULT_GAN = "synth-64"
DEFAULT_FEATURE_STEPS = 400  # evaluate-gan's: the same feature network for the same data and seed
SPECK_STATISTICS = ("count", "mean_area", "mean_contrast", "nn_spacing")
SPLIT_FRACTIONS = (0.6, 0.2)  # inserted patches for the realism detector: train, val (the rest: test)
GAN_SEED_OFFSET = 0x1E5E  # latents of the GAN arm's patches
TEST_SEED_OFFSET = 2  # task_patches of the test patients (train: seed, val: seed + 1 in real_patches_for)


# ------------------------------------------------------------------------------------------ patients


def _split_patients(catalog, split: str) -> set[str]:
    return set(catalog.images.loc[catalog.images["split"] == split, "patient_id"].astype(str))


def _patch_size(path: Path, refiner) -> int:
    """The patch size the refiner was trained at (config.json beside it), else its input's, else 64 (as insert)."""
    config = path.parent / "config.json"
    if config.is_file():
        size = json.loads(config.read_text()).get("patch_size")
        if isinstance(size, int) and size >= 16:
            return size
    return int(refiner.input_shape[0][1] or 64)


def _recorded_patients(folder: Path) -> set[str]:
    """Patients named in config.json (train_patients, layout_patients) or card.json beside a model."""
    seen: set[str] = set()
    config, card = folder / "config.json", folder / "card.json"
    if config.is_file():
        data = json.loads(config.read_text())
        for key in ("train_patients", "layout_patients"):
            seen |= set(map(str, data.get(key) or []))
    if card.is_file():
        data = json.loads(card.read_text())
        seen |= set(map(str, (data.get("training") or {}).get("train_patients") or []))
    return seen


def _refuse_overlap(what: str, seen: set[str], test: set[str], root) -> None:
    shared = sorted(seen & test)
    if shared:
        shown = ", ".join(shared[:5]) + (f" and {len(shared) - 5} more" if len(shared) > 5 else "")
        raise MammoError(
            f"{what} saw {len(shared)} test patient(s) of {root} ({shown}): it can only be evaluated on "
            "patients it never saw"
        )


def _load_gan(spec, patch_size: int, test: set[str], root) -> tuple[Any, list[str], str | None]:
    """(SynthesisModel or None, its training patients, why it was skipped). spec None = DEFAULT_GAN, skipped
    (not refused) when unusable; an explicit spec that cannot be used is a MammoError."""
    from mammo_tf.inference.registry import resolve_model_path
    from mammo_tf.inference.synth import load_synthesis_model

    if isinstance(spec, str) and spec.lower() == "none":
        return None, [], "not requested (--gan-model none)"
    explicit = spec is not None
    name = spec if explicit else DEFAULT_GAN
    try:
        path = resolve_model_path(name, "synthesis")
        patients = _recorded_patients(path.parent)
        if not patients:
            raise located(path, "no training patients recorded beside it (config.json or card.json)")
        _refuse_overlap(f"the GAN {name}", patients, test, root)
        gan = load_synthesis_model(path, command="evaluate-insert --gan-model")
        if gan.patch_size != patch_size:
            raise located(path, f"{gan.patch_size} px patches; the insertion model makes {patch_size} px")
    except MammoError as err:
        if explicit:
            raise
        return None, [], f"{DEFAULT_GAN} skipped: {err}"
    return gan, sorted(patients), None


# ------------------------------------------------------------------------------------------ pieces


def _inserted_patches(made, images: np.ndarray) -> Patches:
    """The inserted patches as Patches (patient: the background's), images float32 [N, P, P]."""
    return replace(made.backgrounds, images=images[..., None].astype(np.float32), labels=made.labels.copy())


def write_npy_patches(folder: Path, images: np.ndarray, labels: np.ndarray, made=None) -> Path:
    """An insert/synth-like folder (npy patches + manifest.csv, with the background columns for inserted):
    images float32 [N, P, P] in [0, 1], labels int [N]; `made` (data.insertion.Inserted) for inserted ones."""
    from mammo_tf.inference.patch_folder import encode_patch, write_patch_folder

    names = [f"{CLASS_NAMES[c]}_{i:05d}.npy" for i, c in enumerate(labels)]
    table = {"file": names, "class": [CLASS_NAMES[c] for c in labels]}
    if made is not None:
        for key in ("background_image", "background_patient", "background_row", "background_col"):
            table[key] = [r[key] for r in made.records]
    write_patch_folder(
        folder, pd.DataFrame(table), [(n, encode_patch(x, "npy")) for n, x in zip(names, images, strict=True)]
    )
    return folder


def _split_by_patient(patients: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Index arrays (train, val, test) of items grouped by patient, ~60/20/20 of the items; every part holds at
    least one item (by index when there are fewer than 3 patients)."""
    n = len(patients)
    rng = np.random.default_rng([seed, 0x5B17])
    unique = np.array(sorted(set(patients.tolist())))
    if len(unique) >= 3:
        order = rng.permutation(unique)
        counts = np.array([(patients == p).sum() for p in order])
        cum = np.cumsum(counts) / n
        cut1 = int(np.clip(np.searchsorted(cum, SPLIT_FRACTIONS[0]) + 1, 1, len(order) - 2))
        cut2 = int(np.clip(np.searchsorted(cum, sum(SPLIT_FRACTIONS)) + 1, cut1 + 1, len(order) - 1))
        parts = (order[:cut1], order[cut1:cut2], order[cut2:])
        return tuple(np.flatnonzero(np.isin(patients, part)) for part in parts)  # type: ignore[return-value]
    index = rng.permutation(n)
    a, b = max(1, int(SPLIT_FRACTIONS[0] * n)), max(2, int(sum(SPLIT_FRACTIONS) * n))
    return np.sort(index[:a]), np.sort(index[a:b]), np.sort(index[b:])


def _relabel(patches: Patches, label: int) -> Patches:
    return replace(patches, labels=np.full(len(patches.labels), label, np.int32))


def speck_table(images: np.ndarray) -> pd.DataFrame:
    """Per patch: count, mean_area (px), mean_contrast (full scale) and nn_spacing (px: the mean distance from
    each speck to its nearest other speck) of the project detector's specks (NaN where undefined)."""
    from mammo_tf.data.specks import detect_specks

    rows = []
    for image in np.asarray(images, np.float32).reshape(len(images), images.shape[1], images.shape[2]):
        found = detect_specks(image)
        count = len(found)
        spacing = np.nan
        if count >= 2:
            points = found[["row", "col"]].to_numpy(float)
            d = np.hypot(*(points[:, None, :] - points[None, :, :]).transpose(2, 0, 1))
            np.fill_diagonal(d, np.inf)
            spacing = float(d.min(axis=1).mean())
        rows.append(
            {
                "count": count,
                "mean_area": float(found["area_px"].mean()) if count else np.nan,
                "mean_contrast": float(found["contrast"].mean()) if count else np.nan,
                "nn_spacing": spacing,
            }
        )
    return pd.DataFrame(rows, columns=list(SPECK_STATISTICS))


def _closest_clusters(catalog, fit, made, size: int, model_patients: set[str]) -> tuple[pd.DataFrame, dict]:
    """layout_memorisation.closest_training_clusters of the inserted layouts. Training clusters: the real clusters
    of the fit's patients, found with the fit's detector settings; held-out: those of val and test patients the
    model never saw. Real clusters are cut to the patch window, as rendering cuts the layouts."""
    from mammo_tf.data.speck_extraction import extract_specks
    from mammo_tf.evaluation.layout_memorisation import closest_training_clusters, layout_cluster, real_clusters

    settings = {k: v for k, v in fit.layouts.detector.items() if k in ("radius", "k", "max_area")}
    specks = extract_specks(catalog, None, **settings)
    patients = specks["patient_id"].astype(str)
    splits = patients.map(dict(zip(catalog.images["patient_id"].astype(str), catalog.images["split"], strict=True)))
    heldout = splits.isin(["val", "test"]).to_numpy() & ~patients.isin(model_patients).to_numpy()
    names = [f"{CLASS_NAMES[c]}_{i:05d}" for i, c in enumerate(made.labels)]  # as the inserted patches' files
    layouts = [layout_cluster(record, name) for record, name in zip(made.records, names, strict=True)]
    train = real_clusters(specks[patients.isin(set(fit.patients)).to_numpy()], size)
    table, summary = closest_training_clusters(layouts, train, real_clusters(specks[heldout], size))
    summary["heldout_splits"] = sorted(set(splits[heldout]))
    return table, summary


def _speck_rows(real: Patches, floor: Patches, sets: dict[str, tuple[np.ndarray, np.ndarray]]) -> list[dict]:
    """One row per (class, statistic, set): Wasserstein to the test patients' real patches, beside the floor."""
    from mammo_tf.evaluation.gan import speck_distribution_distance

    real_stats, floor_stats = speck_table(real.images), speck_table(floor.images)
    set_stats = {name: (speck_table(images), labels) for name, (images, labels) in sets.items()}
    rows = []
    for c in (BENIGN, MALIGNANT):
        r = real_stats[real.labels == c]
        if r.empty:
            continue
        floor_table = speck_distribution_distance(r, floor_stats[floor.labels == c], SPECK_STATISTICS)
        for name, (stats, labels) in set_stats.items():
            table = speck_distribution_distance(r, stats[labels == c], SPECK_STATISTICS)
            for row, f in zip(table.to_dict("records"), floor_table.to_dict("records"), strict=True):
                rows.append(
                    {
                        "class": CLASS_NAMES[c],
                        "set": name,
                        "statistic": row["statistic"],
                        "real_mean": row["real_mean"],
                        "set_mean": row["synthetic_mean"],
                        "train_real_mean": f["synthetic_mean"],
                        "wasserstein": row["wasserstein"],
                        "wasserstein_floor": f["wasserstein"],
                        "n_real": row["n_real"],
                        "n_set": row["n_synthetic"],
                    }
                )
    return rows


# ------------------------------------------------------------------------------------------ the evaluation


def evaluate_insert(
    model: str | Path | None,
    data: str | Path | None,
    out: str | Path | None,
    *,
    seed: int = 0,
    n: int = DEFAULT_N,
    classifier_preset: str = "standard",
    classifier_steps: int | None = None,
    tasks: tuple[str, ...] = ("easy", "matched"),
    bootstrap: int = 1000,
    gan_model: str | Path | None = None,
    feature_steps: int = DEFAULT_FEATURE_STEPS,
    log=None,
) -> dict[str, Any]:
    """Score an insertion model on the test patients of `data` (module docstring); returns the metrics.

    out: folder for report.md, metrics.json, grids.png and cluster_distances.csv (new or empty; None = write
    nothing), written atomically. gan_model: a synthesis model for the GAN arm; None = synth-64 when usable (else
    skipped with the reason recorded), "none" = no GAN arm. feature_steps: training steps of the feature network
    when it is neither shipped nor cached. log: callable(str) for progress lines.
    Everything is checked before anything is trained: MammoError (one line) for a model that saw a test patient,
    a test split without calcifications, a used output folder or a bad argument.
    """
    from mammo_tf.config import resolve_classifier_config
    from mammo_tf.config.classifier import TASKS
    from mammo_tf.data.catalog import load_catalog
    from mammo_tf.data.insertion import insert_clusters, real_positives
    from mammo_tf.data.samplers import sample_patches
    from mammo_tf.data.tasks import subset
    from mammo_tf.evaluation.features import feature_extractor
    from mammo_tf.evaluation.insert_kid import kid_against_floor
    from mammo_tf.inference.insert import load_insertion_model, refine_patches
    from mammo_tf.inference.registry import resolve_model_path
    from mammo_tf.inference.synth import generate
    from mammo_tf.training.classifier_trainer import real_patches_for, task_patches

    log = log or (lambda line: None)
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 10:
        raise MammoError(f"n must be an integer >= 10 (inserted patches), got {n!r}")
    tasks = tuple(dict.fromkeys(tasks))
    if not tasks or any(t not in TASKS for t in tasks):
        raise MammoError(f"tasks must be among {', '.join(TASKS)}, got {', '.join(tasks) or 'none'}")
    if isinstance(bootstrap, bool) or not isinstance(bootstrap, int | np.integer) or bootstrap < 10:
        raise MammoError(f"bootstrap must be an integer >= 10, got {bootstrap!r}")
    if isinstance(feature_steps, bool) or not isinstance(feature_steps, int | np.integer) or feature_steps < 1:
        raise MammoError(f"feature_steps must be an integer >= 1, got {feature_steps!r}")
    if out is not None:
        out = Path(out)
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            raise located(out, "output folder exists and is not empty")
    resolve_classifier_config(classifier_preset, steps=classifier_steps)  # a bad preset or step count: now

    path = resolve_model_path(model, "insert")
    refiner, fit, ident = load_insertion_model(path)
    size = _patch_size(path, refiner)
    catalog = load_catalog(data)
    test_patients = _split_patients(catalog, "test")
    if not test_patients:
        raise MammoError(f"{catalog.root}: no test patients to evaluate on")
    model_patients = set(fit.patients) | _recorded_patients(path.parent)
    _refuse_overlap(f"{path}: the insertion model", model_patients, test_patients, catalog.root)
    gan, gan_patients, gan_skipped = _load_gan(gan_model, size, test_patients, catalog.root)
    base = resolve_classifier_config(classifier_preset, patch_size=size, steps=classifier_steps, seed=seed)
    real = {
        split: real_positives(catalog, size, base.per_cluster, base.jitter, seed, split=split)
        for split in ("train", "test")
    }
    try:
        real["val"] = real_positives(catalog, size, base.per_cluster, base.jitter, seed, split="val")
    except MammoError:  # no calcification in the validation patients: the detectors validate on inserted only
        real["val"] = subset(real["test"], np.arange(0))

    log(f"{ident}: inserting {n} patches into training tissue")
    made = insert_clusters(catalog, fit, int(n), size, seed, jitter=fit.jitter)
    rendered = made.images[..., 0]
    refined = refine_patches(refiner, made.images, made.masks)
    gan_labels = np.array([(BENIGN, MALIGNANT)[i % 2] for i in range(int(n))], np.int32)
    gan_images = generate(gan, gan_labels, int(seed) + GAN_SEED_OFFSET)[..., 0] if gan is not None else None
    gan_name = gan.model_id.split("@")[0] if gan is not None else None

    classifiers: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="evaluate-insert-") as tmp:
        work = Path(tmp)
        folders = {
            RENDERED: write_npy_patches(work / "rendered", rendered, made.labels, made),
            REFINED: write_npy_patches(work / "refined", refined, made.labels, made),
        }
        inserted_from = sorted(model_patients | set(map(str, made.backgrounds.patient_id.tolist())))
        sources = {RENDERED: inserted_from, REFINED: inserted_from}
        if gan is not None:
            folders[gan_name] = write_npy_patches(work / "gan", gan_images, gan_labels)
            sources[gan_name] = gan_patients
        trainer = _Trainer(catalog, work, base, classifier_preset, test_patients, classifiers, log)
        tstr = {}
        for task in tasks:
            config = replace(base, task=task)
            train_val = real_patches_for(catalog, config)
            test = task_patches(catalog, config, "test", seed + TEST_SEED_OFFSET)
            scores = {REAL: trainer.run(f"tstr {task} {REAL}", task, train_val, test, None, [])}
            for arm, folder in folders.items():
                kwargs = dict(synthetic=folder, synthetic_positives_only=True)
                scores[arm] = trainer.run(f"tstr {task} {arm}", task, train_val, test, kwargs, sources[arm])
            tstr[task] = _auc_table(test, scores, REAL, bootstrap, seed)
        realism = _realism(trainer, made, rendered, refined, real, inserted_from, bootstrap, seed)

    floor = real["train"]
    sets = {RENDERED: (rendered, made.labels), REFINED: (refined, made.labels)}
    if gan is not None:
        sets[gan_name] = (gan_images, gan_labels)
    log("speck statistics")
    specks = _speck_rows(real["test"], floor, sets)
    log("KID on the feature network")
    train_patches = sample_patches(catalog, patch_size=size, split="train", seed=seed)
    net = feature_extractor(train_patches, steps=int(feature_steps), seed=seed)
    kid = kid_against_floor(net, real["test"], floor, sets, seed)
    log("closest training cluster of each layout")
    cluster_table, closest = _closest_clusters(catalog, fit, made, size, model_patients)

    test_calc_patients = sorted(set(real["test"].patient_id.tolist()))
    metrics: dict[str, Any] = {
        "model": ident,
        "model_path": str(path),
        "model_patients": sorted(model_patients),
        "patch_size": size,
        "data": str(catalog.root),
        "source": catalog.source,
        "seed": int(seed),
        "n_inserted": int(n),
        "classifier_preset": classifier_preset,
        "classifier_steps": int(base.steps),
        "tasks": list(tasks),
        "bootstrap": int(bootstrap),
        "gan_model": gan.model_id if gan is not None else None,
        "gan_patients": gan_patients,
        "gan_skipped": gan_skipped,
        "test_patients": sorted(test_patients),
        "n_test_patients": len(test_patients),
        "test_patients_with_calcifications": test_calc_patients,
        "val_patients": sorted(_split_patients(catalog, "val")),
        "counts": {
            "inserted": {CLASS_NAMES[c]: int((made.labels == c).sum()) for c in (BENIGN, MALIGNANT)},
            "inserted_background_patients": len(set(made.backgrounds.patient_id.tolist())),
            "real_calcification_patches": {
                split: {CLASS_NAMES[c]: int((p.labels == c).sum()) for c in (BENIGN, MALIGNANT)}
                for split, p in real.items()
            },
        },
        "tstr": tstr,
        "realism": realism,
        "specks": specks,
        "kid": kid,
        "feature_steps": int(feature_steps),
        "closest_training_cluster": closest,
        "classifiers": classifiers,
        "protocol": {
            "tstr": "train on real normals + synthetic positives, validate on val patients' real patches, test on "
            "test patients' real patches; AUC calcification vs normal; patient bootstrap 95 % CI; difference "
            "paired with the real-only classifier on the same bootstrap draws",
            "realism": "detector real (training patients) vs inserted; tested on test patients' real calcification "
            "patches vs a held-out part (by background patient) of the inserted ones; 0.5 = indistinguishable",
            "specks": "mammo_tf.data.specks.detect_specks on each whole patch; 1-D Wasserstein per statistic; "
            "floor = training patients' real patches vs the test patients'",
            "real_patches": f"per_cluster {base.per_cluster}, jitter {base.jitter} px (inserted clusters: the model's "
            "training jitter, in insertion.json)",
            "kid": "unbiased MMD^2 (cubic kernel) on the feature network, as evaluate-gan; mean and std over subsets "
            "of half the smaller set; floor = training patients' real calcification patches vs the same test "
            "patches; ratio = set / floor (floor > 0 only)",
            "closest_training_cluster": closest["distance"] + f"; clusters of >= {closest['min_specks']} specks; "
            "real clusters cut to the patch window; per layout in cluster_distances.csv",
        },
    }
    if out is not None:
        _write(out, metrics, real["test"], made, rendered, refined, cluster_table)
    return metrics


class _Trainer:
    """Trains one classifier per call (same preset, seed and steps), scores it on test patches, records it."""

    def __init__(self, catalog, work: Path, base, preset: str, test_patients: set[str], records: list, log) -> None:
        self.catalog, self.work, self.base, self.preset = catalog, work, base, preset
        self.test_patients, self.records, self.log = test_patients, records, log

    def run(self, name: str, task: str, train_val, test: Patches, kwargs, sources: list[str]) -> np.ndarray:
        """float [N] calc probabilities of `test` from a classifier trained on train_val (+ kwargs)."""
        from mammo_tf.inference.registry import load_keras
        from mammo_tf.models.classifier import CalcificationClassifier  # noqa: F401  (registers the class)
        from mammo_tf.training.classifier_trainer import predict, train_classifier

        self.log(f"training {name}")
        run = self.work / f"run{len(self.records):02d}"
        steps = self.base.steps
        train_classifier(
            None, run, catalog=self.catalog, preset=self.preset, task=task, patch_size=self.base.patch_size,
            seed=self.base.seed, steps=steps, val_every=steps, verbose=0, real_patches=train_val, **(kwargs or {}),
        )  # fmt: skip
        record = json.loads((run / "config.json").read_text())
        final = json.loads((run / "metrics.json").read_text())
        train_patients = sorted(map(str, record["train_patients"]))
        val_patients = sorted(set(map(str, train_val[1].patient_id.tolist())))
        entry = {
            "name": name,
            "task": task,
            "train_patients": train_patients,
            "val_patients": val_patients,
            "synthetic_source_patients": list(sources),
            "all_patients": sorted(set(train_patients) | set(val_patients) | set(sources)),
            "train_patches": record["train_patches"],
            "val_auc": final.get("val_auc"),
        }
        _refuse_overlap(f"classifier {name!r}", set(entry["all_patients"]), self.test_patients, self.catalog.root)
        self.records.append(entry)
        return predict(load_keras(run / "classifier.keras"), test.images)["calc"]


def _auc_table(test: Patches, scores: dict[str, np.ndarray], reference: str, bootstrap: int, seed: int) -> dict:
    from mammo_tf.evaluation.stats import paired_bootstrap

    labels = (test.labels != NORMAL).astype(int)
    with warnings.catch_warnings():  # a draw of one class only: that draw's AUC is NaN and left out
        warnings.simplefilter("ignore", RuntimeWarning)
        result = paired_bootstrap(
            labels, test.patient_id, scores, reference=reference, n_resamples=bootstrap, seed=seed
        )
    return {
        "n_test": int(len(labels)),
        "n_test_positive": int(labels.sum()),
        "n_test_patients": len(set(test.patient_id.tolist())),
        "arms": {
            arm: {"auc": v["value"].as_dict(), "difference": v["difference"].as_dict()} for arm, v in result.items()
        },
        "reference": reference,
    }


def _realism(trainer: _Trainer, made, rendered, refined, real: dict, sources, bootstrap: int, seed: int) -> dict:
    """Real-vs-inserted detectors (CNN and texture) for rendered and refined, on one split of the inserted."""
    from mammo_tf.data.tasks import concat, subset
    from mammo_tf.evaluation.baselines import fit_logistic, texture_features

    parts = _split_by_patient(np.asarray(made.backgrounds.patient_id).astype(str), seed)
    realness = {split: _relabel(p, NORMAL) for split, p in real.items()}  # real = 0; inserted keep 1 / 2
    cnn, texture, sets = {}, {}, {}
    for name, images in ((RENDERED, rendered), (REFINED, refined)):
        inserted = _inserted_patches(made, images)
        sets[name] = {
            split: concat([realness[split], subset(inserted, part)])
            for split, part in zip(("train", "val", "test"), parts, strict=True)
        }
        train, val, test = sets[name]["train"], sets[name]["val"], sets[name]["test"]
        cnn[name] = trainer.run(f"realism {name}", "easy", (train, val), test, None, sources)
        fitted = fit_logistic(texture_features(train.images), (train.labels != NORMAL).astype(int), seed)
        texture[name] = fitted.predict_proba(texture_features(test.images))[:, 1]
    test = sets[RENDERED]["test"]  # the same items for refined: same real patches, same inserted layouts
    out = {
        "cnn": _auc_table(test, cnn, RENDERED, bootstrap, seed),
        "texture": _auc_table(test, texture, RENDERED, bootstrap, seed),
        "n_inserted": {split: int(len(p)) for split, p in zip(("train", "val", "test"), parts, strict=True)},
        "n_real": {split: int(len(p.labels)) for split, p in real.items()},
    }
    return out


# ------------------------------------------------------------------------------------------ writing


def _write(out: Path, metrics: dict, real_test: Patches, made, rendered, refined, clusters: pd.DataFrame) -> None:
    from mammo_tf.evaluation.report import metrics_json, report_folder

    png = grids_png(real_test, made, rendered, refined)
    with report_folder(out) as tmp:
        (tmp / "grids.png").write_bytes(png)
        clusters.to_csv(tmp / "cluster_distances.csv", index=False)
        (tmp / "metrics.json").write_text(metrics_json(metrics))
        (tmp / "report.md").write_text(render_markdown(metrics))
