"""The Catalog and its schema: every source (MIAS, phantom, manifest) becomes the same two pandas tables.

The bottom of the data layer: it imports no other mammo_tf.data module. The
source readers (mias.py, manifest.py) build Catalogs from here, and
catalog.py's `load_catalog` dispatches to them (and re-exports this module).

images   one row per image file
    image_id     str   unique id ("mdb001")
    patient_id   str   images of one patient share it; splits never separate them
    path         str   absolute path of the pixel file
    laterality   str   "L", "R" or "" if unknown
    view         str   "MLO", "CC", ... or ""
    tissue       str   MIAS background tissue "F", "G", "D" or ""
    height       int   pixel rows
    width        int   pixel columns
    bit_depth    int   bits per pixel in the file
    spacing_row_mm  float  mm between adjacent rows (vertical pixel size); NaN if unknown
    spacing_col_mm  float  mm between adjacent columns (horizontal pixel size); NaN if unknown
    spacing_source  str    where the spacing came from: "dicom PixelSpacing",
                           "dicom ImagerPixelSpacing / magnification", "dicom ImagerPixelSpacing",
                           "MIAS (0.2 mm)", "phantom", "manifest", "resampled" (a copy brought to
                           a target spacing, data/resample.py) or "unknown" (then both are NaN:
                           an unknown spacing is stated, never guessed). A table built without the
                           three columns (tests, older callers) gets "unknown".
    split        str   "train", "val" or "test" (patient-level, see splits.py)

findings  one row per annotation line, in source order (NORM lines included)
    image_id     str
    abnormality  str   CALC, CIRC, SPIC, MISC, ARCH, ASYM, NORM (or a manifest's own label)
    severity     str   "B", "M" or "" (none for NORM)
    x, y         Int64 coordinates exactly as the source gives them (<NA> if unknown)
    row, col     Int64 array coordinates (row 0 = top row) (<NA> if unknown)
    radius       Int64 radius in pixels (<NA> if unknown)
    has_coords   bool  the finding has a known centre
    source_line  int   line number in the source file (for error messages and audits)
    mask         str   absolute path of the finding's pixel-level lesion mask, an image of the
                       image's size (a manifest's `mask` column, e.g. CBIS-DDSM's ROI masks; checked
                       to exist, not opened), "" when none; a table built without the column gets ""
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from mammo_tf.errors import MammoError
from mammo_tf.io.dicom import SPACING_IMAGER, SPACING_IMAGER_MAGNIFIED, SPACING_PIXEL

IMAGE_COLUMNS = {
    "image_id": "string",
    "patient_id": "string",
    "path": "string",
    "laterality": "string",
    "view": "string",
    "tissue": "string",
    "height": "int64",
    "width": "int64",
    "bit_depth": "int64",
    "spacing_row_mm": "float64",
    "spacing_col_mm": "float64",
    "spacing_source": "string",
    "split": "string",
}
FINDING_COLUMNS = {
    "image_id": "string",
    "abnormality": "string",
    "severity": "string",
    "x": "Int64",
    "y": "Int64",
    "row": "Int64",
    "col": "Int64",
    "radius": "Int64",
    "has_coords": "bool",
    "source_line": "int64",
    "mask": "string",
}
SPACING_COLUMNS = ("spacing_row_mm", "spacing_col_mm", "spacing_source")
# The images' spacing_source values; the DICOM ones are io.dicom's.
SPACING_MIAS = "MIAS (0.2 mm)"
SPACING_PHANTOM = "phantom"
SPACING_MANIFEST = "manifest"
SPACING_RESAMPLED = "resampled"  # data/resample.catalog_at_spacing: a copy brought to a target spacing
SPACING_UNKNOWN = "unknown"
SPACING_SOURCES = (
    SPACING_PIXEL,
    SPACING_IMAGER_MAGNIFIED,
    SPACING_IMAGER,
    SPACING_MIAS,
    SPACING_PHANTOM,
    SPACING_MANIFEST,
    SPACING_RESAMPLED,
    SPACING_UNKNOWN,
)
# Findings' abnormality codes.
CALCIFICATION = "CALC"
NORMAL_FINDING = "NORM"  # the finding of a normal film (not the patch class NORMAL below)

# Patch classes (samplers, models, trainers, synthesis): integers, so tf.data and Keras use them directly.
NORMAL, BENIGN, MALIGNANT = 0, 1, 2
CLASS_NAMES = ("normal", "benign", "malignant")  # CLASS_NAMES[c] names class c
N_CLASSES = len(CLASS_NAMES)


def _with_spacing(images: pd.DataFrame) -> pd.DataFrame:
    """A table without any spacing column gets "unknown" (NaN mm); one with only some is left to `_typed`."""
    if any(c in images.columns for c in SPACING_COLUMNS):
        return images
    return images.assign(spacing_row_mm=np.nan, spacing_col_mm=np.nan, spacing_source=SPACING_UNKNOWN)


def _with_mask(findings: pd.DataFrame) -> pd.DataFrame:
    """A findings table without a mask column (MIAS, the phantom, tests) gets "" (no mask) on every row."""
    return findings if "mask" in findings.columns else findings.assign(mask="")


def _check_spacing(images: pd.DataFrame) -> None:
    """Known spacings are positive and finite; "unknown" (and only it) has NaN for both. A reader's bug otherwise."""
    sources = images["spacing_source"]
    if not sources.isin(SPACING_SOURCES).all():
        raise ValueError(f"unknown spacing_source {sorted(set(sources) - set(SPACING_SOURCES))}")
    values = images[["spacing_row_mm", "spacing_col_mm"]].to_numpy(np.float64)
    unknown = (sources == SPACING_UNKNOWN).to_numpy()
    known_ok = np.isfinite(values).all(axis=1) & (values > 0).all(axis=1)
    bad = np.where(unknown, ~np.isnan(values).all(axis=1), ~known_ok)
    if bad.any():
        row = images.iloc[int(np.flatnonzero(bad)[0])]
        raise ValueError(
            f"image {row['image_id']}: spacing {row['spacing_row_mm']} x {row['spacing_col_mm']} mm "
            f"does not fit source '{row['spacing_source']}'"
        )


