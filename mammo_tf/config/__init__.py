"""Every config of the project, one convention (base.py): frozen dataclasses, presets, one resolver.

    from mammo_tf.config import resolve, preset_names
    config = resolve("synthesis", "quick", patch_size=128)   # or "sr", "classifier", "study"
    preset_names("sr")                                       # ('quick', 'standard'): what the CLI offers

Per kind: sr.py (SRConfig), classifier.py (ClassifierConfig), synthesis.py (SynthesisConfig), study.py
(StudyConfig), insert.py (InsertConfig), each with its presets, checks and a ``resolve_<kind>_config``
wrapper. The lowest layer of the package: it imports nothing from mammo_tf but errors, and no third-party
module.
"""

from __future__ import annotations

from mammo_tf.config.base import (
    KINDS,
    PRECISIONS,
    STRATEGIES,
    TEST_PRESETS,
    Config,
    TrainerConfig,
    config_class,
    preset_names,
    preset_values,
    resolve,
)
from mammo_tf.config.classifier import CLASSIFIER_PRESETS, TASKS, ClassifierConfig, resolve_classifier_config
from mammo_tf.config.insert import INSERT_PRESETS, InsertConfig, resolve_insert_config
from mammo_tf.config.sr import GENERATOR_SIZES, SR_ACTIVATIONS, SR_PRESETS, SRConfig, resolve_sr_config
from mammo_tf.config.study import STUDY_PRESETS, STUDY_TASKS, StudyConfig, resolve_study_config
from mammo_tf.config.synthesis import (
    LOSSES,
    N_CLASSES,
    PADDINGS,
    POOLINGS,
    PREDATED_DEFAULTS,
    SPECTRAL_NORMS,
    SYNTHESIS_PRESETS,
    SynthesisConfig,
    resolve_synthesis_config,
)

__all__ = [
    "INSERT_PRESETS",
    "InsertConfig",
    "resolve_insert_config",
    "CLASSIFIER_PRESETS",
    "GENERATOR_SIZES",
    "KINDS",
    "LOSSES",
    "N_CLASSES",
    "PADDINGS",
    "POOLINGS",
    "PRECISIONS",
    "PREDATED_DEFAULTS",
    "SPECTRAL_NORMS",
    "SR_ACTIVATIONS",
    "SR_PRESETS",
    "STRATEGIES",
    "STUDY_PRESETS",
    "STUDY_TASKS",
    "SYNTHESIS_PRESETS",
    "TASKS",
    "TEST_PRESETS",
    "ClassifierConfig",
    "Config",
    "SRConfig",
    "StudyConfig",
    "SynthesisConfig",
    "TrainerConfig",
    "config_class",
    "preset_names",
    "preset_values",
    "resolve",
    "resolve_classifier_config",
    "resolve_sr_config",
    "resolve_study_config",
    "resolve_synthesis_config",
]
