"""mammo_tf.config: one convention for every kind of config (presets, checks, saved forms, the CLI's choices)."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import pytest

from mammo_tf.config import (
    KINDS,
    TEST_PRESETS,
    SynthesisConfig,
    TrainerConfig,
    config_class,
    preset_names,
    preset_values,
    resolve,
    resolve_classifier_config,
    resolve_sr_config,
    resolve_study_config,
    resolve_synthesis_config,
)
from mammo_tf.errors import MammoError

EVERY_PRESET = [(kind, name) for kind, cls in KINDS.items() for name in cls.PRESETS]


def test_every_kind_is_registered() -> None:
    assert set(KINDS) == {"sr", "classifier", "synthesis", "study", "insert"}
    assert preset_names("sr") == preset_names("classifier") == preset_names("synthesis") == ("quick", "standard")
    assert preset_names("study") == ("quick", "standard")


@pytest.mark.parametrize(("kind", "preset"), EVERY_PRESET)
def test_every_kind_resolves_every_preset_and_survives_its_saved_form(kind: str, preset: str) -> None:
    config = resolve(kind, preset)
    assert isinstance(config, config_class(kind))
    if "preset" in config.field_names():
        assert config.preset == preset
    for field, value in config_class(kind).PRESETS[preset].items():
        if field != "val_every":  # adjusted to the run's length (below)
            assert getattr(config, field) == value, field
    if isinstance(config, TrainerConfig):  # the run spec every trainer config has
        assert config.seed == 0 and config.precision == "auto" and 1 <= config.val_every <= config.steps
    saved = json.loads(json.dumps(config.to_dict()))  # what a run directory or a .keras file holds
    assert type(config).from_dict(saved) == config


@pytest.mark.parametrize(
    ("kind", "overrides", "key"),
    [
        ("sr", {"scale": 3}, "scale"),
        ("sr", {"generator": "huge"}, "generator"),
        ("sr", {"activation": "gelu"}, "activation"),
        ("sr", {"foreground_share": 1.5}, "foreground_share"),
        ("sr", {"hr_size": 90}, "hr_size"),
        ("sr", {"gan_steps": -1}, "gan_steps"),
        ("sr", {"pretrain_steps": 0, "gan_steps": 0}, "steps"),
        ("sr", {"seed": -1}, "seed"),
        ("sr", {"precision": "bfloat16"}, "precision"),
        ("classifier", {"task": "hard"}, "task"),
        ("classifier", {"synthetic_ratio": -0.5}, "synthetic_ratio"),
        ("classifier", {"steps": 0}, "steps"),
        ("classifier", {"val_every": 0}, "val_every"),
        ("synthesis", {"patch_size": 48}, "patch_size"),
        ("synthesis", {"loss": "wasserstein"}, "loss"),
        ("synthesis", {"d_pooling": "max"}, "d_pooling"),
        ("synthesis", {"d_spectral_norm": "weight"}, "d_spectral_norm"),
        ("synthesis", {"g_padding": "wrap"}, "g_padding"),
        ("synthesis", {"latent_dim": 0}, "latent_dim"),
        ("synthesis", {"batch_size": 1}, "batch_size"),
        ("synthesis", {"ema_decay": 1.0}, "ema_decay"),
        ("synthesis", {"precision": "fp16"}, "precision"),
        ("insert", {"patch_size": 30}, "patch_size"),
        ("insert", {"reg_norm": "l3"}, "reg_norm"),
        ("insert", {"background_weight": 0.0}, "background_weight"),
        ("study", {"tasks": ("easy", "hard")}, "tasks"),
        ("study", {"folds": 1}, "folds"),
        ("study", {"seeds": 0}, "seeds"),
        ("study", {"gan_preset": "huge"}, "gan_preset"),
    ],
)
def test_a_bad_value_is_a_mammo_error_naming_the_key(kind: str, overrides: dict, key: str) -> None:
    with pytest.raises(MammoError, match=rf"^{kind} config: {key} must be .*, got "):
        resolve(kind, "quick", **overrides)


def test_constructing_or_replacing_validates_too() -> None:
    with pytest.raises(MammoError, match="synthesis config: patch_size must be"):
        SynthesisConfig(patch_size=48)
    with pytest.raises(MammoError, match="synthesis config: d_pooling must be one of mean, sum, got 'max'"):
        resolve_synthesis_config("tiny").replace(d_pooling="max")
    with pytest.raises(MammoError, match=r"synthesis config: unknown keys \['colour'\]"):
        resolve_synthesis_config("tiny").replace(colour="red")


def test_unknown_preset_kind_or_key_lists_the_choices() -> None:
    with pytest.raises(MammoError, match=r"sr config: unknown preset 'huge' \(choose from quick, standard, tiny\)"):
        resolve("sr", "huge")
    with pytest.raises(MammoError, match=r"unknown config kind 'gan' \(choose from .*classifier.*sr.*study"):
        resolve("gan", "quick")
    with pytest.raises(MammoError, match=r"unknown config kind 'gan'"):
        preset_names("gan")
    with pytest.raises(MammoError, match=r"classifier config: unknown keys \['colour'\] \(known: patch_size, "):
        resolve("classifier", "quick", colour="red")
    with pytest.raises(MammoError, match=r"study config: unknown preset 'tiny'"):
        resolve("study", "tiny")  # the study has no test preset of its own


def test_none_overrides_keep_the_preset_and_the_wrappers_are_the_resolver() -> None:
    assert resolve("sr", "quick", scale=None, seed=None) == resolve("sr", "quick")
    assert resolve_sr_config("tiny", scale=4) == resolve("sr", "tiny", scale=4)
    assert resolve_classifier_config("quick", task="matched") == resolve("classifier", "quick", task="matched")
    assert resolve_synthesis_config("quick", patch_size=128) == resolve("synthesis", "quick", patch_size=128)
    assert resolve_study_config("quick", folds=3) == resolve("study", "quick", folds=3)
    assert resolve_study_config("quick", tasks=("film",)).tasks == ("film",)
    assert resolve_study_config("standard").precision == "float32"  # not auto: units alike on every CPU
    assert resolve_study_config("standard", precision=None).precision == "float32"
    with pytest.raises(MammoError, match=r"precision"):
        resolve_study_config("standard", precision="float16")


def test_validation_boundaries_are_adjusted_to_the_run_length() -> None:
    # SR: every gcd(val_every, phase lengths); classifier: gcd(val_every, steps); synthesis: at most steps.
    assert resolve_sr_config("standard", pretrain_steps=1500, gan_steps=300).val_every == 100
    assert resolve_sr_config("quick").val_every == 100
    assert resolve_classifier_config("standard", steps=750).val_every == 250
    assert resolve_synthesis_config("standard", steps=300).val_every == 300
    assert resolve_synthesis_config("quick").val_every == 250


def test_the_synthesis_presets_keep_their_shipped_values() -> None:
    """The synthesis presets resolve to the values the shipped models and committed reports were trained with."""
    # The shipped presets, value by value (the shipped models and committed reports were trained with them).
    quick = resolve("synthesis", "quick")
    assert (quick.latent_dim, quick.embed_dim, quick.g_width, quick.d_width, quick.batch_size, quick.steps) == (
        64, 16, 8, 8, 16, 1_000
    )  # fmt: skip
    assert (quick.ema_decay, quick.ada_speed_images, quick.val_every) == (0.995, 100_000.0, 250)
    assert resolve("synthesis", "standard") == SynthesisConfig()


def test_a_config_saved_before_a_field_existed_reads_as_what_that_model_was_built_with() -> None:
    saved = resolve_synthesis_config("standard").to_dict()
    for field in ("d_pooling", "generator_float32", "d_spectral_norm", "seed", "precision", "val_every"):
        del saved[field]
    old = SynthesisConfig.from_dict(saved)
    assert (old.d_pooling, old.generator_float32, old.d_spectral_norm) == ("mean", False, "projected")
    assert (old.seed, old.precision, old.val_every) == (0, "auto", 1_000)
    new = resolve_synthesis_config("standard")
    assert (new.d_pooling, new.generator_float32) == ("sum", True)


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_a_saved_config_with_a_key_this_code_does_not_know_is_refused(kind: str) -> None:
    cls = config_class(kind)
    saved = {**resolve(kind, "quick").to_dict(), "colour": "red"}
    with pytest.raises(MammoError, match=rf"{kind} config: unknown keys \['colour'\]"):
        cls.from_dict(saved)
    # a run's config.json records more than the config: pick the fields first
    assert cls.from_dict({k: v for k, v in saved.items() if k in cls.field_names()}) == resolve(kind, "quick")


def test_every_trainer_config_has_the_run_spec() -> None:
    for kind in ("sr", "classifier", "synthesis"):
        config = resolve(kind, "tiny")
        assert isinstance(config, TrainerConfig)
        assert {"seed", "precision", "val_every"} <= set(config.field_names())
        assert isinstance(config.steps, int) and config.steps >= 1
        assert dataclasses.replace(config, seed=7).seed == 7
    assert not isinstance(resolve("study", "quick"), TrainerConfig)


def test_preset_values_still_reads_a_preset_table() -> None:
    table = {"quick": {"folds": 2}, "standard": {}}
    assert preset_values(table, "quick", folds=None, seeds=4) == {"folds": 2, "preset": "quick", "seeds": 4}
    with pytest.raises(MammoError, match=r"unknown preset 'huge' \(choose from quick, standard\)"):
        preset_values(table, "huge")


def test_the_cli_offers_exactly_the_preset_names() -> None:
    from mammo_tf_cli.main import cli

    kinds = {
        "train-sr": "sr",
        "train-classifier": "classifier",
        "train-gan": "synthesis",
        "train-insert": "insert",
        "evaluate-aug": "study",
    }
    for command, kind in kinds.items():
        (option,) = [p for p in cli.commands[command].params if p.name == "preset"]
        assert tuple(option.type.choices) == preset_names(kind), command
        assert not set(option.type.choices) & set(TEST_PRESETS)
    offering = [
        name for name, command in cli.commands.items() if any(p.name == "preset" for p in command.params)
    ]  # fmt: skip
    assert sorted(offering) == sorted(kinds)


def test_the_config_package_imports_no_third_party_module() -> None:
    """The CLI reads the preset names while building --help: no TensorFlow, Keras or NumPy behind them."""
    code = (
        "import sys, mammo_tf.config as c; c.resolve('synthesis', 'quick');"
        "print(sorted(m for m in ('numpy', 'tensorflow', 'keras', 'pandas') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_the_synthesis_class_count_is_the_number_of_patch_classes() -> None:
    from mammo_tf.config import N_CLASSES
    from mammo_tf.data.schema import CLASS_NAMES

    assert N_CLASSES == len(CLASS_NAMES) == 3
