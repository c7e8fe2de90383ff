"""CBIS-DDSM as downloaded from TCIA -> the project's manifest (`mammo-tf data import-cbis SRC --out DIR`).

The source (https://doi.org/10.7937/K9/TCIA.2016.7O02S9CY), as the NBIA Data Retriever lays it out:

    SRC/calc_case_description_train_set.csv    and _test_set.csv, mass_case_description_{train,test}_set.csv
    SRC/CBIS-DDSM/Calc-Training_P_00005_RIGHT_CC/<study folder>/<series folder>/1-1.dcm     the full mammogram
    SRC/CBIS-DDSM/Calc-Training_P_00005_RIGHT_CC_1/<study folder>/<series folder(s)>/1-1.dcm, 1-2.dcm
                                                            ROI mask and cropped image of abnormality 1

(the case folders may also sit in SRC itself). Whichever of the four CSVs exist are read; one row is
one abnormality: patient_id, breast density (mass files: breast_density), left or right breast, image
view, abnormality id, ..., assessment (BI-RADS), pathology, subtlety. Headers are matched after
trimming, lower-casing and treating spaces and underscores alike.

Files are found by folder and by content, never by the CSV's file paths (they name `000000.dcm`
under UID folders, the download has `1-1.dcm` under renamed folders, and some rows swap the crop
and the mask):

- the case folder is built from the row: `{Calc|Mass}-{Training|Test}_{patient_id}_{LEFT|RIGHT}_{view}`
  (from the CSV file's kind and split); its ROI folder adds `_{abnormality id}`;
- the full mammogram is the case folder's DICOM whose SeriesDescription is "full mammogram images"
  (or its only DICOM without a crop or mask description);
- the ROI mask is the ROI folder's DICOM of the full mammogram's size (Rows x Columns; the cropped
  image is small), SeriesDescription "ROI mask images" deciding between several; its stored values
  must be binary (0 and one other value, the lesion). Only headers are read (pydicom
  stop_before_pixels), except the mask's pixels (as stored: no LUT, no scaling).

Finding centre and radius: the smallest circle holding every mask pixel (OpenCV minEnclosingCircle
on the nonzero pixels; `common.bounding_circle`), centre rounded to a pixel, radius rounded up.

Split: the CSV file's own (train / test), per patient. A patient found in both CBIS-DDSM splits goes
to test with all their images (the official test images all stay in test; the summary names them).

Spacing: CBIS-DDSM's headers carry no pixel spacing. DDSM's film scanners digitised at 42 to 50 um
(DBA 42, Howtek 43.5, Lumisys 50), so every image gets `spacing_mm` (default 0.05) and
`spacing_assumed` true.

Not errors, but counted in the summary: a case folder or ROI folder that is missing, or holds no
full mammogram / no mask (`not found`: the image and its findings are left out, or the finding is kept
without a centre and mask), and a mask that is not binary, is empty, or has another size than its full
mammogram (`problems`: the finding is kept without a centre). Errors (one line, nothing written): SRC
missing or without any of the four CSVs, a CSV without a required column, a malformed row, a DICOM
that cannot be read, no image found at all.
"""

from __future__ import annotations

import math
import os
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from mammo_tf.data.importers.common import (
    ImportLog,
    ImportSummary,
    SourceRow,
    bounding_circle,
    patient_splits,
    progress_bar,
    read_source_csv,
    summarise,
    write_manifest,
)
from mammo_tf.errors import MammoError, located
from mammo_tf.io.dicom import read_dicom_header, read_dicom_stored

