"""The study's test patches of MIAS folds 0-1 (easy and matched), rebuilt as `evaluate-aug` builds them, for
the checks beside this file. Run them from the repository root after `make data`."""

from mammo_tf.config import resolve_classifier_config, resolve_study_config
from mammo_tf.data.catalog import load_catalog
from mammo_tf.training.classifier_trainer import task_patches
from mammo_tf.workflows.study.plan import plan_study
from mammo_tf.workflows.study.saved_units import patch_keys


def test_sets(folds=(0, 1), tasks=("easy", "matched")):
    """{(fold, task): (patch keys, labels: 1 = calcification)} as the standard study draws them."""
    catalog = load_catalog("data/mias")
    config = resolve_study_config("standard")
    plan = plan_study(catalog, config)
    out = {}
    for k in folds:
        fold = plan.folds[k]
        cat = fold.catalog(catalog, config.val_fraction)
        for task in tasks:
            base = resolve_classifier_config(config.classifier_preset, task=task)
            test = task_patches(cat, base, "test", seed=fold.patch_seed("test"))
            out[k, task] = test, patch_keys(test), (test.labels != 0).astype(int)
    return out
