"""INbreast as distributed -> the project's manifest and speck masks (`mammo-tf data import-inbreast SRC --out DIR`).

The source (Moreira et al., Acad. Radiol. 19(2), 2012), as its release folder lays it out:

    SRC/INbreast.csv                   the case table, one row per image, ";"-separated (a "," file is
                                       read too): Patient ID;Patient age;Laterality;View;Acquisition
                                       date;File Name;ACR;Bi-Rads (headers matched after trimming and
                                       lower-casing; File Name and Bi-Rads are required)
    SRC/AllDICOMs/<file id>_<patient key>_MG_<L|R>_<CC|ML>_ANON.dcm
    SRC/AllXML/<file id>.xml           OsiriX ROI plist, only for images with annotations

The XML (read with `plistlib`) holds an `Images` array whose `ROIs` each have a `Name` (Calcification,
Cluster, Mass, ...), a `Type` (19 a point, 15 a polygon, 9 an ellipse sampled as points),
`NumberOfPoints`, `Point_px` (strings "(x, y)" in pixels: x = column, y = row) and `Area`. What is
drawn is decided by the points themselves: one point is a point, more an outline.

Mapping, per image (the CSV row's File Name is the image_id):

- Calcification (or Calcifications) ROIs are individual calcifications: drawn into one speck mask per
  image, an 8-bit PNG of the image's size (255 = speck), OUT/masks/<file id>_specks.png: a point as
  a disc of radius SPECK_RADIUS_PX (1 px: 3 px across, 0.21 mm at INbreast's 0.07 mm), an outline
  filled (OpenCV fillPoly, its border included); coordinates rounded to the nearest pixel.
- Cluster ROIs -> CALC findings; Mass -> MASS; any other name (Asymmetry, Distortion, Spiculated
  Region, ...) -> that name upper-cased with "_" (`common.abnormality_code`; the misspellings
  Assymetry and Espiculated Region are read as ASYMMETRY and SPICULATED_REGION). Centre and radius:
  the smallest circle holding the ROI's points (OpenCV minEnclosingCircle, `common.points_circle`).
- Every CALC row carries the image's speck mask in `mask` (all its specks, not only the cluster's);
  an image with specks but no Cluster ROI gets one CALC row without a centre holding the mask
  (calcifications annotated one by one, no cluster outlined). An image without findings (no XML,
  or no ROI) is one NORM row.
- severity: empty. INbreast's Bi-Rads is a radiologist's assessment of the image, not a pathology,
  and not of a finding (a BI-RADS 5 image may hold benign clusters beside a malignant mass). It is
  kept raw in `birads`, and `suspicion` states it (`common.SUSPICION`: 2 benign, 3 probably benign,
  4a-4c and 5 suspicious, 6 known malignant) on every finding of the image.
- patient_id: the CSV's Patient ID where it holds one; the public release writes "removed" there,
  so it is the DICOM file name's second part, the anonymised patient key the release puts in every
  file name (the views of one woman share it). laterality and view come from the file name (ML ->
  MLO); a CSV Laterality/View that disagrees is a problem. tissue: ACR (1-4; blank when not given).
- split: none (INbreast has no official one); the catalog makes its seeded patient-level split.
- spacing: from each DICOM header (INbreast's detector: 0.07 mm), `spacing_mm` left empty.

Other columns: `roi_name` (the ROI's Name as written), `specks` (Calcification ROIs drawn into the
image's mask), `source_row` (INbreast.csv and line). Only DICOM headers are read.

Not errors, but counted in the summary: a CSV row without a DICOM (`not found`: left out); a ROI
without points or name, a speck or centre outside its image, a CSV laterality/view that disagrees
with the file name, two DICOMs for one file id (`problems`); DICOMs without a CSV row, XMLs without
an image, images without an XML (`notes`). Errors (one line, nothing written): SRC, INbreast.csv,
AllDICOMs/ or AllXML/ missing, a CSV without a required column, a malformed row (a Bi-Rads that
is not a BI-RADS category, a repeated File Name), an XML that is not an OsiriX ROI plist, an
unreadable DICOM, no image found at all, and an OUT that already holds masks/.
"""

from __future__ import annotations

import math
import os
import plistlib
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mammo_tf.data.importers.common import (
    MASK_FOLDER,
    NO_SEVERITY,
    NORMAL,
    SHOWN,
    ImportLog,
    ImportSummary,
    MaskJob,
    SourceRow,
    abnormality_code,
    birads_suspicion,
    centre_inside,
    check_mask_folder,
    points_circle,
    progress_bar,
    read_source_csv,
    summarise,
    write_manifest,
)
from mammo_tf.errors import located
from mammo_tf.io.base import ImageHeader
from mammo_tf.io.dicom import probe_dicom_header

