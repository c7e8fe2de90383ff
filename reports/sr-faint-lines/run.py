"""Faint 1-px scanner lines: does averaging across them beat the network, and from which depth? (issue 28 s. 3)

Chosen on the MIAS *validation* films only (the test films' mdb053 is what raised the question):
1. Synthetic lines: into each validation film's tissue, dark 1-px lines (rows and columns, 256 HR px long) of
   depth d (HR x (1 - d) along the line; d = 1 is MIAS's black scanner line) at a random parity; LR = 2x2 mean
   rounded to 8 bits. Per line: the error of the network ('keep'), of the block mean across the line
   ('average'), and of bicubic, over the line's 2-px band; whether the network put the line in the right
   row; the LR ratio the detector sees.
2. The films as they are: what a wider detector (LR ratio up to 0.85 / 0.92) flags beyond the shipped 0.75,
   and whether averaging there beats the network against HR.

Run from the repository root after `make data`: `.venv/bin/python reports/sr-faint-lines/run.py`.
Writes lines.csv, films.csv and summary.json next to this file.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from mammo_tf.data.catalog import load_catalog
from mammo_tf.data.degrade import degrade, interpolate
from mammo_tf.evaluation.sr_eval import anchor_mask, interior_mask, load_film
from mammo_tf.inference import scanner_lines
from mammo_tf.inference.upscale import load_sr_model, upscale_array

OUT = Path(__file__).parent
DEPTHS = (0.1, 0.15, 0.2, 0.25, 0.35, 0.5, 0.75, 1.0)
LENGTH = 256  # HR pixels along a synthetic line (128 LR: above the detector's 64-px run)
LINES_PER_FILM = 16
UPPERS = (0.75, 0.85, 0.92)  # the shipped ratio bound, and two wider ones
SCALE = 2


def place_lines(tissue: np.ndarray, rng: np.random.Generator) -> list[dict]:
    """Up to LINES_PER_FILM lines whose whole length and 6-px surroundings lie in tissue, 48 px apart."""
    placed, taken = [], np.zeros_like(tissue)
    h, w = tissue.shape
    for _ in range(400):
        if len(placed) == LINES_PER_FILM:
            break
        axis = int(rng.integers(2))  # 0: a row (horizontal line), 1: a column
        depth = DEPTHS[len(placed) % len(DEPTHS)]
        across, along = (h, w) if axis == 0 else (w, h)
        at = int(rng.integers(8, across - 8))
        start = int(rng.integers(0, along - LENGTH))
        box = (slice(at - 6, at + 7), slice(start, start + LENGTH))
        box = box if axis == 0 else box[::-1]
        near = tuple(slice(max(0, b.start - 42), b.stop + 42) for b in box)
        if not tissue[box].all() or taken[near].any():
            continue
        taken[box] = True
        placed.append({"axis": axis, "at": at, "start": start, "depth": depth})
    return placed


def band_errors(estimate: np.ndarray, hr: np.ndarray, line: dict) -> float:
    """Sum of squared errors over the line's 2-px block band (the two HR rows of its LR row)."""
    k = line["at"] // SCALE
    rows = slice(k * SCALE, (k + 1) * SCALE)
    cols = slice(line["start"] + 4, line["start"] + LENGTH - 4)  # ends: the line's tips are not a block's
    box = (rows, cols) if line["axis"] == 0 else (cols, rows)
    return float(((estimate[box] - hr[box]) ** 2).sum())


def averaged(sr: np.ndarray, line: dict) -> np.ndarray:
    out = sr.copy()
    k = line["at"] // SCALE
    view = out if line["axis"] == 0 else out.T
    band = view[k * SCALE : (k + 1) * SCALE, line["start"] : line["start"] + LENGTH]
    band[:] = band.mean(axis=0, keepdims=True)
    return out


def right_row(sr: np.ndarray, line: dict) -> bool:
    """Did the network draw the line darker in its true HR row than in the block's other row?"""
    view = sr if line["axis"] == 0 else sr.T
    k, seg = line["at"] // SCALE, slice(line["start"] + 4, line["start"] + LENGTH - 4)
    other = k * SCALE + (1 - line["at"] % SCALE)
    return bool(view[line["at"], seg].mean() < view[other, seg].mean())


