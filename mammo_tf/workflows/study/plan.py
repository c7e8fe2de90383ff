"""The study's plan, derived from a StudyConfig and a catalog: folds, arms, tasks and units; the leakage check.

- Folds: patient-level k-fold (splits.patient_kfold, seed 0); inside a fold, its patients are the test set,
  a patient share of the others (val_fraction, seeded by the fold index) the validation set, the rest the
  training set (fold_catalog).
- Arms: small frozen dataclasses (Arm). ``kind`` says what an arm is (the trained arms: "real", the GAN
  family "mixed" and "synthetic_only", the insertion family "insert_mixed", "insert_rendered",
  "insert_only" and "insert_pretrain"; the baselines and probes; the SR arms), which decides whether it is
  the reference of its task, an arm under test (whose paired difference gets a verdict) or a baseline, and
  which patch folder it trains on (``source``). ``name`` is what the report shows; ``folder`` is the name of
  its work folder (``<out>/work/fold{k}/{task}/{folder}/seed{s}``).
- Low data (StudyConfig.positive_fractions): for a fraction f < 1 the real positives are the clusters of f
  of the fold's training patients with calcifications (Fold.positive_patients: a prefix of one seeded order
  per fold, so the subsets are nested, never smaller than a layout fit needs), negatives unchanged; real
  only against real + inserted x1, each (task, f) a task of its own in the report (low_data_task), its
  units in ``fold{k}/{task} positives {f}``.
- Units: fold x task (x fraction) x seed x trained arm, in the order the study runs them.

Nothing here trains; only layout_clusters reads images (the specks in the training films). The runner is
units.py, the numbers summary.py.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from mammo_tf.config import StudyConfig, resolve_classifier_config
from mammo_tf.config.study import LOW_DATA_RATIO
from mammo_tf.errors import MammoError

ARM_KINDS = (
    "real",  # the real-only classifier: the reference of the patch tasks, the film task and the exploratory one
    "mixed",  # real + whole-patch GAN patches at a ratio (synthetic:real per class)
    "synthetic_only",  # GAN patches only (train on synthetic, test on real)
    "insert_mixed",  # real + inserted clusters, refined, at a ratio (inserted:real per calcification class)
    "insert_rendered",  # the same rendered without the refiner: is the refiner worth it?
    "insert_only",  # real normals + inserted positives, no real positive (train on synthetic, test on real)
    "insert_pretrain",  # insert_only for the first half of the step budget, then real for the second half
    "baseline",  # the texture logistic regression, the speck detector
    "probe",  # intensity-only and position-only logistic regressions
    "hr",  # SR utility: the real-only (HR-trained) classifier on HR test patches (the upper bound)
    "bicubic",  # ... on bicubic-upscaled LR: the reference of the HR-trained classifier's SR question
    "sr",  # ... on SR-upscaled LR
    "bicubic_trained",  # a classifier trained and tested on bicubic-upscaled LR: the reference of the other
    "sr_trained",  # a classifier trained and tested on SR-upscaled LR
    "sr_cross",  # the other cells of the 3x3: trained on bicubic or SR, tested on another kind of patch
)
TESTED_KINDS = frozenset(  # the arms the study asks about
    {"mixed", "synthetic_only", "insert_mixed", "insert_rendered", "insert_only", "insert_pretrain", "sr", "sr_trained"}
)
# A task's reference: the first of these kinds present, else its first arm.
REFERENCE_KINDS = ("real", "bicubic", "bicubic_trained")
RATIO_KINDS = frozenset({"mixed", "insert_mixed", "insert_rendered"})
# The patch folder an arm trains on: the fold's GAN patches, or its inserted patches refined or rendered.
SOURCES = {
    "mixed": "gan",
    "synthetic_only": "gan",
    "insert_mixed": "refined",
    "insert_rendered": "rendered",
    "insert_only": "refined",
    "insert_pretrain": "refined",
}

# Seeds of the fixed patch draws of fold k (the same for every arm): test 1000 + k, val 2000 + k, train 3000 + k.
PATCH_SEED_BASE = {"test": 1000, "val": 2000, "train": 3000}
POSITIVE_SUBSET_SEED = 4000  # with the fold index: the permutation behind Fold.positive_patients


@dataclass(frozen=True)
class Arm:
    """One arm of the study: its report name, its kind (ARM_KINDS), a ratio (RATIO_KINDS), its work-folder name."""

    name: str
    kind: str
    ratio: float | None = None
    folder: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if self.kind not in ARM_KINDS:
            raise MammoError(f"unknown arm kind {self.kind!r} (choose from {', '.join(ARM_KINDS)})")
        if (self.kind in RATIO_KINDS) != (self.ratio is not None):
            raise MammoError(f"arm {self.name!r}: a ratio belongs to (and only to) a mixed arm ({self.kind})")
        if not self.folder:
            object.__setattr__(self, "folder", self.name)

    @property
    def tested(self) -> bool:
        """An arm under test: its paired difference to the reference gets a verdict."""
        return self.kind in TESTED_KINDS

    @property
    def source(self) -> str | None:
        """The patch folder it trains on (SOURCES: "gan", "refined" or "rendered"); None: real patches only."""
        return SOURCES.get(self.kind)

    def train_kwargs(self, synthetic) -> dict:
        """The train_classifier arguments of this arm beyond the shared ones (`synthetic`: its source's folder).

        An insert_pretrain arm trains in two stages (StudyPlan.pretraining): its own kwargs are the second's.
        """
        if self.kind in RATIO_KINDS:
            return {"synthetic": synthetic, "synthetic_ratio": self.ratio}
        if self.kind == "synthetic_only":
            return {"synthetic": synthetic, "synthetic_only": True}
        if self.kind == "insert_only":
            # inserted folders hold positives only: the real normals stay (less the backgrounds drawn into)
            return {"synthetic": synthetic, "synthetic_positives_only": True}
        if self.kind == "real":
            return {}
        raise MammoError(f"arm {self.name!r} ({self.kind}) is not a classifier trained on patches in one stage")


REAL = Arm("real", "real")
SYNTHETIC_ONLY = Arm("synthetic only", "synthetic_only")


def mixed(ratio: float) -> Arm:
    return Arm(f"real+synthetic x{ratio:g}", "mixed", ratio=ratio)


def inserted(ratio: float) -> Arm:
    return Arm(f"real+inserted x{ratio:g}", "insert_mixed", ratio=ratio)


INSERT_RENDERED = Arm(
    "real+inserted x1, rendered (no refiner)", "insert_rendered", ratio=1.0, folder="real+rendered x1"
)
INSERT_ONLY = Arm("inserted only (real negatives)", "insert_only", folder="inserted only")
INSERT_PRETRAIN = Arm(
    "inserted pretraining, real fine-tuning", "insert_pretrain", folder="inserted pretraining+real fine-tuning"
)
# Not an arm of the report: the first stage of INSERT_PRETRAIN (trained as INSERT_ONLY, for half the steps).
PRETRAINING = Arm("inserted pretraining (first stage)", "insert_only", folder="inserted pretraining")


TEXTURE = Arm("texture logistic regression", "baseline")
PROBES = {name: Arm(f"probe: {name} only", "probe") for name in ("intensity", "position")}
SPECKS = Arm("speck detector (patch maximum)", "baseline")

# SR utility, a 3x3 of patches a classifier is trained on by patches it is tested on: HR, LR upscaled by
# bicubic, LR upscaled by the fold's SR model. The SR question is SR against bicubic at the same LR, asked
# twice: for the real-only classifier (trained on HR) and for a classifier trained on what it is tested on;
# HR is the upper bound beside them.
UPSCALINGS = ("HR", "bicubic", "SR")
SR_CELL_KINDS = {("HR", "HR"): "hr", ("HR", "bicubic"): "bicubic", ("HR", "SR"): "sr",
                 ("bicubic", "bicubic"): "bicubic_trained", ("SR", "SR"): "sr_trained"}  # fmt: skip
# Task names beyond the configured ones: the exploratory benign-vs-malignant head and the SR utility arms
# (SR_TASK: the HR-trained classifier; SR_TRAINED_TASK: the classifiers trained on upscaled LR).
SR_TASK = "easy: SR utility, classifier trained on HR"
SR_TRAINED_TASK = "easy: SR utility, classifier trained on upscaled LR"
SR_BASE_TASK = "easy"  # the task whose real-only classifier the SR arms test


def sr_cell(trained: str, tested: str) -> Arm:
    """The SR-utility arm of a classifier trained on `trained` patches, tested on `tested` (UPSCALINGS); the
    classifiers trained on upscaled LR have their work folder ``trained on {bicubic,SR}``."""
    kind = SR_CELL_KINDS.get((trained, tested), "sr_cross")
    folder = "" if trained == "HR" else f"trained on {trained}"
    return Arm(f"trained on {trained}, tested on {tested}", kind, folder=folder)


def sr_cell_task(trained: str) -> str:
    return SR_TASK if trained == "HR" else SR_TRAINED_TASK


FILM_TASK = "film"
FILM_CLASSIFIER_TASK = "easy"  # the film task scores films with the easy task's real-only classifier


def exploratory_task(task: str) -> str:
    return f"{task}: benign vs malignant (exploratory)"


def low_data_task(task: str, fraction: float) -> str:
    """The report's task of `task` with the real positives of `fraction` (< 1) of the positive patients."""
    return f"{task}: positives of {fraction:.0%} of patients"


def reference_arm(arms: list[Arm]) -> Arm:
    """The reference of a task's arms: the first present of REFERENCE_KINDS, else the first arm."""
    return next((a for kind in REFERENCE_KINDS for a in arms if a.kind == kind), arms[0])


@dataclass(frozen=True)
class Unit:
    """One trained classifier: fold x task x seed x arm, its real positives from `fraction` of the fold's
    training patients with calcifications (1: all); its work folder is ``<out>/work/<name>``."""

    fold: int
    task: str
    seed: int
    arm: Arm
    fraction: float = 1.0

    @property
    def name(self) -> str:
        task = self.task if self.fraction == 1 else f"{self.task} positives {self.fraction:g}"
        return f"fold{self.fold}/{task}/{self.arm.folder}/seed{self.seed}"

    @property
    def report_task(self) -> str:
        """The task its test scores are reported under."""
        return self.task if self.fraction == 1 else low_data_task(self.task, self.fraction)


@dataclass(frozen=True)
class WorkUnit:
    """A unit as the work folder holds it (units.py): kind "model" (a fold's GAN, insertion or SR model),
    "classifier" (a classifier run, pretraining stages included) or "film" (the film task's scores of one
    seed); its name (progress.jsonl's and its lock's) and the file that marks it finished, both relative to
    ``<out>/work``."""

    kind: str
    name: str
    done_file: str


@dataclass(frozen=True)
class Fold:
    """One patient fold: its index and its test patients."""

    index: int
    test_patients: frozenset[str]

    def patch_seed(self, split: str) -> int:
        return PATCH_SEED_BASE[split] + self.index

    def catalog(self, catalog, val_fraction: float):
        return fold_catalog(catalog, set(self.test_patients), val_fraction, seed=self.index)

    def positive_patients(self, clusters, fraction: float) -> frozenset[str]:
        """The training patients whose clusters are real positives at `fraction` (in (0, 1]), from the fold
        catalog's layout_clusters: the first ceil(fraction x n) of the n training patients with calcifications
        in one order seeded by the fold (positive_order), so that a smaller fraction's patients are inside a
        larger one's; never fewer than the order's first patients that give every class what a layout fit needs."""
        order, minimum = positive_order(clusters, [POSITIVE_SUBSET_SEED, self.index])
        return frozenset(order[: max(math.ceil(fraction * len(order)), minimum)])


@dataclass(frozen=True)
class StudyPlan:
    """What a StudyConfig asks for on one catalog: the folds, the tasks, the trained arms, the units."""

    config: StudyConfig
    folds: tuple[Fold, ...]

    @property
    def patch_tasks(self) -> tuple[str, ...]:
        return tuple(t for t in self.config.tasks if t != FILM_TASK)

    @property
    def film(self) -> bool:
        return FILM_TASK in self.config.tasks

    @property
    def uses_synthetic(self) -> bool:
        """A GAN per fold: the GAN arms are asked for, with ratios to test and a patch task to test them on."""
        return "gan" in self.config.arms and bool(self.config.ratios) and bool(self.patch_tasks)

    @property
    def uses_insertion(self) -> bool:
        """An insertion model per fold: the insertion arms are asked for, with a patch task to test them on."""
        return "insert" in self.config.arms and bool(self.patch_tasks)

    @property
    def uses_sr(self) -> bool:
        """The SR utility arms (a per-fold SR model unless the study was given one): asked for, on the easy task."""
        return "sr" in self.config.arms and SR_BASE_TASK in self.patch_tasks

    @property
    def low_data_fractions(self) -> tuple[float, ...]:
        """The low-data curve's fractions below 1, ascending (1 is the full-data task), each trained apart."""
        return tuple(sorted(f for f in self.config.positive_fractions if f < 1)) if self.uses_insertion else ()

    @property
    def seeds(self) -> range:
        return range(self.config.seeds)

    def arms(self, fraction: float = 1.0) -> tuple[Arm, ...]:
        """The classifier arms of every patch task: real, then the GAN family (real + synthetic per ratio,
        synthetic only), then the insertion family (real + inserted per ratio, rendered, inserted only,
        pretraining); below fraction 1, the low-data curve's real and real + inserted x1."""
        if fraction < 1:
            return (REAL, inserted(LOW_DATA_RATIO))
        arms = [REAL]
        if self.uses_synthetic:
            arms += [*(mixed(r) for r in self.config.ratios), SYNTHETIC_ONLY]
        if self.uses_insertion:
            arms += [*(inserted(r) for r in self.config.insert_ratios), INSERT_RENDERED, INSERT_ONLY, INSERT_PRETRAIN]
        return tuple(arms)

    def synthetic_count(self, n_real_train: int) -> int:
        """Synthetic patches a fold's GAN writes: enough for the largest ratio against the real training set."""
        return max(3, int(round(max(self.config.ratios) * n_real_train)))

    def inserted_count(self, n_benign: int, n_malignant: int) -> int:
        """Patches a fold's insertion model writes (benign and malignant alternate): the largest ratio (at
        least 1, for the rendered arm) times the larger class of the real training calcification patches,
        per class."""
        ratio = max((*self.config.insert_ratios, 1.0))
        return 2 * max(2, math.ceil(ratio * max(n_benign, n_malignant)))

    @property
    def classifier_steps(self) -> int:
        """Each classifier unit's step budget (the config's, else its classifier preset's)."""
        return resolve_classifier_config(self.config.classifier_preset, steps=self.config.classifier_steps).steps

    def pretraining(self, unit: Unit) -> tuple[Unit, int, int]:
        """An insert_pretrain unit's first stage (PRETRAINING, its own work folder) and the step counts of
        the two stages: the unit's budget, halved, so that the arm trains as long as every other."""
        first = self.classifier_steps // 2  # >= 1: StudyConfig asks for 2 steps or more with the insertion arms
        return Unit(unit.fold, unit.task, unit.seed, PRETRAINING, unit.fraction), first, self.classifier_steps - first

    def units(self, fold: int, task: str, fraction: float = 1.0) -> list[Unit]:
        """A patch task's classifier units of one fold at one positive fraction, in running order (seed, arm)."""
        return [Unit(fold, task, seed, arm, fraction) for seed in self.seeds for arm in self.arms(fraction)]

    def film_units(self, fold: int) -> list[Unit]:
        """The classifiers the film task scores films with (shared with the easy task's real-only units)."""
        return [Unit(fold, FILM_CLASSIFIER_TASK, seed, REAL) for seed in self.seeds]

    def work_units(self, fold: int, sr_model_given: bool = False, sr_arms: bool = True) -> list[WorkUnit]:
        """Every unit one fold trains (models first): what Study.status counts. Units.run_fold trains the
        same (a test checks that a finished quick study has each). sr_model_given: the study was given one SR
        model (no per-fold one); sr_arms False: it saw every test patient of the fold, so no SR arm trains."""

        def model(name: str) -> WorkUnit:
            return WorkUnit("model", f"fold{fold}/{name}", f"fold{fold}/{name}/metrics.json")

        def classifier(unit: Unit) -> WorkUnit:
            return WorkUnit("classifier", unit.name, f"{unit.name}/metrics.json")

        with_sr = SR_BASE_TASK in self.patch_tasks and ("sr" in self.config.arms or sr_model_given) and sr_arms
        out = [model("gan")] if self.uses_synthetic else []
        out += [model("insert")] if self.uses_insertion else []
        out += [model("sr")] if with_sr and not sr_model_given else []
        out += [model(f"insert positives {f:g}") for f in self.low_data_fractions]
        for fraction in (1.0, *self.low_data_fractions):
            for task in self.patch_tasks:
                for unit in self.units(fold, task, fraction):
                    if unit.arm.kind == "insert_pretrain":
                        out.append(classifier(self.pretraining(unit)[0]))
                    out.append(classifier(unit))
        if with_sr:
            out += [classifier(Unit(fold, SR_BASE_TASK, s, sr_cell(t, t))) for s in self.seeds for t in UPSCALINGS[1:]]
        if self.film:
            if FILM_CLASSIFIER_TASK not in self.patch_tasks:
                out += [classifier(unit) for unit in self.film_units(fold)]
            out += [WorkUnit("film", f"fold{fold}/film/seed{s}", f"fold{fold}/film-seed{s}.json") for s in self.seeds]
        return out

    def check_insertion(self, catalog) -> None:
        """MammoError before anything trains when a fold's training patients (below fraction 1: the fraction's
        positive patients) give a class fewer clusters with specks, or fewer specks, than a layout fit needs.
        Reads each fold's training films once (layout_clusters)."""
        from mammo_tf.data.layouts import MIN_CLUSTERS, MIN_SPECKS
        from mammo_tf.data.schema import CLASS_NAMES

        if not self.uses_insertion:
            return
        for fold in self.folds:
            clusters = layout_clusters(fold.catalog(catalog, self.config.val_fraction))
            for fraction in (1.0, *self.low_data_fractions):
                chosen = clusters[clusters["patient_id"].isin(fold.positive_patients(clusters, fraction))]
                for label, (n_clusters, n_specks) in layout_shortfall(chosen).items():
                    at = "" if fraction == 1 else f" (positives of {fraction:g} of them)"
                    raise MammoError(
                        f"{catalog.root}: fold {fold.index}'s training patients{at} hold {n_clusters} "
                        f"{CLASS_NAMES[label]} calcification clusters with {n_specks} specks the detector finds; an "
                        f"insertion model needs {MIN_CLUSTERS} clusters and {MIN_SPECKS} specks per class (a larger "
                        "dataset, fewer folds, or arms without insert)"
                    )

    def fold(self, index: int) -> Fold:
        if not 0 <= index < len(self.folds):
            raise MammoError(f"fold {index} does not exist (the study has folds 0 to {len(self.folds) - 1})")
        return self.folds[index]


def patient_folds(catalog, k: int) -> tuple[Fold, ...]:
    """k patient folds stratified by patient label (splits.patient_kfold, seed 0)."""
    from mammo_tf.data.splits import patient_kfold, patient_labels

    images = catalog.images
    labels = patient_labels(images["patient_id"], catalog.image_labels().reindex(images["image_id"].to_numpy()))
    return tuple(
        Fold(i, frozenset(test_ids.tolist())) for i, (_, test_ids) in enumerate(patient_kfold(labels, k=k, seed=0))
    )


def plan_study(catalog, config: StudyConfig) -> StudyPlan:
    return StudyPlan(config, patient_folds(catalog, config.folds))


def fold_catalog(catalog, test_patients: set[str], val_fraction: float, seed: int):
    """The catalog with its split column set for one fold: test / val (a patient share of the rest) / train."""
    import numpy as np

    from mammo_tf.data.schema import Catalog

    images = catalog.images.copy()
    rest = sorted(set(images["patient_id"]) - set(test_patients))
    rng = np.random.default_rng(seed)
    val = set(rng.choice(rest, size=max(1, int(round(val_fraction * len(rest)))), replace=False).tolist())
    images["split"] = ["test" if p in test_patients else "val" if p in val else "train" for p in images["patient_id"]]
    return Catalog(images, catalog.findings, catalog.source, catalog.root)


def split_patients(catalog, split: str) -> set[str]:
    """The patients of one split ('train', 'val' or 'test') of a fold catalog."""
    return set(catalog.images.loc[catalog.images["split"] == split, "patient_id"])


def fold_test_patients(catalog) -> set[str]:
    """The patients of a fold catalog's test split."""
    return split_patients(catalog, "test")


def calcification_clusters(catalog, split: str):
    """The calcification clusters of `split` patches can be cut from (CALC findings with a centre and a
    severity): a DataFrame with their finding (index in catalog.findings), patient_id and severity ("B" / "M"),
    in catalog order."""
    from mammo_tf.data.samplers import LABELS
    from mammo_tf.data.schema import CALCIFICATION

    f = catalog.findings_with_patients().set_index(catalog.findings.index)  # the merge renumbers its rows
    calcs = f[
        (f["abnormality"] == CALCIFICATION) & f["has_coords"] & f["severity"].isin(list(LABELS)) & (f["split"] == split)
    ]
    return calcs[["patient_id", "severity"]].rename_axis("finding").reset_index()


def calcification_patients(catalog, split: str) -> list[str]:
    """The patients of `split` with a calcification cluster patches can be cut from, sorted."""
    return sorted(set(calcification_clusters(catalog, split)["patient_id"]))


def layout_clusters(catalog):
    """The training calcification clusters of a fold catalog (calcification_clusters) with n_specks: how many
    specks the project's detector finds in each, which is what a layout fit counts (data/layouts.py: a cluster
    without specks gives it nothing, e.g. one whose centre lies outside the breast mask). Reads the training
    films (data/speck_extraction.py; about 1 s for a MIAS fold)."""
    from mammo_tf.data.speck_extraction import extract_specks

    clusters = calcification_clusters(catalog, "train")
    found = {c["finding"]: c["n_specks"] for c in extract_specks(catalog, "train").attrs["clusters"]}
    return clusters.assign(n_specks=clusters["finding"].map(found).fillna(0).astype(int))


def layout_shortfall(clusters) -> dict[int, tuple[int, int]]:
    """The classes (BENIGN / MALIGNANT) for which `clusters` (layout_clusters' columns) fall short of a layout
    fit, each with its (clusters with specks, specks); {} when a layout model can be fitted."""
    from mammo_tf.data.layouts import MIN_CLUSTERS, MIN_SPECKS
    from mammo_tf.data.samplers import LABELS

    out = {}
    for severity, label in LABELS.items():
        specks = clusters.loc[clusters["severity"] == severity, "n_specks"]
        n_clusters, n_specks = int((specks > 0).sum()), int(specks.sum())
        if n_clusters < MIN_CLUSTERS or n_specks < MIN_SPECKS:
            out[label] = (n_clusters, n_specks)
    return out


def positive_order(clusters, seed) -> tuple[list[str], int]:
    """The patients of `clusters` (layout_clusters) in the order low-data subsets take them, and how many of
    the first it takes for every class to have what a layout fit needs (as far as the patients have).

    A permutation seeded by `seed`, except that the patients that bring a class still short of it (a cluster
    with specks) come first, in permutation order: a layout model fits MIN_CLUSTERS clusters with specks and
    MIN_SPECKS specks per class or nothing, and a small random subset of MIAS's patients often lacks them for
    one class (data/layouts.py).
    """
    import numpy as np

    from mammo_tf.data.samplers import LABELS

    order = np.random.default_rng(seed).permutation(sorted(set(clusters["patient_id"]))).tolist()
    with_specks = clusters[clusters["n_specks"] > 0]
    first: list[str] = []
    for patient in order:
        short = layout_shortfall(clusters[clusters["patient_id"].isin(first)])
        if not short:
            break
        brings = set(with_specks.loc[with_specks["patient_id"] == patient, "severity"].map(LABELS))
        if brings & set(short):
            first.append(patient)
    return first + [p for p in order if p not in first], len(first)


def check_disjoint(seen, held_out, what: str) -> None:
    """The leakage check: MammoError when `what` saw (trained on) any of the held-out patients."""
    leaked = set(seen) & set(held_out)
    if leaked:
        raise MammoError(f"{what} saw held-out patients {sorted(leaked)[:3]}")