SOURCE = "INbreast"
CSV_NAME = "INbreast.csv"
DICOM_FOLDER = "AllDICOMs"
XML_FOLDER = "AllXML"
REQUIRED = ("file_name", "bi-rads")
EXTRA_COLUMNS = ("birads", "suspicion", "roi_name", "specks", "source_row")
SPECK_RADIUS_PX = 1  # a point-annotated calcification: a disc 3 px across (0.21 mm at 0.07 mm per pixel)
SPECK_NAMES = ("calcification", "calcifications")  # lower-cased ROI names drawn into the speck mask
# Lower-cased ROI name -> class, where abnormality_code's upper-casing is not the answer.
NAME_CODES = {"cluster": "CALC", "assymetry": "ASYMMETRY", "espiculated region": "SPICULATED_REGION"}
REMOVED = ("", "removed")  # a Patient ID that identifies no one
VIEWS = {"ML": "MLO"}  # file-name view -> manifest view
_DICOM_NAME = re.compile(
    r"^(?P<id>[A-Za-z0-9]+)_(?P<key>[A-Za-z0-9]+)_MG_(?P<side>[LR])_(?P<view>[A-Za-z]+)_ANON\.dcm$", re.IGNORECASE
)
_ID = re.compile(r"^[A-Za-z0-9]+$")
_NUMBER = r"([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)"
_POINT = re.compile(rf"^\(\s*{_NUMBER}\s*,\s*{_NUMBER}\s*\)$")


# --- the case table -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class InbreastRow:
    """One row of INbreast.csv, checked: its line, the file id and the image's labels."""

    line: int
    file_id: str
    patient_id: str  # "" when the CSV's is absent or "removed"
    side: str  # the CSV's laterality (upper-cased; "" when absent)
    view: str  # the CSV's view
    acr: str
    birads: str  # raw: "1", "4a", ...
    suspicion: str


def _delimiter(path: Path) -> str:
    """ ";" (INbreast's own), or "," when the header line holds no ";" (a table re-saved as CSV)."""
    try:
        with open(path, encoding="utf-8-sig", errors="replace") as handle:
            header = handle.readline()
    except OSError:
        return ";"  # read_source_csv names the file and the cause
    return ";" if ";" in header or "," not in header else ","


def parse_row(path: Path, row: SourceRow) -> InbreastRow:
    """One CSV row -> an InbreastRow; a File Name that is not an id, or a bad Bi-Rads, is a MammoError at its line."""
    values, line = row.values, row.line
    file_id = values["file_name"]
    if not _ID.match(file_id):
        raise located(path, f"File Name must be the image's file id (letters and digits), got '{file_id}'", line)
    birads = values["bi-rads"]
    patient = values.get("patient_id", "")
    return InbreastRow(
        line=line,
        file_id=file_id,
        patient_id="" if patient.lower() in REMOVED else patient,
        side=values.get("laterality", "").upper(),
        view=values.get("view", "").upper(),
        acr=values.get("acr", ""),
        birads=birads,
        suspicion=birads_suspicion(path, line, "Bi-Rads", birads),
    )


def read_csv(src: Path) -> list[InbreastRow]:
    """Every row of SRC/INbreast.csv, checked; a File Name given twice is a MammoError at its second line."""
    path = src / CSV_NAME
    rows = [parse_row(path, row) for row in read_source_csv(path, REQUIRED, delimiter=_delimiter(path))]
    if not rows:
        raise located(path, "no data rows (a header only)")
    first: dict[str, InbreastRow] = {}
    for row in rows:
        seen = first.setdefault(row.file_id, row)
        if seen is not row:
            raise located(path, f"File Name {row.file_id} is also on line {seen.line} (one row per image)", row.line)
    return rows


# --- the DICOM folder -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class DicomName:
    """What an INbreast DICOM's file name says: absolute path, patient key, side (L/R), view (CC/MLO)."""

    path: Path
    patient_key: str
    side: str
    view: str


