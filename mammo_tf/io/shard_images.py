"""One image inside a shard folder: its path, its record's pixel fields, and checks against the manifest.

A shard folder (written by `mammo-tf data shard`, mammo_tf/data/shards.py) holds TFRecord files
of tf.train.Example records, one image each, and `shards.json`, the manifest: per file its size,
record count and SHA-256; per image the file and byte offset of its record. (Folders of
pre-sampled SR pairs or patches, data/sample_shards.py, share the manifest's format, the file checks
and the pixel encoding, `encode_pixels`; `read_manifest(folder, what)` tells the kinds apart.) An
image inside a shard has a path of its own,

    /abs/SHARDS/images-00000.tfrecord#1048576      (the shard file, '#', the record's byte offset)

which the catalog's `path` column holds, so `read_image` and `probe_header` (io/images.py) read
it like any file: one seek and one read of that record, its two CRCs checked, no TensorFlow, no
other record touched.

Checks: every read checks the record's CRCs. The first time a process opens a shard file, the
file's size and SHA-256 are compared with the manifest (one streamed pass, ~1 s per GB); later
reads from the same unchanged file (same size and mtime) skip that pass. A mismatch, a missing
or malformed manifest, a truncated file or a damaged record is a MammoError naming the file.

Pixel fields of a record (the rest of the record, ids, split, findings, is data/shards.py's):

    pixels     bytes   little-endian samples, row-major [height, width]
    dtype      bytes   "uint8" or "uint16" (integers i, read as float32(i) / float32(maxval)) or
                       "float32" (the reader's [0, 1] floats as they were); integers whenever they
                       reproduce the source reader's floats bit for bit, which the writer checks
    maxval     int64   the integers' full scale (0 for float32)
    height, width, bit_depth   int64
    spacing_mm float   [row, col] mm per pixel (float32; NaN when unknown); the manifest has the float64
    spacing_source bytes
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np

from mammo_tf.errors import located
from mammo_tf.io.base import Image, ImageHeader, Spacing
from mammo_tf.io.tfrecord import FRAME_BYTES, RecordError, decode_example, read_record_at

MANIFEST_NAME = "shards.json"
FORMAT = "mammo-tf shards"
FORMAT_VERSION = 1
SHARD_SUFFIX = ".tfrecord"
SPACING_UNKNOWN = "unknown"  # the schema's name for an unstated spacing (data/schema.py)
_RECORD_PATH = re.compile(r"^(?P<file>.+\.tfrecord)#(?P<offset>\d+)$")
_DTYPES = {"uint8": np.dtype("<u1"), "uint16": np.dtype("<u2"), "float32": np.dtype("<f4")}
_WANTS = {  # where each kind of shard folder comes from, for the wrong-kind error
    "images": "--data takes a dataset or an images shard folder (`mammo-tf data shard --what images`)",
    "sr-pairs": "write SR pairs with `mammo-tf data shard --what sr-pairs`",
    "patches": "write patches with `mammo-tf data shard --what patches`",
}

_lock = threading.Lock()
_verified: set[tuple[str, int, int]] = set()  # (resolved path, size, mtime_ns) of shard files checked
_file_locks: dict[str, threading.Lock] = {}


def record_path(file: str | Path, offset: int) -> str:
    """The path of the record at byte `offset` of shard `file` ("FILE#OFFSET")."""
    return f"{file}#{int(offset)}"


def parse_record_path(path: str | Path) -> tuple[Path, int] | None:
    """(shard file, byte offset) of a record path, or None for an ordinary file path."""
    match = _RECORD_PATH.match(os.fspath(path))
    return (Path(match["file"]), int(match["offset"])) if match else None


def pixel_file(path: str | Path) -> Path:
    """The file on disk that holds an image's pixels: the shard file for a record path, else the path itself."""
    parsed = parse_record_path(path)
    return parsed[0] if parsed else Path(path)


# --------------------------------------------------------------------------------------------- manifest


