"""Running the study's units, resumably: the classifiers, each fold's GAN and synthetic patches, its insertion
model and inserted patches, the baselines, the SR arms and the film task.

Everything a unit trains is kept under ``<out>/work`` (WorkFolder), so an interrupted study resumes where it
stopped; the layout, which older studies' work folders share:

    work/progress.jsonl                      one line per unit finished here: unit, seconds, finished
    work/fold{k}/gan/                        the fold's synthesis GAN run (train_gan, seed k)
    work/fold{k}/synthetic/                  its synthetic patches (manifest.csv once complete)
    work/fold{k}/gan-quality/                its evaluate-gan report on the fold's validation patients
    work/fold{k}/insert/                     the fold's insertion model (train_insert, seed k)
    work/fold{k}/inserted/{refined,rendered}/  its inserted patches, refined and not (manifest.csv each)
    work/fold{k}/sr/                         the fold's SR model (train_sr, seed k), unless the study was given one
    work/fold{k}/insert positives {f}/       low data: the insertion model fitted without the training
    work/fold{k}/inserted positives {f}/     patients whose clusters fraction f leaves out; its patches
    work/fold{k}/{task}/{arm}/seed{s}/       a classifier run (its metrics.json marks it finished)
    work/fold{k}/{task}/inserted pretraining/seed{s}/  the first stage of the pretraining arm
    work/fold{k}/{task} positives {f}/{arm}/seed{s}/   a low-data classifier run
    work/fold{k}/easy/trained on {bicubic,SR}/seed{s}/  the classifiers trained on upscaled LR patches
    work/fold{k}/film-seed{s}.json           the film task's per-film scores
    work/fold{k}/film classifier/seed{s}/    the film task's classifier when the real-only unit has no model
    work/.locks/{unit}.lock                  held (flock) by the process training that unit

Several processes on one machine can train one study's units together: a process holds a unit's lock while
it trains it (WorkFolder.claim), and another that reaches the unit skips it and everything that needs it
(Busy), then comes back for it (Study.train). The lock is an flock, released when its process ends, even
when killed, so a stopped session leaves no stale lock.

A run folder without metrics.json is an interrupted unit: a classifier's is removed and trained again, a
GAN's, insertion model's or SR model's resumes from its last checkpoint (checkpoints/last.keras). Every model's
recorded training patients are checked against the fold's test patients (plan.check_disjoint) and kept in
the audit (``audit["models"]``, one record per fold), with the identities of the GAN, insertion and SR
models; a low-data insertion model's are also checked against the patients its fraction leaves out.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd

from mammo_tf.data.samplers import Patches
from mammo_tf.data.schema import BENIGN, MALIGNANT, NORMAL
from mammo_tf.errors import MammoError
from mammo_tf.io.atomic import write_bytes_atomic
from mammo_tf.workflows.study.plan import (
    FILM_TASK,
    PROBES,
    REAL,
    SPECKS,
    SR_BASE_TASK,
    SR_TRAINED_TASK,
    TEXTURE,
    UPSCALINGS,
    Fold,
    StudyPlan,
    Unit,
    calcification_patients,
    check_disjoint,
    exploratory_task,
    fold_test_patients,
    layout_clusters,
    split_patients,
    sr_cell,
    sr_cell_task,
)
from mammo_tf.workflows.study.saved_units import UnitScores
from mammo_tf.workflows.study.summary import Pool, patch_labels, val_threshold


class Busy(Exception):
    """A unit another process holds (WorkFolder.claim): skip it, and what needs it, until it is finished."""


class WorkFolder:
    """``<out>/work``: a folder per unit, reused once finished; progress.jsonl sums the compute time."""

    def __init__(self, root: Path, log=None) -> None:
        self.root = root
        self.log = log or (lambda line: None)

    @contextmanager
    def claim(self, name: str) -> Iterator[None]:
        """Hold unit `name`'s lock (work/.locks/<name>.lock) for the block: Busy, at once, when another
        process holds it. An flock: the kernel releases it when the process ends, however it ends."""
        import fcntl

        path = self.root / ".locks" / f"{name}.lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a+") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                lock.seek(0)
                raise Busy(f"{name} (process {lock.read().strip() or '?'})") from None
            lock.truncate(0)
            lock.write(str(os.getpid()))
            lock.flush()
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def held(self, name: str) -> bool:
        """Whether another process holds unit `name` now (WorkFolder.claim)."""
        if not (self.root / ".locks" / f"{name}.lock").is_file():
            return False
        try:
            with self.claim(name):
                return False
        except Busy:
            return True

    def start(self, run: Path) -> bool:
        """True when the unit in `run` must be trained; an interrupted one (no metrics.json) starts again."""
        if (run / "metrics.json").is_file():
            return False
        if run.exists():
            import shutil

            shutil.rmtree(run)
        return True

    @staticmethod
    def needs_model(run: Path, model_name: str) -> None:
        """Remove the finished unit `run` when its model file is missing (restored from saved units, which keep
        no classifier model) so that it trains again; nothing when it is unfinished or has its model."""
        if (run / "metrics.json").is_file() and not (run / model_name).is_file():
            import shutil

            shutil.rmtree(run)

    def done(self, name: str, started: float) -> None:
        seconds = round(time.monotonic() - started, 1)
        line = json.dumps({"unit": name, "seconds": seconds, "finished": time.strftime("%Y-%m-%dT%H:%M:%S")}) + "\n"
        with open(self.root / "progress.jsonl", "a") as f:  # one write: fold workers append to the same file
            f.write(line)
        self.log(f"{name}: {seconds:.0f} s")

    def unit_seconds(self) -> dict[str, float]:
        """Seconds per finished unit name, summed over every session of this study: progress.jsonl, which
        stays on the machine that ran the unit; for a unit restored from another machine's saved units (no
        line here), its run's own training time (metrics.json "hours", recorded to 3.6 ms; 3.6 s before 2026-12-08)."""
        path = self.root / "progress.jsonl"
        seconds: dict[str, float] = {}
        if path.is_file():
            for line in filter(str.strip, path.read_text().splitlines()):
                entry = json.loads(line)
                seconds[entry["unit"]] = seconds.get(entry["unit"], 0.0) + float(entry["seconds"])
        for record in self.root.rglob("metrics.json"):
            name = record.parent.relative_to(self.root).as_posix()
            if name not in seconds and (hours := json.loads(record.read_text()).get("hours")):
                seconds[name] = round(3600 * float(hours), 1)
        return seconds

    def compute_seconds(self) -> float:
        """Seconds spent in finished training units, over every session of this study (unit_seconds)."""
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


