"""evaluate-sr --grid: SR against bicubic along the axes on which scanners differ (a cross-scanner check).

Why: the shipped SR model is trained and scored on one degradation (the 2x2 box mean of 8-bit MIAS
films). On other scanners' films it created more calcification-like specks than bicubic, while on MIAS
it creates fewer; no other scanner's data is here, so the grid builds the differences
(data/scanner_degradations.py: noise, PSF blur, downscaling kernel, bit depth, JPEG) and measures along them.

Per cell, on the same films: HR is the reference, LR is made from it by the cell, and SR (what `upscale`
writes: the model with its consistency projection, told the cell's bit depth, or bicubic where the gate
stops it: too noisy or JPEG-coded, inference/noise_gate.py) and bicubic both upscale that LR. Per cell,
summed or averaged over the films:
- PSNR gain: SR minus bicubic in the film foreground (sr_eval.anchor_mask), dB, mean over films;
- kept: the reference specks found within MATCH_PX px in the output. Reference = the phantom's true specks
  (phantom_truth.csv) on the phantom, else the HR detections inside the annotated calcification circles;
  also given for HR itself;
- spurious: output specks with no HR speck within MATCH_PX px, one threshold per film from the HR film
  for HR, SR and bicubic (sr_eval.speck_counts, the same code as evaluate-sr's speck numbers).
Rule, per cell: gain >= 0, kept SR >= kept bicubic, spurious SR <= spurious bicubic; the grid passes if
every cell does.

Films: the split's films that hold reference specks first (kept counts need them), then the others, in
catalog order, at most `max_images`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from mammo_tf.data.scanner_degradations import ScannerCell, degrade_cell, resolve_cells
from mammo_tf.evaluation.sr_eval import MATCH_PX, ReportSection, anchor_mask, load_film, phantom_truth, speck_counts

RULE = "gain >= 0 dB, kept SR >= kept bicubic and spurious SR <= spurious bicubic, in every cell"


def reference_specks(hr: np.ndarray, mask: np.ndarray, circles: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(rows, cols) of the HR film's specks inside annotated calcification circles (MIAS's "truth").

    hr: float32 [H, W] in [0, 1]; mask: bool [H, W] breast mask; circles: rows with row, col, radius (px).
    The detector and its threshold are speck_counts' (white top-hat, threshold from the HR film).
    """
    from mammo_tf.data.specks import detect_specks, robust_threshold, speck_response

    found = detect_specks(hr, mask, threshold=robust_threshold(speck_response(hr), mask))
    if found.empty or circles.empty:
        return np.zeros(0), np.zeros(0)
    r, c = found["row"].to_numpy()[:, None], found["col"].to_numpy()[:, None]
    d = np.hypot(r - circles["row"].to_numpy(float)[None], c - circles["col"].to_numpy(float)[None])
    inside = (d <= circles["radius"].to_numpy(float)[None]).any(axis=1)
    return found["row"].to_numpy()[inside], found["col"].to_numpy()[inside]


def score_outputs(
    hr: np.ndarray, mask: np.ndarray, sr: np.ndarray, bicubic: np.ndarray, reference_rc: tuple[np.ndarray, np.ndarray]
) -> dict[str, float]:
    """One film in one cell: PSNR (film foreground) of SR and bicubic, kept and spurious specks.

    hr, sr, bicubic: float32 [H, W] in [0, 1]; mask: bool [H, W] breast mask; reference_rc: (rows, cols) of
    the specks that should be kept. Returns psnr_sr, psnr_bicubic, gain_db, reference, kept_hr, kept_sr,
    kept_bicubic, spurious_sr, spurious_bicubic.
    """
    from mammo_tf.evaluation.sr import psnr

    anchor = anchor_mask(hr)
    counts = speck_counts(hr, {"sr": sr, "bicubic": bicubic}, mask, reference_rc)
    psnr_sr, psnr_bicubic = psnr(sr, hr, anchor), psnr(bicubic, hr, anchor)
    return {
        "psnr_sr": psnr_sr,
        "psnr_bicubic": psnr_bicubic,
        "gain_db": psnr_sr - psnr_bicubic,
        "reference": counts["truth_specks"],
        "kept_hr": counts["truth_found_hr"],
        "kept_sr": counts["truth_found_sr"],
        "kept_bicubic": counts["truth_found_bicubic"],
        "spurious_sr": counts["spurious_sr"],
        "spurious_bicubic": counts["spurious_bicubic"],
    }


