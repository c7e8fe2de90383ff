"""What the dataset adapters share: source CSVs, mask circles, the progress bar, the summary, the manifest write.

An adapter runs in two phases. First it reads and checks everything: the source's tables
(`read_source_csv`: a malformed table or row is a MammoError naming the file and line) and the image
headers; a file the tables name but the tree lacks is not an error but an entry of `ImportLog.not_found`,
and a file that is there but cannot be used (a mask of the wrong size, say) one of `ImportLog.problems`.
Then it writes OUT/manifest.csv in one atomic step (`write_manifest`), so a failed import leaves nothing
behind, and returns an `ImportSummary` that the CLI prints (`ImportSummary.lines`).
"""

from __future__ import annotations

import contextlib
import csv
import math
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np

from mammo_tf.errors import located
from mammo_tf.io.atomic import write_bytes_atomic

MANIFEST_NAME = "manifest.csv"
# The project's manifest columns (mammo_tf/data/manifest.py) every adapter writes, in this order, then its own.
MANIFEST_COLUMNS = (
    "path",
    "patient_id",
    "image_id",
    "laterality",
    "view",
    "tissue",
    "abnormality",
    "severity",
    "row",
    "col",
    "radius",
    "split",
    "spacing_mm",
    "spacing_assumed",
    "mask",
)
SEVERITY_CODES = ("B", "M")
SHOWN = 5  # entries of a list the summary names


# --- source tables ------------------------------------------------------------------------------------


class SourceRow(NamedTuple):
    """One data row of a source CSV: its line in the file (header = 1) and its values by header key."""

    line: int
    values: dict[str, str]


def header_key(name: str) -> str:
    """A source column name as a key: trimmed, lower case, spaces and underscores as one "_".

    "breast density", " breast_density " and "Breast  Density" all give "breast_density".
    """
    return re.sub(r"[\s_]+", "_", name.strip().lower())


def _checked_header(path: Path, header: list[str] | None, required: Sequence[str]) -> list[str]:
    if header is None or not any(h.strip() for h in header):
        raise located(path, "empty file (expected a header line)", 1)
    keys = [header_key(h) for h in header]
    repeated = sorted({k for k in keys if k and keys.count(k) > 1})
    if repeated:
        raise located(path, f"column(s) {repeated} appear twice in the header", 1)
    missing = [c for c in required if c not in keys]
    if missing:
        raise located(path, f"missing required column(s) {missing}; the header has {[k for k in keys if k]}", 1)
    return keys


def _rows(path: Path, reader, keys: list[str]) -> list[SourceRow]:
    rows, end = [], reader.line_num
    for fields in reader:
        line, end = end + 1, reader.line_num  # a quoted value may span lines: a row starts after the last one
        if not any(f.strip() for f in fields):
            continue
        if len(fields) > len(keys):
            raise located(path, f"{len(fields)} fields, the header has {len(keys)}", line)
        rows.append(SourceRow(line, {k: f.strip() for k, f in zip(keys, fields, strict=False)}))
    return rows


def read_source_csv(path: Path, required: Sequence[str], delimiter: str = ",") -> list[SourceRow]:
    """A source's CSV: header keys from `header_key`, values trimmed, blank rows dropped, file line numbers kept.

    A row with fewer fields than the header gets "" for the rest; more fields, a missing required
    column, bad quoting or text that is not UTF-8 is a MammoError naming the file (and line). The csv
    module rather than pandas because line numbers must stay right when a quoted value holds a newline.
    """
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle, delimiter=delimiter, strict=True)
            try:
                keys = _checked_header(path, next(reader, None), required)
                return _rows(path, reader, keys)
            except csv.Error as err:
                raise located(path, f"malformed CSV: {err}", reader.line_num) from None
    except FileNotFoundError:
        raise located(path, "file not found") from None
    except UnicodeDecodeError:
        raise located(path, "not UTF-8 text") from None
    except OSError as err:
        raise located(path, f"cannot read: {err.strerror or err}") from None


# --- masks --------------------------------------------------------------------------------------------


def bounding_circle(foreground: np.ndarray) -> tuple[int, int, int] | None:
    """(row, col, radius) in pixels of a circle holding the centre of every True pixel; None if none is.

    foreground: bool [H, W]. OpenCV's `minEnclosingCircle` on the True pixels' centres gives the
    smallest such circle; its centre is rounded to the nearest pixel (row 0 = top) and its radius
    rounded up after adding the rounding's shift, so the integer circle still holds every pixel
    centre. At least 1 (the manifest's smallest radius): a one-pixel mask has radius 1.
    """
    import cv2

    points = cv2.findNonZero(np.asarray(foreground, dtype=np.uint8))
    if points is None:
        return None
    (x, y), radius = cv2.minEnclosingCircle(points)
    row, col = math.floor(y + 0.5), math.floor(x + 0.5)
    return row, col, max(1, math.ceil(radius + math.hypot(y - row, x - col)))


# --- progress, log, summary -----------------------------------------------------------------------------


