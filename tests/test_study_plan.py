"""The study's plan without training: the insertion arms and their units, the low-data subsets, the checks that
refuse an insertion model that saw held-out patients, and a study without the new arms planned as before."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mammo_tf.config import resolve_study_config
from mammo_tf.data.catalog import load_catalog
from mammo_tf.data.samplers import Patches
from mammo_tf.data.schema import BENIGN
from mammo_tf.errors import MammoError
from mammo_tf.workflows.study.plan import (
    INSERT_ONLY,
    INSERT_PRETRAIN,
    INSERT_RENDERED,
    REAL,
    SYNTHETIC_ONLY,
    Arm,
    Fold,
    StudyPlan,
    Unit,
    calcification_clusters,
    inserted,
    layout_clusters,
    layout_shortfall,
    low_data_task,
    mixed,
    plan_study,
    positive_order,
)
from mammo_tf.workflows.study.units import Units, WorkFolder, keep_positives

GAN_ARMS = ["real", "real+synthetic x0.5", "real+synthetic x1", "real+synthetic x2", "synthetic only"]
FIRST_EDITION_RATIOS = (0.5, 1.0, 2.0)  # the second edition's standard preset tests 0.5 and 1


def _plan(preset: str = "standard", **overrides) -> StudyPlan:
    return StudyPlan(resolve_study_config(preset, **overrides), folds=())


@pytest.mark.parametrize("preset", ["quick", "standard"])
def test_a_study_without_the_insertion_arms_plans_the_units_it_planned_before(preset: str) -> None:
    # Spelled out as the study planned them before the insertion arms: seed, then arm, in these folders.
    plan = _plan(preset, arms=("gan",), ratios=FIRST_EDITION_RATIOS)
    seeds = range(resolve_study_config(preset).seeds)
    for task in ("easy", "matched"):
        assert [u.name for u in plan.units(3, task)] == [
            f"fold3/{task}/{arm}/seed{s}" for s in seeds for arm in GAN_ARMS
        ]  # fmt: skip
    assert [u.name for u in plan.film_units(3)] == [f"fold3/easy/real/seed{s}" for s in seeds]
    assert not plan.uses_insertion and plan.low_data_fractions == ()
    assert plan.arms() == (REAL, mixed(0.5), mixed(1.0), mixed(2.0), SYNTHETIC_ONLY)
    assert _plan(preset, arms=()).arms() == (REAL,)
    assert resolve_study_config("quick").arms == ("gan",)  # the default phantom is too small for insertion
    standard = resolve_study_config("standard")  # the second edition: the shipped GAN recipe, shortened
    assert (standard.ratios, standard.gan_preset, standard.gan_steps) == ((0.5, 1.0), "standard", 3000)
    assert standard.arms == ("gan", "insert", "sr") and _plan().uses_sr and not _plan(tasks=("matched",)).uses_sr
    assert resolve_study_config(preset, arms=("gan",), classifier_steps=1).classifier_steps == 1


def test_insertion_arms_kinds_sources_and_training_arguments() -> None:
    plan = _plan(ratios=FIRST_EDITION_RATIOS)
    arms = plan.arms()
    assert [a.name for a in arms[: len(GAN_ARMS)]] == GAN_ARMS
    table = [(a.name, a.kind, a.ratio, a.source, a.tested, a.folder) for a in arms[len(GAN_ARMS) :]]
    assert table == [
        ("real+inserted x0.5", "insert_mixed", 0.5, "refined", True, "real+inserted x0.5"),
        ("real+inserted x1", "insert_mixed", 1.0, "refined", True, "real+inserted x1"),
        ("real+inserted x2", "insert_mixed", 2.0, "refined", True, "real+inserted x2"),
        ("real+inserted x1, rendered (no refiner)", "insert_rendered", 1.0, "rendered", True, "real+rendered x1"),
        ("inserted only (real negatives)", "insert_only", None, "refined", True, "inserted only"),
        (
            "inserted pretraining, real fine-tuning",
            "insert_pretrain",
            None,
            "refined",
            True,
            "inserted pretraining+real fine-tuning",
        ),
    ]
    assert REAL.source is None and mixed(1.0).source == SYNTHETIC_ONLY.source == "gan"
    assert inserted(2.0).train_kwargs("f") == {"synthetic": "f", "synthetic_ratio": 2.0}
    assert INSERT_RENDERED.train_kwargs("f") == {"synthetic": "f", "synthetic_ratio": 1.0}
    assert INSERT_ONLY.train_kwargs("f") == {"synthetic": "f", "synthetic_positives_only": True}
    with pytest.raises(MammoError, match="in one stage"):
        INSERT_PRETRAIN.train_kwargs("f")
    with pytest.raises(MammoError, match="ratio"):
        Arm("real+inserted", "insert_mixed")
    with pytest.raises(MammoError, match="ratio"):
        Arm("inserted only", "insert_only", ratio=1.0)
    assert [u.name for u in plan.units(0, "easy")][:2] == [
        "fold0/easy/real/seed0",
        "fold0/easy/real+synthetic x0.5/seed0",
    ]
    insert_only = _plan(arms=("insert",), insert_ratios=(1.0,))
    assert [a.name for a in insert_only.arms()] == [
        "real",
        "real+inserted x1",
        "real+inserted x1, rendered (no refiner)",
        "inserted only (real negatives)",
        "inserted pretraining, real fine-tuning",
    ]
    assert not insert_only.uses_synthetic and insert_only.uses_insertion


@pytest.mark.parametrize(("steps", "split"), [(6, (3, 3)), (7, (3, 4)), (500, (250, 250)), (None, (1500, 1500))])
def test_the_pretraining_arm_splits_the_step_budget_in_two_stages(steps: int | None, split: tuple[int, int]) -> None:
    plan = StudyPlan(resolve_study_config("standard").replace(classifier_steps=steps), ())  # None: the preset's
    unit = Unit(2, "matched", 1, INSERT_PRETRAIN, 0.5)
    stage, first, second = plan.pretraining(unit)
    assert (first, second) == split and first + second == plan.classifier_steps
    assert stage.name == "fold2/matched positives 0.5/inserted pretraining/seed1"
    assert stage.arm.train_kwargs("f") == INSERT_ONLY.train_kwargs("f")
    assert unit.name == "fold2/matched positives 0.5/inserted pretraining+real fine-tuning/seed1"


def test_low_data_units_and_tasks() -> None:
    plan = _plan(positive_fractions=(1.0, 0.25, 0.5))
    assert plan.low_data_fractions == (0.25, 0.5)  # 1 is the full-data task itself
    units = plan.units(1, "matched", 0.25)
    assert [u.name for u in units] == [
        f"fold1/matched positives 0.25/{arm}/seed{s}" for s in range(3) for arm in ("real", "real+inserted x1")
    ]
    assert (
        {u.report_task for u in units} == {low_data_task("matched", 0.25)} == {"matched: positives of 25% of patients"}
    )
    assert Unit(1, "matched", 0, REAL).report_task == "matched"
    assert _plan(positive_fractions=(0.5,), tasks=("film",)).low_data_fractions == ()  # no patch task to run


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        ({"positive_fractions": (0.0,)}, "positive_fractions"),
        ({"positive_fractions": (1.5,)}, "positive_fractions"),
        ({"positive_fractions": (0.5, 0.5)}, "positive_fractions"),
        ({"positive_fractions": (0.5,), "arms": ("gan",)}, "positive_fractions"),  # the curve's arm is inserted
        ({"positive_fractions": (0.5,), "insert_ratios": (2.0,)}, "positive_fractions"),
        ({"arms": ("gan", "diffusion")}, "arms"),
        ({"insert_ratios": (0.0,)}, "insert_ratios"),
        ({"insert_preset": "huge"}, "insert_preset"),
        ({"classifier_steps": 1}, "classifier_steps"),  # the pretraining arm needs a step per stage
    ],
)
def test_bad_study_settings_are_refused(overrides: dict, key: str) -> None:
    with pytest.raises(MammoError, match=f"study config: {key} must be"):
        resolve_study_config("standard", **overrides)


def _clusters(spec: dict[str, str], specks: dict[str, int] | None = None) -> pd.DataFrame:
    """patient -> severities of its clusters ("BBM": two benign, one malignant), each with 5 specks unless
    `specks` gives the patient's clusters another count (layout_clusters' columns)."""
    rows = [(p, s, (specks or {}).get(p, 5)) for p, severities in spec.items() for s in severities]
    return pd.DataFrame(rows, columns=["patient_id", "severity", "n_specks"])


def test_positive_order_puts_first_the_patients_a_layout_fit_needs() -> None:
    # Eight patients with one benign cluster each, two with malignant ones: a random quarter would often hold
    # no malignant cluster, which no layout model can be fitted on.
    clusters = _clusters({**{f"b{i}": "B" for i in range(8)}, "m1": "M", "m2": "MM"})
    for seed in range(20):
        order, minimum = positive_order(clusters, seed)
        assert sorted(order) == sorted(set(clusters["patient_id"]))
        first = clusters[clusters["patient_id"].isin(order[:minimum])]["severity"].value_counts()
        assert first["B"] >= 2 and first["M"] >= 2
        assert not layout_shortfall(clusters[clusters["patient_id"].isin(order[:minimum])])
        assert order == positive_order(clusters, seed)[0]  # seeded
    assert len({tuple(positive_order(clusters, s)[0]) for s in range(20)}) > 5
    # after the minimum, the others in the order of the seeded permutation
    order, minimum = positive_order(clusters, 3)
    permutation = np.random.default_rng(3).permutation(sorted(set(clusters["patient_id"]))).tolist()
    assert order[minimum:] == [p for p in permutation if p not in order[:minimum]]


def test_positive_order_counts_only_clusters_with_specks_and_enough_specks() -> None:
    # MIAS fold 1 at a quarter: two annotated benign clusters, one whose centre lies outside the breast mask
    # (no specks) and one with a single speck; the layout fit found 1 speck in 1 cluster and stopped the study.
    clusters = _clusters({"m1": "M", "m2": "M", "b_none": "B", "b_one": "B", "b_two": "B", "b_more": "B"},
                         specks={"b_none": 0, "b_one": 1, "b_two": 2})  # fmt: skip
    for seed in range(20):
        order, minimum = positive_order(clusters, seed)
        chosen = clusters[clusters["patient_id"].isin(order[:minimum])]
        assert not layout_shortfall(chosen)  # >= 2 benign clusters with specks, >= 5 benign specks
        assert "b_none" not in order[:minimum]  # brings nothing a layout fit counts
    short = _clusters({"m1": "M", "m2": "M", "b_one": "B", "b_two": "B"}, specks={"b_one": 1, "b_two": 2})
    assert layout_shortfall(short) == {BENIGN: (2, 3)}  # enough clusters, too few specks
    assert positive_order(short, 0)[1] == 4  # as far as the patients have: all of them


def test_every_low_data_point_of_the_mias_study_can_fit_its_layouts(mias_dir: Path) -> None:
    # What stopped the study's fold 1: its quarter's patients held 2 benign clusters, one without specks.
    catalog = load_catalog(mias_dir)
    plan = plan_study(catalog, resolve_study_config("standard", positive_fractions=(0.25, 0.5, 1)))
    plan.check_insertion(catalog)  # MammoError if any fold or fraction falls short
    fold = plan.folds[1]
    clusters = layout_clusters(fold.catalog(catalog, plan.config.val_fraction))
    assert (clusters["n_specks"] == 0).any()  # the case the annotated counts missed is in MIAS
    quarter = clusters[clusters["patient_id"].isin(fold.positive_patients(clusters, 0.25))]
    assert not layout_shortfall(quarter)


class _FoldCatalog:
    """Stands in for a fold catalog: the low-data subsets read its findings only."""

    def __init__(self, rows: list[tuple[str, str, str, bool, str]]) -> None:
        columns = ["patient_id", "abnormality", "severity", "has_coords", "split"]
        self.table = self.findings = pd.DataFrame(rows, columns=columns)

    def findings_with_patients(self) -> pd.DataFrame:
        return self.table


def test_positive_subsets_are_nested_seeded_per_fold_and_hold_the_training_calcifications_only() -> None:
    rows = [(f"p{i:02d}", "CALC", "BM"[i % 3 == 0], True, "train") for i in range(12)]
    rows += [
        ("v", "CALC", "B", True, "val"),
        ("nocoords", "CALC", "M", False, "train"),
        ("n", "NORM", "", False, "train"),
    ]
    catalog = _FoldCatalog(rows)
    clusters = calcification_clusters(catalog, "train").assign(n_specks=3)
    assert clusters["finding"].tolist() == list(range(12))
    everyone = {f"p{i:02d}" for i in range(12)}
    for index in range(4):
        fold = Fold(index, frozenset())
        subsets = [fold.positive_patients(clusters, f) for f in (0.25, 0.5, 0.75, 1.0)]
        assert subsets[-1] == everyone
        assert all(a < b for a, b in zip(subsets, subsets[1:], strict=False))  # nested, each strictly larger
        # ceil(f x 12) patients, or more where the fewest that give each class 2 clusters are more
        assert len(subsets[0]) in (3, 4) and [len(s) for s in subsets[1:]] == [6, 9, 12]
        severities = catalog.table.set_index("patient_id").loc[sorted(subsets[0]), "severity"]
        assert (severities.value_counts() >= 2).all() and len(severities.value_counts()) == 2
        assert subsets == [fold.positive_patients(clusters, f) for f in (0.25, 0.5, 0.75, 1.0)]
    quarters = {Fold(index, frozenset()).positive_patients(clusters, 0.25) for index in range(4)}
    assert len(quarters) > 1  # each fold draws its own subsets


def test_keep_positives_keeps_every_normal_patch() -> None:
    n = 6
    patches = Patches(
        images=np.zeros((n, 4, 4, 1), np.float32),
        labels=np.array([0, 1, 2, 0, 1, 0], np.int32),
        image_id=np.array([f"i{i}" for i in range(n)]),
        patient_id=np.array(["a", "a", "b", "b", "c", "c"]),
        centre_row=np.arange(n),
        centre_col=np.arange(n),
    )
    kept = keep_positives(patches, {"a"})
    assert kept.image_id.tolist() == ["i0", "i1", "i3", "i5"]
    assert kept.labels.tolist() == [0, 1, 0, 0]


def test_a_catalog_too_small_for_insertion_is_refused_before_anything_trains() -> None:
    catalog = load_catalog(None)  # the default phantom: 1 benign cluster in a fold's training patients
    plan = plan_study(catalog, resolve_study_config("quick", arms=("insert",)))
    with pytest.raises(MammoError, match=r"fold \d's training patients hold 1 benign calcification clusters"):
        plan.check_insertion(catalog)
    plan_study(catalog, resolve_study_config("quick")).check_insertion(catalog)  # GAN arms only: nothing to check


def _finished_run(run: Path, record: dict) -> None:
    run.mkdir(parents=True)
    (run / "metrics.json").write_text("{}")
    (run / "config.json").write_text(json.dumps(record))


@pytest.mark.parametrize("fraction", [1.0, 0.25])
def test_an_insertion_model_that_saw_held_out_patients_is_refused(tmp_path: Path, fraction: float) -> None:
    # A finished insertion unit whose record names a test patient (or, below fraction 1, a training patient
    # whose clusters the fraction leaves out) is refused before any patch is inserted with it.
    catalog = load_catalog(None)
    patients = sorted(set(catalog.images["patient_id"]))
    config = resolve_study_config("quick", arms=("insert",), positive_fractions=(0.25,))
    fold = Fold(0, frozenset(patients[:2]))
    units = Units(catalog, StudyPlan(config, (fold,)), WorkFolder(tmp_path / "work"))
    cat = fold.catalog(catalog, config.val_fraction)
    _, left_out, _ = units.low_data_catalog(fold, cat, fraction)
    assert bool(left_out) == (fraction < 1)
    held_out = sorted(left_out) if fraction < 1 else patients[:1]
    name = "insert" if fraction == 1 else "insert positives 0.25"
    _finished_run(tmp_path / "work" / "fold0" / name, {"train_patients": held_out})
    what = "insertion model" if fraction == 1 else "insertion model at positives 0.25 \\(of its left-out positives\\)"
    with pytest.raises(MammoError, match=f"fold 0: the {what} saw held-out patients"):
        units.inserted(fold, cat, fraction)
    assert not any((tmp_path / "work" / "fold0").glob("inserted*"))
