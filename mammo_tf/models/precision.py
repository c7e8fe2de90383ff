"""Model precision helpers shared by inference and export (Keras only, no files)."""

from __future__ import annotations


def float32_copy(model):
    """`model` computing in float32 (same weights); `model` itself if it already does.

    Why: bf16 rounding differs between eager and graph execution and between CPUs, and on a CPU without native
    bfloat16 it is emulated (slow). Every layer is rebuilt from its config with dtype float32.
    """
    import keras

    if all(layer.dtype_policy.compute_dtype == "float32" for layer in model.layers):
        return model

    def clone(layer):
        config = layer.get_config()
        if "dtype" in config:
            config["dtype"] = "float32"
        return layer.__class__.from_config(config)

    copy = keras.models.clone_model(model, clone_function=clone)
    copy.set_weights(model.get_weights())
    return copy