SOURCE = "CBIS-DDSM"
DEFAULT_SPACING_MM = 0.05  # DDSM's scanners: DBA 0.042, Howtek 0.0435, Lumisys 0.05 mm per pixel
# CSV name -> (abnormality, the CSV's split); the case folders' prefix per (abnormality, split).
CSV_FILES = {
    "calc_case_description_train_set.csv": ("CALC", "train"),
    "calc_case_description_test_set.csv": ("CALC", "test"),
    "mass_case_description_train_set.csv": ("MASS", "train"),
    "mass_case_description_test_set.csv": ("MASS", "test"),
}
FOLDER_PREFIX = {
    ("CALC", "train"): "Calc-Training",
    ("CALC", "test"): "Calc-Test",
    ("MASS", "train"): "Mass-Training",
    ("MASS", "test"): "Mass-Test",
}
IMAGE_FOLDER = "CBIS-DDSM"  # the NBIA Data Retriever's folder for the collection
REQUIRED = ("patient_id", "breast_density", "left_or_right_breast", "image_view", "abnormality_id", "pathology")
# The source's own labels, written as extra manifest columns ("" where a file has no such column).
LABELS = ("assessment", "subtlety", "pathology", "calc_type", "calc_distribution", "mass_shape", "mass_margins")
EXTRA_COLUMNS = ("abnormality_id", *LABELS, "source_row")
SIDES = {"LEFT": "L", "RIGHT": "R"}
VIEWS = ("CC", "MLO")
SEVERITY = {"MALIGNANT": "M", "BENIGN": "B", "BENIGN_WITHOUT_CALLBACK": "B"}
# SeriesDescription of the three kinds of DICOM (compared trimmed and lower-cased).
FULL, CROP, MASK = "full mammogram images", "cropped images", "roi mask images"
_PATIENT = re.compile(r"^[A-Za-z0-9_.-]+$")  # part of a folder name: no separators, no spaces
_WHOLE = re.compile(r"^\d+(\.0*)?$")


# --- the CSVs -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CbisRow:
    """One abnormality of a CBIS-DDSM CSV, checked: where it came from, the image and the finding."""

    csv: Path
    line: int
    abnormality: str  # CALC / MASS (the CSV's kind)
    csv_split: str  # train / test (the CSV's own)
    patient_id: str
    side: str  # LEFT / RIGHT
    view: str  # CC / MLO
    density: str
    abnormality_id: int
    severity: str  # B / M
    labels: dict[str, str]

    @property
    def case(self) -> str:
        """The full mammogram's folder name, e.g. Calc-Training_P_00005_RIGHT_CC (also its image_id)."""
        prefix = FOLDER_PREFIX[(self.abnormality, self.csv_split)]
        return f"{prefix}_{self.patient_id}_{self.side}_{self.view}"

    @property
    def roi(self) -> str:
        """The folder of this abnormality's ROI mask and crop, e.g. Calc-Training_P_00005_RIGHT_CC_1."""
        return f"{self.case}_{self.abnormality_id}"


def _allowed(path: Path, line: int, name: str, text: str, allowed) -> str:
    key = text.upper()
    if key not in allowed:
        raise located(path, f"unknown {name} '{text}' (expected one of {sorted(allowed)})", line)
    return key


def parse_row(path: Path, abnormality: str, split: str, row: SourceRow) -> CbisRow:
    """One CSV row -> a CbisRow; a value that cannot name a folder or a class is a MammoError at its line."""
    values, line = row.values, row.line
    patient = values["patient_id"]
    if not _PATIENT.match(patient):
        raise located(path, f"patient_id must be letters, digits, '_', '.' or '-', got '{patient}'", line)
    number = values["abnormality_id"]
    if not _WHOLE.match(number) or int(number.split(".")[0]) < 1:
        raise located(path, f"abnormality id must be a whole number >= 1, got '{number}'", line)
    pathology = _allowed(path, line, "pathology", values["pathology"], SEVERITY)
    return CbisRow(
        csv=path,
        line=line,
        abnormality=abnormality,
        csv_split=split,
        patient_id=patient,
        side=_allowed(path, line, "left or right breast", values["left_or_right_breast"], SIDES),
        view=_allowed(path, line, "image view", values["image_view"], VIEWS),
        density=values["breast_density"],
        abnormality_id=int(number.split(".")[0]),
        severity=SEVERITY[pathology],
        labels={label: values.get(label, "") for label in LABELS},
    )