def dicom_names(folder: Path, log: ImportLog) -> dict[str, DicomName | None]:
    """file id -> its DICOM in AllDICOMs (None when two share the id: a problem); other names noted in `log`."""
    found: dict[str, DicomName | None] = {}
    strangers = []
    for path in sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")):
        match = _DICOM_NAME.match(path.name)
        if match is None:
            strangers.append(path.name)
            continue
        file_id, view = match["id"], match["view"].upper()
        if file_id in found:
            log.problems.append(f"{folder}: two DICOMs for file id {file_id}; image left out")
            found[file_id] = None
            continue
        side = match["side"].upper()
        found[file_id] = DicomName(Path(os.path.abspath(path)), match["key"], side, VIEWS.get(view, view))
    if strangers:
        log.notes.append(
            f"{len(strangers)} file(s) of {DICOM_FOLDER} not named <file id>_<patient key>_MG_<L|R>_<view>_ANON.dcm, "
            f"ignored: {', '.join(strangers[:SHOWN])}" + (" ..." if len(strangers) > SHOWN else "")
        )
    return found


# --- the ROI plists -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Roi:
    """One ROI of an INbreast XML: its position in the file (0-based), Name, Type and points (x, y) in pixels."""

    index: int
    name: str
    type: int | None
    points: np.ndarray  # float64 [N, 2]: x = column, y = row


def _point(xml: Path, index: int, text: object) -> tuple[float, float]:
    match = _POINT.match(text.strip()) if isinstance(text, str) else None
    if match is None or not all(math.isfinite(float(v)) for v in match.groups()):
        raise located(xml, f'ROI {index}: Point_px entry {text!r} is not "(x, y)" in pixels')
    return float(match[1]), float(match[2])


def _roi(xml: Path, index: int, item: object) -> Roi:
    if not isinstance(item, dict):
        raise located(xml, f"ROI {index} is not a dict of keys (Name, Type, Point_px, ...)")
    points = item.get("Point_px", [])
    if not isinstance(points, list):
        raise located(xml, f'ROI {index}: Point_px is not an array of "(x, y)" strings')
    name, kind = item.get("Name", ""), item.get("Type")
    coordinates = np.array([_point(xml, index, p) for p in points], np.float64).reshape(-1, 2)
    name = name.strip() if isinstance(name, str) else ""
    return Roi(index, name, kind if isinstance(kind, int) else None, coordinates)


def read_rois(xml: Path) -> list[Roi]:
    """Every ROI of every entry of an OsiriX plist's `Images` array, in file order.

    A file that is not a plist, or whose `Images` / `ROIs` / `Point_px` do not have the documented
    shape, is a MammoError naming it (and the ROI).
    """
    try:
        with open(xml, "rb") as handle:
            document = plistlib.load(handle)
    except OSError as err:
        raise located(xml, f"cannot read: {err.strerror or err}") from None
    except Exception as err:  # untrusted bytes: plistlib raises InvalidFileException, ExpatError, ValueError, ...
        raise located(xml, f"malformed plist ({type(err).__name__}: {' '.join(str(err).split())[:200]})") from None
    images = document.get("Images") if isinstance(document, dict) else None
    if not isinstance(images, list) or not all(isinstance(i, dict) for i in images):
        raise located(xml, "not an OsiriX ROI plist (no Images array of dicts)")
    items = []
    for image in images:
        rois = image.get("ROIs", [])
        if not isinstance(rois, list):
            raise located(xml, "an Images entry's ROIs is not an array")
        items += rois
    return [_roi(xml, index, item) for index, item in enumerate(items)]


# --- findings and the speck mask ------------------------------------------------------------------------


def is_speck(roi: Roi) -> bool:
    """An individual calcification (drawn into the speck mask), not a finding."""
    return roi.name.lower() in SPECK_NAMES


def roi_class(name: str) -> str:
    """A ROI Name as a manifest class: Cluster -> CALC, Mass -> MASS, Assymetry -> ASYMMETRY, else upper case."""
    return NAME_CODES.get(name.lower(), abnormality_code(name))


def _pixel(points_xy: np.ndarray) -> np.ndarray:
    """Points (x, y) rounded to the nearest pixel (halves up, as the finding centres), int32 [N, 2]."""
    return np.floor(points_xy + 0.5).astype(np.int32)


def draw_specks(shape: tuple[int, int], rois: list[Roi]) -> np.ndarray:
    """bool [rows, cols]: each speck ROI drawn, a point as a disc of SPECK_RADIUS_PX, an outline filled."""
    from mammo_tf.io.native import opencv

    cv2 = opencv()
    mask = np.zeros(shape, np.uint8)
    for roi in rois:
        points = _pixel(roi.points)
        if len(points) == 1:
            cv2.circle(mask, (int(points[0, 0]), int(points[0, 1])), SPECK_RADIUS_PX, 1, thickness=-1)
        else:
            cv2.fillPoly(mask, [points], 1)
            cv2.polylines(mask, [points], isClosed=True, color=1)  # thin outlines keep their border pixels
    return mask.astype(bool)


