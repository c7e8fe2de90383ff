"""SavedModel export for TensorFlow Serving: explicit signatures, integer version folders, models.config.

    export_model(model, name, version=None, out="saved_models/serving") -> <out>/<name>/<version>/

Layout (what TF Serving reads; it serves the highest integer version of each name by default):

    <out>/models.config                  model_config_list: every <name> below, base_path /models/<name>
    <out>/<name>/<version>/saved_model.pb, variables/, assets.extra/mammo_export.json (source, checks, diffs)

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

Models trained under mixed_bfloat16 are exported computing in float32 (see `float32_copy`).

Bad requests (wrong bit depth, pixels above 2^bits - 1, a class out of range, a count out of range) fail with
INVALID_ARGUMENT and a message naming the input.

Verification: the export is written to a temporary folder beside the version folder, loaded in a fresh Python
process with `tf.saved_model.load` (mammo_tf not imported there), and every signature is run on fixed sample
inputs and compared with the `.keras` model run here: float outputs within FLOAT_TOLERANCE (max |diff|),
integer outputs within INT_TOLERANCE grey levels (a float round-off can only move a value sitting on a rounding
tie). Only then is it renamed to `<out>/<name>/<version>/`, so a server watching the folder never sees an
unverified or half-written version.

Adding a model type: write a `detect(model) -> bool`, an `endpoints(model) -> {signature: tf.function}` with
explicit input signatures returning dicts of named outputs, and a `checks(model) -> [Check]` that runs the Keras
model on fixed inputs, then append an `Exporter` to EXPORTERS.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mammo_tf.errors import MammoError, located

DEFAULT_OUT = Path("saved_models/serving")
SERVING_ROOT = "/models"  # where the docker command of docs/serving.md mounts <out>
FLOAT_TOLERANCE = 1e-5  # max |SavedModel - Keras| for float32 outputs, in units of full scale
INT_TOLERANCE = 1  # grey levels, integer outputs
MAX_COUNT = 1024  # serve_seeded: patches per request
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
METADATA = Path("assets.extra") / "mammo_export.json"
VERIFY_TIMEOUT_S = 900


@dataclass(frozen=True)
class Check:
    """One verification call: signature(**inputs) must give `outputs` (computed with the Keras model)."""

    signature: str
    inputs: dict[str, np.ndarray]
    outputs: dict[str, np.ndarray]


def float32_copy(model):
    """`model` computing in float32 (same weights); `model` itself if it already does.

    Models trained under mixed_bfloat16 are exported in float32: bf16 rounding differs between eager and
    graph execution and between CPUs (up to ~1e-5 here on SR outputs), and a served model's numbers should not
    depend on the server's instruction set. The difference to the source model is recorded in the metadata.
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


def _policy(model) -> str:
    """The dtype policies of a model's layers, nested models included: 'float32', 'float32, mixed_bfloat16'."""
    import keras

    names = set()
    for layer in model.layers:
        names |= set(_policy(layer).split(", ")) if isinstance(layer, keras.Model) else {layer.dtype_policy.name}
    return ", ".join(sorted(names))


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


# ---------------------------------------------------------------------------------------------- folders, config


def check_name(name: str) -> str:
    """A TF Serving model name (a folder, and the /v1/models/<name> URL part): letters, digits, '.', '_', '-'."""
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise MammoError(f"--name {name!r}: use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit")
    return name


def versions(model_dir: Path) -> list[int]:
    """The integer version folders of `model_dir` (what TF Serving reads), ascending."""
    if not model_dir.is_dir():
        return []
    return sorted(int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit())


def served_models(out: Path) -> list[str]:
    """The names under `out` that have at least one version holding a saved_model.pb."""
    if not out.is_dir():
        return []

    def served(folder: Path) -> bool:
        return any((folder / str(v) / "saved_model.pb").is_file() for v in versions(folder))

    return sorted(p.name for p in out.iterdir() if p.is_dir() and NAME_PATTERN.fullmatch(p.name) and served(p))


def models_config_text(names: list[str], root: str = SERVING_ROOT) -> str:
    """A TF Serving model config file (ModelServerConfig in protobuf text format) for `names` under `root`."""
    entries = "".join(
        f'  config {{\n    name: "{n}"\n    base_path: "{root}/{n}"\n    model_platform: "tensorflow"\n  }}\n'
        for n in names
    )
    header = "# Written by `mammo-tf export`; TF Serving serves the highest version of each model.\n"
    return f"{header}model_config_list {{\n{entries}}}\n"


