"""The precision a model is exported in: float32 (models.precision.float32_copy), whatever it was trained in.

Models trained under mixed_bfloat16 are exported computing in float32: bf16 rounding differs between eager and
graph execution and between CPUs (up to ~1e-5 here on SR outputs), and a served model's numbers should not
depend on the server's instruction set. The difference to the source model is recorded in the metadata.
"""

from __future__ import annotations


def dtype_policies(model) -> str:
    """The dtype policies of a model's layers, nested models included: 'float32', 'float32, mixed_bfloat16'."""
    import keras

    names = set()
    for layer in model.layers:
        names |= set(dtype_policies(layer).split(", ")) if isinstance(layer, keras.Model) else {layer.dtype_policy.name}
    return ", ".join(sorted(names))