def usable_rois(xml: Path, rois: list[Roi], shape: tuple[int, int], log: ImportLog) -> list[Roi]:
    """The ROIs that can be drawn: with a name and a point; a speck must touch the image. The rest are problems."""
    usable = []
    for roi in rois:
        if not roi.name or not len(roi.points):
            what = "no Name" if not roi.name else "no points"
            log.problems.append(f"{xml}: ROI {roi.index} ({roi.name or 'unnamed'}) has {what}; left out")
            continue
        pixels = _pixel(roi.points)
        inside = (pixels[:, 0] >= 0) & (pixels[:, 0] < shape[1]) & (pixels[:, 1] >= 0) & (pixels[:, 1] < shape[0])
        if is_speck(roi) and not inside.any():
            log.problems.append(f"{xml}: ROI {roi.index} ({roi.name}) lies outside the {shape[0]}x{shape[1]} image")
            continue
        usable.append(roi)
    return usable


# --- the manifest ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Image:
    """One image to write: its CSV row, DICOM, header and (usable) ROIs."""

    row: InbreastRow
    dicom: DicomName
    header: ImageHeader
    rois: list[Roi]

    @property
    def specks(self) -> list[Roi]:
        return [r for r in self.rois if is_speck(r)]

    @property
    def shape(self) -> tuple[int, int]:
        return self.header.height, self.header.width


def _base_row(image: Image, patient_id: str) -> dict:
    """The image's fields of every manifest row (no finding yet)."""
    spacing = image.header.spacing
    return {
        "path": str(image.dicom.path),
        "patient_id": patient_id,
        "image_id": image.row.file_id,
        "laterality": image.dicom.side,
        "view": image.dicom.view,
        "tissue": image.row.acr,
        "severity": None,
        "row": None,
        "col": None,
        "radius": None,
        "split": "",
        "spacing_mm": None,  # the catalog reads the header's
        "spacing_assumed": False,
        "mask": None,
        "birads": image.row.birads,
        "suspicion": image.row.suspicion,
        "specks": len(image.specks),
        "source_row": f"{CSV_NAME}:{image.row.line}",
        "header_spacing": (spacing.row_mm, spacing.col_mm) if spacing is not None else None,  # for the summary
    }


def manifest_rows(image: Image, patient_id: str, mask: str | None, xml: Path, log: ImportLog) -> list[dict]:
    """One row per finding ROI (CALC rows carry the speck mask), a mask-only CALC row, or one NORM row."""
    base = _base_row(image, patient_id)
    rows = []
    for roi in image.rois:
        if is_speck(roi):
            continue
        code = roi_class(roi.name)
        circle = centre_inside(points_circle(roi.points), image.shape, f"{xml}: ROI {roi.index} ({roi.name})", log)
        rows.append(
            base
            | {"abnormality": code, "roi_name": roi.name, "mask": mask if code == "CALC" else None}
            | dict(zip(("row", "col", "radius"), circle or (None, None, None), strict=True))
        )
    if mask and not any(r["abnormality"] == "CALC" for r in rows):
        rows.append(base | {"abnormality": "CALC", "roi_name": image.specks[0].name, "mask": mask})
    if not rows:
        rows.append(base | {"abnormality": NORMAL, "roi_name": "", "suspicion": ""})  # suspicion: of findings
    return rows


def _checked_side(image: Image, log: ImportLog) -> None:
    """The CSV's Laterality / View must agree with the file name's (which is kept)."""
    row, name = image.row, image.dicom
    said = (row.side or name.side, VIEWS.get(row.view, row.view) or name.view)
    if said != (name.side, name.view):
        log.problems.append(
            f"{name.path}: {CSV_NAME} line {row.line} gives {row.side} {row.view}, the file name "
            f"{name.side} {name.view}; the file name's is kept"
        )


def _folder(src: Path, name: str) -> Path:
    folder = src / name
    if not folder.is_dir():
        raise located(folder, f"no such folder (an INbreast release has {CSV_NAME}, {DICOM_FOLDER}/ and {XML_FOLDER}/)")
    return folder