def grid_films(images: pd.DataFrame, has_reference: set[str], max_images: int | None) -> pd.DataFrame:
    """The films the grid runs on: those in `has_reference` (image ids) first, then the rest, catalog order."""
    first = images["image_id"].isin(has_reference)
    ordered = pd.concat([images[first], images[~first]])
    return ordered.head(max_images) if max_images else ordered


def run_grid(
    upscale: Callable[[np.ndarray, int], tuple[np.ndarray, Any]],
    scale: int,
    films: pd.DataFrame,
    cells: Sequence[ScannerCell],
    *,
    truth: pd.DataFrame | None,
    calcs: pd.DataFrame,
    seed: int = 0,
    draws: int = 1,
) -> pd.DataFrame:
    """One row per (cell, film, draw): score_outputs of SR and bicubic on the cell's LR of the film.

    upscale(lr, bits): float32 [h, w] LR of `bits` bits -> (float32 [h*s, w*s], the noise gate's
    GateDecision): what `upscale` writes (inference.upscale.gated_upscale); each row records the film's
    noise and whether the gate gave bicubic.
    films: catalog rows (image_id, patient_id, path); truth: phantom_truth.csv or None (then the reference
    is reference_specks inside `calcs`' circles: image_id, row, col, radius). The noise of film k in every
    cell is seeded by (seed, k); draws > 1 scores each noise cell on that many noise draws (draw d > 0 seeded
    by (seed, k, d)), the other cells once: a kept or spurious count of one draw is a few specks, and
    noise puts specks near a reference speck by chance.
    """
    from mammo_tf.data.degrade import interpolate

    rows = []
    for number, film in enumerate(films.itertuples()):
        hr, mask = load_film(film.path, scale)
        if truth is not None:
            mine = truth[truth["image_id"] == film.image_id]
            reference = (mine["row"].to_numpy(float), mine["col"].to_numpy(float))
        else:
            reference = reference_specks(hr, mask, calcs[calcs["image_id"] == film.image_id])
        for cell in cells:
            for draw in range(draws if cell.photon_std else 1):
                lr = degrade_cell(hr, scale, cell, seed=(seed, number, draw) if draw else (seed, number))
                sr, decision = upscale(lr, cell.bits)
                scores = score_outputs(hr, mask, sr, interpolate(lr, scale, "bicubic"), reference)
                gate = {"noise_greys": decision.noise_greys, "jpeg_grid": decision.jpeg_grid, "gated": decision.bicubic}
                where = {"cell": cell.name, "axis": cell.axis, "image_id": film.image_id, "draw": draw}
                rows.append({**where, **scores, **gate})
    return pd.DataFrame(rows)


def summarise_grid(per_film: pd.DataFrame, cells: Sequence[ScannerCell]) -> pd.DataFrame:
    """One row per cell (grid order): means of PSNR, sums of counts (over films and draws), the number of
    films and of draws, films gated (summed over draws), the three checks and `pass`."""
    sums = ["reference", "kept_hr", "kept_sr", "kept_bicubic", "spurious_sr", "spurious_bicubic"]
    means = ["psnr_sr", "psnr_bicubic", "gain_db"]
    grouped = per_film.assign(draw=per_film.get("draw", 0)).groupby("cell", sort=False)
    table = grouped[means].mean().join(grouped[sums].sum()).join(grouped["image_id"].nunique().rename("films"))
    table = table.join(grouped["draw"].nunique().rename("draws")).join(grouped["gated"].sum().astype(int))
    table = table.reindex([c.name for c in cells]).reset_index()
    table.insert(1, "axis", [c.axis for c in cells])
    table.insert(2, "lr", [c.describe() for c in cells])
    table["psnr_ok"] = table["gain_db"] >= 0
    table["kept_ok"] = table["kept_sr"] >= table["kept_bicubic"]
    table["spurious_ok"] = table["spurious_sr"] <= table["spurious_bicubic"]
    table["pass"] = table["psnr_ok"] & table["kept_ok"] & table["spurious_ok"]
    return table


