"""Verification of an export in a fresh process, before it is published.

The export is loaded in a fresh Python process with `tf.saved_model.load` (mammo_tf not imported there), and
every signature is run on fixed sample inputs and compared with the `.keras` model run here: float outputs
within FLOAT_TOLERANCE (max |diff|), integer outputs within INT_TOLERANCE grey levels (a float round-off can
only move a value sitting on a rounding tie).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mammo_tf.errors import located

FLOAT_TOLERANCE = 1e-5  # max |SavedModel - Keras| for float32 outputs, in units of full scale
INT_TOLERANCE = 1  # grey levels, integer outputs
VERIFY_TIMEOUT_S = 900


@dataclass(frozen=True)
class Check:
    """One verification call: signature(**inputs) must give `outputs` (computed with the Keras model)."""

    signature: str
    inputs: dict[str, np.ndarray]
    outputs: dict[str, np.ndarray]


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
