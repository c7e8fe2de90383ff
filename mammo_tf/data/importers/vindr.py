"""VinDr-Mammo as published on PhysioNet -> the project's manifest (`mammo-tf data import-vindr SRC --out DIR`).

The source (https://doi.org/10.13026/br2v-7517), as PhysioNet lays it out:

    SRC/finding_annotations.csv                  one row per finding box; a film without findings has
                                                 one row whose category is "No Finding"
    SRC/images/<study_id>/<image_id>.dicom       the films, four per study (exam)

finding_annotations.csv has the columns study_id, series_id, image_id, laterality, view_position,
height, width, breast_birads, breast_density, finding_categories, finding_birads, xmin, ymin, xmax,
ymax, split (headers matched after trimming and lower-casing). `finding_categories` is a Python list
written as text (`['Mass', 'Suspicious Calcification']`), read with `ast.literal_eval`; the box is
in pixels (x = column, y = row) and empty on "No Finding" rows. breast-level_annotations.csv and
metadata.csv are not read.

Mapping (one manifest row per category of a row, so a box with two categories gives two findings):

- abnormality: "Suspicious Calcification" -> CALC; "No Finding" -> NORM (a film without findings);
  every other category upper-cased with "_" for spaces (`common.abnormality_code`): Mass -> MASS,
  Asymmetry, Focal Asymmetry, Global Asymmetry, Architectural Distortion, Skin Thickening, Skin
  Retraction, Nipple Retraction, Suspicious Lymph Node -> ASYMMETRY, FOCAL_ASYMMETRY, ...;
- centre and radius: the box's centre and half its diagonal (the circle through its corners,
  `common.box_circle`: centre rounded to a pixel, radius rounded up);
- severity: empty (VinDr-Mammo gives no pathology); `suspicion` from finding_birads by
  `common.SUSPICION` (2 benign, 3 probably benign, 4-5 suspicious), beside the raw breast_birads,
  finding_birads and finding_categories;
- patient_id: the study_id (VinDr-Mammo publishes no patient identifier: a study is one woman's
  four-view exam, so two exams of one woman would count as two patients); laterality, view;
  tissue: breast_density without its "DENSITY " prefix (A-D);
- split: VinDr-Mammo's own (training -> train, test), per study; a study in both goes to test;
- spacing: from each DICOM header (`io.dicom.pixel_spacing`), so `spacing_mm` stays empty and the
  catalog reads the header's; an image whose header states none has an unknown spacing.

Only DICOM headers are read. Not errors, but counted in the summary: a DICOM that is missing
(`not found`: its image and findings are left out), a CSV height/width that disagrees with the
header, or a centre outside its image (`problems`: the header's size is kept; such a finding keeps
no centre). Errors (one line, nothing written): SRC missing, finding_annotations.csv missing or
without a required column, a malformed row (categories that are not a list written as text, an
unknown split, a box that is not four numbers), rows of one image that disagree, an unreadable
DICOM, no image found at all.
"""

from __future__ import annotations

import ast
import math
import os
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from mammo_tf.data.importers.common import (
    NO_SEVERITY,
    NORMAL,
    ImportLog,
    ImportSummary,
    SourceRow,
    abnormality_code,
    birads_suspicion,
    box_circle,
    centre_inside,
    patient_splits,
    progress_bar,
    read_source_csv,
    summarise,
    write_manifest,
)
from mammo_tf.errors import located
from mammo_tf.io.base import ImageHeader
from mammo_tf.io.dicom import probe_dicom_header

SOURCE = "VinDr-Mammo"
CSV_NAME = "finding_annotations.csv"
IMAGE_FOLDER = "images"
DICOM_SUFFIX = ".dicom"
REQUIRED = (
    "study_id",
    "image_id",
    "laterality",
    "view_position",
    "height",
    "width",
    "breast_birads",
    "breast_density",
    "finding_categories",
    "finding_birads",
    "xmin",
    "ymin",
    "xmax",
    "ymax",
    "split",
)
EXTRA_COLUMNS = ("series_id", "breast_birads", "finding_birads", "suspicion", "finding_categories", "source_row")
NO_FINDING = "No Finding"
CATEGORY_CODES = {"suspicious calcification": "CALC", "no finding": NORMAL}  # lower-cased category -> class
SPLITS = {"training": "train", "train": "train", "test": "test"}
SIDES = {"L": "L", "R": "R", "LEFT": "L", "RIGHT": "R"}
BOX = ("xmin", "ymin", "xmax", "ymax")
# Values of the image, not the finding: every row of one image_id must agree on them.
IMAGE_VALUES = ("study_id", "side", "view", "height", "width", "breast_birads", "density", "split")
_ID = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]*$")  # a folder or file name: no separators, no "..", no spaces
_WHOLE = re.compile(r"^\d+(\.0*)?$")
_DENSITY = re.compile(r"^DENSITY\s+([A-D])$", re.IGNORECASE)