def _typed(frame: pd.DataFrame, columns: dict[str, str]) -> pd.DataFrame:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"catalog table lacks columns {missing}")
    return frame[list(columns)].astype(columns).reset_index(drop=True)


@dataclass(frozen=True)
class Catalog:
    """The images and findings tables of one dataset, checked against the schema above."""

    images: pd.DataFrame
    findings: pd.DataFrame
    source: str
    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "images", _typed(_with_spacing(self.images), IMAGE_COLUMNS))
        _check_spacing(self.images)
        object.__setattr__(self, "findings", _typed(_with_mask(self.findings), FINDING_COLUMNS))
        if self.images["image_id"].duplicated().any():
            dupes = self.images.loc[self.images["image_id"].duplicated(), "image_id"].tolist()
            raise MammoError(f"{self.root}: duplicate image ids {dupes[:5]}")
        unknown = set(self.findings["image_id"]) - set(self.images["image_id"])
        if unknown:
            raise MammoError(f"{self.root}: findings name unknown images {sorted(unknown)[:5]}")

    @property
    def n_images(self) -> int:
        return len(self.images)

    @property
    def n_patients(self) -> int:
        return int(self.images["patient_id"].nunique())

    def findings_with_patients(self) -> pd.DataFrame:
        """Findings joined with their image's patient, tissue, size and split."""
        cols = ["image_id", "patient_id", "tissue", "height", "width", "split", "path"]
        return self.findings.merge(self.images[cols], on="image_id", how="left", validate="many_to_one")

    def subset(self, image_ids) -> Catalog:
        """The catalog restricted to `image_ids` (and their findings)."""
        keep = list(image_ids)
        images = self.images[self.images["image_id"].isin(keep)]
        findings = self.findings[self.findings["image_id"].isin(keep)]
        return Catalog(images, findings, self.source, self.root)

    def findings_table(self) -> pd.DataFrame:
        """The findings as users read them: source x/y beside array row/col, one row per annotation line."""
        columns = ["image_id", "patient_id", "tissue", "abnormality", "severity", "x", "y", "row", "col", "radius"]
        return self.findings_with_patients().sort_values("source_line", kind="stable")[columns]

    def image_labels(self) -> pd.Series:
        """One label per image for stratification: 'calc-M', 'calc-B', 'other' (abnormal) or 'normal'."""
        calc = self.findings[self.findings["abnormality"] == CALCIFICATION]
        label = pd.Series("normal", index=self.images["image_id"].to_numpy(), dtype="string")
        abnormal = set(self.findings.loc[self.findings["abnormality"] != NORMAL_FINDING, "image_id"])
        label[label.index.isin(list(abnormal))] = "other"
        for severity in ("B", "M"):  # malignant wins when an image has both
            ids = set(calc.loc[calc["severity"] == severity, "image_id"])
            label[label.index.isin(list(ids))] = f"calc-{severity}"
        return label

    def spacing_summary(self) -> list[dict]:
        """Per spacing source: images, and the smallest and largest pixel side in mm (None when unknown)."""
        out = []
        for source in SPACING_SOURCES:
            group = self.images[self.images["spacing_source"] == source]
            if group.empty:
                continue
            sides = group[["spacing_row_mm", "spacing_col_mm"]].to_numpy(np.float64)
            known = source != SPACING_UNKNOWN
            low, high = (float(sides.min()), float(sides.max())) if known else (None, None)
            out.append({"source": source, "images": int(len(group)), "min_mm": low, "max_mm": high})
        return out

    def summary(self) -> dict:
        """Counts a user checks first: images, patients, class x severity, coordinates known, pixel spacing."""
        findings = self.findings
        abnormal = findings[findings["abnormality"] != NORMAL_FINDING]
        table = (
            findings.assign(severity=findings["severity"].replace("", "-"))
            .groupby(["abnormality", "severity"], sort=True)
            .agg(lines=("image_id", "size"), images=("image_id", "nunique"), with_coords=("has_coords", "sum"))
            .reset_index()
        )
        return {
            "source": self.source,
            "root": str(self.root),
            "images": self.n_images,
            "patients": self.n_patients,
            "annotation_lines": int(len(findings)),
            "abnormal_findings": int(len(abnormal)),
            "abnormal_with_coords": int(abnormal["has_coords"].sum()),
            "abnormal_without_coords": int((~abnormal["has_coords"]).sum()),
            "tissue": {k: int(v) for k, v in self.images["tissue"].value_counts().sort_index().items() if k},
            "bit_depths": sorted(int(b) for b in self.images["bit_depth"].unique()),
            "spacing": self.spacing_summary(),
            "splits": {k: int(v) for k, v in self.images["split"].value_counts().sort_index().items()},
            "classes": [
                {k: (str(v) if k in ("abnormality", "severity") else int(v)) for k, v in rec.items()}
                for rec in table.to_dict("records")
            ],
        }