def write_models_config(out: str | Path, root: str = SERVING_ROOT) -> Path:
    """(Re)write `<out>/models.config` for every exported model under `out`, atomically."""
    from mammo_tf.io.atomic import write_bytes_atomic

    path = Path(out) / "models.config"
    write_bytes_atomic(path, models_config_text(served_models(Path(out)), root).encode())
    return path


# ---------------------------------------------------------------------------------------------------- export


def _register_custom_objects() -> None:
    """Import the modules whose layers a .keras file may name (load_keras registers the SR ones)."""
    for module in ("mammo_tf.models.synthesis", "mammo_tf.models.classifier"):
        with contextlib.suppress(ImportError):  # optional: an SR-only export needs neither
            importlib.import_module(module)


def _write_saved_model(model, exporter: Exporter, folder: Path) -> dict:
    """Write the SavedModel into `folder`; returns its signatures as {name: {"inputs": ..., "outputs": ...}}."""
    import keras

    archive = keras.export.ExportArchive()
    archive.track(model)
    endpoints = exporter.endpoints(model)
    for name, fn in endpoints.items():
        archive.add_endpoint(name, fn)
    archive.write_out(str(folder), verbose=False)
    specs = {}
    for name, fn in endpoints.items():  # traced already: the same functions the SavedModel holds
        outputs = fn.get_concrete_function().structured_outputs
        specs[name] = {
            "inputs": {s.name: [s.dtype.name, s.shape.as_list()] for s in fn.input_signature},
            "outputs": {k: [v.dtype.name, v.shape.as_list()] for k, v in outputs.items()},
        }
    return specs


def export_model(
    model_spec: str | Path,
    name: str,
    version: int | None = None,
    out: str | Path = DEFAULT_OUT,
    *,
    verify: bool = True,
) -> Path:
    """Export a model as `<out>/<name>/<version>/` and rewrite `<out>/models.config`; returns the version folder.

    model_spec: a shipped model name, a .keras file or a run directory (as `--model` elsewhere).
    version: an integer >= 1 that does not exist yet; None = one more than the highest existing version.
    verify: run the fresh-process check before publishing (see the module docstring); only tests turn it off.
    MammoError (nothing written) for a bad name or version, a model of no exportable type, an unwritable
    `out`, or a failed verification.
    """
    from mammo_tf.inference.registry import load_model, model_id
    from mammo_tf.io.atomic import atomic_dir

    out = Path(out)
    model_dir = out / check_name(name)
    existing = versions(model_dir)
    if version is None:
        version = max(existing, default=0) + 1
    elif isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise MammoError(f"--version {version!r}: must be an integer >= 1")
    target = model_dir / str(version)
    if target.exists():
        shown = ", ".join(map(str, existing)) or "none"
        free = max([*existing, version]) + 1
        raise located(target, f"version {version} already exists (versions: {shown}; next free: {free})")
    _register_custom_objects()
    model, path, _ = load_model(model_spec, ("sr", "synthesis", "classifier"), "export")
    exporter = find_exporter(model, path)
    served = exporter.prepare(model)
    with atomic_dir(target) as tmp:
        signatures = _write_saved_model(served, exporter, tmp)
        checks = exporter.checks(served)
        report = verify_export(tmp, checks, signatures) if verify else None
        precision = {"source": _policy(model), "exported": "float32"}
        if served is not model:  # what the switch to float32 changed, on the same sample inputs
            source = exporter.checks(model)
            precision["max_abs_diff_vs_source"] = {
                f"{c.signature}/{k}": float(np.max(np.abs(v.astype(np.float64) - s.outputs[k].astype(np.float64))))
                for c, s in zip(checks, source, strict=True)
                for k, v in c.outputs.items()
            }
        metadata = {
            "name": name,
            "version": version,
            "kind": exporter.kind,
            "source": str(path),
            "model_id": model_id(path),
            "signatures": signatures,
            "tolerance": {"float_max_abs": FLOAT_TOLERANCE, "int_max_abs": INT_TOLERANCE},
            "precision": precision,
            "verification": report,
        }
        (tmp / METADATA).parent.mkdir(parents=True, exist_ok=True)
        (tmp / METADATA).write_text(json.dumps(metadata, indent=2) + "\n")
    write_models_config(out)
    return target


def export_info(version_dir: str | Path) -> dict:
    """What `export_model` recorded about an export (kind, source, signatures, measured differences)."""
    return json.loads((Path(version_dir) / METADATA).read_text())


# ------------------------------------------------------------------------------------------------ verification

