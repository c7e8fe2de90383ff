"""A CSV manifest: bring CBIS-DDSM-, VinDr- or INbreast-style data as one table.

One row per finding; several rows may name the same image. Columns (case and
surrounding spaces ignored, unknown columns ignored):

    path         required  image file (PGM, PNG, TIFF, DICOM), relative to the manifest's folder or absolute
    patient_id   required  images of one patient never straddle two splits
    image_id     optional  default: the file name's stem; one id per path
    laterality   optional  L / R (LEFT / RIGHT accepted) or empty
    view         optional  CC, MLO, ... (free text, upper-cased)
    tissue       optional  breast density / background tissue (free text, upper-cased)
    abnormality  optional  CALC, MASS, ... (free text, upper-cased); empty means NORM
    severity     optional  B / M (BENIGN, BENIGN_WITHOUT_CALLBACK, MALIGNANT accepted) or empty
    row, col     optional  finding centre in ARRAY coordinates: row 0 is the top row, col 0 the left column
    radius       optional  finding radius in pixels; row, col and radius come together or not at all
    split        optional  train / val / test, per patient; absent: a seeded patient-level split
    spacing_mm   optional  pixel size in mm: one positive number (square pixels) or two, rows then
                           columns, separated by a space or "x" ("0.07", "0.1 0.12", "0.1x0.12")
    mask         optional  the finding's pixel-level lesion mask (an image file of the image's size), relative
                           to the manifest's folder or absolute; checked to exist, not opened; empty: none

Because a manifest already speaks array coordinates, the catalog's x is col
and y is row (unlike MIAS, whose y counts up from the bottom). Line numbers in
errors are the file's: the header is line 1, the first data row line 2.
Image sizes and bit depths come from file headers where the format allows
(DICOM, PGM, greyscale PNG), so loading a large manifest stays cheap.

Pixel spacing: spacing_mm is an image field like laterality (every row of an
image gives the same value, or none). When it is empty, a DICOM's header
spacing is used (io.dicom.pixel_spacing), else the spacing is "unknown". When
both exist and differ by more than 1 % (rows or columns), the manifest wins,
silently, with source "manifest"; within 1 % the header's value and source are kept.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path

import pandas as pd

from mammo_tf.data.schema import NORMAL_FINDING, SPACING_COLUMNS, SPACING_MANIFEST, SPACING_UNKNOWN, Catalog
from mammo_tf.errors import MammoError, located
from mammo_tf.io.images import SUPPORTED_SUFFIXES, ImageHeader, Spacing, probe_header

MANIFEST_NAME = "manifest.csv"
REQUIRED = ("path", "patient_id")
# Columns that describe the image, not the finding: every row naming an image must agree on them.
IMAGE_FIELDS = ("path", "patient_id", "laterality", "view", "tissue", "split", "spacing_mm")
COORDINATES = ("row", "col", "radius")
LATERALITIES = {"": "", "L": "L", "LEFT": "L", "R": "R", "RIGHT": "R"}
SEVERITIES = {"": "", "B": "B", "BENIGN": "B", "BENIGN_WITHOUT_CALLBACK": "B", "M": "M", "MALIGNANT": "M"}
SPLIT_NAMES = {"train": "train", "training": "train", "val": "val", "validation": "val", "test": "test"}
FIRST_DATA_LINE = 2
_WHOLE = re.compile(r"^\d+(\.0*)?$")  # "12" or "12.0" (spreadsheets export integer columns as floats)
_SPACING_SEPARATOR = re.compile(r"\s*[xX]\s*|\s+")  # "0.1 0.12", "0.1x0.12", "0.1 x 0.12"
SPACING_TOLERANCE = 0.01  # manifest and DICOM header agree within 1 %


# --- reading the table ----------------------------------------------------------------------------


def read_table(manifest: Path) -> pd.DataFrame:
    """The manifest as stripped strings, lower-case column names and a `line` column; blank rows dropped."""
    try:
        frame = pd.read_csv(manifest, dtype=str, keep_default_na=False, skip_blank_lines=False, encoding="utf-8-sig")
    except FileNotFoundError:
        raise located(manifest, "manifest not found") from None
    except pd.errors.EmptyDataError:
        raise located(manifest, "empty manifest (expected a header line with at least path,patient_id)") from None
    except pd.errors.ParserError as err:
        found = re.search(r"line (\d+)", str(err))
        line = int(found.group(1)) if found else None
        raise located(manifest, f"malformed CSV: {str(err).strip()}", line) from None
    except UnicodeDecodeError:
        raise located(manifest, "not UTF-8 text (save the manifest as CSV UTF-8)") from None
    except OSError as err:
        raise located(manifest, f"cannot read: {err.strerror or err}") from None
    frame.columns = [str(c).strip().lower() for c in frame.columns]
    _check_columns(manifest, list(frame.columns))
    frame = frame.apply(lambda column: column.str.strip())
    frame["line"] = range(FIRST_DATA_LINE, FIRST_DATA_LINE + len(frame))
    frame = frame[(frame.drop(columns="line") != "").any(axis=1)]
    if frame.empty:
        raise located(manifest, "empty manifest (a header but no data rows)")
    return frame.reset_index(drop=True)


def _check_columns(manifest: Path, columns: list[str]) -> None:
    for column in columns:
        mangled = re.match(r"^(.*)\.\d+$", column)  # pandas renames a repeated "path" to "path.1"
        if mangled and mangled.group(1) in columns:
            raise located(manifest, f"column '{mangled.group(1)}' appears twice in the header", 1)
    missing = [c for c in REQUIRED if c not in columns]
    if missing:
        raise located(manifest, f"missing required column(s) {missing}; the header has {columns}", 1)
    coordinates = [c for c in COORDINATES if c in columns]
    if coordinates and len(coordinates) != len(COORDINATES):
        raise located(manifest, f"columns row, col and radius come together; the header has only {coordinates}", 1)


# --- one row ----------------------------------------------------------------------------------------


def _whole_number(manifest: Path, line: int, name: str, text: str, minimum: int) -> int:
    if not _WHOLE.match(text) or int(text.split(".")[0]) < minimum:
        raise located(manifest, f"{name} must be a whole number >= {minimum}, got '{text}'", line)
    return int(text.split(".")[0])


def _coordinates(manifest: Path, line: int, record: dict) -> tuple[int | None, int | None, int | None]:
    texts = [record.get(c, "") for c in COORDINATES]
    given = [c for c, t in zip(COORDINATES, texts, strict=True) if t]
    if not given:
        return None, None, None
    if len(given) != len(COORDINATES):
        raise located(manifest, f"give row, col and radius together or none of them (got only {given})", line)
    row, col, radius = (
        _whole_number(manifest, line, name, text, 1 if name == "radius" else 0)
        for name, text in zip(COORDINATES, texts, strict=True)
    )
    return row, col, radius


def _spacing(manifest: Path, line: int, text: str) -> tuple[float, float] | None:
    """spacing_mm -> (row, col) mm per pixel; None when empty."""
    if not text:
        return None
    try:
        values = [float(v) for v in _SPACING_SEPARATOR.split(text)]
    except ValueError:
        values = []
    if len(values) not in (1, 2) or not all(math.isfinite(v) and v > 0 for v in values):
        raise located(
            manifest,
            f"spacing_mm must be one positive number (mm per pixel) or two, rows then columns "
            f"('0.1 0.12' or '0.1x0.12'), got '{text}'",
            line,
        )
    return values[0], values[-1]


def _choice(manifest: Path, line: int, name: str, text: str, choices: dict[str, str]) -> str:
    key = text.upper() if name != "split" else text.lower()
    if key not in choices:
        allowed = sorted(k for k in choices if k)
        empty = " or empty" if "" in choices else ""
        raise located(manifest, f"unknown {name} '{text}' (expected one of {allowed}{empty})", line)
    return choices[key]


def _mask(manifest: Path, line: int, folder: Path, text: str) -> str:
    """The mask column as an absolute, normalised path ("" when empty); the file must exist."""
    if not text:
        return ""
    path = os.path.normpath(Path(text) if Path(text).is_absolute() else folder / text)
    if not os.path.isfile(path):
        raise located(manifest, f"mask file not found: {path}", line)
    return path


def parse_row(manifest: Path, folder: Path, record: dict, has_split: bool) -> dict:
    """One manifest row -> image fields + finding fields, normalised and checked (the file is not opened)."""
    line = int(record["line"])
    for column in REQUIRED:
        if not record[column]:
            raise located(manifest, f"empty {column}", line)
    raw_path = Path(record["path"])
    if raw_path.suffix.lower() not in SUPPORTED_SUFFIXES:
        raise located(
            manifest,
            f"unsupported image type '{raw_path.suffix}' in {record['path']} (use one of {sorted(SUPPORTED_SUFFIXES)})",
            line,
        )
    full_path = raw_path if raw_path.is_absolute() else folder / raw_path
    abnormality = record.get("abnormality", "").upper() or NORMAL_FINDING
    severity = _choice(manifest, line, "severity", record.get("severity", ""), SEVERITIES)
    row, col, radius = _coordinates(manifest, line, record)
    mask = _mask(manifest, line, folder, record.get("mask", ""))
    if abnormality == NORMAL_FINDING and (severity or row is not None or mask):
        raise located(manifest, "a NORM row describes no finding: leave severity, row, col, radius, mask empty", line)
    split = ""
    if has_split:
        if not record["split"]:
            raise located(manifest, "empty split (fill every row or leave the split column out)", line)
        split = _choice(manifest, line, "split", record["split"], SPLIT_NAMES)
    return {
        "image_id": record.get("image_id", "") or raw_path.stem,
        "id_from_name": not record.get("image_id", ""),
        "patient_id": record["patient_id"],
        "path": os.path.normpath(full_path),
        "laterality": _choice(manifest, line, "laterality", record.get("laterality", ""), LATERALITIES),
        "view": record.get("view", "").upper(),
        "tissue": record.get("tissue", "").upper(),
        "split": split,
        "spacing_mm": _spacing(manifest, line, record.get("spacing_mm", "")),
        "abnormality": abnormality,
        "severity": severity,
        "row": row,
        "col": col,
        "radius": radius,
        "mask": mask,
        "source_line": line,
    }


# --- images -----------------------------------------------------------------------------------------


def _shown(value: object) -> str:
    """An image field as a message shows it (a spacing as 'row x col', no spacing as '')."""
    if value is None:
        return ""
    if isinstance(value, tuple):
        return " x ".join(str(v) for v in value)
    return str(value)


def _image_records(manifest: Path, rows: pd.DataFrame) -> pd.DataFrame:
    """One record per image; rows naming the same image must agree, and a path has a single id."""
    first: dict[str, dict] = {}
    by_path: dict[str, dict] = {}
    for record in rows.to_dict("records"):
        image_id, line = record["image_id"], record["source_line"]
        seen = first.setdefault(image_id, record)
        for field in IMAGE_FIELDS:
            if seen[field] != record[field]:
                defaulted = field == "path" and (record["id_from_name"] or seen["id_from_name"])
                hint = " (ids default to the file name's stem: give an image_id)" if defaulted else ""
                raise located(
                    manifest,
                    f"image '{image_id}': {field} '{_shown(record[field])}' disagrees with "
                    f"'{_shown(seen[field])}' on line {seen['source_line']}{hint}",
                    line,
                )
        other = by_path.setdefault(record["path"], record)
        if other["image_id"] != image_id:
            raise located(
                manifest,
                f"{record['path']} is listed as image '{image_id}' here and as "
                f"'{other['image_id']}' on line {other['source_line']}",
                line,
            )
    columns = ("image_id", *IMAGE_FIELDS, "source_line")
    return pd.DataFrame.from_records([{c: record[c] for c in columns} for record in first.values()])


def _resolved_spacing(given: tuple[float, float] | None, header: ImageHeader) -> Spacing:
    """The manifest's spacing_mm, else the file's header spacing, else unknown (see the module docstring)."""
    stated = header.spacing
    if given is None:
        return stated if stated is not None else Spacing(math.nan, math.nan, SPACING_UNKNOWN)
    if stated is not None and all(
        abs(g - s) <= SPACING_TOLERANCE * s for g, s in zip(given, (stated.row_mm, stated.col_mm), strict=True)
    ):
        return stated
    return Spacing(given[0], given[1], SPACING_MANIFEST)


def _with_headers(manifest: Path, images: pd.DataFrame) -> pd.DataFrame:
    """Add height, width, bit_depth and spacing; a missing or unreadable file is reported at its first line."""
    columns: dict[str, list] = {c: [] for c in ("height", "width", "bit_depth", *SPACING_COLUMNS)}
    for record in images.to_dict("records"):
        path, line = Path(record["path"]), int(record["source_line"])
        if not path.is_file():
            raise located(manifest, f"image file not found: {path}", line)
        try:
            header = probe_header(path)
        except MammoError as err:
            raise located(manifest, str(err), line) from None
        spacing = _resolved_spacing(record["spacing_mm"], header)
        values = (header.height, header.width, header.bit_depth, spacing.row_mm, spacing.col_mm, spacing.source)
        for column, value in zip(columns, values, strict=True):
            columns[column].append(value)
    return images.drop(columns="spacing_mm").assign(**columns)


# --- findings and splits ------------------------------------------------------------------------------


def _findings(manifest: Path, rows: pd.DataFrame, images: pd.DataFrame) -> pd.DataFrame:
    """The findings table: x = col, y = row (array coordinates); centres must lie inside the image."""
    findings = rows[["image_id", "abnormality", "severity", "row", "col", "radius", "mask", "source_line"]].copy()
    for column in COORDINATES:
        findings[column] = findings[column].astype("Int64")
    findings["has_coords"] = findings["row"].notna()
    sizes = images.set_index("image_id")
    height = findings["image_id"].map(sizes["height"]).astype("Int64")
    width = findings["image_id"].map(sizes["width"]).astype("Int64")
    outside = (findings["has_coords"] & ((findings["row"] >= height) | (findings["col"] >= width))).fillna(False)
    if outside.any():
        position = int(outside.to_numpy().nonzero()[0][0])
        bad = findings.iloc[position]
        raise located(
            manifest,
            f"image '{bad['image_id']}': centre row {bad['row']}, col {bad['col']} is outside its "
            f"{height.iloc[position]}x{width.iloc[position]} (rows x cols) pixels",
            int(bad["source_line"]),
        )
    return findings.assign(x=findings["col"], y=findings["row"])


def _check_patient_splits(manifest: Path, images: pd.DataFrame) -> None:
    """A given split column must keep each patient on one side."""
    for patient, group in images.groupby("patient_id", sort=False):
        if group["split"].nunique() > 1:
            first = group.iloc[0]
            other = group[group["split"] != first["split"]].iloc[0]
            raise located(
                manifest,
                f"patient '{patient}' is in split '{other['split']}' here and in "
                f"'{first['split']}' on line {first['source_line']} (a patient belongs to one split)",
                int(other["source_line"]),
            )


def load_manifest(path: Path, seed: int = 0) -> Catalog:
    """Load a CSV manifest as a Catalog (source "manifest", root = the manifest's folder).

    seed: seeds the patient-level split when the manifest has no split column
    (or leaves it empty on every row).
    """
    from mammo_tf.data.splits import split_images

    manifest = Path(path)
    folder = manifest.parent.resolve()
    table = read_table(manifest)
    has_split = "split" in table.columns and bool((table["split"] != "").any())
    records = [parse_row(manifest, folder, record, has_split) for record in table.to_dict("records")]
    rows = pd.DataFrame.from_records(records)
    images = _with_headers(manifest, _image_records(manifest, rows))
    findings = _findings(manifest, rows, images)
    if has_split:
        _check_patient_splits(manifest, images)
        return Catalog(images=images, findings=findings, source="manifest", root=folder)
    catalog = Catalog(images=images, findings=findings, source="manifest", root=folder)
    split = split_images(catalog.images, catalog.image_labels(), seed=seed)
    return Catalog(catalog.images.assign(split=split), catalog.findings, catalog.source, folder)
