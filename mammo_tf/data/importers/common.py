"""What the dataset adapters share: source CSVs, circles, labels, splits, the progress bar, the summary, the writes.

An adapter runs in two phases. First it reads and checks everything: the source's tables
(`read_source_csv`: a malformed table or row is a MammoError naming the file and line) and the image
headers; a file the tables name but the tree lacks is not an error but an entry of `ImportLog.not_found`,
and a file that is there but cannot be used (a mask of the wrong size, a centre outside its image) one
of `ImportLog.problems`. Then it writes OUT/manifest.csv (and, for a source with outlines, the masks
it draws into OUT/masks/) in one all-or-nothing step (`write_manifest`), so a failed import leaves
nothing behind, and returns an `ImportSummary` that the CLI prints (`ImportSummary.lines`).

Shared conventions (each adapter's docstring says which it uses):

- circles: a finding's centre is rounded to the nearest pixel (row 0 = top) and its radius is the
  distance from there to the farthest point it must hold, rounded up (`integer_circle`; of mask
  pixels: `bounding_circle`, of outline points: `points_circle`, of a box's corners: `box_circle`);
- source labels as manifest classes: `abnormality_code` ("Architectural Distortion" ->
  ARCHITECTURAL_DISTORTION); BI-RADS as a stated `suspicion` (`SUSPICION`), never as a severity:
  BI-RADS is a radiologist's assessment, not a pathology;
- splits: a source's own split per patient; a patient in two splits goes to test (`patient_splits`).
"""

from __future__ import annotations

import contextlib
import csv
import math
import re
import shutil
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np

from mammo_tf.errors import MammoError, located
from mammo_tf.io.atomic import atomic_dir, write_bytes_atomic

