"""evaluate-aug: does synthetic data, or SR, help recognise calcifications? Measured by patient-level k-fold.

For each fold (StratifiedGroupKFold-style patient split, splits.patient_kfold) the fold's patients are the
test set, 20 % of the others (by patient) the validation set for thresholds and checkpoint choice, the rest
the training set. Inside each fold:

1. the synthesis GAN is trained on that fold's training patients only (the patient ids it saw are recorded
   and checked disjoint from the test patients), then writes synthetic patches;
2. for every task (easy, matched) and seed, the same classifier is trained with the same step budget in
   every arm: real only; real + synthetic at each ratio (synthetic:real per class); synthetic only;
3. non-CNN arms on the same test patches: the texture logistic regression, the speck detector's own score,
   the intensity-only and position-only probes;
4. SR utility (easy task): the real-only classifier tested on HR, bicubic-upscaled LR and SR-upscaled LR
   of the same test patches, restricted to patients the SR model never saw (checked against its recorded
   training patients); and a classifier trained and tested on SR;
5. the film task: the real-only classifier's heatmap maximum per test film (films with calcifications
   against films without), and the localisation rate (the film's top region inside an annotated circle).

Numbers: AUC, and sensitivity/specificity at the threshold chosen on the validation patients, pooled over
folds per seed, averaged over seeds; patient-level bootstrap 95 % CIs; paired differences against the
real-only arm on the same bootstrap draws (stats.paired_bootstrap), with a verdict per arm.

Everything a unit trains is kept under ``<out>/work`` so an interrupted study resumes where it stopped;
each finished unit appends a line (name, seconds) to ``<out>/work/progress.jsonl``, whose sum is the
study's compute time across resumed sessions.

Budget of the standard preset: 5 folds x 3 seeds, classifiers of 500 steps of 32 patches in every arm
(the shipped classifier's validation AUC on MIAS was 0.979 at 500 steps and 0.980 at 3000), a quick-preset
synthesis GAN per fold.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from mammo_tf.data.samplers import Patches
from mammo_tf.data.schema import NORMAL
from mammo_tf.errors import MammoError
from mammo_tf.io.atomic import write_bytes_atomic

REAL = "real"
# The SR question is SR against bicubic at the same LR; HR is the upper bound beside them.
SR_REFERENCE = "bicubic-upscaled LR (real-only classifier)"


@dataclass(frozen=True)
class StudyConfig:
    folds: int = 5
    seeds: int = 3
    tasks: tuple[str, ...] = ("easy", "matched", "film")
    ratios: tuple[float, ...] = (0.5, 1.0, 2.0)
    classifier_preset: str = "standard"
    classifier_steps: int | None = None
    gan_preset: str = "quick"
    gan_steps: int | None = None
    bootstrap: int = 1000
    val_fraction: float = 0.2
    preset: str = "standard"


STUDY_PRESETS = {
    "quick": dict(
        folds=2, seeds=1, classifier_preset="tiny", classifier_steps=6, gan_preset="tiny", gan_steps=2, bootstrap=200
    ),
    "standard": dict(classifier_steps=500),
}


def resolve_study_config(preset: str = "standard", **overrides) -> StudyConfig:
    from mammo_tf.config import preset_values

    config = StudyConfig(**preset_values(STUDY_PRESETS, preset, **overrides))
    unknown = set(config.tasks) - {"easy", "matched", "film"}
    if unknown:
        raise MammoError(f"unknown tasks {sorted(unknown)} (choose from easy, matched, film)")
    if config.folds < 2 or config.seeds < 1:
        raise MammoError(f"need at least 2 folds and 1 seed, got {config.folds} folds and {config.seeds} seeds")
    return config


def fold_catalog(catalog, test_patients: set[str], val_fraction: float, seed: int):
    """The catalog with its split column set for one fold: test / val (a patient share of the rest) / train."""
    from mammo_tf.data.schema import Catalog

    images = catalog.images.copy()
    rest = sorted(set(images["patient_id"]) - set(test_patients))
    rng = np.random.default_rng(seed)
    val = set(rng.choice(rest, size=max(1, int(round(val_fraction * len(rest)))), replace=False).tolist())
    images["split"] = ["test" if p in test_patients else "val" if p in val else "train" for p in images["patient_id"]]
    return Catalog(images, catalog.findings, catalog.source, catalog.root)


def _labels(patches: Patches) -> np.ndarray:
    return (patches.labels != NORMAL).astype(int)


def _threshold(labels: np.ndarray, scores: np.ndarray) -> float:
    from sklearn.metrics import roc_curve

    if not 0 < labels.sum() < labels.size:
        return 0.5
    fpr, tpr, thr = roc_curve(labels, scores)
    return float(thr[int(np.argmax(tpr - fpr))])


def _sr_patients(spec) -> tuple[object, set[str]]:
    """The SR model and the patients it was trained on (from its run config or model card)."""
    from mammo_tf.inference.registry import check_model, resolve_model_path
    from mammo_tf.inference.upscale import load_sr_model

    command = "evaluate-aug --sr-model"
    path = resolve_model_path(spec, "sr")
    check_model(path, ("sr",), command)
    for meta in (path.parent / "config.json", path.parent / "card.json"):
        if meta.is_file():
            data = json.loads(meta.read_text())
            patients = data.get("train_patients") or data.get("training", {}).get("train_patients")
            if isinstance(patients, list):
                return load_sr_model(path, command=command), set(patients)
    raise MammoError(
        f"{path}: the SR arm needs the ids of the model's training patients (config.json or card.json beside it)"
    )


def _degrade_up(patches: Patches, sr_model, method: str) -> Patches:
    """Patches box-averaged by the SR scale, rounded to 8 bits, and upscaled back by bicubic or the SR model."""
    from mammo_tf.data.degrade import degrade, interpolate
    from mammo_tf.inference.upscale import upscale_array

    s = sr_model.scale
    out = []
    for image in patches.images[..., 0]:
        lr = degrade(image, s, 8)
        up = interpolate(lr, s, "bicubic") if method == "bicubic" else upscale_array(sr_model, lr, 8, tile=None)
        out.append(up)
    return replace(patches, images=np.stack(out)[..., None].astype(np.float32))


class Study:
    """One study run: folds x tasks x seeds x arms, with resumable work folders."""

    def __init__(self, catalog, config: StudyConfig, out: Path, sr_spec=None, verbose: int | str = 0, log=None) -> None:
        self.catalog, self.config, self.out, self.sr_spec, self.verbose = catalog, config, out, sr_spec, verbose
        self.log = log or (lambda line: None)
        self._patches: dict[tuple[str, int], tuple[Patches, Patches]] = {}
        self._patches_of = None  # the fold catalog those patches come from
        self._upscaled: dict[str, Patches] = {}  # SR-arm test patches, bicubic- and SR-upscaled
        self._upscaled_fold: int | None = None
        self.work = out / "work"
        self.items: dict[str, list[pd.DataFrame]] = {}
        self.scores: dict[tuple[str, str, int], list[np.ndarray]] = {}
        self.audit: dict = {"folds": [], "gan_patients": [], "sr_patients_excluded": []}
        self.localisation: list[bool] = []  # film task: top region inside an annotated circle, per film and seed

    # -- one classifier run, reused on resume --------------------------------------------------------
    def classifier(self, name: str, catalog, task: str, seed: int, **kwargs):
        from mammo_tf.inference.registry import load_keras
        from mammo_tf.models.classifier import CalcificationClassifier  # noqa: F401  (registers the class)
        from mammo_tf.training.classifier_trainer import train_classifier

        run = self.work / name
        if self._start(run):
            steps = self.config.classifier_steps
            started = time.monotonic()
            train_classifier(
                None,
                run,
                catalog=catalog,
                preset=self.config.classifier_preset,
                task=task,
                seed=seed,
                steps=steps,
                val_every=steps,
                verbose=self.verbose,
                real_patches=self._real_patches(catalog, task, seed),
                **kwargs,
            )
            self._done(name, started)
        record = json.loads((run / "config.json").read_text())
        metrics = json.loads((run / "metrics.json").read_text())
        return load_keras(run / "classifier.keras"), record, metrics

    def synthetic(self, fold: int, catalog, n: int) -> Path:
        from mammo_tf.config import resolve_classifier_config
        from mammo_tf.inference.synth import synthesize
        from mammo_tf.training.gan_trainer import train_gan

        run = self.work / f"fold{fold}" / "gan"
        folder = self.work / f"fold{fold}" / "synthetic"
        if self._start(run):
            patch = resolve_classifier_config(self.config.classifier_preset).patch_size  # the classifier's size
            started = time.monotonic()
            train_gan(
                None,
                run,
                catalog=catalog,
                preset=self.config.gan_preset,
                steps=self.config.gan_steps,
                patch_size=patch,
                seed=fold,
                verbose=self.verbose,
            )
            self._done(f"fold{fold}/gan", started)
        record = json.loads((run / "config.json").read_text())
        test = set(catalog.images.loc[catalog.images["split"] == "test", "patient_id"])
        seen = set(record["train_patients"])
        if seen & test:
            raise MammoError(f"fold {fold}: the GAN saw test patients {sorted(seen & test)[:3]}")
        self.audit["gan_patients"].append(sorted(seen))
        if not (folder / "manifest.csv").is_file():
            synthesize(run, n, "all", folder, seed=fold, fmt="npy", overwrite=True, progress=False)
        return folder

    def _real_patches(self, catalog, task: str, seed: int):
        """The real (train, val) patches of one fold, task and seed, drawn once and shared by every arm."""
        from mammo_tf.config import resolve_classifier_config
        from mammo_tf.training.classifier_trainer import real_patches_for

        if catalog is not self._patches_of:  # one fold at a time
            self._patches, self._patches_of = {}, catalog
        if (task, seed) not in self._patches:
            config = resolve_classifier_config(self.config.classifier_preset, task=task, seed=seed)
            self._patches[task, seed] = real_patches_for(catalog, config)
        return self._patches[task, seed]

    @staticmethod
    def _start(run: Path) -> bool:
        """True when the unit in `run` must be trained; an interrupted one (no metrics.json) starts again."""
        if (run / "metrics.json").is_file():
            return False
        if run.exists():
            import shutil

            shutil.rmtree(run)
        return True

    def _done(self, name: str, started: float) -> None:
        seconds = round(time.monotonic() - started, 1)
        with open(self.work / "progress.jsonl", "a") as f:
            f.write(json.dumps({"unit": name, "seconds": seconds, "finished": time.strftime("%Y-%m-%dT%H:%M:%S")}))
            f.write("\n")
        self.log(f"{name}: {seconds:.0f} s")

    def compute_seconds(self) -> float:
        """Seconds spent in finished training units, over every session of this study (progress.jsonl)."""
        path = self.work / "progress.jsonl"
        if not path.is_file():
            return 0.0
        return float(sum(json.loads(line)["seconds"] for line in path.read_text().splitlines() if line.strip()))

    # -- the study ------------------------------------------------------------------------------------
    def run(self, only_fold: int | None = None) -> dict | None:
        """Every fold, then the summary; with only_fold, that fold's units only (None returned, no report)."""
        from mammo_tf.config import resolve_classifier_config
        from mammo_tf.data.splits import patient_kfold, patient_labels
        from mammo_tf.training.classifier_trainer import predict, task_patches

        config = self.config
        images = self.catalog.images
        labels = patient_labels(
            images["patient_id"], self.catalog.image_labels().reindex(images["image_id"].to_numpy())
        )
        folds = patient_kfold(labels, k=config.folds, seed=0)
        sr = _sr_patients(self.sr_spec) if self.sr_spec is not None else None
        patch_tasks = [t for t in config.tasks if t != "film"]
        if only_fold is not None and not 0 <= only_fold < len(folds):
            raise MammoError(f"fold {only_fold} does not exist (the study has folds 0 to {len(folds) - 1})")
        for fold, (_, test_ids) in enumerate(folds):
            if only_fold is not None and fold != only_fold:
                continue
            test_patients = set(test_ids.tolist())
            cat = fold_catalog(self.catalog, test_patients, config.val_fraction, seed=fold)
            self.audit["folds"].append(sorted(test_patients))
            synth = None
            if config.ratios and patch_tasks:
                real_train = self._real_patches(cat, "easy", 0)[0]
                synth = self.synthetic(fold, cat, max(3, int(round(max(config.ratios) * len(real_train.labels)))))
            for task in patch_tasks:
                base = resolve_classifier_config(config.classifier_preset, task=task)
                test = task_patches(cat, base, "test", seed=1000 + fold)
                self._baselines(
                    task,
                    fold,
                    cat,
                    task_patches(cat, base, "train", seed=3000 + fold),
                    task_patches(cat, base, "val", seed=2000 + fold),
                    test,
                )
                arms: dict[str, dict] = {REAL: {}}
                if synth is not None:
                    arms.update(
                        {f"real+synthetic x{r:g}": {"synthetic": synth, "synthetic_ratio": r} for r in config.ratios}
                    )
                    arms["synthetic only"] = {"synthetic": synth, "synthetic_only": True}
                for seed in range(config.seeds):
                    for arm, kwargs in arms.items():
                        model, record, metrics = self.classifier(
                            f"fold{fold}/{task}/{arm}/seed{seed}", cat, task, seed, **kwargs
                        )
                        if set(record["train_patients"]) & test_patients:
                            raise MammoError(f"{arm} saw test patients")
                        probs = predict(model, test.images)
                        self._add(task, arm, fold, seed, test, probs["calc"], metrics.get("threshold", 0.5))
                        if arm == REAL:
                            self._add_exploratory(task, fold, seed, test, probs["malignant"])
                            if task == "easy" and sr is not None:
                                self._sr_arms(fold, seed, cat, test, model, metrics, sr)
            if "film" in config.tasks:
                for seed in range(config.seeds):
                    model, _, _ = self.classifier(f"fold{fold}/easy/{REAL}/seed{seed}", cat, "easy", seed)
                    self._film(fold, seed, cat, model)
        return self.summarise() if only_fold is None else None

    def _add(self, task: str, arm: str, fold: int, seed: int, patches: Patches, scores: np.ndarray, threshold: float):
        items = pd.DataFrame(
            {
                "fold": fold,
                "patient_id": patches.patient_id,
                "label": _labels(patches),
                "image_id": patches.image_id,
                "row": patches.centre_row,
                "col": patches.centre_col,
            }
        )
        key = (task, arm, seed)
        self.items.setdefault(key, []).append(items)
        self.scores.setdefault(key, []).append(np.asarray(scores, np.float64))
        self.scores.setdefault((task, f"{arm}|predicted", seed), []).append(
            (np.asarray(scores) >= threshold).astype(float)
        )

    def _add_exploratory(self, task: str, fold: int, seed: int, test: Patches, malignant: np.ndarray) -> None:
        """Benign vs malignant on the calcification test patches: exploratory (no signal at MIAS size)."""
        from mammo_tf.data.tasks import subset

        calc = np.flatnonzero(test.labels != NORMAL)
        sub = subset(test, calc)
        sub = replace(sub, labels=(sub.labels == 2).astype(np.int32))  # 1 = malignant ("positive")
        self._add(f"{task}: benign vs malignant (exploratory)", REAL, fold, seed, sub, malignant[calc], 0.5)

    def _baselines(self, task: str, fold: int, cat, train: Patches, val: Patches, test: Patches) -> None:
        from mammo_tf.evaluation.baselines import fit_logistic, probe_features, speck_scores, texture_features

        y_train, y_val = _labels(train), _labels(val)
        features = {
            "texture logistic regression": (
                texture_features(train.images),
                texture_features(val.images),
                texture_features(test.images),
            )
        }
        probes = [probe_features(p, cat) for p in (train, val, test)]
        for name in ("intensity", "position"):
            features[f"probe: {name} only"] = tuple(p[name] for p in probes)
        for seed in range(self.config.seeds):
            for arm, (f_train, f_val, f_test) in features.items():
                model = fit_logistic(f_train, y_train, seed)
                threshold = _threshold(y_val, model.predict_proba(f_val)[:, 1])
                self._add(task, arm, fold, seed, test, model.predict_proba(f_test)[:, 1], threshold)
            specks_val = speck_scores(val.images)
            self._add(
                task,
                "speck detector (patch maximum)",
                fold,
                seed,
                test,
                speck_scores(test.images),
                _threshold(y_val, specks_val),
            )

    def _sr_arms(self, fold, seed, cat, test: Patches, model, metrics, sr) -> None:
        from mammo_tf.training.classifier_trainer import predict

        sr_model, seen = sr
        keep = np.array([p not in seen for p in test.patient_id])
        self.audit["sr_patients_excluded"].append(sorted(set(test.patient_id[~keep].tolist())))
        if not keep.any():
            return
        from mammo_tf.data.tasks import subset

        kept = subset(test, np.flatnonzero(keep))
        if set(kept.patient_id) & seen:
            raise MammoError(f"fold {fold}: the SR utility test patches include patients the SR model saw")
        threshold = metrics.get("threshold", 0.5)
        task = "easy: SR utility (patients the SR model never saw)"
        self._add(task, "HR (real-only classifier)", fold, seed, kept, predict(model, kept.images)["calc"], threshold)
        if self._upscaled_fold != fold:  # the same test patches for every seed: upscale them once per fold
            self._upscaled = {method: _degrade_up(kept, sr_model, method) for method in ("bicubic", "sr")}
            self._upscaled_fold = fold
        upscaled = self._upscaled
        for method, up in upscaled.items():
            name = "bicubic-upscaled LR" if method == "bicubic" else "SR-upscaled LR"
            self._add(
                task, f"{name} (real-only classifier)", fold, seed, kept, predict(model, up.images)["calc"], threshold
            )
        sr_model_, _, sr_metrics = self.classifier(
            f"fold{fold}/easy/trained on SR/seed{seed}",
            cat,
            "easy",
            seed,
            patch_transform=lambda p: _degrade_up(p, sr_model, "sr"),
        )
        self._add(
            task,
            "SR-upscaled LR (classifier trained on SR)",
            fold,
            seed,
            kept,
            predict(sr_model_, upscaled["sr"].images)["calc"],
            sr_metrics.get("threshold", 0.5),
        )

    def _film_scores(self, cat, model) -> dict:
        """Per test film: patient, label (has a calcification finding) and heatmap maximum; localisation hits."""
        from mammo_tf.data.preprocess import prepare
        from mammo_tf.inference.detect import heatmap
        from mammo_tf.io.images import read_image

        findings = cat.findings
        calc_ids = set(findings.loc[findings["abnormality"] == "CALC", "image_id"])
        films = cat.images[cat.images["split"] == "test"]
        rows, hits = [], []
        patch = int(model.network.input_shape[1])
        for film in films.itertuples():
            pixels = read_image(film.path).pixels
            prepared = prepare(film.path)
            mask = prepared.mask[:, ::-1] if prepared.flipped else prepared.mask
            result = heatmap(model, pixels, mask, patch, top=1)
            rows.append(
                {
                    "image_id": film.image_id,
                    "patient_id": film.patient_id,
                    "label": int(film.image_id in calc_ids),
                    "score": float(result.score),
                }
            )
            circles = findings[
                (findings["image_id"] == film.image_id)
                & (findings["abnormality"] == "CALC")
                & findings["has_coords"]
                & findings["radius"].notna()
            ]
            if len(circles) and len(result.regions):
                top = result.regions.iloc[0]
                hits.append(
                    bool(
                        any(np.hypot(top["row"] - c.row, top["col"] - c.col) <= c.radius for c in circles.itertuples())
                    )
                )
        return {"films": rows, "localised": hits}

    def _film(self, fold: int, seed: int, cat, model) -> None:
        cache = self.work / f"fold{fold}" / f"film-seed{seed}.json"
        if cache.is_file():
            saved = json.loads(cache.read_text())
        else:
            started = time.monotonic()
            saved = self._film_scores(cat, model)
            write_bytes_atomic(cache, json.dumps(saved).encode())
            self._done(f"fold{fold}/film/seed{seed}", started)
        table, hits = pd.DataFrame(saved["films"]), saved["localised"]
        fake = Patches(
            images=np.zeros((len(table), 1, 1, 1), np.float32),
            labels=table["label"].to_numpy(np.int32),
            image_id=table["image_id"].to_numpy(str),
            patient_id=table["patient_id"].to_numpy(str),
            centre_row=np.zeros(len(table), np.int64),
            centre_col=np.zeros(len(table), np.int64),
        )
        self._add("film", REAL, fold, seed, fake, table["score"].to_numpy(), 0.5)
        self.localisation += hits

    # -- numbers ---------------------------------------------------------------------------------------
    def summarise(self) -> dict:
        tasks = {task: self._summarise_task(task) for task in dict.fromkeys(t for t, _, _ in self.scores)}
        loc = self.localisation
        return {
            "config": asdict(self.config),
            "data": str(self.catalog.root),
            "source": self.catalog.source,
            "tasks": tasks,
            "audit": self.audit,
            "film_localisation": {
                "clusters_films": len(loc),
                "top_region_in_circle": float(np.mean(loc)) if loc else None,
            },
        }

    def _stack(self, task: str, arm: str) -> np.ndarray:
        """float [S, N]: one row per seed, the items of every fold in fold order."""
        seeds = [s for s in range(self.config.seeds) if (task, arm, s) in self.scores]
        return np.stack([np.concatenate(self.scores[(task, arm, s)]) for s in seeds])

    def _summarise_task(self, task: str) -> dict:
        from mammo_tf.evaluation.stats import paired_bootstrap, verdict

        arms = list(dict.fromkeys(a for (t, a, _) in self.scores if t == task and not a.endswith("|predicted")))
        reference = next((a for a in (REAL, SR_REFERENCE) if a in arms), arms[0])
        # Reference first, then the arms under test, then the baselines and probes.
        arms.sort(key=lambda a: (a != reference, not _is_tested(task, a)))
        items = pd.concat(self.items[(task, reference, 0)], ignore_index=True)
        y, groups, folds = items["label"].to_numpy(), items["patient_id"].to_numpy(), items["fold"].to_numpy()
        n = self.config.bootstrap
        scores = {a: self._stack(task, a) for a in arms}
        predicted = {a: self._stack(task, f"{a}|predicted") for a in arms}
        auc = paired_bootstrap(y, groups, scores, reference=reference, n_resamples=n)
        sens = paired_bootstrap(y, groups, predicted, reference=reference, metric=_sensitivity, n_resamples=n)
        spec = paired_bootstrap(y, groups, predicted, reference=reference, metric=_specificity, n_resamples=n)
        arms_out = {}
        for arm in arms:
            tested = _is_tested(task, arm)
            arms_out[arm] = {
                "auc": auc[arm]["value"].as_dict(),
                "auc_difference_vs_reference": auc[arm]["difference"].as_dict(),
                "verdict": "reference"
                if arm == reference
                else verdict(auc[arm]["difference"])
                if tested
                else "baseline",
                "sensitivity": sens[arm]["value"].as_dict(),
                "specificity": spec[arm]["value"].as_dict(),
                "fold_auc_by_seed": [
                    [_fold_auc(y[folds == f], row[folds == f]) for f in np.unique(folds)] for row in scores[arm]
                ],
            }
        return {
            "reference": reference,
            "n_items": int(len(y)),
            "n_positive": int(y.sum()),
            "n_patients": int(len(set(groups))),
            "arms": arms_out,
            "roc": {arm: _roc(y, scores[arm][0]) for arm in arms},
        }