def main() -> None:
    import scipy.ndimage as ndi

    started = time.monotonic()
    model = load_sr_model("sr-x2-gan")  # the default sr-x2 when this ran (same file)
    catalog = load_catalog("data/mias")
    films = catalog.images[catalog.images["split"] == "val"]
    if len(sys.argv) > 1:  # a quick look: the first N films
        films = films.head(int(sys.argv[1]))
    rng = np.random.default_rng(0)
    line_rows, film_rows = [], []
    lower = scanner_lines.LINE_RATIO[0]
    for image in films.itertuples():
        hr, mask = load_film(image.path, SCALE)
        tissue = ndi.binary_erosion(interior_mask(mask, anchor_mask(hr)), iterations=4)
        tissue &= ndi.minimum_filter(hr, 13) > 0.1  # neighbours bright enough for the detector's floor
        # 2. the film as it is: what a wider bound flags, network against the block mean there
        lr = degrade(hr, SCALE, 8)
        sr = upscale_array(model, lr, 8, scanner_lines="keep")
        flagged_before = None
        for upper in UPPERS:
            mean, count = scanner_lines.average_lines(sr, lr, SCALE, ratio=(lower, upper))
            changed = np.abs(mean - sr) > 0
            film_rows.append(
                {
                    "image_id": image.image_id,
                    "upper": upper,
                    "lr_pixels": count,
                    "sse_network": float(((sr - hr)[changed] ** 2).sum()),
                    "sse_average": float(((mean - hr)[changed] ** 2).sum()),
                    "hr_pixels_changed": int(changed.sum()),
                    "new_beyond_0.75": None if flagged_before is None else int((changed & ~flagged_before).sum()),
                }
            )
            flagged_before = changed if upper == UPPERS[0] else flagged_before
        # 1. synthetic lines
        lines = place_lines(tissue, rng)
        marked = hr.copy()
        for line in lines:
            view = marked if line["axis"] == 0 else marked.T
            view[line["at"], line["start"] : line["start"] + LENGTH] *= 1 - line["depth"]
        lr = degrade(marked, SCALE, 8)
        sr = upscale_array(model, lr, 8, scanner_lines="keep")
        bicubic = interpolate(lr, SCALE, "bicubic")
        masks = {upper: None for upper in UPPERS}
        for upper in UPPERS:
            bounds = (lower, upper)
            masks[upper] = (scanner_lines.line_mask(lr, 0, ratio=bounds), scanner_lines.line_mask(lr, 1, ratio=bounds))
        for line in lines:
            k = line["at"] // SCALE
            lr_view = lr if line["axis"] == 0 else lr.T
            seg = slice(line["start"] // SCALE + 2, (line["start"] + LENGTH) // SCALE - 2)
            ratio = lr_view[k, seg] / np.maximum(0.5 * (lr_view[k - 1, seg] + lr_view[k + 1, seg]), 1e-6)
            row = {
                "image_id": image.image_id,
                **line,
                "lr_ratio": float(np.median(ratio)),
                "sse_network": band_errors(sr, marked, line),
                "sse_average": band_errors(averaged(sr, line), marked, line),
                "sse_bicubic": band_errors(bicubic, marked, line),
                "network_right_row": right_row(sr, line),
            }
            for upper, (rows, cols) in masks.items():
                found = (rows if line["axis"] == 0 else cols.T)[k, seg]
                row[f"detected_{upper}"] = float(found.mean())
            line_rows.append(row)
        print(f"{image.image_id}: {len(lines)} lines, {time.monotonic() - started:.0f} s", flush=True)
    lines = pd.DataFrame(line_rows)
    films = pd.DataFrame(film_rows)
    lines.to_csv(OUT / "lines.csv", index=False)
    films.to_csv(OUT / "films.csv", index=False)
    summary = {
        "films": int(films["image_id"].nunique()),
        "model": model.model_id,
        "engine": model.engine,
        "seconds": round(time.monotonic() - started),
        "by_depth": {
            f"{d:g}": {
                "lines": int(len(g)),
                "lr_ratio_median": float(g["lr_ratio"].median()),
                "network_right_row": float(g["network_right_row"].mean()),
                "average_beats_network": float((g["sse_average"] < g["sse_network"]).mean()),
                "gain_average_over_network_db": float(10 * np.log10(g["sse_network"].sum() / g["sse_average"].sum())),
                "gain_network_over_bicubic_db": float(10 * np.log10(g["sse_bicubic"].sum() / g["sse_network"].sum())),
                "gain_average_over_bicubic_db": float(10 * np.log10(g["sse_bicubic"].sum() / g["sse_average"].sum())),
                **{f"detected_{u}": float(g[f"detected_{u}"].mean()) for u in UPPERS},
            }
            for d, g in lines.groupby("depth")
        },
        "films_as_they_are": {
            f"{u:g}": {
                "lr_pixels": int(g["lr_pixels"].sum()),
                "films_with_lines": int((g["lr_pixels"] > 0).sum()),
                "gain_average_over_network_db": (
                    float(10 * np.log10(g["sse_network"].sum() / g["sse_average"].sum()))
                    if g["sse_average"].sum() > 0
                    else None
                ),
            }
            for u, g in films.groupby("upper")
        },
    }
    (OUT / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
