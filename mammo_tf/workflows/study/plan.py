"""The study's plan, derived from a StudyConfig and a catalog: folds, arms, tasks and units; the leakage check.

- Folds: patient-level k-fold (splits.patient_kfold, seed 0); inside a fold, its patients are the test set,
  a patient share of the others (val_fraction, seeded by the fold index) the validation set, the rest the
  training set (fold_catalog).
- Arms: small frozen dataclasses (Arm). ``kind`` says what an arm is (the trained arms "real", "mixed",
  "synthetic_only"; the baselines and probes; the SR arms), which decides whether it is the reference of its
  task, an arm under test (whose paired difference gets a verdict) or a baseline. ``name`` is what the
  report shows; ``folder`` is the name of its work folder (``<out>/work/fold{k}/{task}/{folder}/seed{s}``).
- Units: fold x task x seed x trained arm, in the order the study runs them.

Nothing here trains or reads images: the runner is units.py, the numbers summary.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mammo_tf.config import StudyConfig
from mammo_tf.errors import MammoError

ARM_KINDS = (
    "real",  # the real-only classifier: the reference of the patch tasks, the film task and the exploratory one
    "mixed",  # real + synthetic at a ratio (synthetic:real per class)
    "synthetic_only",
    "baseline",  # the texture logistic regression, the speck detector
    "probe",  # intensity-only and position-only logistic regressions
    "hr",  # SR utility: the real-only classifier on HR test patches (the upper bound)
    "bicubic",  # ... on bicubic-upscaled LR: the reference of the SR question
    "sr",  # ... on SR-upscaled LR
    "sr_trained",  # a classifier trained and tested on SR-upscaled LR
)
TESTED_KINDS = frozenset({"mixed", "synthetic_only", "sr", "sr_trained"})  # the arms the study asks about
REFERENCE_KINDS = ("real", "bicubic")  # a task's reference: the first of these kinds present, else its first arm

# Seeds of the fixed patch draws of fold k (the same for every arm): test 1000 + k, val 2000 + k, train 3000 + k.
PATCH_SEED_BASE = {"test": 1000, "val": 2000, "train": 3000}


@dataclass(frozen=True)
class Arm:
    """One arm of the study: its report name, its kind (ARM_KINDS), a ratio for "mixed", its work-folder name."""

    name: str
    kind: str
    ratio: float | None = None
    folder: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if self.kind not in ARM_KINDS:
            raise MammoError(f"unknown arm kind {self.kind!r} (choose from {', '.join(ARM_KINDS)})")
        if (self.kind == "mixed") != (self.ratio is not None):
            raise MammoError(f"arm {self.name!r}: a ratio belongs to (and only to) a mixed arm")
        if not self.folder:
            object.__setattr__(self, "folder", self.name)

    @property
    def tested(self) -> bool:
        """An arm under test: its paired difference to the reference gets a verdict."""
        return self.kind in TESTED_KINDS

    @property
    def uses_synthetic(self) -> bool:
        return self.kind in ("mixed", "synthetic_only")

    def train_kwargs(self, synthetic) -> dict:
        """The train_classifier arguments of this arm beyond the shared ones (`synthetic`: the patch folder)."""
        if self.kind == "mixed":
            return {"synthetic": synthetic, "synthetic_ratio": self.ratio}
        if self.kind == "synthetic_only":
            return {"synthetic": synthetic, "synthetic_only": True}
        if self.kind == "real":
            return {}
        raise MammoError(f"arm {self.name!r} ({self.kind}) is not a classifier trained on patches")


REAL = Arm("real", "real")
SYNTHETIC_ONLY = Arm("synthetic only", "synthetic_only")


def mixed(ratio: float) -> Arm:
    return Arm(f"real+synthetic x{ratio:g}", "mixed", ratio=ratio)


TEXTURE = Arm("texture logistic regression", "baseline")
PROBES = {name: Arm(f"probe: {name} only", "probe") for name in ("intensity", "position")}
SPECKS = Arm("speck detector (patch maximum)", "baseline")

SR_HR = Arm("HR (real-only classifier)", "hr")
# The SR question is SR against bicubic at the same LR; HR is the upper bound beside them.
SR_BICUBIC = Arm("bicubic-upscaled LR (real-only classifier)", "bicubic")
SR_UPSCALED = Arm("SR-upscaled LR (real-only classifier)", "sr")
SR_TRAINED = Arm("SR-upscaled LR (classifier trained on SR)", "sr_trained", folder="trained on SR")
SR_REFERENCE = SR_BICUBIC.name

# Task names beyond the configured ones: the exploratory benign-vs-malignant head and the SR utility arms.
SR_TASK = "easy: SR utility (patients the SR model never saw)"
SR_BASE_TASK = "easy"  # the task whose real-only classifier the SR arms test
FILM_TASK = "film"
FILM_CLASSIFIER_TASK = "easy"  # the film task scores films with the easy task's real-only classifier


def exploratory_task(task: str) -> str:
    return f"{task}: benign vs malignant (exploratory)"


def reference_arm(arms: list[Arm]) -> Arm:
    """The reference of a task's arms: the first present of REFERENCE_KINDS, else the first arm."""
    return next((a for kind in REFERENCE_KINDS for a in arms if a.kind == kind), arms[0])


@dataclass(frozen=True)
class Unit:
    """One trained classifier: fold x task x seed x arm; its work folder is ``<out>/work/<name>``."""

    fold: int
    task: str
    seed: int
    arm: Arm

    @property
    def name(self) -> str:
        return f"fold{self.fold}/{self.task}/{self.arm.folder}/seed{self.seed}"


@dataclass(frozen=True)
class Fold:
    """One patient fold: its index and its test patients."""

    index: int
    test_patients: frozenset[str]

    def patch_seed(self, split: str) -> int:
        return PATCH_SEED_BASE[split] + self.index

    def catalog(self, catalog, val_fraction: float):
        return fold_catalog(catalog, set(self.test_patients), val_fraction, seed=self.index)


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
        """A GAN per fold: there are ratios to test and a patch task to test them on."""
        return bool(self.config.ratios) and bool(self.patch_tasks)

    @property
    def seeds(self) -> range:
        return range(self.config.seeds)

    def arms(self) -> tuple[Arm, ...]:
        """The classifier arms of every patch task: real, then real + synthetic per ratio, then synthetic only."""
        if not self.uses_synthetic:
            return (REAL,)
        return (REAL, *(mixed(r) for r in self.config.ratios), SYNTHETIC_ONLY)

    def synthetic_count(self, n_real_train: int) -> int:
        """Synthetic patches a fold's GAN writes: enough for the largest ratio against the real training set."""
        return max(3, int(round(max(self.config.ratios) * n_real_train)))

    def units(self, fold: int, task: str) -> list[Unit]:
        """A patch task's classifier units of one fold, in running order (seed, then arm)."""
        return [Unit(fold, task, seed, arm) for seed in self.seeds for arm in self.arms()]

    def film_units(self, fold: int) -> list[Unit]:
        """The classifiers the film task scores films with (shared with the easy task's real-only units)."""
        return [Unit(fold, FILM_CLASSIFIER_TASK, seed, REAL) for seed in self.seeds]

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


def check_disjoint(seen, held_out, what: str) -> None:
    """The leakage check: MammoError when `what` saw (trained on) any of the held-out patients."""
    leaked = set(seen) & set(held_out)
    if leaked:
        raise MammoError(f"{what} saw held-out patients {sorted(leaked)[:3]}")
