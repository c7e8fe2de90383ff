"""Real specks of the annotated calcification clusters, found with the project's detector and measured: one
row per speck, what layouts.py fits its cluster layout model on (NumPy/OpenCV/pandas, no TensorFlow).

Measurement (`extract_specks`), per calcification finding (CALC, severity B/M, with a centre in the breast):
  - detector: the project's white top-hat (specks.py), disk radius DEFAULT_RADIUS = 4 px. At 200 micron
    (mini-MIAS) that keeps specks up to ~8 px (1.6 mm) across: every microcalcification; a larger disk lets
    more tissue texture through.
  - threshold: median + k x 1.4826 x MAD (k = 6, specks.DEFAULT_K) of the top-hat response in a RING around the
    finding's circle (from radius + 2 + 4 px out to 2 x radius + 32 px, inside the breast, other findings'
    circles removed), not inside the circle and not over the whole breast. Inside the circle the specks
    themselves inflate the MAD, and a MIAS circle of radius 3-8 px holds too few pixels; over the whole
    breast the threshold ignores the local texture. On the phantom (125 true specks in 12 circles, k = 6):
    breast-wide threshold 121 found / 22 false, ring 120 found / 1 false. The response of an 8-bit film is a
    multiple of 1/255 and its MAD is 1 or 2 grey levels, which made thresholds jump by 2x between
    neighbouring clusters; the MAD is therefore taken of the response plus a fixed uniform dither of +-0.5
    grey level (seeded, so extraction is deterministic), a continuous estimate of the same scale. Rings with
    fewer than MIN_RING_PIXELS pixels fall back to the whole breast.
  - specks: the detector's components whose centroid lies within radius + CIRCLE_MARGIN of the annotated
    centre (MIAS radii are rounded integers), area <= max_area (default MAX_AREA: twice the detector disk;
    larger components are ridges (vessels, strands), not specks).
  - per speck: position relative to the annotated centre (dy, dx, px, PREPARED orientation: chest wall left,
    +dx away from it), area_px, contrast (peak top-hat response, full scale), background (median of the
    grey opening, i.e. image minus top-hat, over the speck's pixels: the tissue under it, full scale),
    elongation and angle from the second moments of its pixels (each pixel's own 1/12 px^2 variance added,
    so a one-pixel speck is round: elongation = sqrt(major / minor eigenvalue) >= 1; angle of the major axis
    from the +column axis towards +row, radians in [0, pi)).

"""

from __future__ import annotations

from types import SimpleNamespace

import cv2
import numpy as np
import pandas as pd

from mammo_tf.data.preprocess import prepare, to_oriented
from mammo_tf.data.schema import BENIGN, CALCIFICATION, CLASS_NAMES, MALIGNANT, Catalog
from mammo_tf.data.specks import DEFAULT_K, DEFAULT_RADIUS, detect_specks, robust_threshold, speck_response
from mammo_tf.errors import MammoError

SEVERITY_CLASS = {"B": BENIGN, "M": MALIGNANT}
CIRCLE_MARGIN = 2  # px beyond the annotated radius where a speck centroid still counts
CROP_PAD = 16  # px of context around a circle for the top-hat (its result depends on pixels <= 2 x radius away)
RING_OUTER = 32  # the threshold ring reaches 2 x radius + RING_OUTER px
MIN_RING_PIXELS = 500
DITHER_SEED = 0x5EC5
MAX_AREA = 2 * 57  # twice the 9 x 9 disk of radius 4 (57 px)
SPECK_COLUMNS = [
    "patient_id", "image_id", "finding", "source_line", "klass", "label", "tissue", "row", "col", "dy", "dx",
    "area_px", "contrast", "background", "elongation", "angle", "threshold", "cluster_radius",
]  # fmt: skip