def grid_metrics(summary: pd.DataFrame, films: pd.DataFrame, reference: str, seed: int, draws: int = 1) -> dict:
    """The metrics.json entry: protocol, films, per-cell records and the overall verdict."""
    return {
        "design": "one factor at a time around the default cell (area, no blur, no noise, 8 bits); HR is the "
        "reference, each cell changes how LR is made from it",
        "reference": reference,
        "rule": RULE,
        "match_px": MATCH_PX,
        "seed": seed,
        "draws": draws,
        "films": films["image_id"].tolist(),
        "cells": summary.to_dict("records"),
        "pass": bool(summary["pass"].all()),
    }


def grid_markdown(grid: dict) -> list[str]:
    """report.md lines of the grid section."""
    draws = grid.get("draws", 1)
    lines = [
        "",
        "## Scanner grid (`--grid`): SR against bicubic along the axes on which scanners differ",
        "",
        f"Design: {grid['design']}. "
        f"PSNR in the film foreground, mean over {len(grid['films'])} films ({', '.join(grid['films'])}); "
        f"kept: {grid['reference']} found within {grid['match_px']} px; spurious: output specks with no HR "
        f"speck within {grid['match_px']} px (threshold from HR). Noise seed {grid['seed']}"
        + (f", {draws} noise draws per noise cell (counts summed over them)" if draws > 1 else "")
        + f". Rule: {grid['rule']}.",
        "",
        *grid_table(grid),
        "",
        f"Grid: **{'pass' if grid['pass'] else 'FAIL'}** (every cell must pass).",
    ]
    return lines


def grid_table(grid: dict) -> list[str]:
    """The per-cell Markdown table of a metrics.json "grid" entry (report.md's, and the model card's).

    Grids scored before the noise gate have no `gated` counts: their table has no such column.
    """
    gated = all("gated" in c for c in grid["cells"])
    lines = [
        "| cell | LR made by | PSNR SR / bicubic | gain | kept HR / SR / bicubic (of reference) "
        "| spurious SR / bicubic |" + (" films gated to bicubic |" if gated else "") + " rule |",
        "|---|---|---|---|---|---|" + ("---|" if gated else "") + "---|",
    ]
    for c in grid["cells"]:
        failed = [name for name in ("psnr", "kept", "spurious") if not c[f"{name}_ok"]]
        verdict = "pass" if c["pass"] else "FAIL (" + ", ".join(failed) + ")"
        lines.append(
            f"| {c['cell']} | {c['lr']} | {c['psnr_sr']:.2f} / {c['psnr_bicubic']:.2f} | {c['gain_db']:+.3f} dB | "
            f"{c['kept_hr']} / {c['kept_sr']} / {c['kept_bicubic']} ({c['reference']}) | "
            f"{c['spurious_sr']} / {c['spurious_bicubic']} |"
            + (f" {c['gated']} of {c['films'] * c.get('draws', 1)} |" if gated else "")
            + f" {verdict} |"
        )
    return lines


