"""The mini-MIAS distribution: Info.txt parser and folder loader.

Every MIAS convention lives here and only here:
- Info.txt is read as distributed: CRLF line ends, a prose header and notes
  before the table, several lines per image, NORM lines with a trailing space,
  entries without coordinates (`*NOTE 3*`, and `mdb059 F CIRC B`).
- Coordinates have their origin at the bottom-left corner: y counts up from
  the bottom row, so the array row is `height - 1 - y` (column = x).
- Patients are the film pairs mdb001+mdb002, mdb003+mdb004, ...: odd numbers
  are right breasts, even numbers left ones.
- Pixels are 0.2 mm square (MIAS_SPACING_MM). A folder with phantom_truth.csv is
  the phantom: source "phantom", with the phantom's own spacing.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from mammo_tf.data.schema import SPACING_MIAS, SPACING_PHANTOM, Catalog
from mammo_tf.errors import located
from mammo_tf.io.images import read_pgm_header

INFO_NAME = "Info.txt"
ARCHIVE_NAME = "all-mias.tar.gz"
TISSUES = {"F", "G", "D"}
CLASSES = {"CALC", "CIRC", "SPIC", "MISC", "ARCH", "ASYM", "NORM"}
SEVERITIES = {"B", "M"}
_REFNUM = re.compile(r"^mdb\d{3}$")
_SEPARATOR = re.compile(r"^=+$")
_NOTE = "*NOTE 3*"
# mm per pixel, rows and columns: the MIAS films were digitised at 50 micron and the mini-MIAS
# images reduced to 200 micron (and padded or clipped to 1024 x 1024).
MIAS_SPACING_MM = 0.2


def _parse_line(path: Path, number: int, text: str) -> dict:
    """One annotation line -> a findings record (x/y as in the file, None when absent)."""
    fields = text.split()
    refnum = fields[0]
    if not _REFNUM.match(refnum):
        raise located(path, f"bad reference number '{refnum}' (expected mdbNNN)", number)
    if len(fields) < 3:
        raise located(path, "expected 'REFNUM BG CLASS [SEVERITY X Y RADIUS]'", number)
    tissue, abnormality = fields[1], fields[2]
    if tissue not in TISSUES:
        raise located(path, f"bad background tissue '{tissue}' (expected F, G or D)", number)
    if abnormality not in CLASSES:
        raise located(path, f"bad abnormality class '{abnormality}' (expected one of {sorted(CLASSES)})", number)
    rest = fields[3:]
    severity = ""
    if abnormality == "NORM":
        if rest:
            raise located(path, f"NORM line has extra fields {rest}", number)
    else:
        if not rest or rest[0] not in SEVERITIES:
            raise located(path, f"{abnormality} line needs severity B or M", number)
        severity, rest = rest[0], rest[1:]
    x = y = radius = None
    if " ".join(rest) == _NOTE or not rest:
        pass
    elif len(rest) == 3 and all(v.isdigit() for v in rest):
        x, y, radius = (int(v) for v in rest)
    else:
        raise located(path, f"expected 'X Y RADIUS' (integers) or '{_NOTE}', got '{' '.join(rest)}'", number)
    return {
        "image_id": refnum,
        "tissue": tissue,
        "abnormality": abnormality,
        "severity": severity,
        "x": x,
        "y": y,
        "radius": radius,
        "source_line": number,
    }


def parse_info(path: str | Path) -> pd.DataFrame:
    """Parse an Info.txt into one record per annotation line, in file order.

    The table starts at the first line that begins with `mdb`; after it every
    non-blank line must be an annotation or a `====` separator, so a damaged
    line is reported (file and line number) rather than skipped as prose.
    Returns columns image_id, tissue, abnormality, severity, x, y, radius, source_line.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise located(path, "missing (every MIAS-layout folder needs its Info.txt)") from None
    except OSError as err:
        raise located(path, f"cannot read: {err.strerror or err}") from None
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise located(path, "not a text file (non-ASCII bytes)", line) from None
    records: list[dict] = []
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not records and not stripped.startswith("mdb"):
            continue  # prose header, credits and notes
        if not stripped or _SEPARATOR.match(stripped):
            continue
        records.append(_parse_line(path, number, stripped))
    if not records:
        raise located(path, "no annotation lines ('mdbNNN BG CLASS ...') found")
    frame = pd.DataFrame.from_records(records)
    tissues = frame.groupby("image_id")["tissue"].nunique()
    if (tissues > 1).any():
        bad = tissues[tissues > 1].index[0]
        line = int(frame.loc[frame["image_id"] == bad, "source_line"].iloc[-1])
        raise located(path, f"{bad} is listed with different background tissues", line)
    return frame