MANIFEST_NAME = "manifest.csv"
MASK_FOLDER = "masks"  # OUT/masks/: the masks an adapter draws (INbreast's speck masks)
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
NO_SEVERITY = ("",)  # count_findings' severities for a source that gives none (VinDr-Mammo, INbreast)
NORMAL = "NORM"  # the manifest's abnormality of a film without findings (schema.NORMAL_FINDING)
SHOWN = 5  # entries of a list the summary names
# BI-RADS assessment category -> the `suspicion` column: what the radiologist's category says about a
# finding, stated as such. 0 (incomplete) and 1 (negative) say nothing about a finding: "".
SUSPICION = {
    "0": "",
    "1": "",
    "2": "benign",
    "3": "probably benign",
    "4": "suspicious",
    "5": "suspicious",
    "6": "known malignant",  # BI-RADS 6: biopsy-proven malignancy, known before the image was read
}
_BIRADS = re.compile(r"^(?:BI-?RADS)?[\s:]*([0-6])\s*([ABC])?$", re.IGNORECASE)  # "BI-RADS 4", "4a", "5"


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

    foreground: bool [H, W]. The centre of the smallest such circle (OpenCV `minEnclosingCircle` on
    the True pixels' centres), rounded by `integer_circle`. A one-pixel mask has radius 1.
    """
    import cv2

    points = cv2.findNonZero(np.asarray(foreground, dtype=np.uint8))
    if points is None:
        return None
    (x, y), _ = cv2.minEnclosingCircle(points)
    return integer_circle(cv2.convexHull(points).reshape(-1, 2), y, x)


def integer_circle(points_xy: np.ndarray, row: float, col: float) -> tuple[int, int, int]:
    """(row, col, radius) in whole pixels of a circle about (row, col) holding every point.

    points_xy: [N, 2] as (x = column, y = row). The centre is rounded to the nearest pixel (halves
    up); the radius is the distance from the rounded centre to the farthest point, rounded up, at
    least 1 (the manifest's smallest radius). Computed exactly rather than from OpenCV's radius,
    which carries a 1e-4 px safety margin that would round 4.0 up to 5.
    """
    r, c = math.floor(row + 0.5), math.floor(col + 0.5)
    points = np.asarray(points_xy, np.float64).reshape(-1, 2)
    farthest = float(np.hypot(points[:, 0] - c, points[:, 1] - r).max())
    return r, c, max(1, math.ceil(farthest))


def points_circle(points_xy: np.ndarray) -> tuple[int, int, int]:
    """(row, col, radius) in pixels of a circle holding every point, e.g. an outline's vertices.

    points_xy: float [N, 2], N >= 1, as (x = column, y = row) pixels. The centre of the smallest
    circle (OpenCV minEnclosingCircle), rounded by `integer_circle`; one point gives radius 1.
    """
    import cv2

    points = np.asarray(points_xy, np.float32).reshape(-1, 1, 2)
    (x, y), _ = cv2.minEnclosingCircle(points)
    return integer_circle(points_xy, y, x)


def box_circle(xmin: float, ymin: float, xmax: float, ymax: float) -> tuple[int, int, int]:
    """(row, col, radius) in pixels of a box's circumscribed circle: its centre, half its diagonal.

    x are columns, y rows (pixels); rounded by `integer_circle`, so the circle holds all four corners
    (the radius is half the diagonal plus at most the 0.71 px the centre moved, rounded up).
    """
    corners = np.array([(xmin, ymin), (xmax, ymin), (xmin, ymax), (xmax, ymax)], np.float64)
    return integer_circle(corners, (ymin + ymax) / 2, (xmin + xmax) / 2)


def centre_inside(
    circle: tuple[int, int, int] | None, shape: tuple[int, int], what: str, log: ImportLog
) -> tuple[int, int, int] | None:
    """`circle` when its centre lies in an image of `shape` (rows, cols); else None and a problem naming `what`."""
    if circle is None or (0 <= circle[0] < shape[0] and 0 <= circle[1] < shape[1]):
        return circle
    log.problems.append(
        f"{what}: centre row {circle[0]}, col {circle[1]} outside the {shape[0]}x{shape[1]} image; "
        "finding kept without a centre"
    )
    return None


# --- source labels ----------------------------------------------------------------------------------


def abnormality_code(name: str) -> str:
    """A source's finding name as a manifest class: upper case, runs of other characters as one "_".

    "Architectural Distortion" -> ARCHITECTURAL_DISTORTION, "Spiculated region" -> SPICULATED_REGION.
    """
    return re.sub(r"[^A-Z0-9]+", "_", name.strip().upper()).strip("_")


def birads_suspicion(path: Path, line: int, name: str, text: str) -> str:
    """The `suspicion` (SUSPICION) of a BI-RADS value: "BI-RADS 4", "4a", "5" ...; "" when empty.

    A value that is not a BI-RADS category 0-6 (with an optional a/b/c) is a MammoError at its line.
    """
    if not text:
        return ""
    match = _BIRADS.match(text.strip())
    if match is None:
        raise located(path, f"{name} '{text}' is not a BI-RADS category (0-6, e.g. 'BI-RADS 4' or '4a')", line)
    return SUSPICION[match.group(1)]


# --- splits -----------------------------------------------------------------------------------------


def patient_splits(pairs: Iterable[tuple[str, str]], log: ImportLog, source: str) -> dict[str, str]:
    """patient_id -> train / test from (patient_id, split) pairs; a patient in both goes to test (noted in `log`)."""
    splits: dict[str, set[str]] = defaultdict(set)
    for patient, split in pairs:
        splits[patient].add(split)
    both = sorted(p for p, s in splits.items() if len(s) > 1)
    if both:
        shown = ", ".join(both[:SHOWN]) + (f" (and {len(both) - SHOWN} more)" if len(both) > SHOWN else "")
        who = "1 patient is" if len(both) == 1 else f"{len(both)} patients are"
        log.notes.append(f"{who} in both {source} splits: test gets all their images ({shown})")
    return {patient: "test" if "test" in s else "train" for patient, s in splits.items()}


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
    none; "NORM -" rows are films without findings, not counted as findings); source_rows / rows_used:
    rows of the source's tables, and how many of them the manifest holds (the rest name images not
    found); spacing_mm: (smallest, largest) pixel side in mm over the images whose spacing is known,
    None when no image's is; spacing_unknown: images whose headers state none (and no number was
    given); spacing_assumed: the numbers are the caller's, not the headers' (e.g. CBIS-DDSM's
    --spacing-mm). splits: images per split, {} when the source has none.
    """

    source: str
    manifest: Path
    images: int
    patients: int
    splits: dict[str, int]
    findings: dict[str, int]
    with_centre: int
    source_rows: int
    rows_used: int
    spacing_mm: tuple[float, float] | None
    spacing_assumed: bool
    spacing_unknown: int = 0
    not_found: tuple[str, ...] = ()
    problems: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    def lines(self) -> list[str]:
        """The summary as the CLI prints it, one fact per line."""
        total = sum(n for k, n in self.findings.items() if not k.startswith(f"{NORMAL} "))
        left_out = self.source_rows - self.rows_used
        splits = ", ".join(f"{k}: {v}" for k, v in sorted(self.splits.items()))
        lines = [
            f"wrote        {self.manifest} ({self.source})",
            f"images       {self.images} of {self.patients} patients; "
            + (f"splits {splits}" if splits else "no split given (the catalog splits by patient, seeded)"),
            f"findings     {', '.join(f'{k}: {v}' for k, v in self.findings.items())}; "
            f"{self.with_centre} of {total} with a centre"
            + (f"; {left_out} of {self.source_rows} source rows left out (image not found)" if left_out else ""),
            f"spacing      {self._spacing()}",
            _listed("not found   ", self.not_found),
            _listed("problems    ", self.problems),
        ]
        return lines + [f"note         {note}" for note in self.notes]

    def _spacing(self) -> str:
        """ "0.07 mm per pixel, from the headers", a range, and the images whose spacing is unknown."""
        unknown = f"{self.spacing_unknown} image{'s' if self.spacing_unknown != 1 else ''}"
        if self.spacing_mm is None:
            return f"unknown for all {unknown} (their headers state none)"
        low, high = self.spacing_mm
        spacing = f"{low:g} mm" if low == high else f"{low:g}-{high:g} mm"
        assumed = ", assumed (the source's headers state none)" if self.spacing_assumed else ", from the headers"
        rest = f"; unknown for {unknown} (their headers state none)" if self.spacing_unknown else ""
        return f"{spacing} per pixel{assumed}{rest}"


def _listed(title: str, entries: Sequence[str]) -> str:
    """The title, the count and the first SHOWN entries ("... (and K more)"); the title and 0 when empty."""
    if not entries:
        return f"{title} 0"
    more = f" (and {len(entries) - SHOWN} more)" if len(entries) > SHOWN else ""
    return f"{title} {len(entries)}: " + "; ".join(entries[:SHOWN]) + more


def count_findings(
    rows: Sequence[dict], classes: Sequence[str], severities: Sequence[str] = SEVERITY_CODES
) -> dict[str, int]:
    """Manifest rows per "ABNORMALITY SEVERITY": every class of `classes` x `severities` (zeros shown), then any other.

    severities: the codes the source gives (B/M); NO_SEVERITY ("") for a source without: "CALC -".
    """
    counts = Counter(f"{r['abnormality']} {r['severity'] or '-'}" for r in rows)
    keys = [f"{c} {s or '-'}" for c in classes for s in severities]
    return {k: counts.get(k, 0) for k in [*keys, *sorted(set(counts) - set(keys))]}


def _image_spacing(row: dict) -> tuple[float, float] | None:
    """(row, col) mm per pixel of a row's image: its spacing_mm, else its header's ("header_spacing"), else None."""
    if row["spacing_mm"] is not None:
        return float(row["spacing_mm"]), float(row["spacing_mm"])
    return row.get("header_spacing")


def summarise(
    source: str,
    manifest: Path,
    rows: Sequence[dict],
    classes: Sequence[str],
    source_rows: int,
    log: ImportLog,
    severities: Sequence[str] = SEVERITY_CODES,
) -> ImportSummary:
    """The summary of the manifest rows an adapter wrote, as `write_manifest` takes them.

    rows: one dict per manifest row, keyed by MANIFEST_COLUMNS (None for an empty cell, spacing_mm a
    float or None, spacing_assumed a bool) and "source_row" (the source file and line it came from);
    a row whose spacing_mm is None may give its DICOM header's spacing as "header_spacing"
    ((row_mm, col_mm), None when the header states none): it is counted, not written.
    """
    images = {r["image_id"]: r for r in rows}
    spacings = [s for s in map(_image_spacing, images.values()) if s is not None]
    sides = [side for pair in spacings for side in pair]
    return ImportSummary(
        source=source,
        manifest=manifest,
        images=len(images),
        patients=len({r["patient_id"] for r in rows}),
        splits=dict(Counter(r["split"] for r in images.values() if r["split"])),
        findings=count_findings(rows, classes, severities),
        with_centre=sum(r["row"] is not None for r in rows),
        source_rows=source_rows,
        rows_used=len({r["source_row"] for r in rows}),
        spacing_mm=(min(sides), max(sides)) if sides else None,
        spacing_assumed=all(r["spacing_assumed"] for r in images.values()),
        spacing_unknown=len(images) - len(spacings),
        not_found=tuple(log.not_found),
        problems=tuple(log.problems),
        notes=tuple(log.notes),
    )


# --- the manifest and the masks -------------------------------------------------------------------------


def _cell(value: object) -> str:
    """A manifest cell: None -> "", a bool -> "true"/"false", a float in its shortest form, else str."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}" if math.isfinite(value) else ""
    return str(value)


def mask_png(mask: np.ndarray) -> bytes:
    """An 8-bit greyscale PNG of a mask: bool [H, W] -> 255 where True, 0 elsewhere (OpenCV)."""
    from mammo_tf.io.native import opencv

    ok, encoded = opencv().imencode(".png", np.where(mask, 255, 0).astype(np.uint8))
    if not ok:
        raise MammoError(f"OpenCV could not encode a {mask.shape[0]}x{mask.shape[1]} mask as PNG")
    return encoded.tobytes()


# A mask to write: its file name in OUT/masks/ and a function drawing it (bool [H, W]), called once.
MaskJob = tuple[str, Callable[[], np.ndarray]]


def check_mask_folder(out: Path) -> None:
    """Refuse an OUT that already holds masks/ (an earlier import's), before anything is read or written."""
    folder = Path(out) / MASK_FOLDER
    if folder.exists():
        raise located(folder, "already exists (masks of an earlier import?): remove it or choose another output folder")


def _write_masks(folder: Path, masks: Iterable[MaskJob]) -> None:
    """Draw and write every mask as PNG into OUT/masks/, which appears whole or not at all (`atomic_dir`)."""
    with atomic_dir(folder) as tmp:
        for name, draw in masks:
            (tmp / name).write_bytes(mask_png(draw()))


def write_manifest(
    out: Path, rows: Sequence[dict], extra_columns: Sequence[str], masks: Iterable[MaskJob] | None = None
) -> Path:
    """Write OUT/manifest.csv atomically: MANIFEST_COLUMNS then `extra_columns`, one row per finding.

    masks: files to draw into OUT/masks/ first (each row's `mask` names its file there); they are
    drawn one at a time (a large tree never holds two in memory). All or nothing: if anything fails,
    the masks folder and an OUT this call created are removed. Returns the manifest's path.
    """
    import pandas as pd

    out = Path(out)
    if masks is not None:
        check_mask_folder(out)  # so whatever is in OUT/masks/ after a failure below is this call's
    created = not out.exists()
    columns = [*MANIFEST_COLUMNS, *extra_columns]
    frame = pd.DataFrame([[_cell(r.get(c)) for c in columns] for r in rows], columns=columns, dtype=object)
    path = out / MANIFEST_NAME
    try:
        if masks is not None:
            _write_masks(out / MASK_FOLDER, masks)
        write_bytes_atomic(path, frame.to_csv(index=False, lineterminator="\n").encode("utf-8"))
    except BaseException:
        if masks is not None:
            shutil.rmtree(out / MASK_FOLDER, ignore_errors=True)
        if created:
            with contextlib.suppress(OSError):
                out.rmdir()  # only if empty: nothing of ours is left in it
        raise
    return path