def grid_png(summary: pd.DataFrame, title: str = "") -> bytes:
    """PNG bytes of a grid summary (summarise_grid's table, or grid.csv read back): per cell, the spurious specks
    of SR and bicubic (log scale) and the kept reference specks of HR, SR and bicubic; failed cells in red."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cells = summary["cell"].tolist()[::-1]  # the default cell on top
    rows = summary.set_index("cell").loc[cells]
    y = np.arange(len(cells))
    fig, (spurious, kept) = plt.subplots(1, 2, figsize=(9.5, 0.34 * len(cells) + 1.3), sharey=True)
    for ax, pairs, what in (
        (spurious, (("spurious_sr", "SR", "tab:orange"), ("spurious_bicubic", "bicubic", "tab:blue")), "spurious"),
        (kept, (("kept_sr", "SR", "tab:orange"), ("kept_bicubic", "bicubic", "tab:blue")), "kept"),
    ):
        for offset, (column, name, colour) in zip((0.2, -0.2), pairs, strict=True):
            values = rows[column].to_numpy()
            shown = np.maximum(values, 0.5) if what == "spurious" else values  # 0 on a log axis: a stub
            ax.barh(y + offset, shown, 0.4, color=colour, label=name)
            for row, (count, end) in enumerate(zip(values, shown, strict=True)):
                ax.text(end, y[row] + offset, f" {count:g}", va="center", fontsize=6)
        ax.grid(axis="x", alpha=0.3)
    spurious.set_xscale("log")
    spurious.set_xlabel("spurious specks, no HR speck near (fewer is better; log)")
    kept.scatter(rows["kept_hr"], y, marker="|", s=120, color="black", label="HR", zorder=3)
    kept.set_xlabel("reference specks kept (more is better)")
    labels = [f"{cell}  {row.gain_db:+.2f} dB" for cell, row in rows.iterrows()]
    if "gated" in rows:  # grids scored before the noise gate have no gated counts
        runs = rows["films"] * rows.get("draws", 1)
        labels = [
            f"{t}{f'  (gated {g}/{n})' if g else ''}" for t, g, n in zip(labels, rows["gated"], runs, strict=True)
        ]
    spurious.set_yticks(y, labels, fontsize=8)
    for tick, ok in zip(spurious.get_yticklabels(), rows["pass"], strict=True):
        tick.set_color("black" if bool(ok) else "red")
    kept.legend(fontsize=8, loc="lower right")
    fig.suptitle(
        title
        or "Scanner grid: SR against bicubic per cell, counts summed over films and noise draws "
        "(red: the cell fails the rule)",
        fontsize=9,
    )
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return buffer.getvalue()


def scanner_grid(
    cell_names: Sequence[str] | None = None, seed: int = 0, noise_gate: str | float | None = "auto", draws: int = 1
) -> Callable[..., ReportSection]:
    """The grid as an evaluate-sr section: `evaluate_sr(..., sections=[scanner_grid()])`.

    cell_names: a subset of scanner_degradations.CELL_NAMES ('default' is always run), None = all; an
    unknown name raises MammoError here, before any film is scored. seed: the noise cells' seed; draws: noise
    draws per noise cell (run_grid). noise_gate: upscale's (inference.upscale.gated_upscale).
    Writes grid.csv (one row per cell, with pass), grid_per_film.csv, grid.png (grid_png), metrics.json "grid",
    a report section.
    """
    cells = resolve_cells(cell_names)

    def section(sr_model, catalog, images: pd.DataFrame, max_images: int | None) -> ReportSection:
        from mammo_tf.inference.upscale import gated_upscale

        truth = phantom_truth(catalog)
        calcs = catalog.findings[(catalog.findings["abnormality"] == "CALC") & catalog.findings["has_coords"]]
        with_reference = set(truth["image_id"] if truth is not None else calcs["image_id"])
        films = grid_films(images, with_reference, max_images)
        per_film = run_grid(
            lambda lr, bits: gated_upscale(sr_model, lr, bits, noise_gate),
            sr_model.scale,
            films,
            cells,
            truth=truth,
            calcs=calcs,
            seed=seed,
            draws=draws,
        )
        summary = summarise_grid(per_film, cells)
        reference = "the phantom's true specks" if truth is not None else "HR specks inside the calcification circles"
        metrics = grid_metrics(summary, films, reference, seed, draws)
        tables = {"grid.csv": summary, "grid_per_film.csv": per_film}
        markdown = [*grid_markdown(metrics), "", "![the scanner grid, per cell](grid.png)"]
        return ReportSection("grid", metrics, tables, markdown, {"grid.png": grid_png(summary)})

    return section
