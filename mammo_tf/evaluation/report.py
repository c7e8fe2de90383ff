"""Writing what evaluations produce: an output folder (atomic), metrics.json, report.md, labelled figures."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import cv2
import numpy as np

from mammo_tf.errors import located
from mammo_tf.io.atomic import atomic_dir


def _clean(value):
    """JSON-safe: NumPy scalars to Python, NaN/Inf to None."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def metrics_json(metrics: dict) -> str:
    return json.dumps(_clean(metrics), indent=2, sort_keys=True) + "\n"


def report_folder(out: str | Path):
    """Context manager yielding a temporary folder that becomes `out` when the block succeeds.

    `out` must not exist or be an empty folder (a report never mixes with older files).
    """
    out = Path(out)
    if out.exists():
        if not out.is_dir() or any(out.iterdir()):
            raise located(out, "output folder exists and is not empty")
        shutil.rmtree(out)
    return atomic_dir(out)


def label(tile: np.ndarray, text: str) -> np.ndarray:
    """uint8 [H, W] tile with a dark caption band on top."""
    band = np.zeros((14, tile.shape[1]), np.uint8)
    cv2.putText(band, text, (2, 11), cv2.FONT_HERSHEY_SIMPLEX, 0.35, 255, 1, cv2.LINE_AA)
    return np.vstack([band, tile])


def grid(rows: list[list[np.ndarray]], gap: int = 2) -> np.ndarray:
    """Stack rows of equal-size uint8 tiles into one uint8 image with white gaps."""

    def hstack(tiles):
        out = []
        for i, t in enumerate(tiles):
            if i:
                out.append(np.full((t.shape[0], gap), 255, np.uint8))
            out.append(t)
        return np.hstack(out)

    lines = [hstack(r) for r in rows]
    width = max(line.shape[1] for line in lines)
    lines = [np.pad(line, ((0, 0), (0, width - line.shape[1])), constant_values=255) for line in lines]
    out = []
    for i, line in enumerate(lines):
        if i:
            out.append(np.full((gap, width), 255, np.uint8))
        out.append(line)
    return np.vstack(out)


def to_uint8(pixels: np.ndarray, zoom: int = 1) -> np.ndarray:
    """float [0, 1] -> uint8, optionally enlarged by pixel repetition (so single pixels stay visible)."""
    img = np.round(np.clip(pixels, 0, 1) * 255).astype(np.uint8)
    return np.repeat(np.repeat(img, zoom, 0), zoom, 1) if zoom > 1 else img


def write_png(path: Path, image: np.ndarray) -> None:
    ok, data = cv2.imencode(".png", image)
    if not ok:
        raise located(path, "cannot encode PNG")
    path.write_bytes(data.tobytes())