def keep_positives(patches: Patches, patients) -> Patches:
    """`patches` less the calcification patches of patients not in `patients`; normal tissue unchanged."""
    from mammo_tf.data.tasks import subset

    keep = (patches.labels == NORMAL) | np.isin(patches.patient_id, sorted(patients))
    return subset(patches, np.flatnonzero(keep))


def write_inserted(run: Path, catalog, folder: Path, n: int, seed: int) -> dict[str, Path]:
    """``folder/refined`` and ``folder/rendered``, unless both are complete: n patches inserted by the
    insertion model of `run` into normal tissue of `catalog`'s training patients, with and without its
    refiner (the same layouts and backgrounds), as .npy with manifest.csv (background columns included, so
    train_classifier drops the real negatives they overlap)."""
    from mammo_tf.data.insertion import insert_clusters
    from mammo_tf.evaluation.insert_report import write_npy_patches
    from mammo_tf.inference.insert import load_insertion_model, refine_patches

    folders = {"refined": folder / "refined", "rendered": folder / "rendered"}
    if all((f / "manifest.csv").is_file() for f in folders.values()):
        return folders
    refiner, fit, _ = load_insertion_model(run)
    made = insert_clusters(catalog, fit, n, fit.patch_size, seed, jitter=fit.jitter)
    images = {"refined": refine_patches(refiner, made.images, made.masks), "rendered": made.images[..., 0]}
    for name, out in folders.items():
        write_npy_patches(out, images[name], made.labels, made)
    return folders