@contextlib.contextmanager
def progress_bar(iterable: Iterable, enabled: bool = True, **options) -> Iterator:
    """A tqdm bar on a terminal only (never in a pipe or a test); erased on failure, so an error stays one line."""
    from tqdm import tqdm

    bar = tqdm(iterable, disable=None if enabled else True, leave=False, **options)  # None: only on a terminal
    try:
        yield bar
    finally:
        bar.close()


@dataclass
class ImportLog:
    """What an import could not use, as it goes: paths not found, files found but unusable, decisions taken."""

    not_found: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ImportSummary:
    """What an import wrote (counts over the written manifest) and what it left out.

    findings: rows per "ABNORMALITY SEVERITY" ("CALC B", "MASS M"; severity "-" when the source gives
    none); spacing_mm: (smallest, largest) pixel side in mm; spacing_assumed: the source's headers
    state no spacing, so the number is the caller's (e.g. CBIS-DDSM's --spacing-mm).
    """

    source: str
    manifest: Path
    images: int
    patients: int
    splits: dict[str, int]
    findings: dict[str, int]
    with_centre: int
    source_rows: int
    spacing_mm: tuple[float, float]
    spacing_assumed: bool
    not_found: tuple[str, ...] = ()
    problems: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    def lines(self) -> list[str]:
        """The summary as the CLI prints it, one fact per line."""
        total = sum(self.findings.values())
        low, high = self.spacing_mm
        spacing = f"{low:g} mm" if low == high else f"{low:g}-{high:g} mm"
        assumed = ", assumed (the source's headers state none)" if self.spacing_assumed else ", from the headers"
        left_out = self.source_rows - total
        lines = [
            f"wrote        {self.manifest} ({self.source})",
            f"images       {self.images} of {self.patients} patients; splits "
            + ", ".join(f"{k}: {v}" for k, v in sorted(self.splits.items())),
            f"findings     {', '.join(f'{k}: {v}' for k, v in self.findings.items())}; "
            f"{self.with_centre} of {total} with a centre"
            + (f"; {left_out} of {self.source_rows} source rows left out (image not found)" if left_out else ""),
            f"spacing      {spacing} per pixel{assumed}",
            _listed("not found   ", self.not_found),
            _listed("problems    ", self.problems),
        ]
        return lines + [f"note         {note}" for note in self.notes]


def _listed(title: str, entries: Sequence[str]) -> str:
    """The title, the count and the first SHOWN entries ("... (and K more)"); the title and 0 when empty."""
    if not entries:
        return f"{title} 0"
    more = f" (and {len(entries) - SHOWN} more)" if len(entries) > SHOWN else ""
    return f"{title} {len(entries)}: " + "; ".join(entries[:SHOWN]) + more


def count_findings(rows: Sequence[dict], classes: Sequence[str]) -> dict[str, int]:
    """Manifest rows per "ABNORMALITY SEVERITY": every class of `classes` x B/M (zeros shown), then any other."""
    counts = Counter(f"{r['abnormality']} {r['severity'] or '-'}" for r in rows)
    keys = [f"{c} {s}" for c in classes for s in SEVERITY_CODES]
    return {k: counts.get(k, 0) for k in [*keys, *sorted(set(counts) - set(keys))]}


def summarise(
    source: str, manifest: Path, rows: Sequence[dict], classes: Sequence[str], source_rows: int, log: ImportLog
) -> ImportSummary:
    """The summary of the manifest rows an adapter wrote: one dict per finding, keyed by MANIFEST_COLUMNS
    (None for an empty cell, spacing_mm a float, spacing_assumed a bool), as `write_manifest` takes them."""
    images = {r["image_id"]: r for r in rows}
    spacings = [float(r["spacing_mm"]) for r in images.values()]
    return ImportSummary(
        source=source,
        manifest=manifest,
        images=len(images),
        patients=len({r["patient_id"] for r in rows}),
        splits=dict(Counter(r["split"] for r in images.values())),
        findings=count_findings(rows, classes),
        with_centre=sum(r["row"] is not None for r in rows),
        source_rows=source_rows,
        spacing_mm=(min(spacings), max(spacings)),
        spacing_assumed=all(r["spacing_assumed"] for r in images.values()),
        not_found=tuple(log.not_found),
        problems=tuple(log.problems),
        notes=tuple(log.notes),
    )


# --- the manifest -------------------------------------------------------------------------------------


def _cell(value: object) -> str:
    """A manifest cell: None -> "", a bool -> "true"/"false", a float in its shortest form, else str."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}" if math.isfinite(value) else ""
    return str(value)


def write_manifest(out: Path, rows: Sequence[dict], extra_columns: Sequence[str]) -> Path:
    """Write OUT/manifest.csv atomically: MANIFEST_COLUMNS then `extra_columns`, one row per finding.

    `out` is created if needed (and removed again if the write fails); returns the manifest's path.
    """
    import pandas as pd

    columns = [*MANIFEST_COLUMNS, *extra_columns]
    frame = pd.DataFrame([[_cell(r.get(c)) for c in columns] for r in rows], columns=columns, dtype=object)
    path = Path(out) / MANIFEST_NAME
    write_bytes_atomic(path, frame.to_csv(index=False, lineterminator="\n").encode("utf-8"))
    return path
