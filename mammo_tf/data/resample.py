"""Resampling an image to another pixel spacing (mm per pixel), and mapping coordinates with it.

Making pixels larger (downsampling, on either axis) averages the area each new pixel covers (OpenCV
INTER_AREA), as a detector with larger elements would; making them smaller on both axes (upsampling)
interpolates bicubically. The output
size is the input's physical extent over the new spacing, rounded to whole pixels; `factors` says how
array coordinates map (new = old x factor, per axis). `catalog_at_spacing` brings a whole catalog to one
spacing (cached resampled copies, findings mapped), so samplers and trainers work at it unchanged;
`at_training_spacing` is what a trainer calls: that, and the spacing its model will have learned.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from mammo_tf.data.schema import SPACING_RESAMPLED, SPACING_UNKNOWN, Catalog
from mammo_tf.errors import MammoError
from mammo_tf.io.shard_images import pixel_file


def resampled_shape(shape: tuple[int, int], spacing_mm: tuple[float, float], target_mm: tuple[float, float]):
    """(rows, cols) of an image of `shape` at `spacing_mm` (row, col) brought to `target_mm`: at least 1 each."""
    return tuple(max(1, int(round(n * s / t))) for n, s, t in zip(shape, spacing_mm, target_mm, strict=True))


def factors(shape: tuple[int, int], new_shape: tuple[int, int]) -> tuple[float, float]:
    """(row, col) factors mapping array coordinates of `shape` onto `new_shape`: new = old x factor."""
    return new_shape[0] / shape[0], new_shape[1] / shape[1]


def resample_to_spacing(
    pixels: np.ndarray, spacing_mm: tuple[float, float], target_mm: tuple[float, float]
) -> np.ndarray:
    """float32 [H, W] in [0, 1] at `spacing_mm` (row, col mm per pixel) -> the same extent at `target_mm`.

    Area averaging when the pixels grow on either axis, else bicubic; clipped to [0, 1].
    """
    if not all(np.isfinite(v) and v > 0 for v in (*spacing_mm, *target_mm)):
        raise MammoError(f"pixel spacings must be positive numbers (mm), got {spacing_mm} -> {target_mm}")
    pixels = np.asarray(pixels, np.float32)
    rows, cols = resampled_shape(pixels.shape[:2], spacing_mm, target_mm)
    if (rows, cols) == pixels.shape[:2]:
        return pixels.copy()
    shrink = rows < pixels.shape[0] or cols < pixels.shape[1]
    method = cv2.INTER_AREA if shrink else cv2.INTER_CUBIC
    return np.clip(cv2.resize(pixels, (cols, rows), interpolation=method), 0.0, 1.0)


SPACING_MATCH = 0.01  # images within 1 % of the target spacing are used as they are
RESAMPLE_VERSION = 1  # bump when resample_to_spacing changes: cached copies are then made again


def catalog_at_spacing(catalog: Catalog, target_mm: float, cache_dir: str | Path | None = None) -> Catalog:
    """The catalog with every image brought to `target_mm` per pixel, for training at a fixed spacing.

    Images within SPACING_MATCH of the target stay as they are; the others are resampled once into
    `cache_dir` (default: the cache's "spacing" folder; 16-bit PNG, or 8-bit for 8-bit sources, keyed by the
    file's path, size, modification time and the target) with their findings' row, col, radius (and x, y)
    scaled to the new pixels and their masks resampled by nearest neighbour. Spacing source "resampled".
    MammoError naming the first image whose spacing is unknown (give the manifest a spacing_mm column).
    """
    from mammo_tf.io.images import read_image, write_image
    from mammo_tf.paths import cache_root

    if not (np.isfinite(target_mm) and target_mm > 0):
        raise MammoError(f"target spacing must be a positive number of mm, got {target_mm}")
    images = catalog.images.copy()
    unknown = images[images["spacing_source"] == SPACING_UNKNOWN]
    if len(unknown):
        first = unknown.iloc[0]
        raise MammoError(
            f"{first['path']}: pixel spacing unknown, so it cannot be brought to {target_mm:g} mm "
            f"({len(unknown)} such images; give the manifest a spacing_mm column)"
        )
    folder = Path(cache_dir) if cache_dir is not None else cache_root() / "spacing"
    findings = catalog.findings.copy()
    for index, image in images.iterrows():
        spacing = (float(image["spacing_row_mm"]), float(image["spacing_col_mm"]))
        if all(abs(s / target_mm - 1) <= SPACING_MATCH for s in spacing):
            continue
        shape = (int(image["height"]), int(image["width"]))
        new_shape = resampled_shape(shape, spacing, (target_mm, target_mm))
        out = folder / f"{_cache_key(Path(image['path']), target_mm)}.png"
        if not out.is_file():
            source = read_image(image["path"])
            write_image(out, resample_to_spacing(source.pixels, spacing, (target_mm, target_mm)), _png_bits(source))
        images.loc[index, ["path", "height", "width"]] = [str(out), new_shape[0], new_shape[1]]
        images.loc[index, ["spacing_row_mm", "spacing_col_mm", "spacing_source"]] = [
            target_mm,
            target_mm,
            SPACING_RESAMPLED,
        ]
        rows = findings["image_id"] == image["image_id"]
        findings.loc[rows] = _scaled_findings(
            findings.loc[rows], factors(shape, new_shape), new_shape, folder, target_mm
        )
    return Catalog(images, findings, catalog.source, catalog.root)


def _cache_key(path: Path, target_mm: float) -> str:
    """A name for the resampled copy of `path` at `target_mm`: its stem and a digest of what defines it."""
    stat = pixel_file(path).stat()  # a shard's record: the shard file's size and modification time
    text = f"{RESAMPLE_VERSION}|{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{target_mm:.9g}"
    return f"{path.stem}-{hashlib.sha256(text.encode()).hexdigest()[:16]}"


def _png_bits(image) -> int:
    return 8 if image.bit_depth <= 8 else 16


def _scaled_findings(
    rows: pd.DataFrame, scale: tuple[float, float], shape: tuple[int, int], folder: Path, target_mm: float
) -> pd.DataFrame:
    """One image's findings in the resampled pixels: coordinates scaled and rounded, radius rounded up."""
    from mammo_tf.io.images import read_image, write_image

    out = rows.copy()
    for column, f, limit in (("row", scale[0], shape[0]), ("col", scale[1], shape[1])):
        values = out[column].astype("Float64") * f
        out[column] = values.round().clip(0, limit - 1).astype("Int64")
    out["y"] = (out["y"].astype("Float64") * scale[0]).round().astype("Int64")
    out["x"] = (out["x"].astype("Float64") * scale[1]).round().astype("Int64")
    out["radius"] = np.ceil(out["radius"].astype("Float64") * 0.5 * (scale[0] + scale[1])).clip(lower=1).astype("Int64")
    masks = []
    for mask in out["mask"]:
        if not mask:
            masks.append(mask)
            continue
        copy = folder / f"{_cache_key(Path(mask), target_mm)}-mask.png"
        if not copy.is_file():
            pixels = read_image(mask).pixels
            write_image(copy, cv2.resize(pixels, shape[::-1], interpolation=cv2.INTER_NEAREST), 8)
        masks.append(str(copy))
    out["mask"] = masks
    return out


def uniform_spacing(catalog: Catalog) -> float | None:
    """The one pixel size (mm, square pixels) all of the catalog's images share within SPACING_MATCH, else None
    (unknown for some image, mixed, or not square)."""
    values = catalog.images[["spacing_row_mm", "spacing_col_mm"]].to_numpy(np.float64).ravel()
    if not len(values) or not np.isfinite(values).all():
        return None
    reference = float(np.median(values))
    return reference if bool(np.all(np.abs(values / reference - 1) <= SPACING_MATCH)) else None


def at_training_spacing(catalog: Catalog, spacing_mm: float | None) -> tuple[Catalog, float | None]:
    """(the catalog a trainer uses, the pixel size its model learns in mm or None when it has none).

    spacing_mm None: the images as they are (their shared spacing, if any, is what the model learns); else
    every image is brought to spacing_mm first (catalog_at_spacing; MammoError on an unknown spacing).
    """
    if spacing_mm is None:
        return catalog, uniform_spacing(catalog)
    return catalog_at_spacing(catalog, spacing_mm), float(spacing_mm)
