"""Running the study's units, resumably: the classifiers, each fold's GAN and synthetic patches, the baselines,
the SR arms and the film task.

Everything a unit trains is kept under ``<out>/work`` (WorkFolder), so an interrupted study resumes where it
stopped; the layout, which older studies' work folders share:

    work/progress.jsonl                      one line per finished unit: unit, seconds, finished
    work/fold{k}/gan/                        the fold's synthesis GAN run (train_gan, seed k)
    work/fold{k}/synthetic/                  its synthetic patches (manifest.csv once complete)
    work/fold{k}/{task}/{arm}/seed{s}/       a classifier run (its metrics.json marks it finished)
    work/fold{k}/easy/trained on SR/seed{s}/ the classifier trained on SR-upscaled patches
    work/fold{k}/film-seed{s}.json           the film task's per-film scores

A run folder without metrics.json is an interrupted unit: it is removed and trained again. Every model's
recorded training patients are checked against the fold's test patients (plan.check_disjoint) and kept in
the audit (``audit["models"]``, one record per fold), with the identities of the GAN and SR models.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from mammo_tf.data.samplers import Patches
from mammo_tf.data.schema import NORMAL
from mammo_tf.errors import MammoError
from mammo_tf.io.atomic import write_bytes_atomic
from mammo_tf.workflows.study.plan import (
    FILM_TASK,
    PROBES,
    REAL,
    SPECKS,
    SR_BICUBIC,
    SR_HR,
    SR_TASK,
    SR_TRAINED,
    SR_UPSCALED,
    TEXTURE,
    Fold,
    StudyPlan,
    Unit,
    check_disjoint,
    exploratory_task,
    fold_test_patients,
    split_patients,
)
from mammo_tf.workflows.study.summary import Pool, patch_labels, val_threshold


class WorkFolder:
    """``<out>/work``: a folder per unit, reused once finished; progress.jsonl sums the compute time."""

    def __init__(self, root: Path, log=None) -> None:
        self.root = root
        self.log = log or (lambda line: None)

    def start(self, run: Path) -> bool:
        """True when the unit in `run` must be trained; an interrupted one (no metrics.json) starts again."""
        if (run / "metrics.json").is_file():
            return False
        if run.exists():
            import shutil

            shutil.rmtree(run)
        return True

    def done(self, name: str, started: float) -> None:
        seconds = round(time.monotonic() - started, 1)
        with open(self.root / "progress.jsonl", "a") as f:
            f.write(json.dumps({"unit": name, "seconds": seconds, "finished": time.strftime("%Y-%m-%dT%H:%M:%S")}))
            f.write("\n")
        self.log(f"{name}: {seconds:.0f} s")

    def unit_seconds(self) -> dict[str, float]:
        """Seconds per finished unit name, summed over every session of this study (progress.jsonl)."""
        path = self.root / "progress.jsonl"
        seconds: dict[str, float] = {}
        if path.is_file():
            for line in filter(str.strip, path.read_text().splitlines()):
                entry = json.loads(line)
                seconds[entry["unit"]] = seconds.get(entry["unit"], 0.0) + float(entry["seconds"])
        return seconds

    def compute_seconds(self) -> float:
        """Seconds spent in finished training units, over every session of this study (progress.jsonl)."""
        return float(sum(self.unit_seconds().values()))


def load_sr_model_and_patients(spec) -> tuple[object, set[str]]:
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


def degrade_up(patches: Patches, sr_model, method: str) -> Patches:
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


class Units:
    """The units of one study: trains what is not finished in the work folder, adds every arm's test scores
    to the pool, and records what each model saw in the audit."""

    def __init__(self, catalog, plan: StudyPlan, work: WorkFolder, sr=None, verbose: int | str = 0) -> None:
        self.catalog, self.plan, self.config, self.work, self.sr = catalog, plan, plan.config, work, sr
        self.verbose = verbose
        self.pool = Pool()
        # models: per fold, the patients every model trained on and the GAN / SR model ids (model_record)
        self.audit: dict = {"folds": [], "gan_patients": [], "sr_patients_excluded": [], "models": []}
        self.arm_units: dict[tuple[str, str], set[str]] = {}  # (task, arm name) -> the classifier units it trained
        self.localisation: list[bool] = []  # film task: top region inside an annotated circle, per film and seed
        self._patches: dict[tuple[str, int], tuple[Patches, Patches]] = {}
        self._patches_of = None  # the fold catalog those patches come from
        self._upscaled: dict[str, Patches] = {}  # SR-arm test patches, bicubic- and SR-upscaled
        self._upscaled_fold: int | None = None

    # -- one fold -------------------------------------------------------------------------------------------
    def run_fold(self, fold: Fold) -> None:
        """Every unit of one fold: GAN, then per patch task the baselines and the classifier arms, then films."""
        from mammo_tf.config import resolve_classifier_config
        from mammo_tf.training.classifier_trainer import task_patches

        plan, config = self.plan, self.config
        cat = fold.catalog(self.catalog, config.val_fraction)
        self.audit["folds"].append(sorted(fold.test_patients))
        self.model_record(fold.index)["test_patients"] = sorted(fold.test_patients)
        synth = None
        if plan.uses_synthetic:
            real_train = self.real_patches(cat, "easy", 0)[0]
            synth = self.synthetic(fold.index, cat, plan.synthetic_count(len(real_train.labels)))
        for task in plan.patch_tasks:
            base = resolve_classifier_config(config.classifier_preset, task=task)
            test = task_patches(cat, base, "test", seed=fold.patch_seed("test"))
            train = task_patches(cat, base, "train", seed=fold.patch_seed("train"))
            val = task_patches(cat, base, "val", seed=fold.patch_seed("val"))
            self.baselines(task, fold.index, cat, train, val, test)
            for unit in plan.units(fold.index, task):
                self.classifier_arm(unit, cat, test, fold.test_patients, synth)
        if plan.film:
            for unit in plan.film_units(fold.index):
                model, _, _ = self.classifier(unit, cat)
                self.film(fold.index, unit.seed, cat, model)

    # -- records --------------------------------------------------------------------------------------------
    def model_record(self, fold: int) -> dict:
        """audit["models"]'s record of one fold, made on first use: its test patients; the classifiers' train
        and validation patients, one entry per distinct pair with the units that share it; the GAN's and the
        SR model's id and training patients (None when the fold has none)."""
        for record in self.audit["models"]:
            if record["fold"] == fold:
                return record
        record = {"fold": fold, "test_patients": [], "classifiers": [], "gan": None, "sr": None}
        self.audit["models"].append(record)
        return record

    def record_classifier(self, unit: Unit, train_patients: list[str], val_patients: list[str]) -> None:
        """Add a classifier unit to its fold's record, beside the units trained on the same patients."""
        groups = self.model_record(unit.fold)["classifiers"]
        group = next(
            (g for g in groups if (g["train_patients"], g["val_patients"]) == (train_patients, val_patients)), None
        )
        if group is None:
            group = {"units": [], "train_patients": train_patients, "val_patients": val_patients}
            groups.append(group)
        if unit.name not in group["units"]:
            group["units"].append(unit.name)

    def compute(self) -> dict[str, dict[str, dict]]:
        """task -> arm name -> {"units", "seconds"}: the classifier units the arm trained and their seconds over
        every session (progress.jsonl). Arms that train nothing (baselines, the real-only classifier scored on
        upscaled patches) have no entry; the fold GANs the synthetic arms share are in audit["models"]."""
        seconds = self.work.unit_seconds()
        out: dict[str, dict[str, dict]] = {}
        for (task, arm), names in self.arm_units.items():
            total = sum(seconds.get(name, 0.0) for name in names)
            out.setdefault(task, {})[arm] = {"units": len(names), "seconds": round(total, 1)}
        return out

    # -- classifiers ----------------------------------------------------------------------------------------
    def classifier(self, unit: Unit, catalog, **kwargs):
        """The classifier run ``work/<unit.name>``, trained unless finished: (model, config record, metrics).
        Its train and validation patients go into the fold's model record."""
        from mammo_tf.inference.registry import load_keras
        from mammo_tf.models.classifier import CalcificationClassifier  # noqa: F401  (registers the class)
        from mammo_tf.training.classifier_trainer import train_classifier

        name, task, seed = unit.name, unit.task, unit.seed
        run = self.work.root / name
        if self.work.start(run):
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
                real_patches=self.real_patches(catalog, task, seed),
                **kwargs,
            )
            self.work.done(name, started)
        record = json.loads((run / "config.json").read_text())
        metrics = json.loads((run / "metrics.json").read_text())
        # validation patients: the fold's val split, on which the threshold and checkpoint were chosen
        self.record_classifier(unit, sorted(record["train_patients"]), sorted(split_patients(catalog, "val")))
        return load_keras(run / "classifier.keras"), record, metrics

    def classifier_arm(self, unit: Unit, cat, test: Patches, test_patients, synth) -> None:
        """One classifier unit scored on the fold's test patches; the real-only one also on the side tasks."""
        from mammo_tf.training.classifier_trainer import predict

        arm, fold, seed = unit.arm, unit.fold, unit.seed
        model, record, metrics = self.classifier(unit, cat, **arm.train_kwargs(synth))
        check_disjoint(record["train_patients"], test_patients, f"fold {fold}: the {arm.name} classifier")
        self.arm_units.setdefault((unit.task, arm.name), set()).add(unit.name)
        probs = predict(model, test.images)
        self.pool.add(unit.task, arm, fold, seed, test, probs["calc"], metrics.get("threshold", 0.5))
        if arm == REAL:
            self.exploratory(unit.task, fold, seed, test, probs["malignant"])
            if unit.task == "easy" and self.sr is not None:
                self.sr_arms(fold, seed, cat, test, model, metrics)

    def real_patches(self, catalog, task: str, seed: int):
        """The real (train, val) patches of one fold, task and seed, drawn once and shared by every arm."""
        from mammo_tf.config import resolve_classifier_config
        from mammo_tf.training.classifier_trainer import real_patches_for

        if catalog is not self._patches_of:  # one fold at a time
            self._patches, self._patches_of = {}, catalog
        if (task, seed) not in self._patches:
            config = resolve_classifier_config(self.config.classifier_preset, task=task, seed=seed)
            self._patches[task, seed] = real_patches_for(catalog, config)
        return self._patches[task, seed]

    def exploratory(self, task: str, fold: int, seed: int, test: Patches, malignant: np.ndarray) -> None:
        """Benign vs malignant on the calcification test patches: exploratory (no signal at MIAS size)."""
        from mammo_tf.data.tasks import subset

        calc = np.flatnonzero(test.labels != NORMAL)
        sub = subset(test, calc)
        sub = replace(sub, labels=(sub.labels == 2).astype(np.int32))  # 1 = malignant ("positive")
        self.pool.add(exploratory_task(task), REAL, fold, seed, sub, malignant[calc], 0.5)

    # -- the fold's GAN and its synthetic patches -----------------------------------------------------------
    def synthetic(self, fold: int, catalog, n: int) -> Path:
        """The fold's synthetic patch folder, from a GAN trained on the fold's training patients only."""
        from mammo_tf.config import resolve_classifier_config
        from mammo_tf.inference.registry import model_id, resolve_model_path
        from mammo_tf.inference.synth import synthesize
        from mammo_tf.training.gan_trainer import train_gan

        run = self.work.root / f"fold{fold}" / "gan"
        folder = self.work.root / f"fold{fold}" / "synthetic"
        if self.work.start(run):
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
            self.work.done(f"fold{fold}/gan", started)
        record = json.loads((run / "config.json").read_text())
        seen = set(record["train_patients"])
        check_disjoint(seen, fold_test_patients(catalog), f"fold {fold}: the GAN")
        self.audit["gan_patients"].append(sorted(seen))
        self.model_record(fold)["gan"] = {
            "run": run.relative_to(self.work.root.parent).as_posix(),
            "model": model_id(resolve_model_path(run, "synthesis")),
            "preset": record["preset"],
            "steps": record["steps"],
            "seconds": self.work.unit_seconds().get(f"fold{fold}/gan"),
            "train_patients": sorted(seen),
        }
        if not (folder / "manifest.csv").is_file():
            synthesize(run, n, "all", folder, seed=fold, fmt="npy", overwrite=True, progress=False)
        return folder

    # -- non-CNN arms ---------------------------------------------------------------------------------------
    def baselines(self, task: str, fold: int, cat, train: Patches, val: Patches, test: Patches) -> None:
        """Texture logistic regression, intensity and position probes, and the speck detector's own score."""
        from mammo_tf.evaluation.baselines import fit_logistic, probe_features, speck_scores, texture_features

        y_train, y_val = patch_labels(train), patch_labels(val)
        features = {TEXTURE: tuple(texture_features(p.images) for p in (train, val, test))}
        probes = [probe_features(p, cat) for p in (train, val, test)]
        for name, arm in PROBES.items():
            features[arm] = tuple(p[name] for p in probes)
        for seed in self.plan.seeds:
            for arm, (f_train, f_val, f_test) in features.items():
                model = fit_logistic(f_train, y_train, seed)
                threshold = val_threshold(y_val, model.predict_proba(f_val)[:, 1])
                self.pool.add(task, arm, fold, seed, test, model.predict_proba(f_test)[:, 1], threshold)
            specks_val = speck_scores(val.images)
            self.pool.add(task, SPECKS, fold, seed, test, speck_scores(test.images), val_threshold(y_val, specks_val))

    # -- SR utility (easy task) -----------------------------------------------------------------------------
    def sr_arms(self, fold: int, seed: int, cat, test: Patches, model, metrics: dict) -> None:
        """The real-only classifier on HR, bicubic- and SR-upscaled LR, and a classifier trained on SR, all on
        the test patches of patients the SR model never saw."""
        from mammo_tf.data.tasks import subset
        from mammo_tf.training.classifier_trainer import predict

        sr_model, seen = self.sr
        self.model_record(fold)["sr"] = {"model": sr_model.model_id, "train_patients": sorted(seen)}
        keep = np.array([p not in seen for p in test.patient_id])
        self.audit["sr_patients_excluded"].append(sorted(set(test.patient_id[~keep].tolist())))
        if not keep.any():
            return
        kept = subset(test, np.flatnonzero(keep))
        check_disjoint(seen, kept.patient_id, f"fold {fold}: the SR model of the SR utility arms")
        threshold = metrics.get("threshold", 0.5)
        self.pool.add(SR_TASK, SR_HR, fold, seed, kept, predict(model, kept.images)["calc"], threshold)
        if self._upscaled_fold != fold:  # the same test patches for every seed: upscale them once per fold
            self._upscaled = {method: degrade_up(kept, sr_model, method) for method in ("bicubic", "sr")}
            self._upscaled_fold = fold
        upscaled = self._upscaled
        for method, up in upscaled.items():
            arm = SR_BICUBIC if method == "bicubic" else SR_UPSCALED
            self.pool.add(SR_TASK, arm, fold, seed, kept, predict(model, up.images)["calc"], threshold)
        unit = Unit(fold, "easy", seed, SR_TRAINED)
        sr_classifier, _, sr_metrics = self.classifier(
            unit, cat, patch_transform=lambda p: degrade_up(p, sr_model, "sr")
        )
        self.arm_units.setdefault((SR_TASK, SR_TRAINED.name), set()).add(unit.name)
        scores = predict(sr_classifier, upscaled["sr"].images)["calc"]
        self.pool.add(SR_TASK, SR_TRAINED, fold, seed, kept, scores, sr_metrics.get("threshold", 0.5))

    # -- the film task --------------------------------------------------------------------------------------
    def film(self, fold: int, seed: int, cat, model) -> None:
        """Per test film, the real-only classifier's heatmap maximum (cached in work/fold{k}/film-seed{s}.json)."""
        cache = self.work.root / f"fold{fold}" / f"film-seed{seed}.json"
        if cache.is_file():
            saved = json.loads(cache.read_text())
        else:
            started = time.monotonic()
            saved = film_scores(cat, model)
            write_bytes_atomic(cache, json.dumps(saved).encode())
            self.work.done(f"fold{fold}/film/seed{seed}", started)
        table, hits = pd.DataFrame(saved["films"]), saved["localised"]
        fake = Patches(
            images=np.zeros((len(table), 1, 1, 1), np.float32),
            labels=table["label"].to_numpy(np.int32),
            image_id=table["image_id"].to_numpy(str),
            patient_id=table["patient_id"].to_numpy(str),
            centre_row=np.zeros(len(table), np.int64),
            centre_col=np.zeros(len(table), np.int64),
        )
        self.pool.add(FILM_TASK, REAL, fold, seed, fake, table["score"].to_numpy(), 0.5)
        self.localisation += hits


def film_scores(cat, model) -> dict:
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
                bool(any(np.hypot(top["row"] - c.row, top["col"] - c.col) <= c.radius for c in circles.itertuples()))
            )
    return {"films": rows, "localised": hits}