# --- the CSV ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VindrRow:
    """One row of finding_annotations.csv, checked: its line, its image and its finding(s)."""

    line: int
    study_id: str
    series_id: str
    image_id: str
    side: str  # L / R
    view: str  # CC / MLO (upper-cased)
    height: int  # rows, as the CSV states them
    width: int  # columns
    breast_birads: str  # raw, e.g. "BI-RADS 2"
    density: str  # raw, e.g. "DENSITY C"
    categories: tuple[str, ...]  # ("No Finding",) for a film without findings
    categories_text: str  # raw
    finding_birads: str  # raw, "" on No Finding rows
    suspicion: str
    box: tuple[float, float, float, float] | None  # xmin, ymin, xmax, ymax in pixels
    split: str  # train / test


def _identifier(path: Path, line: int, name: str, text: str) -> str:
    if not _ID.match(text):
        raise located(path, f"{name} must be letters, digits, '_', '.' or '-' (a file name), got '{text}'", line)
    return text


def _whole(path: Path, line: int, name: str, text: str) -> int:
    if not _WHOLE.match(text) or int(text.split(".")[0]) < 1:
        raise located(path, f"{name} must be a whole number of pixels >= 1, got '{text}'", line)
    return int(text.split(".")[0])


def parse_categories(path: Path, line: int, text: str) -> tuple[str, ...]:
    """finding_categories: a list of names written as text ("['Mass', 'Suspicious Calcification']").

    Anything else (not Python literal syntax, not a non-empty list of non-empty strings) is a
    MammoError at its line. "No Finding" beside real categories is dropped.
    """
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        value = None
    if not isinstance(value, list | tuple) or not value or not all(isinstance(v, str) and v.strip() for v in value):
        raise located(
            path, f"finding_categories must be a list of names written as text, e.g. \"['Mass']\", got {text!r}", line
        )
    names = tuple(v.strip() for v in value)
    findings = tuple(n for n in names if n.lower() != NO_FINDING.lower())
    return findings or (NO_FINDING,)


def parse_box(path: Path, line: int, values: dict[str, str]) -> tuple[float, float, float, float] | None:
    """(xmin, ymin, xmax, ymax) in pixels; None when all four are empty; else four numbers, min <= max."""
    texts = [values[k] for k in BOX]
    if not any(texts):
        return None
    try:
        numbers = [float(t) for t in texts]
    except ValueError:
        numbers = []
    if len(numbers) != 4 or not all(math.isfinite(v) for v in numbers):
        raise located(path, f"xmin, ymin, xmax, ymax must be four numbers (pixels) or all empty, got {texts}", line)
    xmin, ymin, xmax, ymax = numbers
    if xmin > xmax or ymin > ymax:
        raise located(path, f"box has xmin > xmax or ymin > ymax: {texts}", line)
    return xmin, ymin, xmax, ymax


def _choice(path: Path, line: int, name: str, text: str, allowed: dict[str, str], key: str) -> str:
    if key not in allowed:
        raise located(path, f"unknown {name} '{text}' (expected one of {sorted(set(allowed))})", line)
    return allowed[key]


def parse_row(path: Path, row: SourceRow) -> VindrRow:
    """One CSV row -> a VindrRow; a value that cannot name a file or a class is a MammoError at its line."""
    values, line = row.values, row.line
    categories = parse_categories(path, line, values["finding_categories"])
    finding_birads = values["finding_birads"]
    birads_suspicion(path, line, "breast_birads", values["breast_birads"])  # checked, kept raw
    view = values["view_position"].upper()
    if not view:
        raise located(path, "empty view_position", line)
    return VindrRow(
        line=line,
        study_id=_identifier(path, line, "study_id", values["study_id"]),
        series_id=values.get("series_id", ""),
        image_id=_identifier(path, line, "image_id", values["image_id"]),
        side=_choice(path, line, "laterality", values["laterality"], SIDES, values["laterality"].upper()),
        view=view,
        height=_whole(path, line, "height", values["height"]),
        width=_whole(path, line, "width", values["width"]),
        breast_birads=values["breast_birads"],
        density=values["breast_density"],
        categories=categories,
        categories_text=values["finding_categories"],
        finding_birads=finding_birads,
        suspicion=birads_suspicion(path, line, "finding_birads", finding_birads),
        box=parse_box(path, line, values),
        split=_choice(path, line, "split", values["split"], SPLITS, values["split"].lower()),
    )


def read_csv(src: Path) -> list[VindrRow]:
    """Every row of SRC/finding_annotations.csv, checked (a MammoError at the first bad one)."""
    path = src / CSV_NAME
    rows = [parse_row(path, row) for row in read_source_csv(path, REQUIRED)]
    if not rows:
        raise located(path, "no data rows (a header only)")
    _check_images(path, rows)
    return rows


