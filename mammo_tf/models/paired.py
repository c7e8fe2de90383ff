"""What every GAN wrapper here shares: two optimizers, each for one sub-network, saved with the model.

A `keras.Model` subclass that mixes in `PairedOptimizers` (first in its bases) and declares
``OPTIMIZERS`` (optimizer attribute -> the sub-network attribute it trains) and ``SUBMODELS`` (constructor
arguments that are Keras models) gets:
- ``build_optimizers()``: the slot variables now, inside the strategy scope (built lazily in ``fit`` they
  fail under tf.distribute);
- ``get_compile_config()`` / ``compile_from_config()``: both optimizers serialised with the model and rebuilt
  on load, so a reloaded checkpoint keeps their step counts and slots (without them Keras warns and drops
  the optimizer state);
- ``from_config()``: the sub-models deserialised, then the constructor.
Its ``compile(**optimizers)`` must accept the optimizers by those attribute names.
"""

from __future__ import annotations

from typing import Any, ClassVar

import keras


class PairedOptimizers:
    """Mixin for a GAN wrapper with two optimizers (module docstring)."""

    OPTIMIZERS: ClassVar[dict[str, str]] = {}
    SUBMODELS: ClassVar[tuple[str, ...]] = ()

    def build_optimizers(self) -> None:
        """Create both optimizers' slot variables (inside ``strategy.scope()``, before ``fit``)."""
        for name in self.OPTIMIZERS:
            if getattr(self, name, None) is None:
                raise RuntimeError(f"compile() the {type(self).__name__} before build_optimizers()")
        for name, network in self.OPTIMIZERS.items():
            getattr(self, name).build(getattr(self, network).trainable_variables)

    def get_compile_config(self) -> dict[str, Any] | None:
        if any(getattr(self, name, None) is None for name in self.OPTIMIZERS):
            return None
        return {name: keras.saving.serialize_keras_object(getattr(self, name)) for name in self.OPTIMIZERS}

    def compile_from_config(self, config: dict[str, Any]) -> None:
        """Re-compile AND build the optimizers, so a .keras load restores their slot variables."""
        self.compile(**{name: keras.saving.deserialize_keras_object(config[name]) for name in self.OPTIMIZERS})
        self.build_optimizers()

    @classmethod
    def from_config(cls, config: dict[str, Any], custom_objects: dict | None = None):
        config = dict(config)
        for key in cls.SUBMODELS:
            config[key] = keras.saving.deserialize_keras_object(config[key], custom_objects=custom_objects)
        return cls(**config)