def read_manifest(folder: str | Path, what: str | None = None) -> dict:
    """The manifest of a shard folder as a dict; format, version and the file list checked (MammoError else).

    what: the kind of shards the caller reads ("images", "sr-pairs", "patches"); a folder holding
    another kind is one line naming the folder, what it holds and where that kind goes.
    """
    path = Path(folder) / MANIFEST_NAME
    try:
        text = path.read_text("utf-8")
    except FileNotFoundError:
        raise located(path, "missing: not a shard folder (or an unfinished one)") from None
    except (OSError, UnicodeDecodeError) as err:
        raise located(path, f"cannot read: {getattr(err, 'strerror', None) or err}") from None
    try:
        manifest = json.loads(text)
    except json.JSONDecodeError as err:
        raise located(path, f"malformed manifest: not JSON ({err.msg})", err.lineno) from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise located(path, f"malformed manifest: 'format' is not {FORMAT!r}")
    if manifest.get("version") != FORMAT_VERSION:
        raise located(path, f"manifest version {manifest.get('version')!r}: this mammo-tf reads {FORMAT_VERSION}")
    files = manifest.get("files")
    if not isinstance(files, list) or not all(_file_entry_ok(f) for f in files):
        raise located(path, "malformed manifest: 'files' must list {name, bytes, records, sha256} entries")
    if what is not None and manifest.get("what") != what:
        have = manifest.get("what")
        raise located(Path(folder), f"holds {have} shards, not {what}: {_WANTS.get(what, '')}")
    return manifest


def _file_entry_ok(entry: object) -> bool:
    if not isinstance(entry, dict):
        return False
    name, size, records, digest = (entry.get(k) for k in ("name", "bytes", "records", "sha256"))
    return (
        isinstance(name, str)
        and name == Path(name).name
        and name.endswith(SHARD_SUFFIX)
        and all(isinstance(v, int) and v >= 0 for v in (size, records))
        and isinstance(digest, str)
        and re.fullmatch(r"[0-9a-f]{64}", digest) is not None
    )


def file_entry(manifest: Mapping, folder: Path, name: str) -> dict:
    """The manifest's entry for shard file `name` (MammoError if it lists none)."""
    for entry in manifest["files"]:
        if entry["name"] == name:
            return entry
    raise located(folder / name, f"not listed in {MANIFEST_NAME}")


def check_shard_file(file: str | Path) -> None:
    """Size and SHA-256 of a shard file against its manifest, once per process while the file is unchanged."""
    file = Path(file)
    try:
        stat = file.stat()
    except FileNotFoundError:
        raise located(file, "shard file not found") from None
    except OSError as err:
        raise located(file, f"cannot read: {err.strerror or err}") from None
    key = (str(file.resolve()), stat.st_size, stat.st_mtime_ns)
    with _lock:
        if key in _verified:
            return
        file_lock = _file_locks.setdefault(key[0], threading.Lock())
    with file_lock:  # one pass per file when several pipeline threads open it at once; other files go on
        if key in _verified:
            return
        entry = file_entry(read_manifest(file.parent), file.parent, file.name)
        if stat.st_size != entry["bytes"]:
            state = "truncated" if stat.st_size < entry["bytes"] else "longer than written"
            raise located(file, f"{state}: {stat.st_size} bytes, {MANIFEST_NAME} says {entry['bytes']}")
        try:
            with open(file, "rb") as handle:
                digest = hashlib.file_digest(handle, "sha256").hexdigest()
        except OSError as err:
            raise located(file, f"cannot read: {err.strerror or err}") from None
        if digest != entry["sha256"]:
            raise located(file, f"checksum differs from {MANIFEST_NAME} (corrupt shard): sha256 {digest[:16]}...")
        _verified.add(key)


# --------------------------------------------------------------------------------------------- records


def encode_pixels(pixels: np.ndarray, bit_depths: Sequence[int]) -> tuple[bytes, str, int]:
    """(little-endian bytes, dtype name, maxval) of float32 pixels in [0, 1], any shape (row-major).

    Integers i ("uint8" up to 8 bits, else "uint16") for the first bit depth of `bit_depths` (1..16)
    where float32(i) / float32(2**bit_depth - 1) gives `pixels` back exactly, else the float32 values
    themselves (maxval 0): either way the reader returns the same array, bit for bit.
    """
    pixels = np.asarray(pixels, np.float32)
    for bit_depth in bit_depths:
        if 1 <= bit_depth <= 16:
            scale = (1 << bit_depth) - 1
            dtype = "uint8" if bit_depth <= 8 else "uint16"
            ints = np.round(pixels * np.float32(scale)).astype(dtype)
            if np.array_equal(ints.astype(np.float32) / np.float32(scale), pixels):
                return ints.astype(_DTYPES[dtype], copy=False).tobytes(), dtype, scale
    return pixels.astype(_DTYPES["float32"], copy=False).tobytes(), "float32", 0


