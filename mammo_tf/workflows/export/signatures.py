"""What each exportable model type serves: its named signatures (endpoints), sample checks, the EXPORTERS table.

Signatures, by model type (B = batch, any size; h, w = any image size; s = the SR scale):

SR generator (`models/sr.py`; the consistency projection is part of the graph)
    serving_default  image      float32 [B, h, w, 1] in [0, 1]     -> sr         float32 [B, h*s, w*s, 1] in [0, 1]
                     (float input: quant_step 0, so each s x s block of sr averages exactly to its input pixel)
    serve_uint16     pixels     uint16  [B, h, w, 1] in [0, 2^bits - 1]
                     bit_depth  int32   [B] in [1, 16] (one per image: 8, 12, 16 ... as stored in the file)
                                                                -> sr         float32 [B, h*s, w*s, 1] in [0, 1]
                                                                   sr_pixels  uint16  [B, h*s, w*s, 1] at bit_depth
                     (quant_step 1 / (2^bits - 1): blocks average to the input within half a grey level;
                     sr_pixels = round(sr * (2^bits - 1)), half to even, as the project's image writers do)

Synthesis generator (`models/synthesis.py`, inputs named z and label; L = latent size, P = patch size)
    serving_default  z          float32 [B, L] (standard normal)
                     class_id   int32   [B] in [0, n_classes)      -> images     float32 [B, P, P, 1] in [0, 1]
    serve_seeded     count      int32   [] in [1, MAX_COUNT]
                     class_id   int32   [] in [0, n_classes)
                     seed       int64   []                         -> images     float32 [count, P, P, 1] in [0, 1]
                                                                   z          float32 [count, L]
                     (z = tf.random.stateless_normal([count, L], seed=[seed, 0], alg="philox"): the same seed gives
                     the same patches on every server and device; not the NumPy stream of `SynthesisGAN.sample`)

Calcification classifier (`models/classifier.py`, a CalcificationClassifier; P = its patch size, 64 by default)
    serving_default  patches    float32 [B, P, P, 1] in [0, 1]     -> calc_probability  float32 [B] in [0, 1]
                     (calcification vs normal tissue; the exploratory malignancy head is not served)

Models trained under mixed_bfloat16 are exported computing in float32 (precision.py).

Bad requests (wrong bit depth, pixels above 2^bits - 1, a class out of range, a count out of range) fail with
INVALID_ARGUMENT and a message naming the input.

Adding a model type: write a `detect(model) -> bool`, an `endpoints(model) -> {signature: tf.function}` with
explicit input signatures returning dicts of named outputs, and a `checks(model) -> [Check]` that runs the Keras
model on fixed inputs, then append an `Exporter` to EXPORTERS.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mammo_tf.errors import located
from mammo_tf.models.precision import float32_copy
from mammo_tf.workflows.export.verify import Check

MAX_COUNT = 1024  # serve_seeded: patches per request


@dataclass(frozen=True)
class Exporter:
    """How one model type is recognised, served and checked (see the module docstring).

    prepare: the Keras model that is exported and checked, from the loaded one (default: its float32 copy).
    """

    kind: str
    detect: Callable[[object], bool]
    endpoints: Callable[[object], dict]
    checks: Callable[[object], list[Check]]
    prepare: Callable[[object], object] = float32_copy


# ------------------------------------------------------------------------------------------------ SR generator


def _is_sr_generator(model) -> bool:
    from mammo_tf.models.sr import generator_scale

    return generator_scale(model) is not None


def _sr_endpoints(gen) -> dict:
    import tensorflow as tf

    def sr(image):
        quant_step = tf.zeros(tf.shape(image)[:1], tf.float32)  # float input: the strict projection
        return {"sr": gen([image, quant_step], training=False)}

    def sr_uint16(pixels, bit_depth):
        checks = [
            tf.debugging.assert_equal(
                tf.shape(bit_depth)[0], tf.shape(pixels)[0], message="bit_depth needs one value per image in pixels"
            ),
            tf.debugging.assert_greater_equal(bit_depth, 1, message="bit_depth must be in [1, 16]"),
            tf.debugging.assert_less_equal(bit_depth, 16, message="bit_depth must be in [1, 16]"),
        ]
        with tf.control_dependencies(checks):
            maxval = tf.cast(tf.bitwise.left_shift(tf.ones_like(bit_depth), bit_depth) - 1, tf.float32)
        peak = tf.cast(tf.reduce_max(tf.cast(pixels, tf.int32), axis=[1, 2, 3]), tf.float32)
        in_range = tf.debugging.assert_less_equal(peak, maxval, message="pixels above 2^bit_depth - 1")
        with tf.control_dependencies([in_range]):
            levels = maxval[:, None, None, None]
            lr = tf.cast(pixels, tf.float32) / levels
        out = gen([lr, 1.0 / maxval], training=False)
        pixels_out = tf.cast(tf.round(tf.clip_by_value(out, 0.0, 1.0) * levels), tf.uint16)
        return {"sr": out, "sr_pixels": pixels_out}

    image = tf.TensorSpec([None, None, None, 1], tf.float32, name="image")
    pixels = tf.TensorSpec([None, None, None, 1], tf.uint16, name="pixels")
    bits = tf.TensorSpec([None], tf.int32, name="bit_depth")
    return {
        "serving_default": tf.function(sr, input_signature=[image]),
        "serve_uint16": tf.function(sr_uint16, input_signature=[pixels, bits]),
    }


def _sr_checks(gen) -> list[Check]:
    rng = np.random.default_rng(15)
    checks = []
    for shape in ((2, 13, 17, 1), (1, 24, 9, 1)):  # odd sizes, batch > 1, saturated pixels
        image = rng.uniform(0.0, 1.0, shape).astype(np.float32)
        image[0, :3, :3] = 1.0
        image[-1, -2:, -4:] = 0.0
        out = np.asarray(gen([image, np.zeros(shape[0], np.float32)], training=False))
        checks.append(Check("serving_default", {"image": image}, {"sr": out}))
    bit_depth = np.array([8, 12, 16], np.int32)
    maxval = ((1 << bit_depth.astype(np.int64)) - 1).astype(np.float32)
    pixels = np.stack([rng.integers(0, int(m) + 1, (11, 14, 1)) for m in maxval]).astype(np.uint16)
    pixels[1, 0, :5] = int(maxval[1])
    levels = maxval[:, None, None, None]
    out = np.asarray(gen([pixels.astype(np.float32) / levels, 1.0 / maxval], training=False))
    stored = np.round(np.clip(out, 0.0, 1.0) * levels).astype(np.uint16)
    checks.append(Check("serve_uint16", {"pixels": pixels, "bit_depth": bit_depth}, {"sr": out, "sr_pixels": stored}))
    return checks


# ----------------------------------------------------------------------------------------- synthesis generator


def _is_synthesis_generator(model) -> bool:
    names = [getattr(t, "name", None) for t in getattr(model, "inputs", None) or []]
    outputs = getattr(model, "outputs", None) or []
    return names == ["z", "label"] and len(outputs) == 1 and len(outputs[0].shape) == 4 and outputs[0].shape[-1] == 1


def _synthesis_shape(gen) -> tuple[int, int]:
    """(latent size, number of classes) of a synthesis generator."""
    return int(gen.inputs[0].shape[-1]), int(gen.get_layer("class_embedding").input_dim)


def _synthesis_endpoints(gen) -> dict:
    import tensorflow as tf

    latent_dim, n_classes = _synthesis_shape(gen)
    message = f"class_id must be in [0, {n_classes})"

    def images(z, class_id):
        checks = [
            tf.debugging.assert_equal(tf.shape(class_id)[0], tf.shape(z)[0], message="class_id needs one value per z"),
            tf.debugging.assert_greater_equal(class_id, 0, message=message),
            tf.debugging.assert_less(class_id, n_classes, message=message),
        ]
        with tf.control_dependencies(checks):
            return {"images": gen([z, tf.identity(class_id)], training=False)}

    def seeded(count, class_id, seed):
        checks = [
            tf.debugging.assert_greater_equal(count, 1, message=f"count must be in [1, {MAX_COUNT}]"),
            tf.debugging.assert_less_equal(count, MAX_COUNT, message=f"count must be in [1, {MAX_COUNT}]"),
        ]
        with tf.control_dependencies(checks):
            z = _seeded_latents(count, latent_dim, seed)
        return {**images(z, tf.fill([count], class_id)), "z": z}

    z = tf.TensorSpec([None, latent_dim], tf.float32, name="z")
    class_ids = tf.TensorSpec([None], tf.int32, name="class_id")
    scalars = [tf.TensorSpec([], tf.int32, name="count"), tf.TensorSpec([], tf.int32, name="class_id"),
               tf.TensorSpec([], tf.int64, name="seed")]  # fmt: skip
    return {
        "serving_default": tf.function(images, input_signature=[z, class_ids]),
        "serve_seeded": tf.function(seeded, input_signature=scalars),
    }


def _seeded_latents(count, latent_dim: int, seed):
    """float32 [count, latent_dim]: counter-based (Philox) normal draws, identical on every device."""
    import tensorflow as tf

    key = tf.stack([tf.cast(seed, tf.int64), tf.constant(0, tf.int64)])
    return tf.random.stateless_normal(tf.stack([count, latent_dim]), seed=key, alg="philox")


def _synthesis_checks(gen) -> list[Check]:
    latent_dim, n_classes = _synthesis_shape(gen)
    rng = np.random.default_rng(15)
    z = rng.standard_normal((5, latent_dim)).astype(np.float32)
    labels = (np.arange(5) % n_classes).astype(np.int32)
    checks = [Check("serving_default", {"z": z, "class_id": labels}, {"images": np.asarray(gen([z, labels]))})]
    count, class_id, seed = 3, n_classes - 1, 7
    z = np.asarray(_seeded_latents(count, latent_dim, seed))
    images = np.asarray(gen([z, np.full(count, class_id, np.int32)], training=False))
    inputs = {"count": np.int32(count), "class_id": np.int32(class_id), "seed": np.int64(seed)}
    checks.append(Check("serve_seeded", inputs, {"images": images, "z": z}))
    return checks


# -------------------------------------------------------------------------------------------------- classifier


def _is_classifier(model) -> bool:
    try:
        from mammo_tf.models.classifier import CLASSIFIER_NAME
    except ImportError:
        return False
    network = getattr(model, "network", None)
    return getattr(model, "name", "") == CLASSIFIER_NAME and network is not None and hasattr(network, "inputs")


def _classifier_float32(model):
    """The CalcificationClassifier wrapper around a float32 copy of its network (its `call` is what is served)."""
    network = float32_copy(model.network)
    if network is model.network:
        return model
    wrapper = type(model)(network, name=model.name)
    size = int(network.inputs[0].shape[1])
    wrapper(np.zeros((1, size, size, 1), np.float32))  # builds it (ExportArchive tracks built models only)
    return wrapper


def _patch_size(model) -> int:
    return int(model.network.inputs[0].shape[1])


def _classifier_endpoints(model) -> dict:
    import tensorflow as tf

    size = _patch_size(model)

    def classify(patches):
        return {"calc_probability": model(patches, training=False)["calc"]}

    patches = tf.TensorSpec([None, size, size, 1], tf.float32, name="patches")
    return {"serving_default": tf.function(classify, input_signature=[patches])}


def _classifier_checks(model) -> list[Check]:
    size = _patch_size(model)
    patches = np.random.default_rng(15).uniform(0.2, 0.8, (4, size, size, 1)).astype(np.float32)
    patches[1, size // 2 - 1 : size // 2 + 1, size // 2 - 1 : size // 2 + 1] = 1.0  # one bright speck
    out = np.asarray(model(patches, training=False)["calc"])
    return [Check("serving_default", {"patches": patches}, {"calc_probability": out})]


# New model types add one Exporter here (see the module docstring); the first that detects a model wins.
EXPORTERS: tuple[Exporter, ...] = (
    Exporter("sr-generator", _is_sr_generator, _sr_endpoints, _sr_checks),
    Exporter("synthesis-generator", _is_synthesis_generator, _synthesis_endpoints, _synthesis_checks),
    Exporter("classifier", _is_classifier, _classifier_endpoints, _classifier_checks, _classifier_float32),
)


def find_exporter(model, path: Path) -> Exporter:
    """The Exporter for `model` (loaded from `path`); MammoError naming the file if none fits."""
    for exporter in EXPORTERS:
        if exporter.detect(model):
            return exporter
    kinds = ", ".join(e.kind for e in EXPORTERS)
    what = getattr(model, "name", type(model).__name__)
    raise located(path, f"not a model type mammo-tf can export: model {what!r} (exportable: {kinds})")
