"""Where `--model` points, and what is there: shipped models by name, a `.keras` file, or a run directory.

Shipped models live in ``saved_models/<name>/`` (``model.keras`` + ``card.md`` + ``card.json``); the folder
can be moved with $MAMMO_MODELS. A run directory resolves to the model its trainer exported there
(``generator.keras`` for SR and synthesis runs, ``classifier.keras`` for classifier runs).

Every command that loads a model goes through ``load_model(spec, needs, command)``: it resolves the path,
identifies the file from its archive's ``config.json`` alone (``identify_model``: no TensorFlow, no weights
read), refuses one of the wrong kind with one line saying what the file is and what the command needs::

    m.keras: this is a calcification classifier (64 px patches); upscale needs an SR model
    x.keras: not a .keras archive (a .keras model is a zip file; this one is a PNG image)

and only then calls keras. Model kinds (``ModelInfo.kind``):

    sr               SR generator (models/sr.py)                  synthesis       synthesis generator
    srgan            SR training checkpoint (SRGAN wrapper)       synthesis-gan   SynthesisGAN checkpoint
    classifier       CalcificationClassifier                      featnet         evaluate-gan's feature network
    sr-discriminator, synthesis-discriminator, other (a Keras model mammo-tf did not make or does not know)
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mammo_tf.errors import MammoError, located

REPO_MODELS = Path(__file__).resolve().parents[2] / "saved_models"
DEFAULT_MODELS = {"sr": "sr-x2", "synthesis": "synth-64", "classifier": "calc-classifier", "insert": "insert-64"}
RUN_ARTIFACTS = ("generator.keras", "classifier.keras", "refiner.keras", "model.keras")

# What a command needs, per accepted kind (a checkpoint wrapper is never named: it is only ever accepted beside
# its generator).
NEEDS = {
    "sr": "an SR model",
    "synthesis": "a synthesis model",
    "synthesis-gan": "a synthesis model",
    "classifier": "a calcification classifier",
}
CHECKPOINTS = {"srgan": "sr", "synthesis-gan": "synthesis"}  # checkpoint kind -> the kind of its generator


def models_root() -> Path:
    """The folder of shipped models ($MAMMO_MODELS, else the repository's saved_models/)."""
    value = os.environ.get("MAMMO_MODELS")
    return Path(value) if value else REPO_MODELS


def _no_model_here(folder: Path) -> MammoError:
    """The error for a folder holding none of RUN_ARTIFACTS, saying what it does hold."""
    expected = f"expected {', '.join(RUN_ARTIFACTS[:-1])} or {RUN_ARTIFACTS[-1]}"
    others = sorted(p.name for p in folder.glob("*.keras") if p.is_file())
    if others:
        shown = ", ".join(others[:4]) + (f" and {len(others) - 4} more" if len(others) > 4 else "")
        return located(folder, f"no model in this folder ({expected}); it holds {shown}: give the file itself")
    if (folder / "saved_model.pb").is_file():
        return located(folder, f"this is a TensorFlow SavedModel (an export), not a .keras model ({expected})")
    if (folder / "checkpoints" / "last.keras").is_file():
        return located(
            folder, f"no model in this folder ({expected}): a training run that has not exported its model yet"
        )
    return located(folder, f"no model in this folder ({expected})")


def resolve_model_path(spec: str | Path | None, kind: str) -> Path:
    """The `.keras` file for `spec` (None = the shipped default of `kind`); MammoError naming what is missing."""
    spec = DEFAULT_MODELS[kind] if spec is None else spec
    path = Path(spec)
    if path.suffix == ".keras" or path.exists() or os.sep in str(spec):
        if path.is_dir():
            for name in RUN_ARTIFACTS:
                if (path / name).is_file():
                    return path / name
            raise _no_model_here(path)
        if not path.exists():
            raise located(path, "model file not found")
        if not path.is_file():
            raise located(path, "not a model file (a device or special file)")
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


# ------------------------------------------------------------------------------------------- what a file is


@dataclass(frozen=True)
class ModelInfo:
    """What a .keras archive holds, read from its config.json: kind (see the module docstring), a phrase for
    messages ("an SR model of scale 2"), and what is known of scale / patch size / classes."""

    kind: str
    what: str
    scale: int | None = None
    patch_size: int | None = None
    n_classes: int | None = None


_MAGIC = (  # (offset, bytes, what the file is)
    (0, b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (0, b"\xff\xd8\xff", "a JPEG image"),
    (0, b"II*\x00", "a TIFF image"),
    (0, b"MM\x00*", "a TIFF image"),
    (128, b"DICM", "a DICOM file"),
    (0, b"\x89HDF\r\n\x1a\n", "an HDF5 file, e.g. Keras weights or a legacy .h5 model"),
    (0, b"\x93NUMPY", "a NumPy .npy array"),
    (0, b"\x1f\x8b", "a gzip file"),
    (0, b"%PDF", "a PDF document"),
    (0, b"GIF8", "a GIF image"),
    (0, b"BM", "a BMP image"),
)


def _describe_file(path: Path, head: bytes, size: int) -> str:
    """What a file that is not a zip archive is, from its first bytes (for 'this one is ...')."""
    if size == 0:
        return "empty (0 bytes)"
    for offset, magic, what in _MAGIC:
        if head[offset : offset + len(magic)] == magic:
            return what
    if head[:2] in (b"P2", b"P5") and head[2:3].isspace():
        return "a PGM image"
    if b"\x00" not in head:
        try:
            text = head.decode("utf-8")
        except UnicodeDecodeError:
            text = None
        if text is not None:
            if text.startswith("version https://git-lfs"):
                return "a Git LFS pointer: fetch the model itself with `git lfs pull`"
            if text.lstrip()[:1] in ("{", "["):
                return "a JSON text file"
            return "a text file"
    return f"a binary file of unknown type ({size:,} bytes)"


def _not_archive(path: Path, what: str) -> MammoError:
    return located(path, f"not a .keras archive (a .keras model is a zip file; this one is {what})")


def _input_shapes(config: dict) -> list[tuple[str, list | None, str]]:
    """(name, batch_shape, dtype) of a Functional config's input layers, in input order."""
    layers = {layer.get("config", {}).get("name"): layer for layer in config.get("layers", [])}
    refs = config.get("input_layers") or []
    if refs and isinstance(refs[0], str):  # one input: ["name", 0, 0]
        refs = [refs]
    shapes = []
    for ref in refs:
        layer = layers.get(ref[0], {}).get("config", {})
        dtype = layer.get("dtype")
        dtype = dtype.get("config", {}).get("name") if isinstance(dtype, dict) else dtype
        shapes.append((str(ref[0]), layer.get("batch_shape"), str(dtype)))
    return shapes


def _layer(config: dict, name: str) -> dict | None:
    return next((lay for lay in config.get("layers", []) if lay.get("config", {}).get("name") == name), None)


def _square_patch(shape: list | None) -> int | None:
    ok = isinstance(shape, list) and len(shape) == 4 and shape[1] == shape[2] and isinstance(shape[1], int)
    return int(shape[1]) if ok else None


def _functional_info(config: dict, label: str) -> ModelInfo:
    """Identify a Functional model from its config (layer names and input shapes of the builders in models/)."""
    name = str(config.get("name", ""))
    inputs = _input_shapes(config)
    if name.startswith("mammo_sr_generator"):
        consistency = _layer(config, "consistency")
        scale = (consistency or {}).get("config", {}).get("scale")
        if isinstance(scale, int):
            return ModelInfo("sr", f"an SR model of scale {scale}", scale=scale)
    if name.startswith("mammo_sr_discriminator"):
        return ModelInfo("sr-discriminator", "an SR discriminator (a part of a training checkpoint)")
    if name.startswith("featnet_"):
        size = _square_patch(inputs[0][1]) if inputs else None
        px = f" ({size} px patches)" if size else ""
        return ModelInfo("featnet", f"evaluate-gan's feature network{px}", patch_size=size)
    if name.startswith("mammo_calc_classifier"):  # the bare network of a classifier
        size = _square_patch(inputs[0][1]) if inputs else None
        px = f" ({size} px patches)" if size else ""
        return ModelInfo("other", f"the bare network of a calcification classifier{px}, without its wrapper")
    if len(inputs) == 2:
        (_, z_shape, _), (_, label_shape, label_dtype) = inputs
        embedding = _layer(config, "class_embedding")
        if (
            isinstance(z_shape, list)
            and len(z_shape) == 2
            and isinstance(label_shape, list)
            and len(label_shape) == 1
            and "int" in label_dtype
            and embedding is not None
        ):
            n_classes = embedding.get("config", {}).get("input_dim")
            ups = [
                lay
                for lay in config.get("layers", [])
                if lay.get("class_name") == "UpSampling2D" and not lay["config"].get("name", "").endswith("skip_up")
            ]
            size = 4 * 2 ** len(ups) if ups and _layer(config, "to_4x4") else None
            details = ", ".join(
                [f"{size} px patches"] * bool(size) + [f"{n_classes} classes"] * isinstance(n_classes, int)
            )
            return ModelInfo(
                "synthesis",
                f"a synthesis model ({details})" if details else "a synthesis model",
                patch_size=size,
                n_classes=n_classes if isinstance(n_classes, int) else None,
            )
        if [i[0] for i in inputs] == ["image", "label"]:
            return ModelInfo("synthesis-discriminator", "a synthesis discriminator (a part of a training checkpoint)")
    return ModelInfo("other", f"a Keras {label} model {name!r} that mammo-tf did not make")


def _info_from_config(top: dict) -> ModelInfo:
    """Identify the model described by a .keras archive's config.json."""
    class_name = str(top.get("class_name", ""))
    registered = top.get("registered_name") or class_name
    config = top.get("config") if isinstance(top.get("config"), dict) else {}
    if class_name == "Functional":
        return _functional_info(config, "Functional")
    if class_name == "CalcificationClassifier":
        network = (config.get("network") or {}).get("config", {})
        inputs = _input_shapes(network)
        size = _square_patch(inputs[0][1]) if inputs else None
        px = f" ({size} px patches)" if size else ""
        return ModelInfo("classifier", f"a calcification classifier{px}", patch_size=size)
    if class_name in ("SRGAN", "SynthesisGAN"):
        inner = _functional_info((config.get("ema_generator") or config.get("generator") or {}).get("config", {}), "")
        if class_name == "SRGAN":
            scale = f", scale {inner.scale}" if inner.scale else ""
            return ModelInfo("srgan", f"an SR training checkpoint (SRGAN{scale})", scale=inner.scale)
        details = inner.what.removeprefix("a synthesis model (").removesuffix(")") if inner.patch_size else ""
        return ModelInfo(
            "synthesis-gan",
            f"a synthesis training checkpoint (SynthesisGAN{', ' + details if details else ''})",
            patch_size=inner.patch_size,
            n_classes=inner.n_classes,
        )
    if class_name == "Sequential":
        return ModelInfo("other", f"a Keras Sequential model {config.get('name', '')!r} that mammo-tf did not make")
    ours = str(registered).startswith("mammo_tf>")
    where = "that this version of mammo-tf does not know" if ours else "from outside mammo-tf"
    return ModelInfo("other", f"a Keras model of class {class_name!r} (registered as {registered!r}) {where}")


def identify_model(path: str | Path) -> ModelInfo:
    """What the .keras archive at `path` holds, from its config.json only (no TensorFlow, no weights read).

    MammoError naming the file for anything that is not a readable .keras archive: another kind of file (said
    which), an empty file, a damaged zip, a zip without config.json.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as handle:
            head = handle.read(4096)
    except OSError as err:
        raise located(path, f"cannot be read ({err.strerror or err})") from None
    if not head.startswith(b"PK"):
        raise _not_archive(path, _describe_file(path, head, size))
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            if "config.json" not in names:
                if names and all(n.endswith(".npy") for n in names):
                    raise _not_archive(path, "a NumPy .npz archive")
                shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "") if names else "nothing"
                raise located(path, f"a zip file but not a .keras model (no config.json inside; it holds {shown})")
            damaged = archive.testzip()
            if damaged is not None:
                raise located(path, f"a damaged .keras archive ({damaged} fails its checksum): copy or export it again")
            text = archive.read("config.json")
    except (zipfile.BadZipFile, zlib.error, EOFError, ValueError, NotImplementedError):
        raise located(
            path, f"a damaged .keras archive (a truncated or corrupt zip, {size:,} bytes): copy or export it again"
        ) from None
    except OSError as err:
        raise located(path, f"cannot be read ({err.strerror or err})") from None
    try:
        top = json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise located(path, "a damaged .keras archive (its config.json is not valid JSON)") from None
    if not isinstance(top, dict) or "class_name" not in top:
        raise located(path, "a zip with a config.json that does not describe a Keras model")
    return _info_from_config(top)


def _needs(accept: tuple[str, ...], scale: int | None) -> str:
    """'an SR model of scale 2', 'a synthesis model', 'an SR model, a synthesis model or a calcification classifier'."""
    phrases = list(dict.fromkeys(NEEDS[kind] for kind in accept if kind in NEEDS))
    if scale is not None and phrases == [NEEDS["sr"]]:
        return f"{phrases[0]} of scale {scale} (--scale {scale})"
    return phrases[0] if len(phrases) == 1 else ", ".join(phrases[:-1]) + " or " + phrases[-1]


def check_model(path: str | Path, accept: Iterable[str], command: str, *, scale: int | None = None) -> ModelInfo:
    """identify_model, then MammoError unless its kind is in `accept` (and, for SR, its scale is `scale`).

    command: what needs it, for the message ("upscale", "evaluate-aug --sr-model").
    """
    path, accept = Path(path), tuple(accept)
    info = identify_model(path)
    needs = _needs(accept, scale)
    if info.kind not in accept:
        hint = ""
        if CHECKPOINTS.get(info.kind) in accept:
            hint = ": give the run directory or its generator.keras, not a checkpoint"
        raise located(path, f"this is {info.what}; {command} needs {needs}{hint}")
    if scale is not None and info.scale is not None and info.scale != scale:
        raise located(path, f"this is {info.what}; {command} needs {needs}")
    return info


def load_keras(path: Path):
    """keras.models.load_model with every mammo_tf custom object registered; MammoError if it is not a model.

    A file that is not a readable .keras archive is refused before keras sees it (see identify_model).
    """
    identify_model(path)
    import keras

    import mammo_tf.models.blocks  # noqa: F401  (registers custom layers)
    import mammo_tf.models.consistency  # noqa: F401

    try:
        return keras.models.load_model(path, compile=False)
    except Exception as err:  # a damaged or foreign file: one line naming it
        raise located(
            path, f"cannot load as a Keras model ({type(err).__name__}: {str(err).splitlines()[0][:200]})"
        ) from None


_REGISTERING_MODULES = {
    "sr": "mammo_tf.models.sr",
    "srgan": "mammo_tf.models.sr",
    "synthesis": "mammo_tf.models.synthesis",
    "synthesis-gan": "mammo_tf.models.synthesis",
    "classifier": "mammo_tf.models.classifier",
}


def load_model(
    spec: str | Path | None,
    accept: Iterable[str],
    command: str,
    *,
    default: str | None = None,
    scale: int | None = None,
) -> tuple[Any, Path, ModelInfo]:
    """(keras model, its path, ModelInfo) for `--model spec`, refused before loading unless its kind is accepted.

    default: the DEFAULT_MODELS key used when spec is None (else the first accepted kind).
    """
    import importlib

    accept = tuple(accept)
    path = resolve_model_path(spec, default or accept[0])
    info = check_model(path, accept, command, scale=scale)
    if info.kind in _REGISTERING_MODULES:
        importlib.import_module(_REGISTERING_MODULES[info.kind])  # registers the classes its config names
    return load_keras(path), path, info