def _ring_threshold(response: np.ndarray, ring: np.ndarray, breast: np.ndarray, bit_depth: int, k: float) -> float:
    """Robust threshold of the response in the ring (else the breast), MAD of the dithered response."""
    region = ring if ring.sum() >= MIN_RING_PIXELS else breast
    values = response[region].astype(np.float64)
    if values.size == 0:
        return float("inf")
    lsb = 1.0 / ((1 << min(max(int(bit_depth), 1), 16)) - 1)
    values = values + (np.random.default_rng(DITHER_SEED).random(values.size) - 0.5) * lsb
    return robust_threshold(values, None, k)


def _moments(rows: np.ndarray, cols: np.ndarray) -> tuple[float, float]:
    """(elongation >= 1, angle in [0, pi) from +col towards +row) of a set of pixel coordinates."""
    cov = np.cov(np.stack([cols, rows]).astype(np.float64), bias=True).reshape(2, 2) + np.eye(2) / 12.0
    values, vectors = np.linalg.eigh(cov)
    major = vectors[:, 1]
    return float(np.sqrt(values[1] / values[0])), float(np.arctan2(major[1], major[0]) % np.pi)


def _circles(shape: tuple[int, int], centres: list[tuple[int, int, float]]) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    for row, col, radius in centres:
        cv2.circle(mask, (int(col), int(row)), int(np.ceil(radius)), 1, thickness=-1)
    return mask.astype(bool)


def _oriented_circles(findings: pd.DataFrame, width: int, flipped: bool) -> list[tuple[int, int, float]]:
    """(row, col, radius + CIRCLE_MARGIN) in prepared coordinates; a finding without a radius gets 0."""
    radii = findings["radius"].to_numpy(dtype=np.float64, na_value=0.0)
    return [
        (*to_oriented(int(f.row), int(f.col), width, flipped), float(r) + CIRCLE_MARGIN)
        for f, r in zip(findings.itertuples(), radii, strict=True)
    ]


def _image_specks(prepared, findings: pd.DataFrame, all_findings: pd.DataFrame, image, radius: int, k: float,
                  max_area: int | None):  # fmt: skip
    """Rows of the speck table and one cluster record per calcification finding of one image.

    all_findings: every located finding of the image (their circles are kept out of the threshold ring)."""
    pixels, breast = prepared.pixels, prepared.mask
    height, width = pixels.shape
    response = speck_response(pixels, radius)
    located = _oriented_circles(findings, width, prepared.flipped)
    others = _circles((height, width), _oriented_circles(all_findings, width, prepared.flipped))
    rows_out, clusters = [], []
    for f, (row0, col0, reach) in zip(findings.itertuples(), located, strict=True):
        klass = SEVERITY_CLASS[f.severity]
        record = {
            "finding": int(f.Index), "image_id": image.image_id, "patient_id": image.patient_id,
            "klass": CLASS_NAMES[klass], "radius": reach - CIRCLE_MARGIN, "n_specks": 0, "skipped": "",
        }  # fmt: skip
        if pd.isna(f.radius):
            record["skipped"] = "no radius"
        elif not (0 <= row0 < height and 0 <= col0 < width and breast[row0, col0]):
            record["skipped"] = "centre outside the breast mask"
        if record["skipped"]:
            clusters.append(record)
            continue
        yy, xx = np.ogrid[:height, :width]
        dist = np.hypot(yy - row0, xx - col0)
        ring = (dist > reach + radius) & (dist <= 2 * f.radius + RING_OUTER) & breast & ~others
        thr = _ring_threshold(response, ring, breast & ~others, prepared.bit_depth, k)
        half = int(np.ceil(reach)) + CROP_PAD
        top, left = max(row0 - half, 0), max(col0 - half, 0)
        bottom, right = min(row0 + half + 1, height), min(col0 + half + 1, width)
        crop = pixels[top:bottom, left:right]
        circle = dist[top:bottom, left:right] <= reach
        table = detect_specks(crop, circle, radius=radius, threshold=thr, max_area=max_area)
        crop_response = speck_response(crop, radius)
        opening = crop - crop_response
        _, labels, _, centroids = cv2.connectedComponentsWithStats((crop_response > thr).astype(np.uint8), 8)
        for speck in table.itertuples():
            index = int(np.argmin(np.hypot(centroids[1:, 1] - speck.row, centroids[1:, 0] - speck.col))) + 1
            pr, pc = np.nonzero(labels == index)
            elongation, angle = _moments(pr, pc)
            row, col = top + float(speck.row), left + float(speck.col)
            orig_row, orig_col = to_oriented(row, col, width, prepared.flipped)
            rows_out.append(
                {
                    "patient_id": image.patient_id, "image_id": image.image_id, "finding": int(f.Index),
                    "source_line": int(f.source_line), "klass": CLASS_NAMES[klass], "label": klass,
                    "tissue": image.tissue, "row": orig_row, "col": orig_col, "dy": row - row0, "dx": col - col0,
                    "area_px": int(speck.area_px), "contrast": float(speck.contrast),
                    "background": float(np.median(opening[pr, pc])), "elongation": elongation, "angle": angle,
                    "threshold": thr, "cluster_radius": float(f.radius),
                }
            )  # fmt: skip
        record["n_specks"] = len(table)
        record["threshold"] = thr
        clusters.append(record)
    return rows_out, clusters


