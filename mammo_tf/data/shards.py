"""Shard folders: a catalog's decoded images in TFRecord files with a manifest, and back to a Catalog.

Why: a DICOM tree of hundreds of GB is decoded again (RLE, JPEG 2000) every time a process reads
it, and a cluster wants a few large files on shared storage rather than 100,000 small ones.
`write_shards` decodes every image once; `load_shards` turns the folder back into an ordinary
Catalog whose `path` column names each image's record (`SHARDS/images-00000.tfrecord#OFFSET`,
see io/shard_images.py), so every sampler, trainer and command that reads `path` with
`read_image` works unchanged, one record at a time: no dataset is ever loaded whole.

A shard folder:

    images-00000.tfrecord ...   TFRecord files of tf.train.Example records, one image each, in the
                                catalog's order, a new file when the next record would pass the
                                size limit (a record larger than the limit gets a file of its own)
    shards.json                 the manifest (below)
    phantom_truth.csv           copied when the source has it (the phantom's speck truth)

Record features: the pixel fields of io/shard_images.py (pixels bit-exact as the source's reader
gave them, with height, width, bit depth, spacing) and, so a tf.data pipeline needs nothing else,
image_id, patient_id, split, laterality, view, tissue (bytes) and the image's findings as
parallel lists finding/abnormality, finding/severity (bytes), finding/row, finding/col,
finding/radius (int64 array coordinates, -1 when unknown).

shards.json (JSON, keys in a fixed order, no timestamps: the same input gives the same bytes):

    format, version      "mammo-tf shards", 1
    what                 "images"
    source               the source catalog's kind ("mias", "phantom", "manifest")
    catalog_sha256       SHA-256 of the source catalog's two tables without file paths (image
                         paths, mask paths): the same dataset hashes the same wherever it lies
    counts               images, patients, findings, files
    files                [{name, bytes, records, sha256}], extras: [{name, bytes, sha256}]
    images               one entry per image: the catalog's columns but `path`, exact float64
                         spacing (null when unknown), and file, offset (byte offset of the
                         record's frame) and record_bytes (frame included)
    findings             the catalog's findings table, one entry per row (mask paths still
                         name the source's mask files: masks are not copied into shards)

Splits are the ones the source catalog had when it was sharded (seed 0, as every command
loads it): `load_shards` keeps them.

Pre-sampled SR pairs and patches (`--what sr-pairs|patches`) use the same manifest format and
`ShardFiles`; their writer is data/sample_shards.py, their tf.data reader data/shard_pipelines.py.
`load_shards` refuses their folders in one line (they hold samples, not images).
"""

from __future__ import annotations

import hashlib
import json
import math
import numbers
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import pandas as pd

from mammo_tf.data.schema import FINDING_COLUMNS, IMAGE_COLUMNS, Catalog
from mammo_tf.errors import MammoError, located
from mammo_tf.io.atomic import atomic_dir
from mammo_tf.io.images import read_image
from mammo_tf.io.shard_images import (
    FORMAT,
    FORMAT_VERSION,
    MANIFEST_NAME,
    SHARD_SUFFIX,
    pixel_features,
    read_manifest,
    record_path,
)
from mammo_tf.io.tfrecord import encode_example, frame_record

SHARD_PREFIX = "images"
DEFAULT_SHARD_MB = 128.0
EXTRA_FILES = ("phantom_truth.csv",)  # source files copied beside the shards (evaluate-sr reads the phantom's)
RECORD_COLUMNS = ("file", "offset", "record_bytes")
_IMAGE_FIELDS = [c for c in IMAGE_COLUMNS if c != "path"]
_UNKNOWN = -1  # an unknown finding coordinate in a record's int64 lists


def _plain(value: object) -> object:
    """A table cell as JSON: NaN and <NA> become null, NumPy scalars plain Python."""
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    return value.item() if hasattr(value, "item") else value


def _records(frame: pd.DataFrame, columns: list[str]) -> list[dict]:
    return [{c: _plain(v) for c, v in zip(columns, row, strict=True)} for row in frame[columns].itertuples(False)]


