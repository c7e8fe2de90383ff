"""evaluate-aug: does synthetic data, or SR, help recognise calcifications? Measured by patient-level k-fold.

For each fold (StratifiedGroupKFold-style patient split, splits.patient_kfold) the fold's patients are the
test set, 20 % of the others (by patient) the validation set for thresholds and checkpoint choice, the rest
the training set. Inside each fold:

1. the synthesis GAN and the insertion model (layouts, point spread and refiner) are trained on that fold's
   training patients only (the patient ids each saw are recorded and checked disjoint from the test
   patients), then write synthetic patches and inserted patches (the same ones refined and rendered);
2. for every task (easy, matched) and seed, the same classifier is trained with the same step budget in
   every arm: real only; the GAN family (StudyConfig.arms "gan"): real + synthetic at each ratio
   (synthetic:real per class), synthetic only; the insertion family ("insert"): real + inserted clusters,
   refined, at each insert ratio (inserted:real per calcification class), the same rendered without the
   refiner at 1, inserted positives only (with the real negatives), and pretraining on the latter for half
   the steps then fine-tuning on real for the other half;
3. non-CNN arms on the same test patches: the texture logistic regression, the speck detector's own score,
   the intensity-only and position-only probes;
4. SR utility (easy task, StudyConfig.arms "sr"): an SR model trained per fold on its training patients
   (sr_preset; or one given model, --sr-model, whose training patients are then left out of these arms),
   and a 3x3 of classifiers trained on HR (the real-only one), bicubic- and SR-upscaled LR, each tested on
   the three kinds of the same test patches;
5. the film task: the real-only classifier's maximum heatmap logit per test film (films with calcifications
   against films without), and the localisation rate (the film's top region inside an annotated circle);
6. the low-data curve (StudyConfig.positive_fractions): per fraction below 1, an insertion model fitted
   without the training patients the fraction leaves out, and per task real only against real + inserted
   x1, both with the real positives of the fraction's patients only (nested subsets, negatives unchanged).

Numbers: AUC, sensitivity at a fixed specificity (0.90), and sensitivity/specificity at the threshold chosen
on the validation patients, pooled over folds per seed, averaged over seeds; the mean of the per-fold AUCs;
patient-level bootstrap 95 % CIs; paired differences against the real-only arm on the same bootstrap draws
(stats.paired_bootstrap), with a verdict per arm; DeLong's test against the reference per seed, its median
p Holm-adjusted across a task's arms under test; the low-data curve (metrics.json "low_data"). metrics.json
records per fold the patients of every model and the GAN, insertion and SR model ids, and per arm the
compute of its units; predictions.csv.gz holds every prediction the numbers come from.

Everything a unit trains is kept under ``<out>/work`` so an interrupted study resumes where it stopped;
each finished unit appends a line (name, seconds) to ``<out>/work/progress.jsonl``, whose sum is the
study's compute time across resumed sessions. Training passes (train_only, only_fold) in several processes
share the units: each trains the units no other holds, and waits for the others' before it stops.

Budget of the standard preset: 5 folds x 3 seeds, classifiers of 500 steps of 32 patches in every arm
(the shipped classifier's validation AUC on MIAS was 0.979 at 500 steps and 0.980 at 3000), a quick-preset
synthesis GAN and a standard-preset insertion model per fold; no low-data curve unless asked for.

The package: plan.py (folds, arms, units, the leakage check), units.py (running the units, resumably),
summary.py (pooling, statistics, verdicts), report.py (report.md and the figures). This module holds the
entry points: evaluate_aug (the CLI's) and Study (one study run).
"""

from __future__ import annotations

import time
from pathlib import Path

from mammo_tf.config import StudyConfig, resolve_study_config
from mammo_tf.workflows.study.plan import Arm, StudyPlan, check_disjoint, fold_catalog, plan_study
from mammo_tf.workflows.study.report import render_markdown, write_study_report
from mammo_tf.workflows.study.summary import summarise
from mammo_tf.workflows.study.units import Units, WorkFolder, load_sr_model_and_patients

__all__ = [
    "Arm",
    "Study",
    "StudyPlan",
    "check_disjoint",
    "evaluate_aug",
    "fold_catalog",
    "load_sr_model_and_patients",
    "plan_study",
    "render_markdown",
    "study_status",
    "write_study_report",
]