def _images(src: Path, rows: list[InbreastRow], log: ImportLog, progress: bool) -> list[Image]:
    """Each CSV row's DICOM header and ROIs; a row without a DICOM is not found."""
    dicoms, xml_folder = dicom_names(_folder(src, DICOM_FOLDER), log), _folder(src, XML_FOLDER)
    images, without_xml = [], 0
    with progress_bar(rows, progress, desc="import-inbreast", unit=" images") as bar:
        for row in bar:
            dicom = dicoms.get(row.file_id)
            if dicom is None:
                if row.file_id not in dicoms:
                    log.not_found.append(str(src / DICOM_FOLDER / f"{row.file_id}_*_MG_*_ANON.dcm"))
                continue
            header = probe_dicom_header(dicom.path)
            xml = xml_folder / f"{row.file_id}.xml"
            without_xml += not xml.is_file()
            rois = read_rois(xml) if xml.is_file() else []
            image = Image(row, dicom, header, usable_rois(xml, rois, (header.height, header.width), log))
            _checked_side(image, log)
            images.append(image)
    _note_leftovers(src, rows, dicoms, xml_folder, without_xml, log)
    return images


def _note_leftovers(
    src: Path, rows: list[InbreastRow], dicoms: dict, xml_folder: Path, without_xml: int, log: ImportLog
) -> None:
    ids = {row.file_id for row in rows}
    extra_dicoms = sorted(set(dicoms) - ids)
    if extra_dicoms:
        log.notes.append(
            f"{len(extra_dicoms)} DICOM(s) of {DICOM_FOLDER} have no row in {CSV_NAME}, left out: "
            + ", ".join(extra_dicoms[:SHOWN])
            + (" ..." if len(extra_dicoms) > SHOWN else "")
        )
    extra_xml = sorted(p.stem for p in xml_folder.glob("*.xml") if p.stem not in ids)
    if extra_xml:
        log.notes.append(
            f"{len(extra_xml)} XML file(s) of {XML_FOLDER} name no image of {CSV_NAME}, ignored: "
            + ", ".join(extra_xml[:SHOWN])
            + (" ..." if len(extra_xml) > SHOWN else "")
        )
    if without_xml:
        log.notes.append(f"{without_xml} image(s) have no XML in {XML_FOLDER} (no annotation): NORM")


def _patient_ids(images: list[Image], log: ImportLog) -> dict[str, str]:
    """file id -> patient_id: the CSV's Patient ID, else the file name's patient key (noted once)."""
    keyed = [i for i in images if not i.row.patient_id]
    if keyed:
        log.notes.append(
            f"patient_id of {len(keyed)} image(s) is the DICOM file name's patient key "
            f"({CSV_NAME} gives no Patient ID: 'removed' or empty)"
        )
    return {i.row.file_id: i.row.patient_id or i.dicom.patient_key for i in images}


def import_inbreast(src: str | Path, out: str | Path, *, progress: bool = True) -> ImportSummary:
    """Write OUT/manifest.csv and OUT/masks/<file id>_specks.png for the INbreast release in SRC.

    See the module docstring; the source files stay put. progress: progress bars on a terminal.
    Everything is read and checked before anything is written; the masks and the manifest are then
    written all or nothing, so an error (a MammoError naming the file and line) leaves nothing behind.
    """
    src = Path(os.path.abspath(Path(src).expanduser()))
    out = Path(os.path.abspath(Path(out).expanduser()))
    if not src.is_dir():
        raise located(src, f"no such folder (expected INbreast: {CSV_NAME}, {DICOM_FOLDER}/ and {XML_FOLDER}/)")
    check_mask_folder(out)
    rows = read_csv(src)
    log = ImportLog()
    images = _images(src, rows, log, progress)
    if not images:
        raise located(
            src / DICOM_FOLDER, f"no DICOM found for any of the {len(rows)} images of {CSV_NAME} ({log.not_found[0]})"
        )
    patients = _patient_ids(images, log)
    written: list[dict] = []
    masks: list[MaskJob] = []
    for image in images:
        mask = None
        if image.specks:
            name = f"{image.row.file_id}_specks.png"
            mask = str(out / MASK_FOLDER / name)
            masks.append((name, lambda image=image: draw_specks(image.shape, image.specks)))
        xml = src / XML_FOLDER / f"{image.row.file_id}.xml"
        written += manifest_rows(image, patients[image.row.file_id], mask, xml, log)
    with progress_bar(masks, progress, desc="speck masks", unit=" masks") as jobs:
        manifest = write_manifest(out, written, EXTRA_COLUMNS, masks=jobs)
    return summarise(SOURCE, manifest, written, ("CALC", "MASS"), len(rows), log, NO_SEVERITY)