def pixel_features(pixels: np.ndarray, bit_depth: int, spacing_mm: Sequence[float], spacing_source: str) -> dict:
    """The pixel fields of an image record (see the module docstring) for float32 [H, W] pixels in [0, 1]."""
    height, width = np.shape(pixels)
    raw, dtype, maxval = encode_pixels(pixels, (bit_depth,))
    return {
        "pixels": ("bytes", [raw]),
        "dtype": ("bytes", [dtype]),
        "maxval": ("int64", [maxval]),
        "height": ("int64", [height]),
        "width": ("int64", [width]),
        "bit_depth": ("int64", [bit_depth]),
        "spacing_mm": ("float", list(spacing_mm)),
        "spacing_source": ("bytes", [spacing_source]),
    }


def _read_fields(path: str | Path) -> dict[str, list]:
    """The decoded Example of the record a record path names, file and record checked."""
    parsed = parse_record_path(path)
    if parsed is None:
        raise located(path, "not a shard record path (FILE.tfrecord#OFFSET)")
    file, offset = parsed
    check_shard_file(file)
    try:
        with open(file, "rb") as handle:
            data = read_record_at(handle, offset, os.fstat(handle.fileno()).st_size)
        return decode_example(data)
    except (RecordError, ValueError) as err:
        raise located(path, f"corrupt shard: {err}") from None
    except OSError as err:
        raise located(file, f"cannot read: {err.strerror or err}") from None


def read_records(file: str | Path, limit: int) -> Iterator[tuple[str, dict[str, list]]]:
    """(record path, decoded Example) of the first `limit` records of a shard file, in file order.

    The file is checked against its manifest first (check_shard_file), each record's CRCs as it is read;
    MammoError naming the record for a damaged one.
    """
    file = Path(file)
    check_shard_file(file)
    try:
        with open(file, "rb") as handle:
            size, offset = os.fstat(handle.fileno()).st_size, 0
            for _ in range(limit):
                if offset >= size:
                    return
                try:
                    data = read_record_at(handle, offset, size)
                    fields = decode_example(data)
                except (RecordError, ValueError) as err:
                    raise located(record_path(file, offset), f"corrupt shard: {err}") from None
                yield record_path(file, offset), fields
                offset += len(data) + FRAME_BYTES
    except OSError as err:
        raise located(file, f"cannot read: {err.strerror or err}") from None


def record_scalar(fields: dict[str, list], name: str, path: str | Path):
    """The one value of feature `name` of a decoded record; MammoError naming `path` when it has none or many."""
    values = fields.get(name)
    if not values or len(values) != 1:
        raise located(path, f"corrupt shard: the record has no single '{name}' (another kind of record?)")
    return values[0]


def decode_pixels(fields: dict[str, list], prefix: str, height: int, width: int, path: str | Path) -> np.ndarray:
    """float32 [height, width] of a decoded record's `prefix`pixels/dtype/maxval (encode_pixels' inverse):
    what the writer was given, bit for bit. MammoError naming `path` for pixel bytes that do not fit."""
    dtype_name = record_scalar(fields, f"{prefix}dtype", path).decode("ascii", "replace")
    raw = record_scalar(fields, f"{prefix}pixels", path)
    dtype = _DTYPES.get(dtype_name)
    if dtype is None or len(raw) != height * width * dtype.itemsize:
        raise located(path, f"corrupt shard: {len(raw)} pixel bytes of type {dtype_name!r} for {height}x{width}")
    values = np.frombuffer(raw, dtype).reshape(height, width)
    if dtype_name == "float32":
        return values.astype(np.float32)  # native order, and a writable copy of the read-only buffer
    return values.astype(np.float32) / np.float32(record_scalar(fields, f"{prefix}maxval", path))


def read_shard_image(path: str | Path) -> Image:
    """The image of a record path: float32 [H, W] in [0, 1] with its bit depth, as the source reader gave it."""
    fields = _read_fields(path)
    height, width = int(record_scalar(fields, "height", path)), int(record_scalar(fields, "width", path))
    return Image(decode_pixels(fields, "", height, width, path), int(record_scalar(fields, "bit_depth", path)))


def probe_shard_header(path: str | Path) -> ImageHeader:
    """Size, bit depth and recorded spacing (float32 precision; None when unknown) of a record path."""
    fields = _read_fields(path)
    source = record_scalar(fields, "spacing_source", path).decode("utf-8", "replace")
    spacing = fields.get("spacing_mm", [])
    stated = None
    if source != SPACING_UNKNOWN and len(spacing) == 2:
        # float32 on the wire: its shortest decimal gives back the value as written (0.8, not 0.800000011920929)
        stated = Spacing(float(str(np.float32(spacing[0]))), float(str(np.float32(spacing[1]))), source)
    height, width = int(record_scalar(fields, "height", path)), int(record_scalar(fields, "width", path))
    return ImageHeader(height, width, int(record_scalar(fields, "bit_depth", path)), stated)
