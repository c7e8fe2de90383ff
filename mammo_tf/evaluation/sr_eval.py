"""evaluate-sr: an SR model against nearest, bicubic and Lanczos on held-out patients' whole films.

Protocol (stated in every report):
- HR = the film as stored (cropped to a multiple of the scale); LR = its exact s x s box average, in three
  variants: float (unrounded), rounded to 8 bits and to 16 bits, as files would store it. The 8-bit
  variant is the primary one (MIAS films are 8-bit, as a stored LR file would be) and covers every image; the float and
  16-bit variants cover the first `secondary_images` (they show the projection's behaviour per input type).
- PSNR (data range 1.0) and SSIM (11x11 Gaussian window, sigma 1.5, K1 0.01, K2 0.03) inside the breast
  mask of the HR film (mammo_tf.data.preprocess), `scale` border pixels cropped.
- Also inside the breast interior: the mask eroded by INTERIOR_PX and kept inside the film-foreground region
  below, so neither the skin line and breast edge nor the digitiser's isolated black pixels inside the
  tissue count. Those dark pixels (a few thousand per MIAS film) are where bicubic rings worst (squared
  error ~0.015 against ~3e-5 in tissue) and a consistent model wins by a wide margin; they dominate the
  breast-mask gain on some films. The interior is tissue only: the number that matters for specks.
- Also in the film foreground (the breast plus the film's labels and markers; the region of the +0.5 dB SR goal):
  the mask HR > 0.08 eroded by a 9x9 square, a 4-px border cropped (it keeps most of the skin line).
- Gain over bicubic per image, mean with a patient-level bootstrap 95 % CI, and the worst image.
- Consistency error max |D(SR) - LR| (float: should be < 1e-5; files: within half a grey level).
- Specks (data/specks.py, one threshold per film from the HR image): on phantom data, the share of true
  specks (phantom_truth.csv) found in HR, bicubic and SR; on any data, spurious specks = detections in
  SR (or bicubic) with no HR detection within 2 px.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from mammo_tf.data.samplers import FOREGROUND_LEVEL
from mammo_tf.errors import MammoError

VARIANTS = (("float", None), ("8-bit", 8), ("16-bit", 16))
PRIMARY = "8-bit"
SECONDARY_IMAGES = 12  # float and 16-bit LR are scored on the first 12 images only (they differ by < 0.01 dB)
BASELINES = ("nearest", "bicubic", "lanczos")
MATCH_PX = 2.0
BLOCK = 64  # the worst-region search: where SR loses most against bicubic, in 64-px blocks
INTERIOR_PX = 20
ANCHOR_THRESHOLD, ANCHOR_ERODE, ANCHOR_BORDER = FOREGROUND_LEVEL, 9, 4  # the film-foreground region


@dataclass(frozen=True)
class ReportSection:
    """What another evaluation adds to evaluate-sr's report folder (e.g. sr_grid's scanner grid).

    key: its metrics.json key; metrics: JSON-able dict; tables: file name -> table written as CSV;
    markdown: report.md lines appended after the main report; images: file name -> PNG bytes. Made by a
    callable passed in `sections` (sr_model, catalog, the split's images, max_images) -> ReportSection, so
    this module imports none of them.
    """

    key: str
    metrics: dict
    tables: dict[str, pd.DataFrame]
    markdown: list[str]
    images: dict[str, bytes] = field(default_factory=dict)


def anchor_mask(hr: np.ndarray) -> np.ndarray:
    """bool [H, W]: HR > 0.08 eroded by a 9x9 square, without a 4-px border (the film foreground)."""
    kernel = np.ones((ANCHOR_ERODE, ANCHOR_ERODE), np.uint8)
    mask = cv2.erode((hr > ANCHOR_THRESHOLD).astype(np.uint8), kernel).astype(bool)
    b = ANCHOR_BORDER
    mask[:b], mask[-b:], mask[:, :b], mask[:, -b:] = False, False, False, False
    return mask


def interior_mask(mask: np.ndarray, anchor: np.ndarray) -> np.ndarray:
    """bool [H, W]: the breast `mask` eroded by an INTERIOR_PX disk, inside `anchor` (tissue only)."""
    disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * INTERIOR_PX + 1, 2 * INTERIOR_PX + 1))
    return cv2.erode(mask.astype(np.uint8), disk).astype(bool) & anchor


def phantom_truth(catalog) -> pd.DataFrame | None:
    """The catalog's phantom_truth.csv (image_id, row, col, radius_px, ...: every true speck), None if absent."""
    from mammo_tf.data.phantom import TRUTH_NAME

    path = Path(catalog.root) / TRUTH_NAME
    return pd.read_csv(path) if path.is_file() else None


def load_film(path: str, scale: int) -> tuple[np.ndarray, np.ndarray]:
    """HR pixels float32 [H, W] (cropped to a multiple of scale) and the breast mask, original orientation."""
    from mammo_tf.data.degrade import crop_to_scale
    from mammo_tf.data.preprocess import prepare
    from mammo_tf.io.images import read_image

    pixels = read_image(path).pixels
    prepared = prepare(path)
    mask = prepared.mask[:, ::-1] if prepared.flipped else prepared.mask
    return crop_to_scale(pixels, scale), crop_to_scale(mask, scale)


def speck_counts(hr, candidates: dict[str, np.ndarray], mask, truth_rc) -> dict[str, float]:
    """Specks of each candidate (float32 [H, W] like `hr`) against HR's, one threshold from HR for all.

    Returns specks_hr, spurious_<name> (candidate specks with no HR speck within MATCH_PX) and, when
    truth_rc = (rows, cols) of the specks to keep is given, truth_specks and truth_found_<name|hr>.
    """
    from mammo_tf.data.specks import detect_specks, match_specks, robust_threshold, speck_response

    threshold = robust_threshold(speck_response(hr), mask)
    found_hr = detect_specks(hr, mask, threshold=threshold)
    out: dict[str, float] = {"specks_hr": len(found_hr)}
    for name, image in candidates.items():
        found = detect_specks(image, mask, threshold=threshold)
        near_hr = match_specks(found_hr, found["row"], found["col"], MATCH_PX) if len(found) else np.zeros(0, bool)
        out[f"spurious_{name}"] = int((~near_hr).sum())
        if truth_rc is not None:
            out[f"truth_found_{name}"] = int(match_specks(found, *truth_rc, MATCH_PX).sum())
    if truth_rc is not None:
        out["truth_specks"] = len(truth_rc[0])
        out["truth_found_hr"] = int(match_specks(found_hr, *truth_rc, MATCH_PX).sum())
    return out


def _worst_block(sr: np.ndarray, bicubic: np.ndarray, hr: np.ndarray, region: np.ndarray) -> tuple[float, int, int]:
    """(excess, row, col): the BLOCK x BLOCK block where SR's squared error most exceeds bicubic's, in `region`."""
    excess = np.where(region, (sr - hr) ** 2 - (bicubic - hr) ** 2, 0.0)
    h, w = (excess.shape[0] // BLOCK) * BLOCK, (excess.shape[1] // BLOCK) * BLOCK
    sums = excess[:h, :w].reshape(h // BLOCK, BLOCK, w // BLOCK, BLOCK).sum(axis=(1, 3))
    r, c = np.unravel_index(int(np.argmax(sums)), sums.shape)
    return float(sums[r, c]), int(r * BLOCK + BLOCK // 2), int(c * BLOCK + BLOCK // 2)


def _corner(shape: tuple[int, ...], row: int, col: int, half: int) -> tuple[int, int]:
    """Top-left corner of the 2*half square centred on (row, col), moved inside the image."""
    return int(np.clip(row - half, 0, shape[0] - 2 * half)), int(np.clip(col - half, 0, shape[1] - 2 * half))


def _crop(image: np.ndarray, row: int, col: int, half: int) -> np.ndarray:
    r0, c0 = _corner(image.shape, row, col, half)
    return image[r0 : r0 + 2 * half, c0 : c0 + 2 * half]


def evaluate_sr(
    model: str | Path | None = None,
    data: str | Path | None = None,
    *,
    split: str = "test",
    out: str | Path | None = None,
    max_images: int | None = None,
    secondary_images: int = SECONDARY_IMAGES,
    sections: Sequence[Callable[..., ReportSection]] = (),
    noise_gate: str | float | None = "auto",
) -> dict:
    """Score an SR model (see the module docstring); writes report.md, metrics.json, crops.png into `out`.

    noise_gate: scored as `upscale` writes it (inference.upscale.gated_upscale: 'auto', 'off' or grey levels);
    per_image.csv records each film's noise and whether it was written as bicubic.

    sections: callables (sr_model, catalog, images of the split, max_images) -> ReportSection, run after the
    main scoring; their metrics go under their key, their tables and report lines into the same folder.
    """
    from mammo_tf.data.catalog import load_catalog
    from mammo_tf.data.degrade import degrade, interpolate
    from mammo_tf.evaluation.sr import consistency_error, crop_border, psnr, ssim
    from mammo_tf.evaluation.stats import bootstrap_ci
    from mammo_tf.inference.noise_gate import resolve_gate
    from mammo_tf.inference.upscale import gated_upscale, load_sr_model
    from mammo_tf.io.images import quantize

    started = time.monotonic()
    sr_model = load_sr_model(model, command="evaluate-sr")
    s = sr_model.scale
    catalog = load_catalog(data)
    images = catalog.images[catalog.images["split"] == split]
    if images.empty:
        raise MammoError(f"{catalog.root}: no images in split {split!r}")
    split_images = images
    if max_images:
        images = images.head(max_images)
    truth = phantom_truth(catalog)
    calcs = catalog.findings[(catalog.findings["abnormality"] == "CALC") & catalog.findings["has_coords"]]
    rows, crops = [], []
    worst = (float("-inf"), None, None)  # (excess, image_id, tiles): where SR loses most against bicubic
    for number, image in enumerate(images.itertuples()):
        hr, mask = load_film(image.path, s)
        eval_mask = crop_border(mask, s)
        anchor = anchor_mask(hr)
        interior = crop_border(interior_mask(mask, anchor), s)
        for variant, bits in VARIANTS:
            if variant != PRIMARY and number >= secondary_images:
                continue
            lr = degrade(hr, s, bits)
            sr, decision = gated_upscale(sr_model, lr, bits, noise_gate)
            outputs = {"sr": sr, **{name: interpolate(lr, s, name) for name in BASELINES}}
            row = {"image_id": image.image_id, "patient_id": image.patient_id, "variant": variant}
            row.update(noise_greys=decision.noise_greys, jpeg_grid=decision.jpeg_grid, gated=decision.bicubic)
            for name, estimate in outputs.items():
                row[f"psnr_{name}"] = psnr(crop_border(estimate, s), crop_border(hr, s), eval_mask)
                row[f"psnr_interior_{name}"] = psnr(crop_border(estimate, s), crop_border(hr, s), interior)
                row[f"psnr_anchor_{name}"] = psnr(estimate, hr, anchor)
            half_step = 0.0 if bits is None else 0.5 / ((1 << bits) - 1)
            row["consistency_error"] = consistency_error(sr, lr, s)
            row["consistency_excess"] = max(0.0, row["consistency_error"] - half_step)
            if variant == PRIMARY:
                # The files `upscale` writes: rounded to the input's bits (default) or to 16 (--bits 16).
                row["psnr_anchor_sr_file"] = psnr(quantize(sr, bits, as_float=True), hr, anchor)
                row["psnr_anchor_sr_file16"] = psnr(quantize(sr, 16, as_float=True), hr, anchor)
                row["psnr_anchor_bicubic_file"] = psnr(quantize(outputs["bicubic"], bits, as_float=True), hr, anchor)
                for name in ("sr", "bicubic", "lanczos"):
                    row[f"ssim_{name}"] = ssim(crop_border(outputs[name], s), crop_border(hr, s), eval_mask)
                mine = truth[truth["image_id"] == image.image_id] if truth is not None else None
                truth_rc = (mine["row"].to_numpy(), mine["col"].to_numpy()) if mine is not None else None
                row.update(speck_counts(hr, {"sr": sr, "bicubic": outputs["bicubic"]}, mask, truth_rc))
                excess, r, c = _worst_block(sr, outputs["bicubic"], hr, anchor)
                if excess > worst[0]:
                    bic = outputs["bicubic"]
                    tiles = [_crop(x, r, c, BLOCK) for x in (hr, bic, sr, np.abs(sr - hr) * 10, np.abs(bic - hr) * 10)]
                    r0, c0 = _corner(hr.shape, r, c, BLOCK)
                    where = f"{image.image_id} rows {r0}-{r0 + 2 * BLOCK}, cols {c0}-{c0 + 2 * BLOCK}"
                    worst = (excess, where, tiles)
                for finding in calcs[calcs["image_id"] == image.image_id].itertuples():
                    r, c = int(finding.row), int(finding.col)
                    inside = 0 <= r < mask.shape[0] and 0 <= c < mask.shape[1] and mask[r, c]
                    if len(crops) < 6 and inside:  # centres in the film background (mdb212, mdb214) show nothing
                        crops.append(
                            (
                                image.image_id,
                                [
                                    _crop(np.repeat(np.repeat(lr, s, 0), s, 1), r, c, 32),
                                    _crop(outputs["bicubic"], r, c, 32),
                                    _crop(sr, r, c, 32),
                                    _crop(hr, r, c, 32),
                                ],
                            )
                        )
            rows.append(row)
    table = pd.DataFrame(rows)
    metrics = _summarise(table, sr_model, catalog, split, bootstrap_ci)
    metrics["worst_region"] = {"where": worst[1], "excess_squared_error": worst[0]}
    primary = table[table["variant"] == PRIMARY]
    metrics["noise_gate"] = {
        "ceiling_greys": resolve_gate(noise_gate, sr_model.noise_ceiling_greys),
        "films_gated": int(primary["gated"].sum()),
        "noise_greys_max": float(primary["noise_greys"].max()),
        "jpeg_grid_max": float(primary["jpeg_grid"].max()),
    }
    extra = [make(sr_model, catalog, split_images, max_images) for make in sections]
    for section in extra:
        metrics[section.key] = section.metrics
    metrics["seconds"] = round(time.monotonic() - started, 1)
    if out is not None:
        _write(Path(out), metrics, table, crops, worst, extra)
    return metrics


def _summarise(table: pd.DataFrame, sr_model, catalog, split: str, bootstrap_ci) -> dict:
    variants = {}
    for variant, group in table.groupby("variant", sort=False):
        gain = (group["psnr_sr"] - group["psnr_bicubic"]).to_numpy()
        interior_gain = (group["psnr_interior_sr"] - group["psnr_interior_bicubic"]).to_numpy()
        anchor_gain = (group["psnr_anchor_sr"] - group["psnr_anchor_bicubic"]).to_numpy()
        worst = group.iloc[int(np.argmin(gain))]
        entry = {
            "images": len(group),
            **{f"psnr_{m}": float(group[f"psnr_{m}"].mean()) for m in ("sr", *BASELINES)},
            **{
                f"psnr_{r}_{m}": float(group[f"psnr_{r}_{m}"].mean())
                for r in ("interior", "anchor")
                for m in ("sr", "bicubic")
            },
            "gain_over_bicubic_db": bootstrap_ci(gain, group["patient_id"].to_numpy()).as_dict(),
            "interior_gain_over_bicubic_db": bootstrap_ci(interior_gain, group["patient_id"].to_numpy()).as_dict(),
            "anchor_gain_over_bicubic_db": bootstrap_ci(anchor_gain, group["patient_id"].to_numpy()).as_dict(),
            "interior_worst_image": {
                "image_id": group.iloc[int(np.argmin(interior_gain))]["image_id"],
                "gain_db": float(interior_gain.min()),
            },
            "worst_image": {"image_id": worst["image_id"], "gain_db": float(gain.min())},
            "anchor_worst_image": {
                "image_id": group.iloc[int(np.argmin(anchor_gain))]["image_id"],
                "gain_db": float(anchor_gain.min()),
            },
            "images_below_bicubic": int((gain < 0).sum()),
            "images_below_bicubic_by_region": {  # so a card can say whether any film is below bicubic anywhere
                "film_foreground": int((anchor_gain < 0).sum()),
                "interior": int((interior_gain < 0).sum()),
                "breast_mask": int((gain < 0).sum()),
            },
            "consistency_error_max": float(group["consistency_error"].max()),
            "consistency_excess_max": float(group["consistency_excess"].max()),
        }
        if "ssim_sr" in group and group["ssim_sr"].notna().any():
            entry.update({f"ssim_{m}": float(group[f"ssim_{m}"].mean()) for m in ("sr", "bicubic", "lanczos")})
        variants[variant] = entry
    primary = table[table["variant"] == PRIMARY]
    patients = primary["patient_id"].to_numpy()
    bicubic_file = primary["psnr_anchor_bicubic_file"]
    files = {
        "sr_file_vs_bicubic_file": bootstrap_ci((primary["psnr_anchor_sr_file"] - bicubic_file).to_numpy(), patients),
        "sr_file16_vs_bicubic_file": bootstrap_ci(
            (primary["psnr_anchor_sr_file16"] - bicubic_file).to_numpy(), patients
        ),
        "sr_file_vs_bicubic": bootstrap_ci(
            (primary["psnr_anchor_sr_file"] - primary["psnr_anchor_bicubic"]).to_numpy(), patients
        ),
        "sr_file16_vs_bicubic": bootstrap_ci(
            (primary["psnr_anchor_sr_file16"] - primary["psnr_anchor_bicubic"]).to_numpy(), patients
        ),
    }
    specks = {k: int(primary[k].sum()) for k in primary.columns if k.startswith(("spurious_", "truth_", "specks_"))}
    return {
        "model": sr_model.model_id,
        "engine": sr_model.engine,
        "scale": sr_model.scale,
        "data": str(catalog.root),
        "source": catalog.source,
        "split": split,
        "patients": int(primary["patient_id"].nunique()),
        "protocol": {
            "psnr": "data range 1.0, inside the HR breast mask, border = scale px cropped",
            "interior": f"the breast mask eroded by a {INTERIOR_PX}-px disk, inside the film foreground (tissue "
            "only: no skin line, breast edge or isolated black digitiser pixels)",
            "anchor": f"film foreground: HR > {ANCHOR_THRESHOLD} eroded {ANCHOR_ERODE}x{ANCHOR_ERODE}, "
            f"{ANCHOR_BORDER}-px border",
            "ssim": "11x11 Gaussian window, sigma 1.5, K1 0.01, K2 0.03, data range 1.0, same mask and crop",
            "lr": "exact box average of HR; float, or rounded to 8 / 16 bits",
            "ci": "patient-level percentile bootstrap, 2000 resamples, 95 %",
            "specks": f"white top-hat r=4, threshold 6 robust SD of the HR response per film, "
            f"match within {MATCH_PX} px",
        },
        "variants": variants,
        "files": {name: ci.as_dict() for name, ci in files.items()},
        "specks": specks,
        "per_image": table.to_dict("records"),
    }


def _write(out: Path, metrics: dict, table: pd.DataFrame, crops, worst, extra: list[ReportSection]) -> None:
    from mammo_tf.evaluation.report import grid, label, metrics_json, report_folder, to_uint8, write_png

    with report_folder(out) as tmp:
        (tmp / "metrics.json").write_text(metrics_json(metrics))
        table.to_csv(tmp / "per_image.csv", index=False)
        if crops:
            names = ("LR", "bicubic", "SR", "HR")
            rows = [
                [label(to_uint8(t, 3), f"{image_id} {n}") for t, n in zip(tiles, names, strict=True)]
                for image_id, tiles in crops
            ]
            write_png(tmp / "crops.png", grid(rows))
        if worst[2] is not None:
            names = ("HR", "bicubic", "SR", "|SR - HR| x10", "|bicubic - HR| x10")
            write_png(
                tmp / "worst_region.png",
                grid([[label(to_uint8(t, 2), n) for t, n in zip(worst[2], names, strict=True)]]),
            )
        for section in extra:
            for name, frame in section.tables.items():
                frame.to_csv(tmp / name, index=False)
            for name, data in section.images.items():
                (tmp / name).write_bytes(data)
        markdown = render_markdown(metrics, bool(crops))
        (tmp / "report.md").write_text(markdown + "".join(line + "\n" for s in extra for line in s.markdown))


def _gate_line(gate: dict | None) -> str:
    """What the noise gate did to the scored outputs (reports written before it existed have none)."""
    if gate is None:
        return "Noise gate: none (written before it existed)."
    if gate["ceiling_greys"] is None:
        return f"Noise gate: off (the model on every film; noisiest input {gate['noise_greys_max']:.2f} grey levels)."
    return (
        f"Noise gate: films noisier than {gate['ceiling_greys']:g} grey levels, or JPEG-coded, are scored as "
        f"`upscale` writes them, bicubic: {gate['films_gated']} of them (noisiest input {gate['noise_greys_max']:.2f})."
    )


def files_table(files: dict) -> list[str]:
    """What the film-foreground gain becomes in the files `upscale` writes (a metrics "files" entry)."""

    def ci(d: dict) -> str:
        return f"{d['estimate']:+.3f} dB [{d['low']:+.3f}, {d['high']:+.3f}]"

    return [
        "The gains above are on float outputs. A file rounds them: to the input's bits by default, to 16 with "
        "`--bits 16`.",
        "",
        "| output file | against bicubic rounded alike | against unrounded bicubic |",
        "|---|---|---|",
        f"| input's bits (default) | {ci(files['sr_file_vs_bicubic_file'])} | {ci(files['sr_file_vs_bicubic'])} |",
        f"| 16 bits (`--bits 16`) | {ci(files['sr_file16_vs_bicubic_file'])} (bicubic at the input's bits) | "
        f"{ci(files['sr_file16_vs_bicubic'])} |",
    ]


def render_markdown(m: dict, has_crops: bool) -> str:
    lines = [
        f"# evaluate-sr: {m['model']} (x{m['scale']})",
        "",
        f"Data: {m['data']} ({m['source']}), split `{m['split']}`, {m['patients']} patients.",
        "",
        _gate_line(m.get("noise_gate")),
        "",
        "Conventions: " + "; ".join(f"{k}: {v}" for k, v in m["protocol"].items()) + ".",
        "",
        "| LR variant | images | SR PSNR | bicubic | Lanczos | nearest | gain over bicubic [95 % CI] | worst image "
        "| below bicubic | SSIM SR / bicubic | max abs D(SR) - LR | beyond half a grey level |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, v in m["variants"].items():
        g = v["gain_over_bicubic_db"]
        ssim = f"{v['ssim_sr']:.4f} / {v['ssim_bicubic']:.4f}" if "ssim_sr" in v else "-"
        lines.append(
            f"| {name} | {v['images']} | {v['psnr_sr']:.2f} | {v['psnr_bicubic']:.2f} | {v['psnr_lanczos']:.2f} | "
            f"{v['psnr_nearest']:.2f} | {g['estimate']:+.3f} dB [{g['low']:+.3f}, {g['high']:+.3f}] | "
            f"{v['worst_image']['image_id']} ({v['worst_image']['gain_db']:+.3f}) | {v['images_below_bicubic']} | "
            f"{ssim} | {v['consistency_error_max']:.2e} | {v['consistency_excess_max']:.1e} |"
        )
    lines += [
        "",
        f"Two more regions: the breast interior (mask eroded {INTERIOR_PX} px, inside the next region: tissue, "
        f"where calcifications are) and the {m['protocol']['anchor']} (the breast and the film's "
        "labels). The breast mask above also holds the edge and the "
        "digitiser's isolated black pixels, where bicubic rings worst: its gain is not the tissue's.",
        "",
        "| LR variant | interior SR / bicubic | interior gain [95 % CI] | worst image (interior) "
        "| film foreground SR / bicubic | film foreground gain [95 % CI] |",
        "|---|---|---|---|---|---|",
    ]
    for name, v in m["variants"].items():
        i, a = v["interior_gain_over_bicubic_db"], v["anchor_gain_over_bicubic_db"]
        lines.append(
            f"| {name} | {v['psnr_interior_sr']:.2f} / {v['psnr_interior_bicubic']:.2f} | "
            f"{i['estimate']:+.3f} dB [{i['low']:+.3f}, {i['high']:+.3f}] | "
            f"{v['interior_worst_image']['image_id']} ({v['interior_worst_image']['gain_db']:+.3f}) | "
            f"{v['psnr_anchor_sr']:.2f} / {v['psnr_anchor_bicubic']:.2f} | "
            f"{a['estimate']:+.3f} dB [{a['low']:+.3f}, {a['high']:+.3f}] |"
        )
    lines += ["", f"## The files `upscale` writes ({PRIMARY} LR, film foreground)", "", *files_table(m["files"])]
    s = m["specks"]
    lines += ["", f"## Specks ({PRIMARY} LR)", ""]
    lines.append(
        f"- HR detections: {s.get('specks_hr', 0)}; spurious (no HR speck within {MATCH_PX} px): "
        f"SR {s.get('spurious_sr', 0)}, bicubic {s.get('spurious_bicubic', 0)}."
    )
    if "truth_specks" in s:
        lines.append(
            f"- Phantom ground truth: {s['truth_specks']} specks; found in HR {s['truth_found_hr']}, "
            f"bicubic {s['truth_found_bicubic']}, SR {s['truth_found_sr']}."
        )
    if m.get("worst_region", {}).get("where"):
        lines += [
            "",
            f"## Where SR loses most against bicubic ({PRIMARY} LR, {BLOCK}-px blocks, film foreground)",
            "",
            f"{m['worst_region']['where']}: squared error {m['worst_region']['excess_squared_error']:+.3f} above "
            "bicubic's over the block (HR, bicubic, SR, and both errors x10):",
            "",
            "![worst region](worst_region.png)",
        ]
    if has_crops:
        lines += ["", "## Crops at calcifications (LR, bicubic, SR, HR; 64 px, shown x3)", "", "![crops](crops.png)"]
    return "\n".join(lines) + "\n"