def extract_specks(
    catalog: Catalog,
    split: str | None = "train",
    *,
    radius: int = DEFAULT_RADIUS,
    k: float = DEFAULT_K,
    max_area: int | None = MAX_AREA,
) -> pd.DataFrame:
    """Every speck the project detector finds inside the calcification circles of the images in `split`.

    One row per speck, columns SPECK_COLUMNS (see the module docstring): patient_id, image_id, finding (index
    in catalog.findings), source_line, klass ("benign"/"malignant"), label (BENIGN/MALIGNANT), tissue, row,
    col (centroid, ORIGINAL array coordinates, float), dy, dx (px from the annotated centre, prepared
    orientation), area_px (int), contrast and background (full scale [0, 1]), elongation (>= 1), angle
    (rad, [0, pi)), threshold (the cluster's), cluster_radius (annotated, px).
    `.attrs` holds root, split, radius, k, max_area and clusters: one dict per finding examined (its
    n_specks, or why it was skipped: no coordinates, no radius, centre outside the breast mask).
    MammoError if the split has no calcification finding (B/M) at all.
    split None: every image.
    """
    findings = catalog.findings_with_patients().set_index(catalog.findings.index)  # a left merge keeps the rows
    calcs = findings[(findings["abnormality"] == CALCIFICATION) & findings["severity"].isin(list(SEVERITY_CLASS))]
    if split is not None:
        calcs = calcs[calcs["split"] == split]
    if calcs.empty:
        where = {"train": "the training patients", None: "the catalog"}.get(split, f"split {split!r}")
        raise MammoError(f"no calcification findings in {where} of {catalog.root}: nothing to fit")
    images = catalog.images.set_index("image_id")
    rows: list[dict] = []
    clusters: list[dict] = []
    for f in calcs[~calcs["has_coords"]].itertuples():
        clusters.append({"finding": int(f.Index), "image_id": f.image_id, "patient_id": f.patient_id,
                         "klass": CLASS_NAMES[SEVERITY_CLASS[f.severity]], "radius": float("nan"), "n_specks": 0,
                         "skipped": "no coordinates"})  # fmt: skip
    located = calcs[calcs["has_coords"]]
    everything = findings[findings["has_coords"]]
    for image_id, group in located.groupby("image_id", sort=True):
        info = images.loc[image_id]
        image = SimpleNamespace(image_id=image_id, patient_id=info["patient_id"], tissue=info["tissue"])
        others = everything[everything["image_id"] == image_id]
        found, records = _image_specks(prepare(info["path"]), group, others, image, radius, k, max_area)
        rows += found
        clusters += records
    table = pd.DataFrame(rows, columns=SPECK_COLUMNS).astype({"area_px": "int64", "label": "int64"})
    table.attrs.update(
        root=str(catalog.root), split=split, radius=int(radius), k=float(k), max_area=max_area,
        clusters=sorted(clusters, key=lambda c: c["finding"]),
    )  # fmt: skip
    return table