def _patient_and_side(image_id: str) -> tuple[str, str]:
    number = int(image_id[3:])
    return f"mias-p{(number + 1) // 2:03d}", ("R" if number % 2 else "L")


def load_mias(folder: str | Path, seed: int = 0, pixel_folder: str | Path | None = None) -> Catalog:
    """Load a MIAS-layout folder (Info.txt + mdbNNN.pgm) as a Catalog.

    pixel_folder: where the PGMs are, if not beside Info.txt. `load_catalog`
    passes the unpacked copy of the distribution archive here when `folder`
    holds all-mias.tar.gz instead of the PGMs (like shared/data/mias).
    Every PGM header is checked (magic, size, truncation); pixels are read later.
    """
    from mammo_tf.data.splits import split_images

    folder = Path(folder).resolve()
    info = folder / INFO_NAME
    rows = parse_info(info)
    image_ids = list(dict.fromkeys(rows["image_id"]))
    pixel_folder = folder if pixel_folder is None else Path(pixel_folder)
    # A phantom is MIAS-layout data with a ground-truth file beside it: say which one the user is looking at.
    source = "phantom" if (folder / "phantom_truth.csv").is_file() else "mias"
    images = []
    for image_id in image_ids:
        pgm = pixel_folder / f"{image_id}.pgm"
        if not pgm.is_file():
            line = int(rows.loc[rows["image_id"] == image_id, "source_line"].iloc[0])
            hint = ""
            if (folder / ARCHIVE_NAME).is_file() and pixel_folder == folder:
                hint = f" (the folder holds {ARCHIVE_NAME}: load_catalog unpacks it)"
            raise located(info, f"lists {image_id} but {pgm} is missing{hint}", line)
        header = read_pgm_header(pgm)
        patient, side = _patient_and_side(image_id)
        images.append(
            {
                "image_id": image_id,
                "patient_id": patient,
                "path": str(pgm),
                "laterality": side,
                "view": "MLO",
                "tissue": rows.loc[rows["image_id"] == image_id, "tissue"].iloc[0],
                "height": header.height,
                "width": header.width,
                "bit_depth": header.bit_depth,
                **_spacing(source, header.width),
                "split": "",
            }
        )
    images = pd.DataFrame.from_records(images)
    findings = _to_array_coordinates(info, rows, images.set_index("image_id"))
    catalog = Catalog(images=images, findings=findings, source=source, root=folder)
    split = split_images(catalog.images, catalog.image_labels(), seed=seed)
    return Catalog(catalog.images.assign(split=split), catalog.findings, catalog.source, folder)


def _spacing(source: str, width: int) -> dict:
    """The spacing columns of one image: MIAS's 0.2 mm, or the phantom's (which depends on its size)."""
    if source == "phantom":
        from mammo_tf.data.phantom import phantom_spacing_mm

        side = phantom_spacing_mm(width)
        return {"spacing_row_mm": side, "spacing_col_mm": side, "spacing_source": SPACING_PHANTOM}
    return {"spacing_row_mm": MIAS_SPACING_MM, "spacing_col_mm": MIAS_SPACING_MM, "spacing_source": SPACING_MIAS}


def _to_array_coordinates(info: Path, rows: pd.DataFrame, sizes: pd.DataFrame) -> pd.DataFrame:
    """Add row/col (origin top-left) from x/y (origin bottom-left); check they lie inside the image."""
    findings = rows.drop(columns=["tissue"]).copy()
    for column in ("x", "y", "radius"):
        findings[column] = findings[column].astype("Int64")
    height = findings["image_id"].map(sizes["height"]).astype("Int64")
    width = findings["image_id"].map(sizes["width"]).astype("Int64")
    findings["row"] = height - 1 - findings["y"]
    findings["col"] = findings["x"]
    findings["has_coords"] = findings["x"].notna()
    outside = findings["has_coords"] & (
        (findings["x"] >= width) | (findings["y"] >= height) | (findings["radius"] <= 0)
    )
    if outside.any():
        bad = findings[outside].iloc[0]
        raise located(
            info,
            f"{bad['image_id']}: centre ({bad['x']}, {bad['y']}) radius {bad['radius']} "
            f"does not fit a {width[outside].iloc[0]}x{height[outside].iloc[0]} image",
            int(bad["source_line"]),
        )
    return findings