def read_csvs(src: Path) -> list[CbisRow]:
    """Every row of whichever of the four CSVs exist in `src`, checked (a MammoError at the first bad one)."""
    found = [(src / name, kind) for name, kind in CSV_FILES.items() if (src / name).is_file()]
    if not found:
        raise located(src, f"no CBIS-DDSM case description CSV here (expected any of {sorted(CSV_FILES)})")
    rows = [
        parse_row(path, abnormality, split, row)
        for path, (abnormality, split) in found
        for row in read_source_csv(path, REQUIRED)
    ]
    return rows


def _check_images(rows: list[CbisRow]) -> None:
    """Rows of one case folder describe one image: their breast density must agree."""
    first: dict[str, CbisRow] = {}
    for row in rows:
        seen = first.setdefault(row.case, row)
        if seen.density != row.density:
            raise located(
                row.csv,
                f"{row.case}: breast density '{row.density}' disagrees with '{seen.density}' "
                f"on {seen.csv.name} line {seen.line} (one image, one density)",
                row.line,
            )


# --- the DICOM tree -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Dicom:
    """A DICOM's header facts: absolute path, (rows, columns), SeriesDescription trimmed and lower-cased."""

    path: Path
    shape: tuple[int, int]
    description: str


def dicoms_in(folder: Path) -> list[Dicom]:
    """Every .dcm under `folder` (any depth, sorted), headers only; an unreadable DICOM is a MammoError naming it."""
    found = []
    for path in sorted(p for p in folder.rglob("*") if p.suffix.lower() == ".dcm" and p.is_file()):
        ds = read_dicom_header(path)
        description = str(ds.get("SeriesDescription", "") or "").strip().lower()
        found.append(Dicom(Path(os.path.abspath(path)), (int(ds.Rows), int(ds.Columns)), description))
    return found


def full_mammogram(folder: Path, log: ImportLog) -> Dicom | None:
    """The case folder's full mammogram: described as such, else its only DICOM without a crop/mask description."""
    if not folder.is_dir():
        log.not_found.append(str(folder))
        return None
    dicoms = dicoms_in(folder)
    undescribed = [d for d in dicoms if d.description not in (CROP, MASK)]
    candidates = [d for d in dicoms if d.description == FULL] or undescribed
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        log.not_found.append(f"{folder} (no full mammogram DICOM)")
    else:
        log.problems.append(f"{folder}: {len(candidates)} DICOMs could be the full mammogram; image left out")
    return None


def roi_mask(folder: Path, full: Dicom, log: ImportLog) -> Dicom | None:
    """The ROI folder's mask: the DICOM of the full mammogram's size ("ROI mask images" decides between several)."""
    if not folder.is_dir():
        log.not_found.append(str(folder))
        return None
    dicoms = dicoms_in(folder)
    sized = [d for d in dicoms if d.shape == full.shape]
    described = [d for d in sized if d.description == MASK]
    chosen = described if len(described) == 1 else sized
    if len(chosen) == 1:
        return chosen[0]
    if chosen:
        log.problems.append(f"{folder}: {len(chosen)} DICOMs could be the ROI mask; finding kept without a centre")
        return None
    labelled = [d for d in dicoms if d.description == MASK]
    if labelled:
        (rows, cols), (full_rows, full_cols) = labelled[0].shape, full.shape
        log.problems.append(
            f"{labelled[0].path}: ROI mask of {rows}x{cols} pixels, its full mammogram has {full_rows}x{full_cols}; "
            "finding kept without a centre"
        )
    else:
        log.not_found.append(f"{folder} (no DICOM of the full mammogram's size: no ROI mask)")
    return None


def mask_circle(mask: Dicom, log: ImportLog) -> tuple[int, int, int] | None:
    """(row, col, radius) in pixels of the bounding circle of the mask's nonzero stored values.

    None (and a problem in `log`) when the mask is not binary (zero and one other value) or empty.
    """
    stored = read_dicom_stored(mask.path)  # [H, W] as stored: CBIS-DDSM masks are 0 and 255
    foreground = stored != 0
    values = stored[foreground]
    if values.size and not (values == values[0]).all():
        log.problems.append(f"{mask.path}: ROI mask not binary (over two values); finding kept without a centre")
        return None
    circle = bounding_circle(foreground)
    if circle is None:
        log.problems.append(f"{mask.path}: ROI mask is empty; finding kept without a centre")
    return circle


