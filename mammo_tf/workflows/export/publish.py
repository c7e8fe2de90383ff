"""Writing one export: load the model, write its SavedModel, verify it, record what was done, publish it.

    export_model(model, name, version=None, out="saved_models/serving") -> <out>/<name>/<version>/

The SavedModel is written to a temporary folder beside the version folder and verified there (verify.py);
only then is it renamed to `<out>/<name>/<version>/`, so a server watching the folder never sees an unverified
or half-written version. `<version>/assets.extra/mammo_export.json` records the source, the signatures, the
verification and the precision differences (`export_info` reads it).
"""

from __future__ import annotations

import contextlib
import importlib
import json
from pathlib import Path

import numpy as np

from mammo_tf.errors import MammoError, located
from mammo_tf.workflows.export.precision import dtype_policies
from mammo_tf.workflows.export.serving import DEFAULT_OUT, check_name, versions, write_models_config
from mammo_tf.workflows.export.signatures import Exporter, find_exporter
from mammo_tf.workflows.export.verify import FLOAT_TOLERANCE, INT_TOLERANCE, verify_export

METADATA = Path("assets.extra") / "mammo_export.json"


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
        precision = {"source": dtype_policies(model), "exported": "float32"}
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
