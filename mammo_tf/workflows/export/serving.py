"""The folders TF Serving reads: model names, integer version folders and `<out>/models.config`.

    <out>/models.config                  model_config_list: every <name> below, base_path /models/<name>
    <out>/<name>/<version>/saved_model.pb, variables/, assets.extra/mammo_export.json

TF Serving serves the highest integer version of each name by default.
"""

from __future__ import annotations

import re
from pathlib import Path

from mammo_tf.errors import MammoError

DEFAULT_OUT = Path("saved_models/serving")
SERVING_ROOT = "/models"  # where the docker command of docs/serving.md mounts <out>
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


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