# Runs in a fresh interpreter (-I: no cwd, no PYTHONPATH on sys.path) with TensorFlow and NumPy only.
_VERIFY_SCRIPT = r"""
import json, sys
import numpy as np
import tensorflow as tf

folder, data_path, spec_path = sys.argv[1:4]
spec = json.loads(open(spec_path).read())
data = np.load(data_path)
model = tf.saved_model.load(folder)
report = {"signatures": {}, "checks": []}
for name, fn in model.signatures.items():
    inputs = {k: [v.dtype.name, v.shape.as_list()] for k, v in fn.structured_input_signature[1].items()}
    outputs = {k: [v.dtype.name, v.shape.as_list()] for k, v in fn.structured_outputs.items()}
    report["signatures"][name] = {"inputs": inputs, "outputs": outputs}
for i, check in enumerate(spec["checks"]):
    got = model.signatures[check["signature"]](**{k: tf.constant(data[f"c{i}_in_{k}"]) for k in check["inputs"]})
    for k in check["outputs"]:
        want, have = data[f"c{i}_out_{k}"], got[k].numpy()
        same = have.shape == want.shape and have.dtype == want.dtype
        diff = float(np.max(np.abs(have.astype(np.float64) - want.astype(np.float64)))) if same else None
        report["checks"].append({"signature": check["signature"], "output": k, "shape": list(have.shape),
                                 "dtype": have.dtype.name, "max_abs_diff": diff})
report["mammo_tf_imported"] = any(m.split(".")[0] == "mammo_tf" for m in sys.modules)
print("MAMMO_VERIFY " + json.dumps(report))
"""


def verify_export(folder: str | Path, checks: list[Check], signatures: dict | None = None) -> dict:
    """Load `folder` in a fresh process without mammo_tf and compare its signatures with `checks`.

    signatures: the expected {signature: {"inputs": ..., "outputs": ...}} (names, dtypes, shapes), if given.
    Returns {"max_abs_diff": {"<signature>/<output>": float}, "process": "..."}; MammoError naming the folder
    and the first mismatch otherwise.
    """
    folder = Path(folder).absolute()  # the fresh process runs in its own scratch folder
    with tempfile.TemporaryDirectory(prefix="mammo-verify-") as scratch:
        arrays, spec = {}, {"checks": []}
        for i, check in enumerate(checks):
            arrays.update({f"c{i}_in_{k}": np.asarray(v) for k, v in check.inputs.items()})
            arrays.update({f"c{i}_out_{k}": np.asarray(v) for k, v in check.outputs.items()})
            spec["checks"].append(
                {"signature": check.signature, "inputs": list(check.inputs), "outputs": list(check.outputs)}
            )
        np.savez(Path(scratch) / "checks.npz", **arrays)
        (Path(scratch) / "spec.json").write_text(json.dumps(spec))
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
        command = [
            sys.executable,
            "-I",
            "-c",
            _VERIFY_SCRIPT,
            str(folder),
            f"{scratch}/checks.npz",
            f"{scratch}/spec.json",
        ]
        done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=scratch, timeout=VERIFY_TIMEOUT_S)
    lines = [line for line in done.stdout.splitlines() if line.startswith("MAMMO_VERIFY ")]
    if done.returncode != 0 or not lines:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1][:300]
        raise located(folder, f"export verification failed: the fresh process exited {done.returncode} ({last})")
    report = json.loads(lines[-1][len("MAMMO_VERIFY ") :])
    fail = lambda why: located(folder, f"export verification failed: {why}")  # noqa: E731
    if report["mammo_tf_imported"]:
        raise fail("the fresh process imported mammo_tf")
    for name, expected in (signatures or {}).items():
        if report["signatures"].get(name) != expected:
            raise fail(f"signature {name!r} is {report['signatures'].get(name)}, expected {expected}")
    diffs = {}
    for row, (check, output) in zip(report["checks"], ((c, k) for c in checks for k in c.outputs), strict=True):
        want = np.asarray(check.outputs[output])
        key = f"{row['signature']}/{row['output']}"
        if row["max_abs_diff"] is None:
            raise fail(f"{key} is {row['dtype']} {row['shape']}, expected {want.dtype.name} {list(want.shape)}")
        tolerance = FLOAT_TOLERANCE if np.issubdtype(want.dtype, np.floating) else INT_TOLERANCE
        if row["max_abs_diff"] > tolerance:
            raise fail(f"{key} differs from the Keras model by {row['max_abs_diff']:.3g} (tolerance {tolerance:g})")
        diffs[key] = max(diffs.get(key, 0.0), row["max_abs_diff"])
    return {"max_abs_diff": diffs, "process": f"{Path(sys.executable).name} -I, tf.saved_model.load, no mammo_tf"}