def _check_images(path: Path, rows: list[VindrRow]) -> None:
    """Rows of one image_id describe one film: its study, side, view, size, BI-RADS, density and split agree."""
    first: dict[str, VindrRow] = {}
    for row in rows:
        seen = first.setdefault(row.image_id, row)
        for name in IMAGE_VALUES:
            if getattr(row, name) != getattr(seen, name):
                raise located(
                    path,
                    f"image {row.image_id}: {name} '{getattr(row, name)}' disagrees with "
                    f"'{getattr(seen, name)}' on line {seen.line} (one image, one {name})",
                    row.line,
                )


# --- the manifest ---------------------------------------------------------------------------------------


def abnormality(category: str) -> str:
    """A VinDr-Mammo category as a manifest class: CALC, NORM, else upper case with "_" (MASS, ASYMMETRY, ...)."""
    return CATEGORY_CODES.get(category.lower(), abnormality_code(category))


def tissue(density: str) -> str:
    """breast_density "DENSITY C" -> "C" (the BI-RADS density letter); any other text as given."""
    match = _DENSITY.match(density.strip())
    return match.group(1).upper() if match else density


def _size_checked(row: VindrRow, path: Path, header: ImageHeader, log: ImportLog) -> None:
    if (row.height, row.width) != (header.height, header.width):
        log.problems.append(
            f"{path}: {CSV_NAME} line {row.line} gives {row.height}x{row.width} (height x width), "
            f"the DICOM header {header.height}x{header.width}; the header's size is kept"
        )


def manifest_rows(row: VindrRow, path: Path, header: ImageHeader, split: str, log: ImportLog) -> list[dict]:
    """The manifest rows of one CSV row: one per category (NORM for "No Finding"), then the source's labels."""
    shape = (header.height, header.width)
    spacing = (header.spacing.row_mm, header.spacing.col_mm) if header.spacing is not None else None
    out = []
    for category in row.categories:
        code = abnormality(category)
        circle = None
        if code != NORMAL and row.box is not None:
            circle = centre_inside(box_circle(*row.box), shape, f"{path} ({CSV_NAME} line {row.line})", log)
        out.append(
            {
                "path": str(path),
                "patient_id": row.study_id,
                "image_id": row.image_id,
                "laterality": row.side,
                "view": row.view,
                "tissue": tissue(row.density),
                "abnormality": code,
                "severity": None,
                "row": circle[0] if circle else None,
                "col": circle[1] if circle else None,
                "radius": circle[2] if circle else None,
                "split": split,
                "spacing_mm": None,  # the catalog reads the header's
                "spacing_assumed": False,
                "mask": None,
                "series_id": row.series_id,
                "breast_birads": row.breast_birads,
                "finding_birads": row.finding_birads if code != NORMAL else "",
                "suspicion": row.suspicion if code != NORMAL else "",
                "finding_categories": row.categories_text,
                "source_row": f"{CSV_NAME}:{row.line}",
                "header_spacing": spacing,  # for the summary only
            }
        )
    return out


def dicom_path(src: Path, row: VindrRow) -> Path:
    """SRC/images/<study_id>/<image_id>.dicom, absolute."""
    return Path(os.path.abspath(src / IMAGE_FOLDER / row.study_id / f"{row.image_id}{DICOM_SUFFIX}"))


def import_vindr(src: str | Path, out: str | Path, *, progress: bool = True) -> ImportSummary:
    """Write OUT/manifest.csv for the VinDr-Mammo release in SRC (see the module docstring); the files stay put.

    progress: a progress bar on a terminal. Everything is read and checked before the manifest is
    written atomically, so an error (a MammoError naming the file and line) leaves nothing behind.
    """
    src = Path(os.path.abspath(Path(src).expanduser()))
    if not src.is_dir():
        raise located(src, f"no such folder (expected VinDr-Mammo: {CSV_NAME} and {IMAGE_FOLDER}/)")
    rows = read_csv(src)
    log = ImportLog()
    splits = patient_splits(((row.study_id, row.split) for row in rows), log, SOURCE)
    by_image: dict[str, list[VindrRow]] = defaultdict(list)
    for row in rows:
        by_image[row.image_id].append(row)
    written = []
    with progress_bar(by_image.values(), progress, desc="import-vindr", unit=" images") as images:
        for image_rows in images:
            path = dicom_path(src, image_rows[0])
            if not path.is_file():
                log.not_found.append(str(path))
                continue
            header = probe_dicom_header(path)
            _size_checked(image_rows[0], path, header, log)
            for row in image_rows:
                written += manifest_rows(row, path, header, splits[row.study_id], log)
    if not written:
        where, first = src / IMAGE_FOLDER, log.not_found[0]
        raise located(where, f"no DICOM found for any of the {len(by_image)} images of {CSV_NAME} ({first})")
    manifest = write_manifest(Path(out), written, EXTRA_COLUMNS)
    return summarise(SOURCE, manifest, written, ("CALC", "MASS"), len(rows), log, NO_SEVERITY)
