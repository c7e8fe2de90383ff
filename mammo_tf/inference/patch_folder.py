"""A folder of patches and its manifest.csv, written whole or not at all: what `synth` and `insert` write.

The folder is built under a temporary name beside it and renamed into place, so a failed or interrupted
command leaves nothing behind; an existing output is replaced only with ``overwrite`` and only if it is a
previous output of the same kind (it holds a manifest.csv), and it stays in place until the new one is.
"""

from __future__ import annotations

import io
import os
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from mammo_tf.errors import MammoError, located
from mammo_tf.io.atomic import atomic_dir

FORMATS = ("png", "npy")
MANIFEST = "manifest.csv"


def check_output_folder(out: Path, overwrite: bool, command: str) -> None:
    """MammoError unless `out` is absent, empty, or (with overwrite) a previous output holding a manifest."""
    if out.exists() and not out.is_dir():
        raise located(out, "output exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise located(out, "output folder exists and is not empty (use --overwrite)")
        if not (out / MANIFEST).is_file():
            raise located(out, f"--overwrite replaces only a previous {command} output (no {MANIFEST} here)")


def encode_patch(image: np.ndarray, fmt: str, bits: int = 16) -> bytes:
    """float [P, P] in [0, 1] -> file bytes: a grey PNG of `bits` bits (8 or 16), or float32 .npy."""
    if fmt == "npy":
        buffer = io.BytesIO()
        np.save(buffer, image.astype(np.float32), allow_pickle=False)
        return buffer.getvalue()
    from mammo_tf.io.images import quantize
    from mammo_tf.io.native import opencv

    ok, encoded = opencv().imencode(".png", quantize(image, bits))
    if not ok:
        raise MammoError(f"OpenCV could not encode a {bits}-bit PNG")
    return encoded.tobytes()


def write_patch_folder(out: Path, manifest: pd.DataFrame, files: Iterable[tuple[str, bytes]]) -> None:
    """Write `files` (name, bytes) and manifest.csv into `out`, atomically, replacing a checked previous output."""
    backup = None
    if out.is_dir():
        if any(out.iterdir()):  # a previous output (checked): keep it aside until the new one is in place
            backup = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", dir=out.parent))
            os.replace(out, backup / out.name)
        else:
            out.rmdir()
    try:
        with atomic_dir(out) as tmp:
            for name, data in files:
                (tmp / name).write_bytes(data)
            manifest.to_csv(tmp / MANIFEST, index=False)
    except BaseException:
        if backup is not None:
            os.replace(backup / out.name, out)
            shutil.rmtree(backup, ignore_errors=True)
        raise
    if backup is not None:
        shutil.rmtree(backup, ignore_errors=True)
