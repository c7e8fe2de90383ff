"""One save-and-reload check for every model the project saves (keras-hub's `run_model_saving_test` idea).

Same machine, same inputs, same shapes: the reloaded model's outputs must be bitwise identical, and so
must every optimizer's step count and slot variables (a resumed run trains on exactly where it stopped).
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np


def assert_saves_and_reloads(
    model: keras.Model,
    inputs,
    tmp_path: Path,
    *,
    optimizers: tuple[str, ...] = (),
    name: str = "model.keras",
) -> keras.Model:
    """Save `model` as .keras, reload it in this process and compare; returns the reloaded model.

    inputs: what `model(inputs)` takes (a tensor, a list or a tuple); outputs may be nested (dicts).
    optimizers: attribute names of optimizers whose state must survive (e.g. "g_optimizer").
    """
    path = tmp_path / name
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert type(loaded) is type(model), f"reloaded as {type(loaded).__name__}, saved as {type(model).__name__}"
    expected = keras.tree.flatten(model(inputs, training=False))
    actual = keras.tree.flatten(loaded(inputs, training=False))
    assert len(expected) == len(actual)
    for x, y in zip(expected, actual, strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    for attribute in optimizers:
        before, after = getattr(model, attribute), getattr(loaded, attribute)
        assert int(after.iterations) == int(before.iterations)
        assert len(after.variables) == len(before.variables) > 1, f"{attribute}: no slot variables reloaded"
        for x, y in zip(before.variables, after.variables, strict=True):
            np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    return loaded
