"""The one config convention, shared by every kind (sr, classifier, synthesis, study).

A config is a frozen dataclass subclassing ``Config``:

- ``KIND`` names it in messages ("sr config: scale must be 2 or 4, got 3"); ``PRESETS`` holds, per preset
  name, the field values that differ from the dataclass defaults ("tiny" exists for the test suite and is
  not offered by the CLI); ``PREDATED_DEFAULTS`` holds, for fields added after configs had been saved, the
  value those older configs were built with when it differs from the new default.
- ``validate()`` runs on construction (``__post_init__``, so also on ``replace`` and ``from_dict``): a config
  that exists is valid. A bad value is a MammoError naming the key:
  ``"<kind> config: <key> must be <expected>, got <value>"``.
- ``resolve(kind, preset, **overrides)``: the preset's values, then the overrides that are not None (None =
  keep the preset's value), then validation, then the kind's adjustments (e.g. val_every made to divide the
  phase lengths). An unknown kind, preset or override key is a MammoError listing the choices.
- ``to_dict()`` -> JSON-able values; ``from_dict(data)`` reads a saved one: keys it lacks take
  ``PREDATED_DEFAULTS`` (a class's own merged over its bases'), then the dataclass defaults; keys this code
  does not know are a MammoError naming them. Rejecting (not dropping) unknown keys because a saved config
  with a key this code has never heard of was written by a newer version (or is corrupt): building from the
  known keys alone would silently give a different model or run than the one saved. To read a run's
  config.json (which also records kind, data, patients...), pick the fields first: ``cls.from_dict({k: v for
  k, v in record.items() if k in cls.field_names()})``.
- The run spec: every trainer config (``TrainerConfig``) has ``seed`` (int >= 0), ``precision`` ('auto' |
  'float32' | 'mixed_bfloat16'), ``strategy`` ('auto' | 'default' | 'mirrored' | 'multiworker'), ``spacing_mm`` (None or
  mm per pixel), a total step count ``steps`` (a field or a property) and ``val_every``.

The resolved config is what a run directory records in config.json (training/runs.py) and what a resumed
run must match. This package imports nothing heavier than the standard library: the CLI reads its preset
names while building ``--help``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

from mammo_tf.errors import MammoError

PRECISIONS = ("auto", "float32", "mixed_bfloat16")
STRATEGIES = ("auto", "default", "mirrored", "multiworker")  # tf.distribute strategies (training/distribute.py)
TEST_PRESETS = ("tiny",)  # accepted everywhere, not offered by the CLI

# kind -> its config class; filled as each kind's class is defined (Config.__init_subclass__).
KINDS: dict[str, type[Config]] = {}


def preset_values(presets: dict[str, dict], preset: str, **overrides) -> dict:
    """A preset's field values with the overrides that are not None (None = keep the preset's value)."""
    if preset not in presets:
        raise MammoError(f"unknown preset {preset!r} (choose from {', '.join(presets)})")
    return {**presets[preset], "preset": preset, **{k: v for k, v in overrides.items() if v is not None}}


@dataclass(frozen=True)
class Config:
    """The base of every config: validation on construction, presets, to_dict / from_dict (module docstring)."""

    KIND: ClassVar[str] = ""
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {}
    PREDATED_DEFAULTS: ClassVar[dict[str, Any]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.KIND:
            KINDS[cls.KIND] = cls

    def __post_init__(self) -> None:
        self.validate()

    # ---- validation

    def validate(self) -> None:
        """Raise a MammoError naming the first bad key (subclasses call super().validate() first)."""

    def fail(self, key: str, expected: str, value: Any = dataclasses.MISSING) -> None:
        """Raise ``MammoError("<kind> config: <key> must be <expected>, got <value>")``."""
        got = getattr(self, key, None) if value is dataclasses.MISSING else value
        raise MammoError(f"{self.KIND} config: {key} must be {expected}, got {got!r}")

    def check_choice(self, key: str, choices: tuple | dict) -> None:
        if getattr(self, key) not in choices:
            self.fail(key, f"one of {', '.join(map(str, choices))}")

    def check_at_least(self, key: str, minimum: float) -> None:
        value = getattr(self, key)
        if isinstance(value, bool) or not isinstance(value, int | float) or not value >= minimum:
            self.fail(key, f">= {minimum}")

    # ---- dict form

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]):
        """A saved config: fields it predates take PREDATED_DEFAULTS (then the defaults); unknown keys fail."""
        known = set(cls.field_names())
        unknown = sorted(set(data) - known)
        if unknown:
            raise MammoError(f"{cls.KIND} config: unknown keys {unknown} (a newer version's config?)")
        values = {**{k: v for k, v in cls.predated_defaults().items() if k in known}, **data}
        # JSON turns tuples into lists; no config field is a list.
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})

    @classmethod
    def predated_defaults(cls) -> dict[str, Any]:
        """PREDATED_DEFAULTS of this class and its bases (a subclass's own value wins)."""
        merged: dict[str, Any] = {}
        for klass in reversed(cls.__mro__):
            merged.update(vars(klass).get("PREDATED_DEFAULTS", {}))
        return merged

    @classmethod
    def predated_values(cls) -> dict[str, Any]:
        """What a saved config that lacks a field meant by it: PREDATED_DEFAULTS, else the dataclass default."""
        fields = {f.name: f for f in dataclasses.fields(cls)}
        predated = cls.predated_defaults()
        return {
            name: predated.get(name, field.default)
            for name, field in fields.items()
            if name in predated or field.default is not dataclasses.MISSING
        }

    def replace(self, **changes: Any):
        """A copy with ``changes`` (validated); an unknown key is a MammoError."""
        self._check_keys(changes)
        return dataclasses.replace(self, **changes)

    @classmethod
    def _check_keys(cls, values: dict[str, Any]) -> None:
        unknown = sorted(set(values) - set(cls.field_names()))
        if unknown:
            raise MammoError(f"{cls.KIND} config: unknown keys {unknown} (known: {', '.join(cls.field_names())})")

    # ---- presets

    @classmethod
    def resolve(cls, preset: str = "standard", **overrides: Any):
        """The preset's values, then the overrides that are not None, then validation and ``adjusted()``."""
        if preset not in cls.PRESETS:
            raise MammoError(f"{cls.KIND} config: unknown preset {preset!r} (choose from {', '.join(cls.PRESETS)})")
        changes = {k: v for k, v in overrides.items() if v is not None}
        cls._check_keys(changes)
        named = {"preset": preset} if "preset" in cls.field_names() else {}
        return cls(**{**cls.PRESETS[preset], **named, **changes}).adjusted()

    def adjusted(self):
        """What ``resolve`` returns after validation: the config with its derived adjustments (none here)."""
        return self


@dataclass(frozen=True)
class TrainerConfig(Config):
    """A config that defines a training run: the run spec (seed, precision, strategy, steps, val_every) is
    checked here.

    Subclasses declare ``seed``, ``precision``, ``strategy``, ``spacing_mm`` and ``val_every`` as fields and
    ``steps`` as a field or a property (dataclass fields cannot be declared here without fixing their order in
    every subclass).
    ``strategy`` says how the run is spread over devices ('auto': mirrored when several GPUs are visible, else
    the default single-device strategy; training/distribute.py). It changes neither the model nor the numbers
    (a batch split over replicas trains as on one device); configs saved before it existed meant 'default'.
    ``spacing_mm`` (mm per pixel, or None): the pixel size the run trains at; images at another spacing are
    resampled first (data/resample.py). None trains on the images as they are.
    """

    PREDATED_DEFAULTS: ClassVar[dict[str, Any]] = {"strategy": "default"}

    def validate(self) -> None:
        super().validate()
        seed = self.seed
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            self.fail("seed", "an integer >= 0")
        self.check_choice("precision", PRECISIONS)
        self.check_choice("strategy", STRATEGIES)
        spacing = self.spacing_mm
        number = isinstance(spacing, int | float) and not isinstance(spacing, bool)
        if spacing is not None and not (number and spacing > 0):
            self.fail("spacing_mm", "None or a positive number of mm per pixel")
        self.check_at_least("val_every", 1)
        if self.steps < 1:
            self.fail("steps", ">= 1")


def config_class(kind: str) -> type[Config]:
    """The config class of ``kind`` ('sr', 'classifier', 'synthesis', 'study'); MammoError listing them."""
    if kind not in KINDS:
        raise MammoError(f"unknown config kind {kind!r} (choose from {', '.join(KINDS)})")
    return KINDS[kind]


def resolve(kind: str, preset: str = "standard", **overrides: Any) -> Config:
    """The config of ``kind`` for ``preset``, with the overrides that are not None; validated (MammoError).

    kind: 'sr' | 'classifier' | 'synthesis' | 'study'. E.g. ``resolve("synthesis", "quick", patch_size=128)``.
    """
    return config_class(kind).resolve(preset, **overrides)


def preset_names(kind: str) -> tuple[str, ...]:
    """The presets the CLI offers for ``kind`` (every preset but the test-suite ones), in definition order."""
    return tuple(name for name in config_class(kind).PRESETS if name not in TEST_PRESETS)