class Units:
    """The units of one study: trains what is not finished in the work folder, adds every arm's test scores
    to the pool, and records what each model saw in the audit.

    training_pass: train only, beside other processes: a unit another process holds is skipped with what
    needs it (its name kept in `skipped`), and the baselines, which train nothing, are left to the report's
    pass. Without it, such a unit is an error: the report needs every unit.
    """

    def __init__(
        self, catalog, plan: StudyPlan, work: WorkFolder, sr=None, verbose: int | str = 0, training_pass: bool = False
    ) -> None:
        self.catalog, self.plan, self.config, self.work, self.sr = catalog, plan, plan.config, work, sr
        self.verbose, self.training_pass = verbose, training_pass
        self.skipped: list[str] = []  # training pass: the units other processes held, and what needed them
        self.pool = Pool()
        # models: per fold, the patients every model trained on and the GAN / SR model ids (model_record)
        self.audit: dict = {"folds": [], "gan_patients": [], "sr_patients_excluded": [], "models": []}
        self.arm_units: dict[tuple[str, str], set[str]] = {}  # (task, arm name) -> the classifier units it trained
        self.localisation: list[bool] = []  # film task: top region inside an annotated circle, per film and seed
        self._patches: dict[tuple[str, int], tuple[Patches, Patches]] = {}
        self._patches_of = None  # the fold catalog those patches come from
        self._clusters, self._clusters_of = None, None  # layout_clusters of one fold catalog
        self._upscaled: dict[str, Patches] = {}  # SR-arm test patches, bicubic- and SR-upscaled
        self._upscaled_fold: int | None = None

    # -- one fold -------------------------------------------------------------------------------------------
    def run_fold(self, fold: Fold) -> None:
        """Every unit of one fold: GAN and insertion model, then per patch task the baselines and the classifier
        arms, then the low-data curve's (an insertion model per fraction), then films."""
        from mammo_tf.config import resolve_classifier_config
        from mammo_tf.training.classifier_trainer import task_patches

        plan, config = self.plan, self.config
        cat = fold.catalog(self.catalog, config.val_fraction)
        self.audit["folds"].append(sorted(fold.test_patients))
        self.model_record(fold.index)["test_patients"] = sorted(fold.test_patients)
        sources: dict[str, Path] = {}  # Arm.source -> patch folder; a source another process trains is missing
        if plan.uses_synthetic:
            real_train = self.real_patches(cat, "easy", 0)[0]
            with self.unless_busy():
                sources["gan"] = self.synthetic(fold.index, cat, plan.synthetic_count(len(real_train.labels)))
        if plan.uses_insertion:
            with self.unless_busy():
                sources.update(self.inserted(fold, cat))
        tests = {}
        for task in plan.patch_tasks:
            base = resolve_classifier_config(config.classifier_preset, task=task)
            tests[task] = test = task_patches(cat, base, "test", seed=fold.patch_seed("test"))
            if not self.training_pass:
                train = task_patches(cat, base, "train", seed=fold.patch_seed("train"))
                val = task_patches(cat, base, "val", seed=fold.patch_seed("val"))
                self.baselines(task, fold.index, cat, train, val, test)
            for unit in plan.units(fold.index, task):
                with self.unless_busy():
                    self.classifier_arm(unit, cat, test, sources)
        for fraction in plan.low_data_fractions:
            sources = {}
            with self.unless_busy():
                sources = self.inserted(fold, cat, fraction)
            for task in plan.patch_tasks:
                for unit in plan.units(fold.index, task, fraction):
                    with self.unless_busy():
                        self.classifier_arm(unit, cat, tests[task], sources)
        if plan.film:
            for unit in plan.film_units(fold.index):
                with self.unless_busy():
                    self.film(fold.index, unit, cat)

    @contextmanager
    def unless_busy(self) -> Iterator[None]:
        """Run the block; when it meets a unit another process holds (Busy), skip the rest of the block in a
        training pass (the unit named in `skipped`), and stop with a MammoError otherwise."""
        try:
            yield
        except Busy as busy:
            if not self.training_pass:
                raise MammoError(
                    f"{self.work.root}: unit {busy} is being trained by another process; "
                    "write the report once it has finished"
                ) from None
            self.skipped.append(str(busy))

    # -- records --------------------------------------------------------------------------------------------
    def model_record(self, fold: int) -> dict:
        """audit["models"]'s record of one fold, made on first use: its test patients; the classifiers' train
        and validation patients, one entry per distinct pair with the units that share it; the GAN's, the
        insertion model's and the SR model's id and training patients (None when the fold has none); low_data:
        per fraction below 1, its positive patients, those it leaves out and its insertion model."""
        for record in self.audit["models"]:
            if record["fold"] == fold:
                return record
        record = {
            "fold": fold, "test_patients": [], "classifiers": [], "gan": None, "insert": None, "sr": None,
            "low_data": [],
        }  # fmt: skip
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
        """task -> arm name -> {"units", "seconds"}: the classifier units the arm trained (the pretraining arm:
        both stages) and their seconds over every session (progress.jsonl). Arms that train nothing
        (baselines, the real-only classifier scored on upscaled patches) have no entry; the fold GANs and
        insertion models the arms share are in audit["models"]."""
        seconds = self.work.unit_seconds()
        out: dict[str, dict[str, dict]] = {}
        for (task, arm), names in self.arm_units.items():
            total = sum(seconds.get(name, 0.0) for name in names)
            out.setdefault(task, {})[arm] = {"units": len(names), "seconds": round(total, 1)}
        return out

    # -- classifiers ----------------------------------------------------------------------------------------
    def trained(
        self,
        unit: Unit,
        catalog,
        steps: int | None = None,
        model_needed: bool = False,
        name: str | None = None,
        **kwargs,
    ) -> Path:
        """The classifier run ``work/<unit.name>``, trained unless finished (`steps`: the config's budget when
        None; below fraction 1, real positives of the fraction's patients only); its train and validation
        patients go into the fold's model record, checked disjoint from the test patients. model_needed: train
        it again when it was restored from saved units, which keep no model (WorkFolder.needs_model). name:
        another folder under work/ for the same unit (the film task's twin)."""
        from mammo_tf.training.classifier_trainer import MODEL_NAME, train_classifier

        name, task, seed = name or unit.name, unit.task, unit.seed
        run = self.work.root / name
        with self.work.claim(name):
            if model_needed:
                self.work.needs_model(run, MODEL_NAME)
            if self.work.start(run):
                steps = steps or self.config.classifier_steps
                positives = None if unit.fraction == 1 else self.positive_patients(unit.fold, catalog, unit.fraction)
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
                    precision=self.config.precision,
                    verbose=self.verbose,
                    real_patches=self.real_patches(catalog, task, seed, positives),
                    **kwargs,
                )
                self.work.done(name, started)
        record = json.loads((run / "config.json").read_text())
        check_disjoint(record["train_patients"], fold_test_patients(catalog), f"the classifier of {name}")
        # validation patients: the fold's val split, on which the threshold and checkpoint were chosen
        self.record_classifier(unit, sorted(record["train_patients"]), sorted(split_patients(catalog, "val")))
        return run

    def classifier(self, unit: Unit, catalog, steps: int | None = None, **kwargs) -> UnitScores:
        """The classifier of `unit`, trained unless finished (Units.trained), as its scores (saved_units)."""
        return UnitScores(self.trained(unit, catalog, steps, **kwargs))

    def classifier_arm(self, unit: Unit, cat, test: Patches, sources: dict[str, Path]) -> None:
        """One classifier unit scored on the fold's test patches; the full-data real-only one also on the side
        tasks. sources: Arm.source -> the fold's patch folder (at the unit's fraction); Busy when the unit's
        source is missing (another process is training its model)."""
        arm, fold, seed, task = unit.arm, unit.fold, unit.seed, unit.report_task
        if arm.source is not None and arm.source not in sources:
            raise Busy(f"{unit.name} (its {arm.source} patches' model is being trained by another process)")
        if arm.kind == "insert_pretrain":
            kwargs = self.pretrained(unit, cat, sources)
        else:
            kwargs = arm.train_kwargs(sources.get(arm.source))
        classifier = self.classifier(unit, cat, **kwargs)
        self.arm_units.setdefault((task, arm.name), set()).add(unit.name)
        probs = classifier.scores("test", test)
        self.pool.add(task, arm, fold, seed, test, probs["calc"], classifier.metrics.get("threshold", 0.5))
        if arm == REAL and unit.fraction == 1:
            self.exploratory(unit.task, fold, seed, test, probs["malignant"])
            if unit.task == SR_BASE_TASK and (self.sr is not None or self.plan.uses_sr):
                self.sr_arms(fold, seed, cat, test, classifier)
        classifier.save()

    def pretrained(self, unit: Unit, cat, sources: dict[str, Path]) -> dict:
        """An insert_pretrain unit's first stage (inserted only, half the budget), trained unless finished; the
        train_classifier arguments of its second: the other half on real patches, from the first's weights."""
        from mammo_tf.training.classifier_trainer import MODEL_NAME

        stage, first, second = self.plan.pretraining(unit)
        unfinished = not (self.work.root / unit.name / "metrics.json").is_file()  # needs the first stage's model
        run = self.trained(stage, cat, first, unfinished, **stage.arm.train_kwargs(sources[stage.arm.source]))
        self.arm_units.setdefault((unit.report_task, unit.arm.name), set()).add(stage.name)
        return {"steps": second, "init_from": run / MODEL_NAME}

    def real_patches(self, catalog, task: str, seed: int, positives: frozenset[str] | None = None):
        """The real (train, val) patches of one fold, task and seed, drawn once and shared by every arm; with
        `positives`, the training calcification patches of those patients only (keep_positives)."""
        from mammo_tf.config import resolve_classifier_config
        from mammo_tf.training.classifier_trainer import real_patches_for

        if catalog is not self._patches_of:  # one fold at a time
            self._patches, self._patches_of = {}, catalog
        if (task, seed) not in self._patches:
            config = resolve_classifier_config(self.config.classifier_preset, task=task, seed=seed)
            self._patches[task, seed] = real_patches_for(catalog, config)
        train, val = self._patches[task, seed]
        return (train, val) if positives is None else (keep_positives(train, positives), val)

    def exploratory(self, task: str, fold: int, seed: int, test: Patches, malignant: np.ndarray) -> None:
        """Benign vs malignant on the calcification test patches: exploratory (no signal at MIAS size)."""
        from mammo_tf.data.tasks import subset

        calc = np.flatnonzero(test.labels != NORMAL)
        sub = subset(test, calc)
        sub = replace(sub, labels=(sub.labels == 2).astype(np.int32))  # 1 = malignant ("positive")
        self.pool.add(exploratory_task(task), REAL, fold, seed, sub, malignant[calc], 0.5)

    # -- the fold's generative models and their patches ----------------------------------------------------
    def generative(self, fold: int, name: str, what: str, catalog, train) -> tuple[Path, dict]:
        """The fold's generative model run ``work/fold{k}/{name}``, trained by `train(run, resume)` unless
        finished: (run, its config.json record), its training patients checked disjoint from the fold's test
        patients. These units take hours, so an interrupted one resumes from its last checkpoint. The caller
        holds the unit's claim (WorkFolder.claim), over what it writes with the model too."""
        from mammo_tf.training.runs import CHECKPOINT

        run = self.work.root / f"fold{fold}" / name
        resume = (run / CHECKPOINT).is_file() and not (run / "metrics.json").is_file()
        if resume or self.work.start(run):
            started = time.monotonic()
            train(run, resume)
            self.work.done(f"fold{fold}/{name}", started)
        record = json.loads((run / "config.json").read_text())
        check_disjoint(record["train_patients"], fold_test_patients(catalog), f"fold {fold}: the {what}")
        return run, record

    def model_entry(self, run: Path, kind: str, record: dict) -> dict:
        """A generative model's audit record: its run, id, preset, steps, seconds (the run's own training time
        over all its sessions, from its metrics.json, whichever process trained it; when that rounds to 0,
        this study's progress.jsonl) and training patients."""
        from mammo_tf.inference.registry import model_id, resolve_model_path

        return {
            "run": run.relative_to(self.work.root.parent).as_posix(),
            "model": model_id(resolve_model_path(run, kind)),
            "preset": record["preset"],
            "steps": record["steps"],
            "seconds": round(3600 * json.loads((run / "metrics.json").read_text())["hours"], 1)
            or self.work.unit_seconds().get(run.relative_to(self.work.root).as_posix()),
            "train_patients": sorted(record["train_patients"]),
        }

    def synthetic(self, fold: int, catalog, n: int) -> Path:
        """The fold's synthetic patch folder, from a GAN trained on the fold's training patients only."""
        from mammo_tf.inference.synth import synthesize
        from mammo_tf.training.gan_trainer import train_gan

        def train(run: Path, resume: bool) -> None:
            train_gan(
                None,
                run,
                resume=resume,
                catalog=catalog,
                preset=self.config.gan_preset,
                steps=self.config.gan_steps,
                patch_size=self.patch_size,
                seed=fold,
                precision=self.config.precision,
                verbose=self.verbose,
            )

        folder = self.work.root / f"fold{fold}" / "synthetic"
        with self.work.claim(f"fold{fold}/gan"):  # the GAN, its quality record and its patches
            run, record = self.generative(fold, "gan", "GAN", catalog, train)
            quality = self.gan_quality(fold, run, catalog)
            if not (folder / "manifest.csv").is_file():
                synthesize(run, n, "all", folder, seed=fold, fmt="npy", overwrite=True, progress=False)
        self.audit["gan_patients"].append(sorted(record["train_patients"]))
        self.model_record(fold)["gan"] = {**self.model_entry(run, "synthesis", record), "quality": quality}
        return folder

    def gan_quality(self, fold: int, run: Path, catalog) -> dict:
        """How good the fold's GAN is: KID of its patches against the fold's validation patches beside the
        real-vs-real floor (training patches against the same), overall and per class, on a feature network
        trained on the fold's training patches (evaluate-gan's protocol; its whole report is kept in
        ``work/fold{k}/gan-quality/``, and read back once written)."""
        import shutil

        from mammo_tf.evaluation.gan_report import evaluate_gan

        out = self.work.root / f"fold{fold}" / "gan-quality"
        if (out / "metrics.json").is_file():
            metrics = json.loads((out / "metrics.json").read_text())
        else:
            shutil.rmtree(out, ignore_errors=True)  # an interrupted evaluation
            steps = self.config.feature_steps
            metrics = evaluate_gan(run, catalog, out, seed=fold, heldout_splits=("val",), feature_steps=steps)
        groups = {
            name: {"kid": g["synthetic"]["kid"], "kid_floor": g["floor"]["kid"]}
            for name, g in metrics["groups"].items()
        }
        return {
            "report": out.relative_to(self.work.root.parent).as_posix(),
            "heldout": "the fold's validation patients",
            "feature_network": metrics["feature_network"],
            "groups": groups,
        }

    @property
    def patch_size(self) -> int:
        """The classifier's patch size, at which the GANs and insertion models are trained."""
        from mammo_tf.config import resolve_classifier_config

        return resolve_classifier_config(self.config.classifier_preset).patch_size

    def inserted(self, fold: Fold, catalog, fraction: float = 1.0) -> dict[str, Path]:
        """The fold's inserted patch folders {"refined", "rendered"} at a positive fraction: an insertion model
        (layouts, point spread, refiner) trained on the fold's training patients only, below fraction 1 without
        the training patients whose clusters the fraction leaves out (the classifiers' positives are the same),
        renders clusters into their normal tissue; the same patches are written refined and not."""
        from mammo_tf.training.insert_trainer import train_insert

        k, suffix = fold.index, "" if fraction == 1 else f" positives {fraction:g}"
        positives, left_out, fitted_on = self.low_data_catalog(fold, catalog, fraction)
        real = self.real_patches(catalog, "easy", 0, positives)[0]
        n = self.plan.inserted_count(int(np.sum(real.labels == BENIGN)), int(np.sum(real.labels == MALIGNANT)))

        def train(run: Path, resume: bool) -> None:
            train_insert(
                None,
                run,
                resume=resume,
                catalog=fitted_on,
                preset=self.config.insert_preset,
                patch_size=self.patch_size,
                seed=k,
                precision=self.config.precision,
                verbose=self.verbose,
            )

        what = "insertion model" + ("" if fraction == 1 else f" at positives {fraction:g}")
        with self.work.claim(f"fold{k}/insert{suffix}"):  # the model and its patches
            run, record = self.generative(k, f"insert{suffix}", what, catalog, train)
            check_disjoint(record["train_patients"], left_out, f"fold {k}: the {what} (of its left-out positives)")
            folders = write_inserted(run, fitted_on, self.work.root / f"fold{k}" / f"inserted{suffix}", n, seed=k)
        manifest = pd.read_csv(folders["refined"] / "manifest.csv", dtype={"background_patient": str})
        held_out = fold_test_patients(catalog) | left_out
        check_disjoint(manifest["background_patient"], held_out, f"fold {k}: the patches of the {what}")
        entry = {
            **self.model_entry(run, "insert", record),
            "layout_patients": sorted(record["layout_patients"]),
            "inserted": len(manifest),
            "background_patients": sorted(set(manifest["background_patient"])),
        }
        model = self.model_record(k)
        if positives is None:
            model["insert"] = entry
        else:
            model["low_data"].append(
                {"fraction": fraction, "positive_patients": sorted(positives), "left_out_patients": sorted(left_out),
                 "insert": entry}
            )  # fmt: skip
        return folders

    def positive_patients(self, fold: int, catalog, fraction: float) -> frozenset[str]:
        """Fold.positive_patients on the fold catalog `catalog`, its layout_clusters read once per fold."""
        if catalog is not self._clusters_of:  # one fold at a time
            self._clusters, self._clusters_of = layout_clusters(catalog), catalog
        return self.plan.fold(fold).positive_patients(self._clusters, fraction)

    def low_data_catalog(self, fold: Fold, catalog, fraction: float) -> tuple[frozenset[str] | None, set[str], object]:
        """(positive patients, the training patients with calcifications they leave out, the fold catalog
        without the latter: what an insertion model at `fraction` is fitted on); at 1: (None, {}, catalog)."""
        if fraction == 1:
            return None, set(), catalog
        positives = self.positive_patients(fold.index, catalog, fraction)
        left_out = set(calcification_patients(catalog, "train")) - positives
        images = catalog.images
        return positives, left_out, catalog.subset(images.loc[~images["patient_id"].isin(sorted(left_out)), "image_id"])

    # -- non-CNN arms ---------------------------------------------------------------------------------------
    def baselines(self, task: str, fold: int, cat, train: Patches, val: Patches, test: Patches) -> None:
        """Texture logistic regression, intensity and position probes, and the speck detector's own score.

        Computed once (as seed 0): their patches are the same for every seed and their fits deterministic,
        so further seeds would repeat the same numbers."""
        from mammo_tf.evaluation.baselines import fit_logistic, probe_features, speck_scores, texture_features

        y_train, y_val = patch_labels(train), patch_labels(val)
        features = {TEXTURE: tuple(texture_features(p.images) for p in (train, val, test))}
        probes = [probe_features(p, cat) for p in (train, val, test)]
        for name, arm in PROBES.items():
            features[arm] = tuple(p[name] for p in probes)
        for arm, (f_train, f_val, f_test) in features.items():
            model = fit_logistic(f_train, y_train, 0)
            threshold = val_threshold(y_val, model.predict_proba(f_val)[:, 1])
            self.pool.add(task, arm, fold, 0, test, model.predict_proba(f_test)[:, 1], threshold)
        specks_val = speck_scores(val.images)
        self.pool.add(task, SPECKS, fold, 0, test, speck_scores(test.images), val_threshold(y_val, specks_val))

    # -- SR utility (easy task) -----------------------------------------------------------------------------
    def fold_sr(self, fold: int, catalog) -> tuple[object, set[str]]:
        """(SR model, the patients it trained on) of one fold: the study's given model, else the fold's own,
        trained on the fold's training patients unless finished (work/fold{k}/sr) and recorded in the audit
        with its validation gain over bicubic."""
        from mammo_tf.inference.upscale import load_sr_model
        from mammo_tf.workflows.training import train_sr

        if self.sr is not None:
            sr_model, seen = self.sr
            self.model_record(fold)["sr"] = {"model": sr_model.model_id, "train_patients": sorted(seen)}
            return self.sr
        config = self.config

        def train(run: Path, resume: bool) -> None:
            train_sr(
                None,
                run,
                resume=resume,
                catalog=catalog,
                preset=config.sr_preset,
                pretrain_steps=config.sr_pretrain_steps,
                gan_steps=config.sr_gan_steps,
                seed=fold,
                precision=config.precision,
                verbose=self.verbose,
            )

        with self.work.claim(f"fold{fold}/sr"):
            run, record = self.generative(fold, "sr", "SR model", catalog, train)
        entry = self.model_entry(run, "sr", {**record, "steps": record["pretrain_steps"] + record["gan_steps"]})
        metrics = json.loads((run / "metrics.json").read_text())
        entry.update(pretrain_steps=record["pretrain_steps"], gan_steps=record["gan_steps"])
        entry["val_gain_db"] = metrics.get("val_gain_db")  # on the fold's validation films
        self.model_record(fold)["sr"] = entry
        return load_sr_model(run, command="evaluate-aug"), set(record["train_patients"])

    def sr_arms(self, fold: int, seed: int, cat, test: Patches, real: UnitScores) -> None:
        """The SR utility 3x3 on the test patches of patients the SR model never saw (every test patient with
        a per-fold SR model): the real-only classifier (`real`, trained on HR; its caller saves its scores) and
        classifiers trained on bicubic- and on SR-upscaled LR, each tested on HR, bicubic- and SR-upscaled LR
        (plan.sr_cell)."""
        from mammo_tf.data.tasks import subset

        sr_model, seen = self.fold_sr(fold, cat)
        keep = np.array([p not in seen for p in test.patient_id])
        self.audit["sr_patients_excluded"].append(sorted(set(test.patient_id[~keep].tolist())))
        if not keep.any():
            return
        kept = subset(test, np.flatnonzero(keep))
        check_disjoint(seen, kept.patient_id, f"fold {fold}: the SR model of the SR utility arms")
        if self._upscaled_fold != fold:  # the same test patches for every seed: upscale them once per fold
            self._upscaled = {"HR": kept, **{m: degrade_up(kept, sr_model, m.lower()) for m in UPSCALINGS[1:]}}
            self._upscaled_fold = fold
        classifiers = {"HR": real}
        for trained in UPSCALINGS[1:]:
            arm = sr_cell(trained, trained)
            unit = Unit(fold, SR_BASE_TASK, seed, arm)
            transform = partial(degrade_up, sr_model=sr_model, method=trained.lower())
            classifiers[trained] = self.classifier(unit, cat, patch_transform=transform)
            self.arm_units.setdefault((SR_TRAINED_TASK, arm.name), set()).add(unit.name)
        for trained, classifier in classifiers.items():
            threshold = classifier.metrics.get("threshold", 0.5)
            for tested, patches in self._upscaled.items():
                scores = classifier.scores(f"tested on {tested}", patches)["calc"]
                self.pool.add(sr_cell_task(trained), sr_cell(trained, tested), fold, seed, kept, scores, threshold)
            if trained != "HR":
                classifier.save()

    # -- the film task --------------------------------------------------------------------------------------
    def film_cache(self, fold: int, seed: int) -> Path:
        return self.work.root / f"fold{fold}" / f"film-seed{seed}.json"  # plan.WorkUnit's done_file

    def film(self, fold: int, unit: Unit, cat) -> None:
        """Per test film, the real-only classifier's maximum heatmap logit (cached in work/fold{k}/film-seed{s}.json);
        `unit`: that classifier. When the cache is missing or stale and the unit was restored from saved units,
        which keep no model, a twin (the same recipe and seed) is trained in work/fold{k}/film classifier/seed{s}
        and scores the films: the unit's own patch scores, the reference of the arms trained beside it, stay.
        (A twin trained on another CPU is not the same model: MIAS folds 0-1's six differed from their units by
        -0.026 to +0.005 in patch AUC.)"""
        from mammo_tf.training.classifier_trainer import MODEL_NAME

        seed = unit.seed
        cache = self.film_cache(fold, seed)
        with self.work.claim(f"fold{fold}/film/seed{seed}"):
            saved = cached_film_scores(cache)
            run = self.work.root / unit.name
            restored = (run / "metrics.json").is_file() and not (run / MODEL_NAME).is_file()
            twin = f"fold{fold}/film classifier/seed{seed}" if saved is None and restored else None
            classifier = self.classifier(unit, cat, name=twin)
            if saved is None:
                started = time.monotonic()
                saved = film_scores(cat, classifier.model())
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
        self.pool.add(FILM_TASK, REAL, fold, seed, fake, table["score"].to_numpy(), 0.0)  # logit 0: probability 0.5
        self.localisation += hits


# 3: scores are the films' maximum logits; version 1's float32 probabilities tied at 1.0, version 2's float64
# ones at a logit above about 37 (both rescored)
FILM_SCORES_VERSION = 3


def cached_film_scores(path: Path) -> dict | None:
    """A film unit's saved scores (film_scores' dict), or None when missing or of an older FILM_SCORES_VERSION."""
    if not path.is_file():
        return None
    saved = json.loads(path.read_text())
    return saved if saved.get("version") == FILM_SCORES_VERSION else None


def film_scores(cat, model) -> dict:
    """Per test film: patient, label (has a calcification finding) and score (its heatmap's maximum logit, float64);
    localisation hits (the top region: the highest logit); FILM_SCORES_VERSION."""
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
                "score": float(result.logit),
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
    return {"version": FILM_SCORES_VERSION, "films": rows, "localised": hits}