def _sensitivity(labels: np.ndarray, predicted: np.ndarray) -> float:
    return float(predicted[labels == 1].mean()) if (labels == 1).any() else float("nan")


def _specificity(labels: np.ndarray, predicted: np.ndarray) -> float:
    return float(1 - predicted[labels == 0].mean()) if (labels == 0).any() else float("nan")


def _is_tested(task: str, arm: str) -> bool:
    """Arms whose difference to the reference is the question (augmentation, SR); the rest are baselines."""
    return arm.startswith(("real+synthetic", "synthetic only")) or (
        task.startswith("easy: SR") and arm.startswith("SR-upscaled")
    )


def _fold_auc(y: np.ndarray, s: np.ndarray) -> float | None:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, s)) if 0 < y.sum() < y.size else None


def _roc(y: np.ndarray, s: np.ndarray) -> dict:
    from sklearn.metrics import roc_curve

    if not 0 < y.sum() < y.size:
        return {"fpr": [], "tpr": []}
    fpr, tpr, _ = roc_curve(y, s)
    return {"fpr": fpr.round(4).tolist(), "tpr": tpr.round(4).tolist()}


def evaluate_aug(
    data=None,
    *,
    out: str | Path,
    preset: str = "standard",
    folds: int | None = None,
    seeds: int | None = None,
    tasks: tuple[str, ...] | None = None,
    sr_model=None,
    verbose: int | str = 0,
    log=None,
    only_fold: int | None = None,
) -> dict | None:
    """Run (or resume) the study and write report.md, metrics.json, roc.png and forest.png into `out`.

    only_fold: train that fold's units and stop (no report, None returned), so that folds can run in
    parallel processes; a later call without it finds them done, fills in the rest and writes the report.
    """
    from mammo_tf.data.catalog import load_catalog
    from mammo_tf.workflows.study_report import write_study_report

    started = time.monotonic()
    config = resolve_study_config(preset, folds=folds, seeds=seeds, tasks=tuple(tasks) if tasks else None)
    catalog = load_catalog(data)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    study = Study(catalog, config, out, sr_model, verbose, log)
    metrics = study.run(only_fold)
    if metrics is None:
        return None
    metrics["wall_seconds"] = round(time.monotonic() - started, 1)  # this invocation only
    metrics["training_seconds_all_sessions"] = round(study.compute_seconds(), 1)
    write_study_report(out, metrics)
    return metrics