def catalog_sha256(catalog: Catalog) -> str:
    """SHA-256 of the catalog's tables without its file paths (images' `path`, findings' `mask`)."""
    tables = {
        "images": _records(catalog.images, _IMAGE_FIELDS),
        "findings": _records(catalog.findings, [c for c in FINDING_COLUMNS if c != "mask"]),
    }
    return hashlib.sha256(json.dumps(tables, sort_keys=True).encode("utf-8")).hexdigest()


def _record_features(row, pixels, bit_depth: int, findings: pd.DataFrame) -> dict:
    """The tf.train.Example features of one image (see the module docstring)."""
    spacing = (float(row.spacing_row_mm), float(row.spacing_col_mm))
    features = pixel_features(pixels, bit_depth, spacing, str(row.spacing_source))
    for name in ("image_id", "patient_id", "split", "laterality", "view", "tissue"):
        features[name] = ("bytes", [str(getattr(row, name))])
    for name in ("abnormality", "severity"):
        features[f"finding/{name}"] = ("bytes", [str(v) for v in findings[name]])
    for name in ("row", "col", "radius"):
        features[f"finding/{name}"] = ("int64", [_UNKNOWN if pd.isna(v) else int(v) for v in findings[name]])
    return features


class ShardFiles:
    """Appends framed records to PREFIX-NNNNN.tfrecord files, starting a new one at the size limit.

    Each file's entry (name, bytes, records, sha256, and `extra` keys) is what the manifest lists.
    """

    def __init__(self, folder: Path, limit_bytes: int, prefix: str = SHARD_PREFIX, **extra: object) -> None:
        self.folder, self.limit, self.prefix, self.extra = folder, limit_bytes, prefix, extra
        self.files: list[dict] = []
        self._handle: BinaryIO | None = None
        self._hash = hashlib.sha256()

    def add(self, record: bytes) -> tuple[str, int]:
        """Write one framed record; returns (file name, byte offset) where it starts."""
        current = self.files[-1] if self.files else None
        if current is None or (current["bytes"] and current["bytes"] + len(record) > self.limit):
            self._finish()
            name = f"{self.prefix}-{len(self.files):05d}{SHARD_SUFFIX}"
            current = {"name": name, "bytes": 0, "records": 0}
            self.files.append(current)
            self._handle = open(self.folder / current["name"], "wb")  # noqa: SIM115 - closed in _finish
            self._hash = hashlib.sha256()
        offset = current["bytes"]
        self._handle.write(record)
        self._hash.update(record)
        current["bytes"] += len(record)
        current["records"] += 1
        return current["name"], offset

    def _finish(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None
            self.files[-1]["sha256"] = self._hash.hexdigest()
            self.files[-1].update(self.extra)

    def close(self) -> list[dict]:
        self._finish()
        return self.files


def check_new_folder(out: str | Path) -> Path:
    """`out` as a Path, if it is absent or an empty folder (MammoError else): shards never mix with other files."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise located(out, "already exists and is not empty (choose a new --out folder)")
    return out


def shard_bytes(shard_mb: float) -> int:
    """The file size limit in bytes for `shard_mb` MiB (MammoError unless positive)."""
    if not shard_mb > 0:
        raise MammoError(f"shard size must be a positive number of MiB, got {shard_mb}")
    return int(shard_mb * 2**20)


def write_shards(catalog: Catalog, out: str | Path, shard_mb: float = DEFAULT_SHARD_MB, progress: bool = True) -> dict:
    """Decode every image of `catalog` once into a new shard folder `out`; returns the manifest written.

    shard_mb: the size at which a new file is started (MiB). Atomic: everything is written into a
    temporary folder beside `out`, renamed into place at the end; an error or Ctrl-C leaves nothing.
    MammoError naming the image when a source file cannot be read or disagrees with the catalog.
    """
    from mammo_tf.data.importers.common import progress_bar

    out = check_new_folder(out)
    limit = shard_bytes(shard_mb)
    findings = {key: group for key, group in catalog.findings.groupby("image_id", sort=False)}
    empty = catalog.findings.iloc[:0]
    entries = []
    with atomic_dir(out) as tmp:
        files = ShardFiles(tmp, limit)
        rows = catalog.images.itertuples(index=False)
        with progress_bar(rows, progress, total=catalog.n_images, desc="shard", unit=" images") as bar:
            for row in bar:
                image = read_image(row.path)
                if image.pixels.shape != (row.height, row.width):
                    shape = f"{row.height}x{row.width}"
                    raise located(row.path, f"decodes to {image.pixels.shape}, the catalog says {shape}")
                features = _record_features(row, image.pixels, image.bit_depth, findings.get(row.image_id, empty))
                record = frame_record(encode_example(features))
                name, offset = files.add(record)
                entries.append({"file": name, "offset": offset, "record_bytes": len(record)})
        shard_files = files.close()
        extras = [_copy_extra(Path(catalog.root) / name, tmp) for name in EXTRA_FILES]
        manifest = _manifest(catalog, entries, shard_files, [e for e in extras if e])
        (tmp / MANIFEST_NAME).write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    return manifest


def _copy_extra(source: Path, folder: Path) -> dict | None:
    if not source.is_file():
        return None
    shutil.copyfile(source, folder / source.name)
    data = (folder / source.name).read_bytes()
    return {"name": source.name, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def _manifest(catalog: Catalog, entries: list[dict], files: list[dict], extras: list[dict]) -> dict:
    images = [
        {**fields, **entry} for fields, entry in zip(_records(catalog.images, _IMAGE_FIELDS), entries, strict=True)
    ]
    return {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "what": "images",
        "source": catalog.source,
        "catalog_sha256": catalog_sha256(catalog),
        "counts": {
            "images": catalog.n_images,
            "patients": catalog.n_patients,
            "findings": len(catalog.findings),
            "files": len(files),
        },
        "files": files,
        "extras": extras,
        "images": images,
        "findings": _records(catalog.findings, list(FINDING_COLUMNS)),
    }


# --------------------------------------------------------------------------------------------- reading


def is_shard_folder(path: str | Path) -> bool:
    """True when `path` is a folder holding a shard manifest."""
    return (Path(path) / MANIFEST_NAME).is_file()


def load_shards(folder: str | Path) -> Catalog:
    """The Catalog of a shard folder; each image's `path` names its record. Nothing but the manifest is read.

    Checked here: the manifest's structure and that every shard file is there with its recorded
    size. Checked when an image is read (io/shard_images.py): the file's SHA-256, once per process,
    and the record's CRCs, every time.
    """
    folder = Path(folder).resolve()
    manifest = read_manifest(folder, "images")
    where = folder / MANIFEST_NAME
    check_sizes(folder, manifest["files"])
    try:
        images = pd.DataFrame.from_records(manifest["images"])
        findings = pd.DataFrame.from_records(manifest["findings"], columns=list(FINDING_COLUMNS))
        images["path"] = list(_paths(folder, images, {f["name"] for f in manifest["files"]}))
        for column in ("spacing_row_mm", "spacing_col_mm"):
            images[column] = images[column].astype("float64")  # null (unknown) -> NaN
        return Catalog(images, findings, str(manifest["source"]), folder)
    except (KeyError, TypeError, ValueError) as err:
        raise located(where, f"malformed manifest: {type(err).__name__}: {err}") from None


def check_sizes(folder: Path, files: list[dict]) -> None:
    """Every listed shard file is there with its recorded size (MammoError naming the first that is not)."""
    for entry in files:
        file = folder / entry["name"]
        try:
            size = file.stat().st_size
        except FileNotFoundError:
            raise located(file, f"shard file missing (listed in {MANIFEST_NAME})") from None
        if size != entry["bytes"]:
            state = "truncated" if size < entry["bytes"] else "longer than written"
            raise located(file, f"{state}: {size} bytes, {MANIFEST_NAME} says {entry['bytes']}")


def _paths(folder: Path, images: pd.DataFrame, names: set[str]) -> Iterator[str]:
    for image_id, name, offset in images[["image_id", "file", "offset"]].itertuples(index=False):
        if name not in names or not isinstance(offset, numbers.Integral) or offset < 0:
            raise ValueError(f"image {image_id}: record {name}#{offset} is not in a listed shard file")
        yield record_path(folder / name, int(offset))