# --- the manifest ---------------------------------------------------------------------------------------


def _finding(row: CbisRow, root: Path, full: Dicom, log: ImportLog) -> dict:
    """The finding's manifest fields: centre, radius and mask path from its ROI folder (empty when unusable)."""
    mask = roi_mask(root / row.roi, full, log)
    circle = mask_circle(mask, log) if mask is not None else None
    if circle is None:
        return {"row": None, "col": None, "radius": None, "mask": ""}
    return {"row": circle[0], "col": circle[1], "radius": circle[2], "mask": str(mask.path)}


def manifest_row(row: CbisRow, full: Dicom, split: str, spacing_mm: float, finding: dict) -> dict:
    """One manifest row: the project's columns, then the source's labels (EXTRA_COLUMNS)."""
    return {
        "path": str(full.path),
        "patient_id": row.patient_id,
        "image_id": row.case,
        "laterality": SIDES[row.side],
        "view": row.view,
        "tissue": row.density,
        "abnormality": row.abnormality,
        "severity": row.severity,
        **finding,
        "split": split,
        "spacing_mm": spacing_mm,
        "spacing_assumed": True,
        "abnormality_id": row.abnormality_id,
        **row.labels,
        "source_row": f"{row.csv.name}:{row.line}",
    }


def image_root(src: Path) -> Path:
    """Where the case folders are: SRC/CBIS-DDSM when it exists (the retriever's layout), else SRC."""
    return src / IMAGE_FOLDER if (src / IMAGE_FOLDER).is_dir() else src


def _check_spacing(spacing_mm: float) -> float:
    spacing = float(spacing_mm)
    if not (math.isfinite(spacing) and spacing > 0):
        raise MammoError(f"spacing_mm must be a positive number of mm per pixel, got {spacing_mm!r}")
    return spacing


def import_cbis(
    src: str | Path, out: str | Path, spacing_mm: float = DEFAULT_SPACING_MM, *, progress: bool = True
) -> ImportSummary:
    """Write OUT/manifest.csv for the CBIS-DDSM download in SRC (see the module docstring); the files stay put.

    spacing_mm: pixel side in mm recorded for every image (assumed: the headers state none).
    progress: a progress bar on a terminal. Everything is read and checked before the manifest is
    written atomically, so an error (a MammoError naming the file and line) leaves nothing behind.
    """
    src = Path(os.path.abspath(Path(src).expanduser()))
    if not src.is_dir():
        raise located(src, "no such folder (expected a CBIS-DDSM download: the case description CSVs and CBIS-DDSM/)")
    spacing = _check_spacing(spacing_mm)
    rows = read_csvs(src)
    _check_images(rows)
    log = ImportLog()
    splits = patient_splits(((row.patient_id, row.csv_split) for row in rows), log, SOURCE)
    root = image_root(src)
    by_case: dict[str, list[CbisRow]] = defaultdict(list)
    for row in rows:
        by_case[row.case].append(row)
    written = []
    with progress_bar(by_case.items(), progress, desc="import-cbis", unit=" images") as cases:
        for case, case_rows in cases:
            full = full_mammogram(root / case, log)
            if full is None:
                continue
            for row in case_rows:
                finding = _finding(row, root, full, log)
                written.append(manifest_row(row, full, splits[row.patient_id], spacing, finding))
    if not written:
        first = (log.not_found + log.problems)[0]
        raise located(root, f"no full mammogram found for any of the {len(by_case)} case folders of the CSVs ({first})")
    manifest = write_manifest(Path(out), written, EXTRA_COLUMNS)
    return summarise(SOURCE, manifest, written, ("CALC", "MASS"), len(rows), log)