class Study:
    """One study run: folds x tasks x seeds x arms, with resumable work folders under ``<out>/work``."""

    def __init__(self, catalog, config: StudyConfig, out: Path, sr_spec=None, verbose: int | str = 0, log=None) -> None:
        """MammoError, before anything is written, when the catalog cannot give every fold an insertion model
        the study asks for (StudyPlan.check_insertion)."""
        self.catalog, self.config, self.out, self.sr_spec, self.verbose = catalog, config, out, sr_spec, verbose
        self.plan = plan_study(catalog, config)
        self.plan.check_insertion(catalog)
        self.work = WorkFolder(out / "work", log)
        self.pool = None  # the Pool of every prediction, once run() has summarised

    def run(self, only_fold: int | None = None, train_only: bool = False) -> dict | None:
        """Every fold, then the summary; with train_only or only_fold, training passes over every fold (or
        that one) until their units are finished, by this process or others (Study.train): None, no report."""
        sr = load_sr_model_and_patients(self.sr_spec) if self.sr_spec is not None else None
        if train_only or only_fold is not None:
            self.train(sr, only_fold)
            return None
        units = Units(self.catalog, self.plan, self.work, sr, self.verbose)
        for fold in self.plan.folds:
            units.run_fold(fold)
        self.pool = units.pool
        metrics = summarise(units.pool, self.config, self.catalog, units.audit, units.localisation, units.compute())
        metrics["sr_model"] = None if sr is None else str(self.sr_spec)  # None: the SR arms' models are per fold
        return metrics

    def training_pass(self, sr=None, only_fold: int | None = None) -> list[str]:
        """One pass over every fold (or only_fold) that trains the units no other process holds; returns what
        it skipped because another process held it (empty: every unit is finished)."""
        folds = self.plan.folds if only_fold is None else (self.plan.fold(only_fold),)
        units = Units(self.catalog, self.plan, self.work, sr, self.verbose, training_pass=True)
        for fold in folds:
            units.run_fold(fold)
        return units.skipped

    def train(self, sr=None, only_fold: int | None = None, wait_seconds: float = 300.0) -> None:
        """Training passes until one skips nothing: units held by other processes are waited for, so that
        every process of a shared study stops only once all of it is trained."""
        log = self.work.log
        while skipped := self.training_pass(sr, only_fold):
            log(f"{len(skipped)} units held by other processes, first {skipped[0]}; next pass in {wait_seconds:.0f} s")
            time.sleep(wait_seconds)

    def status(self) -> list[dict]:
        """Per fold, the units finished of those planned (plan.work_units), by kind ("models", "classifiers",
        "films": "finished/planned"), and "training now": the units other processes hold."""
        seen = load_sr_model_and_patients(self.sr_spec)[1] if self.sr_spec is not None else None
        rows = []
        for fold in self.plan.folds:
            sr_arms = seen is None or not fold.test_patients <= seen
            units = self.plan.work_units(fold.index, seen is not None, sr_arms)
            row: dict = {"fold": fold.index}
            for kind in ("model", "classifier", "film"):
                planned = [u for u in units if u.kind == kind]
                if planned:
                    done = sum((self.work.root / u.done_file).is_file() for u in planned)
                    row[f"{kind}s"] = f"{done}/{len(planned)}"
            row["training now"] = ", ".join(u.name for u in units if self.work.held(u.name)) or "-"
            rows.append(row)
        return rows

    def compute_seconds(self) -> float:
        """Seconds spent in finished training units, over every session of this study (progress.jsonl)."""
        return self.work.compute_seconds()


def study_status(
    data=None, *, out: str | Path, preset: str = "standard", sr_model=None, **overrides
) -> tuple[list[dict], float]:
    """How far the study in `out` is (Study.status), with the same data and options as its evaluate_aug
    call: per fold, units finished of those planned and the units being trained now; and its compute so far
    in seconds (Study.compute_seconds). Reads the work folder only; trains nothing."""
    from mammo_tf.data.catalog import load_catalog
    from mammo_tf.errors import MammoError

    if not (Path(out) / "work").is_dir():
        raise MammoError(f"{out}: no study here (no work/ folder): evaluate-aug --out {out} starts one")
    study = Study(load_catalog(data), resolve_study_config(preset, **overrides), Path(out), sr_model)
    return study.status(), study.compute_seconds()


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
    train_only: bool = False,
    **overrides,
) -> dict | None:
    """Run (or resume) the study and write report.md, metrics.json, predictions.csv.gz, roc.png, forest.png
    (and low_data.png with positive fractions) into `out`.

    train_only: train the units and stop (no report, None returned). Several processes may do so at once
    in the same `out`, on one machine: they share the units (Study.train). A later call without it finds
    them done, fills in the rest and writes the report. only_fold: the same, for that fold's units only.
    overrides: other StudyConfig fields (arms, positive_fractions, insert_ratios, ...); None keeps the preset's.
    """
    from mammo_tf.data.catalog import load_catalog

    started = time.monotonic()
    config = resolve_study_config(preset, folds=folds, seeds=seeds, tasks=tuple(tasks) if tasks else None, **overrides)
    catalog = load_catalog(data)
    out = Path(out)
    study = Study(catalog, config, out, sr_model, verbose, log)
    out.mkdir(parents=True, exist_ok=True)
    metrics = study.run(only_fold, train_only)
    if metrics is None:
        return None
    metrics["wall_seconds"] = round(time.monotonic() - started, 1)  # this invocation only
    metrics["training_seconds_all_sessions"] = round(study.compute_seconds(), 1)
    write_study_report(out, metrics, study.pool.table())
    return metrics
