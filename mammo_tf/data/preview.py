"""A contact sheet of a dataset: films with breast mask and findings, then sampled patches per class.

The first thing to look at on new data: it shows at a glance whether
orientation, masks and the y convention are right (circles must sit on the
findings) and what the patch sampler feeds the models.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mammo_tf.data.schema import CALCIFICATION, Catalog
from mammo_tf.errors import located
from mammo_tf.io.atomic import write_bytes_atomic

# BGR colours for OpenCV drawing.
_MASK = (80, 200, 80)
_SEVERITY = {"B": (0, 215, 255), "M": (60, 60, 255), "": (255, 160, 60)}


def _film_tile(path: str, findings, tile: int) -> np.ndarray:
    """One film at `tile` px (original orientation) with its mask contour and finding circles."""
    import cv2

    from mammo_tf.data.preprocess import prepare

    prepared = prepare(path)
    pixels, mask = prepared.pixels, prepared.mask
    if prepared.flipped:  # back to the file's orientation, so coordinates read as in the source
        pixels, mask = pixels[:, ::-1], mask[:, ::-1]
    height, width = pixels.shape
    scale = tile / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    grey = (cv2.resize(pixels, size, interpolation=cv2.INTER_AREA) * 255).astype(np.uint8)
    canvas = np.zeros((tile, tile, 3), np.uint8)
    canvas[: size[1], : size[0]] = cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR)
    small_mask = cv2.resize(mask.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST)
    contours, _ = cv2.findContours(small_mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(canvas, contours, -1, _MASK, 1)
    for finding in findings.itertuples():
        if finding.has_coords:
            centre = (round(finding.col * scale), round(finding.row * scale))
            radius = max(4, round(finding.radius * scale))
            cv2.circle(canvas, centre, radius, _SEVERITY.get(finding.severity, _SEVERITY[""]), 1, cv2.LINE_AA)
    return canvas


def _label(canvas: np.ndarray, text: str) -> None:
    import cv2

    cv2.putText(canvas, text, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1, cv2.LINE_AA)


def _patch_rows(catalog: Catalog, per_class: int, patch_px: int, width: int, seed: int) -> list[np.ndarray]:
    """One strip per class of sampled patches (64 px patches shown at `patch_px`)."""
    import cv2

    from mammo_tf.data.samplers import sample_patches
    from mammo_tf.data.schema import CLASS_NAMES

    # Sample from the calcification films and as many other films: enough for a strip, fast on 322 films.
    findings = catalog.findings
    calc_ids = list(dict.fromkeys(findings.loc[findings["abnormality"] == CALCIFICATION, "image_id"]))
    others = [i for i in catalog.images["image_id"] if i not in set(calc_ids)][: max(per_class, len(calc_ids))]
    patches = sample_patches(catalog.subset(calc_ids + others), split=None, seed=seed)
    rows = []
    for label, name in enumerate(CLASS_NAMES):
        strip = np.zeros((patch_px + 18, width, 3), np.uint8)
        members = np.flatnonzero(patches.labels == label)
        chosen = members[np.linspace(0, len(members) - 1, min(per_class, len(members))).astype(int)]
        for i, index in enumerate(chosen):
            patch = cv2.resize(patches.images[index, ..., 0], (patch_px, patch_px), interpolation=cv2.INTER_NEAREST)
            x = 4 + i * (patch_px + 4)
            strip[18:, x : x + patch_px] = cv2.cvtColor((patch * 255).astype(np.uint8), cv2.COLOR_GRAY2BGR)
        _label(strip, f"{name}: {len(members)} patches from {len(set(patches.image_id[members]))} films")
        rows.append(strip)
    return rows


def render_preview(
    catalog: Catalog, *, films: int = 4, tile: int = 256, per_class: int = 8, seed: int = 0
) -> np.ndarray:
    """uint8 BGR image: `films` annotated films (calcification cases first), then patch strips per class."""
    findings = catalog.findings
    calc_ids = findings.loc[(findings["abnormality"] == CALCIFICATION) & findings["has_coords"], "image_id"]
    order = list(dict.fromkeys([*calc_ids, *catalog.images["image_id"]]))[:films]
    paths = catalog.images.set_index("image_id")["path"]
    tiles = []
    for image_id in order:
        tile_image = _film_tile(paths[image_id], findings[findings["image_id"] == image_id], tile)
        _label(tile_image, image_id)
        tiles.append(tile_image)
    gap = np.zeros((tile, 4, 3), np.uint8)
    top = np.concatenate([part for t in tiles for part in (t, gap)][:-1], axis=1)
    patch_px = (top.shape[1] - 4) // per_class - 4
    strips = _patch_rows(catalog, per_class, patch_px, top.shape[1], seed)
    return np.concatenate([top, *strips], axis=0)


def write_preview(catalog: Catalog, out: str | Path, **options) -> Path:
    """Render the contact sheet and write it as PNG, atomically."""
    import cv2

    out = Path(out)
    if out.suffix.lower() != ".png":
        raise located(out, "preview must be a .png file")
    ok, encoded = cv2.imencode(".png", render_preview(catalog, **options))
    if not ok:
        raise located(out, "could not encode the preview")
    write_bytes_atomic(out, encoded.tobytes())
    return out
