"""Where `--model NAME|PATH` points: shipped models by name, a `.keras` file, or a run directory.

Shipped models live in ``saved_models/<name>/`` (``model.keras`` + ``card.md`` + ``card.json``); the folder
can be moved with $MAMMO_MODELS. A run directory resolves to the model its trainer exported there
(``generator.keras`` for SR and synthesis runs, ``classifier.keras`` for classifier runs).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from mammo_tf.errors import located

REPO_MODELS = Path(__file__).resolve().parents[2] / "saved_models"
DEFAULT_MODELS = {"sr": "sr-x2", "synthesis": "synth-64", "classifier": "calc-classifier"}
RUN_ARTIFACTS = ("generator.keras", "classifier.keras", "model.keras")


def models_root() -> Path:
    value = os.environ.get("MAMMO_MODELS")
    return Path(value) if value else REPO_MODELS


def resolve_model_path(spec: str | Path | None, kind: str) -> Path:
    """The `.keras` file for `spec` (None = the shipped default of `kind`); MammoError naming what is missing."""
    spec = DEFAULT_MODELS[kind] if spec is None else spec
    path = Path(spec)
    if path.suffix == ".keras" or path.exists() or os.sep in str(spec):
        if path.is_dir():
            for name in RUN_ARTIFACTS:
                if (path / name).is_file():
                    return path / name
            raise located(path, f"no model in this folder (expected one of {', '.join(RUN_ARTIFACTS)})")
        if not path.is_file():
            raise located(path, "model file not found")
        return path
    shipped = models_root() / str(spec) / "model.keras"
    if not shipped.is_file():
        names = sorted(p.parent.name for p in models_root().glob("*/model.keras"))
        hint = f" (shipped: {', '.join(names)})" if names else " (no shipped models found)"
        raise located(shipped, f"no shipped model named {spec!r}{hint}")
    return shipped


def model_id(path: Path) -> str:
    """A stable id for reports and manifests: <folder or file stem>@<first 12 hex of the file's SHA-256>."""
    digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()[:12]
    stem = path.parent.name if path.name == "model.keras" else path.stem
    return f"{stem}@{digest}"


def load_keras(path: Path):
    """keras.models.load_model with every mammo_tf custom object registered; MammoError if it is not a model."""
    import keras

    import mammo_tf.models.blocks  # noqa: F401  (registers custom layers)
    import mammo_tf.models.consistency  # noqa: F401

    try:
        return keras.models.load_model(path, compile=False)
    except Exception as err:  # a damaged or foreign file: one line naming it
        raise located(
            path, f"cannot load as a Keras model ({type(err).__name__}: {str(err).splitlines()[0][:200]})"
        ) from None
