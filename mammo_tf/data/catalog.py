"""`load_catalog`: from a path (or nothing) to a Catalog, dispatching to the source readers.

The data package is layered so that every import points one way
(tests/test_import_layers.py walks the imports and fails on a cycle):

    schema.py                      Catalog and the two tables' schema (imports no mammo_tf.data module)
    mias.py, manifest.py,          the source readers: build Catalogs from schema.py
    phantom.py, shards.py          (shards.py also writes any Catalog's images into a shard folder)
    fetch.py                       gets mini-MIAS onto the disk, checks copies with mias.py
    catalog.py                     this module: the one dispatcher over all of them

`Catalog` and the schema's names are re-exported here, so the documented
`from mammo_tf.data.catalog import Catalog, load_catalog` keeps working;
modules below this one import them from schema.py instead.
"""

from __future__ import annotations

import os
from pathlib import Path

from mammo_tf.data.manifest import MANIFEST_NAME, load_manifest
from mammo_tf.data.mias import ARCHIVE_NAME, INFO_NAME, load_mias
from mammo_tf.data.schema import CALCIFICATION, FINDING_COLUMNS, IMAGE_COLUMNS, NORMAL_FINDING, Catalog
from mammo_tf.data.shards import is_shard_folder, load_shards
from mammo_tf.errors import located
from mammo_tf.io.shard_images import MANIFEST_NAME as SHARDS_NAME

__all__ = [
    "CALCIFICATION",
    "FINDING_COLUMNS",
    "IMAGE_COLUMNS",
    "NORMAL_FINDING",
    "Catalog",
    "default_data_dir",
    "load_catalog",
]


def default_data_dir() -> Path | None:
    """The dataset named by MAMMO_DATA, or None (callers then use the cached phantom)."""
    value = os.environ.get("MAMMO_DATA")
    return Path(value) if value else None


def load_catalog(data: str | Path | None = None, seed: int = 0) -> Catalog:
    """Load any supported dataset.

    data: a MIAS-layout folder (Info.txt + PGMs, or the distribution's archive),
          a folder with manifest.csv, a manifest .csv file, a shard folder (shards.json
          + TFRecords, `mammo-tf data shard`), or None for MAMMO_DATA,
          else the cached phantom dataset.
    seed: seeds the patient-level train/val/test split where the source has none
          (a shard folder keeps the split it was written with).
    """
    if data is None:
        data = default_data_dir()
    if data is None:
        from mammo_tf.data.phantom import cached_phantom_dir

        data = cached_phantom_dir()
    path = Path(data)
    if not path.exists():
        raise located(path, "no such file or folder")
    if path.is_file():
        if path.suffix.lower() == ".csv":
            return load_manifest(path, seed=seed)
        if path.name == INFO_NAME:
            return _load_mias(path.parent, seed)
        raise located(path, f"not a dataset: give a folder, an {INFO_NAME} or a manifest .csv")
    if not path.is_dir():
        raise located(path, f"not a folder or a regular file (a dataset is a folder, {INFO_NAME} or a manifest .csv)")
    if (path / INFO_NAME).is_file():
        return _load_mias(path, seed)
    if (path / MANIFEST_NAME).is_file():
        return load_manifest(path / MANIFEST_NAME, seed=seed)
    if is_shard_folder(path):
        return load_shards(path)
    try:
        empty = not any(path.iterdir())
    except OSError as err:
        raise located(path, f"cannot list the folder: {err.strerror or err}") from None
    if empty:
        raise located(path, f"folder is empty (expected {INFO_NAME}, {MANIFEST_NAME} or {SHARDS_NAME})")
    raise located(path, f"no {INFO_NAME} or {MANIFEST_NAME} in this folder (nor a {SHARDS_NAME} of shards)")


def _load_mias(folder: Path, seed: int) -> Catalog:
    """A MIAS-layout folder; one holding the distribution archive instead of the PGMs is unpacked once (cached)."""
    pixel_folder = None
    if not any(folder.glob("mdb*.pgm")) and (folder / ARCHIVE_NAME).is_file():
        from mammo_tf.data.fetch import unpacked_archive

        pixel_folder = unpacked_archive(folder / ARCHIVE_NAME)
    return load_mias(folder, seed=seed, pixel_folder=pixel_folder)
