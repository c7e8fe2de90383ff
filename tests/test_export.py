"""`mammo-tf export`: SavedModels for TF Serving, checked with the official pieces (the server cannot run here).

Tiny models of each type are exported once per module (SR through the CLI); the checks then use
`saved_model_cli`, a fresh interpreter without mammo_tf, the official gRPC protos behind a real in-process
gRPC server, the README's own REST JSON and `models.config` parsed with `model_server_config_pb2`.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from concurrent import futures
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from cli_helpers import invoke, one_error_line

from mammo_tf.errors import MammoError
from mammo_tf.inference.registry import load_keras
from mammo_tf.workflows.export import FLOAT_TOLERANCE, export_info, export_model, float32_copy

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
DOCKER = (
    'docker run -p 8501:8501 -p 8500:8500 -v "$PWD/saved_models/serving:/models" tensorflow/serving '
    "--model_config_file=/models/models.config"
)


def tree(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


# ------------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def sr_run(tmp_path_factory) -> Path:
    """A run folder with a tiny x2 SR generator built as train-sr builds it on this CPU (mixed_bfloat16 layers).

    The weights are perturbed (seeded) so that the network, not only the bicubic skip, shapes the output.
    """
    from mammo_tf.config import resolve_sr_config
    from mammo_tf.models.sr import build_sr_generator

    previous = keras.config.dtype_policy().name
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        gen = build_sr_generator(resolve_sr_config("tiny"), name="mammo_sr_generator_x2_ema")
    finally:
        keras.config.set_dtype_policy(previous)
    rng = np.random.default_rng(0)
    gen.set_weights([w + rng.normal(0.0, 0.05, w.shape).astype(w.dtype) for w in gen.get_weights()])
    run = tmp_path_factory.mktemp("runs") / "tiny-sr"
    run.mkdir()
    gen.save(run / "generator.keras")
    return run


@pytest.fixture(scope="module")
def serving(tmp_path_factory, sr_run: Path) -> dict:
    """One serving folder: the SR model through the CLI (verified in a fresh process), then a synthesis and a
    classifier model through the library without that step (time: test_fresh_process_... and
    test_verification_checks_of_every_type_match_the_saved_model compare them with Keras instead)."""
    from mammo_tf.models.classifier import CalcificationClassifier, build_classifier_network
    from mammo_tf.models.synthesis import build_synthesis_generator

    out = tmp_path_factory.mktemp("serving") / "serving"
    result = invoke("export", sr_run, "--name", "sr-x2", "--out", out)
    models = tmp_path_factory.mktemp("models")
    # The synthesis model of the README's examples: latent size 4, 8 x 8 patches.
    synth = build_synthesis_generator(latent_dim=4, patch_size=8, n_classes=3, width=4, embed_dim=2, max_mult=1)
    synth.save(models / "synth.keras")
    export_model(models / "synth.keras", "synth-64", out=out, verify=False)
    previous = keras.config.dtype_policy().name
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        classifier = CalcificationClassifier(build_classifier_network(16, 4))
        classifier(np.zeros((1, 16, 16, 1), np.float32))
    finally:
        keras.config.set_dtype_policy(previous)
    classifier.save(models / "classifier.keras")
    export_model(models / "classifier.keras", "calc-classifier", out=out, verify=False)
    return {"out": out, "cli": result, "synth": models / "synth.keras", "classifier": models / "classifier.keras"}


@pytest.fixture(scope="module")
def loaded(serving: dict) -> dict:
    """The three SavedModels loaded in this process (the server's side of the gRPC and REST tests)."""
    out = serving["out"]
    return {name: tf.saved_model.load(str(out / name / "1")) for name in ("sr-x2", "synth-64", "calc-classifier")}


def sr_keras(sr_run: Path):
    """The exported computation in Keras: the run's generator, computing in float32."""
    return float32_copy(load_keras(sr_run / "generator.keras"))


# ---------------------------------------------------------------------------------------- layout and config


def test_cli_export_layout_metadata_and_models_config(serving: dict, sr_run: Path) -> None:
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    out, result = serving["out"], serving["cli"]
    assert result.exit_code == 0, result.output
    assert "exported sr-x2 version 1 (sr-generator, generator@" in result.output
    assert "serve_uint16: pixels uint16 [-1, -1, -1, 1], bit_depth int32 [-1] -> sr float32" in result.output
    assert "verified in a fresh process" in result.output and "tolerance 1e-05 float" in result.output
    for name in ("sr-x2", "synth-64", "calc-classifier"):
        version = out / name / "1"
        assert (version / "saved_model.pb").is_file() and (version / "variables" / "variables.index").is_file()
        info = export_info(version)
        assert info["version"] == 1 and info["precision"]["exported"] == "float32"
    verification = export_info(out / "sr-x2" / "1")["verification"]
    assert set(verification["max_abs_diff"]) == {"serving_default/sr", "serve_uint16/sr", "serve_uint16/sr_pixels"}
    assert max(verification["max_abs_diff"].values()) <= FLOAT_TOLERANCE, verification
    assert "no mammo_tf" in verification["process"]
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []  # no temporaries left
    assert "mixed_bfloat16" in export_info(out / "sr-x2" / "1")["precision"]["source"]
    assert export_info(out / "synth-64" / "1")["kind"] == "synthesis-generator"
    assert export_info(out / "calc-classifier" / "1")["kind"] == "classifier"

    config = text_format.Parse((out / "models.config").read_text(), model_server_config_pb2.ModelServerConfig())
    entries = {c.name: c for c in config.model_config_list.config}
    assert sorted(entries) == ["calc-classifier", "sr-x2", "synth-64"]
    for name, entry in entries.items():
        assert entry.base_path == f"/models/{name}" and entry.model_platform == "tensorflow"


def test_next_version_and_an_existing_version_is_never_overwritten(serving: dict, sr_run: Path, tmp_path) -> None:
    import shutil

    out = tmp_path / "serving"
    shutil.copytree(serving["out"] / "sr-x2" / "1", out / "sr-x2" / "1")  # an existing version 1
    assert export_model(sr_run, "sr-x2", out=out, verify=False) == out / "sr-x2" / "2"  # the next free one
    before = {p: p.read_bytes() for p in (out / "sr-x2" / "1").rglob("*") if p.is_file()}
    config = (out / "models.config").read_bytes()
    result = invoke("export", sr_run, "--name", "sr-x2", "--version", "1", "--out", out)
    one_error_line(result, str(out / "sr-x2" / "1"), "version 1 already exists", "next free: 3")
    assert {p: p.read_bytes() for p in (out / "sr-x2" / "1").rglob("*") if p.is_file()} == before
    assert (out / "models.config").read_bytes() == config
    assert sorted(p.name for p in (out / "sr-x2").iterdir()) == ["1", "2"]


# --------------------------------------------------------------------------------------------- saved_model_cli


@pytest.mark.slow
def test_saved_model_cli_show_lists_named_signatures(serving: dict) -> None:
    done = subprocess.run(
        [BIN / "saved_model_cli", "show", "--dir", serving["out"] / "sr-x2" / "1", "--all"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    text = re.sub(r"\s+", " ", done.stdout)
    for signature, tensors in {
        "serving_default": ["inputs['image'] tensor_info: dtype: DT_FLOAT shape: (-1, -1, -1, 1)",
                            "outputs['sr'] tensor_info: dtype: DT_FLOAT shape: (-1, -1, -1, 1)"],
        "serve_uint16": ["inputs['bit_depth'] tensor_info: dtype: DT_INT32 shape: (-1)",
                         "inputs['pixels'] tensor_info: dtype: DT_UINT16 shape: (-1, -1, -1, 1)",
                         "outputs['sr_pixels'] tensor_info: dtype: DT_UINT16 shape: (-1, -1, -1, 1)"],
    }.items():  # fmt: skip
        block = text.split(f"signature_def['{signature}']:")[1].split("signature_def[")[0]
        for needle in tensors:
            assert needle in block, (signature, needle, block)


@pytest.mark.slow
def test_saved_model_cli_run_gives_the_keras_output(serving: dict, sr_run: Path, tmp_path: Path) -> None:
    image = np.random.default_rng(3).uniform(0, 1, (1, 9, 14, 1)).astype(np.float32)
    np.save(tmp_path / "x.npy", image)
    done = subprocess.run(
        [BIN / "saved_model_cli", "run", "--dir", serving["out"] / "sr-x2" / "1", "--tag_set", "serve",
         "--signature_def", "serving_default", "--inputs", f"image={tmp_path / 'x.npy'}",
         "--outdir", tmp_path / "result", "--overwrite"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    sr = np.load(tmp_path / "result" / "sr.npy")
    want = np.asarray(sr_keras(sr_run)([image, np.zeros(1, np.float32)]))
    assert sr.shape == (1, 18, 28, 1) and np.abs(sr - want).max() <= FLOAT_TOLERANCE


def test_verification_checks_of_every_type_match_the_saved_model(serving: dict, loaded: dict, sr_run: Path) -> None:
    """The sample inputs and Keras outputs export verifies with, run here through each loaded SavedModel."""
    from mammo_tf.workflows.export import EXPORTERS, find_exporter

    assert [e.kind for e in EXPORTERS] == ["sr-generator", "synthesis-generator", "classifier"]
    for name, path in (("sr-x2", sr_run / "generator.keras"), ("synth-64", serving["synth"]),
                       ("calc-classifier", serving["classifier"])):  # fmt: skip
        exporter = find_exporter(load_keras(path), path)
        checks = exporter.checks(exporter.prepare(load_keras(path)))
        assert {c.signature for c in checks} == set(loaded[name].signatures), name
        for check in checks:
            got = loaded[name].signatures[check.signature](**{k: tf.constant(v) for k, v in check.inputs.items()})
            for key, want in check.outputs.items():
                assert got[key].dtype.as_numpy_dtype == want.dtype and got[key].shape == want.shape
                assert np.abs(got[key].numpy().astype(float) - want.astype(float)).max() <= FLOAT_TOLERANCE, key


# ------------------------------------------------------------------------------------ fresh process, no mammo_tf

FRESH = r"""
import json, sys
import numpy as np
import tensorflow as tf

out = sys.argv[1]
sr = tf.saved_model.load(out + "/sr-x2/1").signatures
synth = tf.saved_model.load(out + "/synth-64/1").signatures
clf = tf.saved_model.load(out + "/calc-classifier/1").signatures
rng = np.random.default_rng(5)
result = {"mammo_tf": sorted(m for m in sys.modules if m.split(".")[0] == "mammo_tf"), "sr": []}
arrays = {}
for i, (h, w) in enumerate([(8, 8), (31, 45), (5, 3)]):
    arrays[f"image{i}"] = rng.uniform(0, 1, (1, h, w, 1)).astype(np.float32)
    arrays[f"sr{i}"] = sr["serving_default"](image=tf.constant(arrays[f"image{i}"]))["sr"].numpy()
    result["sr"].append(list(arrays[f"sr{i}"].shape))
arrays["pixels"] = rng.integers(0, 4096, (2, 6, 7, 1)).astype(np.uint16)
got = sr["serve_uint16"](pixels=tf.constant(arrays["pixels"]), bit_depth=tf.constant([12, 16], tf.int32))
arrays["sr_pixels"] = got["sr_pixels"].numpy()
got = synth["serve_seeded"](count=tf.constant(2), class_id=tf.constant(1), seed=tf.constant(7, tf.int64))
arrays["seeded_images"], arrays["seeded_z"] = got["images"].numpy(), got["z"].numpy()
arrays["patches"] = rng.uniform(0, 1, (3, 16, 16, 1)).astype(np.float32)
arrays["calc"] = clf["serving_default"](patches=tf.constant(arrays["patches"]))["calc_probability"].numpy()
np.savez(sys.argv[2], **arrays)
print("RESULT " + json.dumps(result))
"""


@pytest.mark.slow
def test_fresh_process_loads_every_model_without_the_project(serving: dict, sr_run: Path, tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-I", "-c", FRESH, serving["out"], tmp_path / "arrays.npz"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.split("RESULT ")[-1])
    assert result["mammo_tf"] == []  # nothing of the project was imported there
    assert result["sr"] == [[1, 16, 16, 1], [1, 62, 90, 1], [1, 10, 6, 1]]  # any size, x2
    arrays = np.load(tmp_path / "arrays.npz")
    gen = sr_keras(sr_run)
    for i in range(3):
        want = np.asarray(gen([arrays[f"image{i}"], np.zeros(1, np.float32)]))
        assert np.abs(arrays[f"sr{i}"] - want).max() <= FLOAT_TOLERANCE
    levels = np.array([4095, 65535], np.float32)[:, None, None, None]
    want = np.asarray(gen([arrays["pixels"].astype(np.float32) / levels, 1.0 / levels[:, 0, 0, 0]]))
    stored = np.round(np.clip(want, 0, 1) * levels).astype(np.uint16)
    assert arrays["sr_pixels"].dtype == np.uint16
    assert np.abs(arrays["sr_pixels"].astype(int) - stored.astype(int)).max() <= 1
    synth = load_keras(serving["synth"])
    z = arrays["seeded_z"]
    assert z.shape == (2, 4) and arrays["seeded_images"].shape == (2, 8, 8, 1)
    want = np.asarray(synth([z, np.ones(2, np.int32)]))
    assert np.abs(arrays["seeded_images"] - want).max() <= FLOAT_TOLERANCE
    clf = float32_copy(load_keras(serving["classifier"]).network)
    logits = np.asarray(clf(arrays["patches"])["calc"]).reshape(-1)
    assert np.abs(arrays["calc"] - 1 / (1 + np.exp(-logits))).max() <= FLOAT_TOLERANCE


# ------------------------------------------------------------------------------------------- README: REST, gRPC


def serving_section() -> str:
    return (REPO / "docs" / "serving.md").read_text()  # the serving page, moved out of README.md


def rest_examples() -> list[tuple[str, str, str, str, str]]:
    """(model, request language, request, response language, response) for every POST in the README section."""
    pattern = re.compile(
        r"`POST http://localhost:8501/v1/models/([\w.-]+):predict`\n```(\w+)\n(.*?)```\n```(\w+)\n(.*?)```", re.S
    )
    return pattern.findall(serving_section())


def input_specs(signature) -> dict:
    """{input name: TensorSpec} of a loaded signature or of a tf.function with an input_signature."""
    if hasattr(signature, "input_signature"):
        return {spec.name: spec for spec in signature.input_signature}
    return signature.structured_input_signature[1]


def rest_to_tensors(body: dict, signature) -> dict:
    """A predict body, row (`instances`) or columnar (`inputs`), as TF Serving turns it into named tensors.

    Row format: one entry per batch element, each an object of named inputs (or a bare value for a one-input
    signature), stacked along a new 0-th dimension. Columnar format: named tensors in their nested form (or one
    bare tensor). Values take the dtype the signature declares.
    """
    specs = input_specs(signature)
    if "instances" in body:
        rows = body["instances"]
        if all(isinstance(r, dict) for r in rows):
            assert len({tuple(sorted(r)) for r in rows}) == 1, "every instance names the same inputs"
            columns = {k: [r[k] for r in rows] for k in rows[0]}
        else:
            (only,) = specs
            columns = {only: rows}
    else:
        inputs = body["inputs"]
        columns = inputs if isinstance(inputs, dict) else {next(iter(specs)): inputs}
    assert set(columns) == set(specs), (sorted(columns), sorted(specs))
    return {k: tf.constant(np.asarray(v, dtype=specs[k].dtype.as_numpy_dtype)) for k, v in columns.items()}


def tensors_to_rest(outputs: dict, row: bool) -> dict:
    """Signature outputs as TF Serving writes them: one output unnamed, several named; per row or per column."""
    arrays = {k: v.numpy() for k, v in outputs.items()}
    if row:
        if len(arrays) == 1:
            return {"predictions": next(iter(arrays.values())).tolist()}
        n = len(next(iter(arrays.values())))
        return {"predictions": [{k: v[i].tolist() for k, v in arrays.items()} for i in range(n)]}
    if len(arrays) == 1:
        return {"outputs": next(iter(arrays.values())).tolist()}
    return {"outputs": {k: v.tolist() for k, v in arrays.items()}}


def form(value):
    """The structure of a JSON value: keys and nested-list shapes, not the numbers."""
    if isinstance(value, dict):
        return {k: form(v) for k, v in value.items()}
    if isinstance(value, list):
        if value and isinstance(value[0], dict):
            return [form(v) for v in value]
        return ("list", np.asarray(value).shape)
    return "scalar"


def test_readme_rest_examples_run_row_and_columnar(loaded: dict) -> None:
    examples = rest_examples()
    assert [m for m, *_ in examples] == ["sr-x2"] * 4 + ["synth-64"] * 2 + ["calc-classifier"]
    seen = set()
    for model, req_lang, request, resp_lang, response in examples:
        assert resp_lang == "json"
        documented = json.loads(response)
        if req_lang == "json":
            body = json.loads(request)
        else:  # the classifier: a body built from an array, as the README shows
            patches = np.random.default_rng(0).uniform(0, 1, (len(documented["predictions"]), 16, 16, 1))
            namespace = {"patches": patches.astype(np.float32)}
            exec(request, namespace)  # noqa: S102 - the README's own line
            body = namespace["body"]
        signature = loaded[model].signatures[body.get("signature_name", "serving_default")]
        row = "instances" in body
        got = tensors_to_rest(signature(**rest_to_tensors(body, signature)), row)
        assert form(got) == form(documented), (model, body.get("signature_name"))
        seen.add((model, body.get("signature_name", "serving_default"), "row" if row else "columnar"))
        check_documented_values(model, body, documented)
    assert {("sr-x2", s, f) for s in ("serving_default", "serve_uint16") for f in ("row", "columnar")} <= seen


def check_documented_values(model: str, body: dict, documented: dict) -> None:
    """What the README's numbers must satisfy whatever model produced them."""
    payload = documented.get("predictions", documented.get("outputs"))
    inputs = body.get("inputs") or {k: [r[k] for r in body["instances"]] for k in body["instances"][0]}
    if model == "sr-x2" and "image" in inputs:
        sr = np.asarray(payload, np.float64)
        lr = np.asarray(inputs["image"], np.float64)
        block_means = sr.reshape(1, 2, 2, 2, 2).mean(axis=(2, 4))[..., None]
        assert np.abs(block_means - lr).max() <= 1e-4  # the consistency projection, 4 printed decimals
    elif model == "sr-x2":
        out = payload[0] if isinstance(payload, list) else payload
        sr_pixels = np.asarray(out["sr_pixels"], np.float64).reshape(1, 4, 4, 1)
        sr = np.asarray(out["sr"], np.float64).reshape(1, 4, 4, 1)
        pixels = np.asarray(inputs["pixels"], np.float64)
        assert np.abs(sr_pixels.reshape(1, 2, 2, 2, 2).mean(axis=(2, 4))[..., None] - pixels).max() <= 0.5 + 0.5
        assert np.abs(sr * 4095 - sr_pixels).max() <= 0.5 + 0.5  # 4 printed decimals of sr
    elif model == "synth-64" and body.get("signature_name") == "serve_seeded":
        from mammo_tf.workflows.export.signatures import _seeded_latents

        z = np.asarray(_seeded_latents(inputs["count"], 4, inputs["seed"]))
        assert np.abs(np.asarray(payload["z"]) - z).max() <= 1e-4  # Philox: the same on every machine
    if model != "calc-classifier":
        first = payload[0] if isinstance(payload, list) and isinstance(payload[0], dict) else payload
        images = first.get("images", first.get("sr")) if isinstance(first, dict) else first
        assert np.min(images) >= 0.0 and np.max(images) <= 1.0


def test_readme_sr_numbers_are_the_untrained_generators_outputs() -> None:
    """The README says its SR numbers come from an untrained x2 generator (projected bicubic): they must."""
    from mammo_tf.config import resolve_sr_config
    from mammo_tf.models.sr import build_sr_generator
    from mammo_tf.workflows.export.signatures import _sr_endpoints

    endpoints = _sr_endpoints(build_sr_generator(resolve_sr_config("tiny")))
    for model, _, request, _, response in rest_examples()[:4]:
        body, documented = json.loads(request), json.loads(response)
        fn = endpoints[body["signature_name"]]
        got = tensors_to_rest(fn(**rest_to_tensors(body, fn)), "instances" in body)
        flat = lambda v: np.asarray(  # noqa: E731
            [x for k in sorted(v) for x in np.ravel(v[k])] if isinstance(v, dict) else np.ravel(v), np.float64
        )
        key = "predictions" if "predictions" in got else "outputs"
        want, have = got[key], documented[key]
        if isinstance(want, list) and want and isinstance(want[0], dict):
            want, have = want[0], have[0]
        assert np.abs(flat(want) - flat(have)).max() <= 5.1e-5 * max(1.0, np.max(flat(want))), model


def test_readme_docker_command_and_models_config_are_exact(serving: dict) -> None:
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    from mammo_tf.workflows.export import SERVING_ROOT, models_config_text

    section = serving_section()
    assert DOCKER in section and f':{SERVING_ROOT}"' in DOCKER  # the mount that base_path /models/<name> assumes
    shown = section.split("```text\n")[1].split("```")[0]
    assert models_config_text(["sr-x2"]).endswith(shown)  # what export writes for one model, header aside
    text_format.Parse(shown, model_server_config_pb2.ModelServerConfig())
    written = (serving["out"] / "models.config").read_text()
    assert written == models_config_text(["calc-classifier", "sr-x2", "synth-64"])


class _Servicer:
    """PredictionService.Predict as TF Serving does it: tensors from the request's TensorProtos, run, protos back."""

    def __init__(self, models: dict) -> None:
        self.models = models

    def Predict(self, request, context):  # noqa: N802 - the gRPC method name
        from tensorflow_serving.apis import predict_pb2

        model = self.models[request.model_spec.name]
        signature = model.signatures[request.model_spec.signature_name or "serving_default"]
        inputs = {k: tf.constant(tf.make_ndarray(v)) for k, v in request.inputs.items()}
        response = predict_pb2.PredictResponse()
        response.model_spec.name = request.model_spec.name
        response.model_spec.signature_name = request.model_spec.signature_name or "serving_default"
        for name, value in signature(**inputs).items():
            response.outputs[name].CopyFrom(tf.make_tensor_proto(value.numpy()))
        return response


def test_grpc_readme_snippet_against_an_in_process_server(loaded: dict, sr_run: Path) -> None:
    import grpc
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    servicer = _Servicer(loaded)
    handler = grpc.method_handlers_generic_handler(
        "tensorflow.serving.PredictionService",
        {
            "Predict": grpc.unary_unary_rpc_method_handler(
                servicer.Predict,
                request_deserializer=predict_pb2.PredictRequest.FromString,
                response_serializer=predict_pb2.PredictResponse.SerializeToString,
            )
        },
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        snippet = serving_section().split("## gRPC")[1].split("```python\n")[1].split("```")[0]
        assert '"localhost:8500"' in snippet
        pixels = np.random.default_rng(1).integers(0, 4096, (10, 13)).astype(np.uint16)
        namespace = {"pixels": pixels}
        exec(snippet.replace("localhost:8500", f"127.0.0.1:{port}"), namespace)  # noqa: S102 - the README's code
        sr_pixels = namespace["sr_pixels"]
        # The same request by hand for serving_default, float32 in.
        stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(f"127.0.0.1:{port}"))
        request = predict_pb2.PredictRequest()
        request.model_spec.name = "sr-x2"
        image = (pixels / 4095.0).astype(np.float32)[None, :, :, None]
        request.inputs["image"].CopyFrom(tf.make_tensor_proto(image))
        sr = tf.make_ndarray(stub.Predict(request, timeout=60.0).outputs["sr"])
    finally:
        server.stop(None)
    assert sr_pixels.dtype == np.uint16 and sr_pixels.shape == (20, 26)
    gen = sr_keras(sr_run)
    want = np.asarray(gen([pixels[None, :, :, None] / np.float32(4095), np.full(1, 1 / 4095, np.float32)]))
    assert np.abs(sr_pixels.astype(int) - np.round(want[0, :, :, 0] * 4095).astype(int)).max() <= 1
    assert np.abs(sr - np.asarray(gen([image, np.zeros(1, np.float32)]))).max() <= FLOAT_TOLERANCE


# ----------------------------------------------------------------------------------------------- bad requests


@pytest.mark.parametrize(
    ("model", "signature", "inputs", "needle"),
    [
        ("sr-x2", "serve_uint16", {"pixels": np.zeros((1, 4, 4, 1), np.uint16), "bit_depth": np.int32([17])},
         "bit_depth must be in [1, 16]"),
        ("sr-x2", "serve_uint16", {"pixels": np.full((1, 4, 4, 1), 300, np.uint16), "bit_depth": np.int32([8])},
         "pixels above 2^bit_depth - 1"),
        ("sr-x2", "serve_uint16", {"pixels": np.zeros((2, 4, 4, 1), np.uint16), "bit_depth": np.int32([8])},
         "one value per image"),
        ("synth-64", "serve_seeded", {"count": np.int32(1), "class_id": np.int32(3), "seed": np.int64(0)},
         "class_id must be in [0, 3)"),
        ("synth-64", "serve_seeded", {"count": np.int32(0), "class_id": np.int32(0), "seed": np.int64(0)},
         "count must be in [1, 1024]"),
    ],
)  # fmt: skip
def test_bad_requests_fail_with_a_message_naming_the_input(loaded, model, signature, inputs, needle) -> None:
    fn = loaded[model].signatures[signature]
    with pytest.raises(tf.errors.InvalidArgumentError, match=re.escape(needle)):
        fn(**{k: tf.constant(v) for k, v in inputs.items()})


# ------------------------------------------------------------------------------------------------- bad input


@pytest.fixture(scope="module")
def not_models(tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("not-models")
    inputs = keras.Input((4,))
    keras.Model(inputs, keras.layers.Dense(1)(inputs), name="plain_dense").save(folder / "dense.keras")
    (folder / "notes.keras").write_text("not a model")
    return {"dense": folder / "dense.keras", "text": folder / "notes.keras"}


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (
            ["{dense}", "--name", "m"],
            ["dense.keras", "export needs an SR model, a synthesis model or a calcification", "plain_dense"],
        ),
        (["{text}", "--name", "m"], ["notes.keras", "not a .keras archive"]),
        (["no-such-model", "--name", "m"], ["no shipped model named 'no-such-model'"]),
        (["{sr}", "--name", "m", "--version", "x"], ["Invalid value for '--version'", "'x' is not a valid integer"]),
        (["{sr}", "--name", "m", "--version", "0"], ["Invalid value for '--version'", "0"]),
        (["{sr}", "--name", "../up"], ["--name '../up'", "letters, digits"]),
        (["{sr}", "--name", "m", "--out", "/proc/nope"], ["/proc/nope", "cannot be created", "(--out)"]),
        (["{sr}"], ["Missing option '--name'"]),
    ],
    ids=["unknown-type", "not-keras", "no-such-name", "version-x", "version-0", "bad-name", "unwritable", "no-name"],
)
def test_bad_input_one_line_exit_2_nothing_written(args, needles, not_models, sr_run, tmp_path) -> None:
    out = tmp_path / "serving"
    paths = {"dense": not_models["dense"], "text": not_models["text"], "sr": sr_run}
    argv = [a.format(**paths) for a in args]
    if "--out" not in argv:
        argv += ["--out", str(out)]
    one_error_line(invoke("export", *argv), *needles)
    assert not out.exists()
    assert not Path("/proc/nope").exists()


def test_a_failed_verification_publishes_nothing(sr_run: Path, tmp_path: Path, monkeypatch) -> None:
    import mammo_tf.workflows.export.publish as export

    def fails(folder, checks, signatures=None):
        assert folder.name.startswith(".1.") and (folder / "saved_model.pb").is_file()  # verified before the rename
        raise MammoError(f"{folder}: export verification failed: serving_default/sr differs")

    monkeypatch.setattr(export, "verify_export", fails)
    out = tmp_path / "serving"
    with pytest.raises(MammoError, match="verification failed"):
        export_model(sr_run, "sr-x2", out=out)
    assert tree(tmp_path) == []  # no version, no temporary, no models.config, no empty folders


def test_make_export_without_shipped_models(tmp_path: Path) -> None:
    done = subprocess.run(
        ["make", "-s", "export", "STAMP=", f"SHIPPED_MODELS={tmp_path}", f"SERVING_DIR={tmp_path / 'serving'}"],
        capture_output=True, text=True, cwd=REPO, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "nothing to export" in done.stdout and not (tmp_path / "serving").exists()


def test_export_with_a_relative_out_folder(tmp_path: Path, monkeypatch, sr_run: Path) -> None:
    """`make export` passes a relative --out: the fresh verifying process must find the version anyway."""
    monkeypatch.chdir(tmp_path)
    target = export_model(sr_run, "relative", out=Path("serving"))
    assert (tmp_path / "serving" / "relative" / "1" / "saved_model.pb").is_file() and target.name == "1"
