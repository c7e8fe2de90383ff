"""Calcification clusters rendered into real normal tissue, and the tissue chosen to match real positives
(NumPy/OpenCV/SciPy, no TensorFlow).

Insertion keeps every background pixel real: a layout (layouts.py) is drawn into a real normal patch,
and only the pixels near its specks change. Three parts:

estimate_psf        the imaging system's blur: the Gaussian sigma (px) of the smallest, isolated real specks.
render_cluster      each speck an irregular ellipse, blurred by that PSF, scaled to its contrast at the local
                    background, ADDED to the film's intensities; outside a dilated mask nothing changes.
matched_backgrounds real normal patches of the training patients, drawn so that their intensity and position in
                    the breast match the real positives' (the matched task's binning), never reusing an excluded
                    patch: an inserted positive must not be recognisable by its background.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import pandas as pd
from scipy import ndimage, optimize

from mammo_tf.data.layouts import Layout, as_generator
from mammo_tf.data.preprocess import prepare, to_oriented
from mammo_tf.data.samplers import Patches, sample_patches
from mammo_tf.data.schema import NORMAL, Catalog
from mammo_tf.data.specks import DEFAULT_RADIUS, speck_response
from mammo_tf.data.tasks import TASK_OVERSAMPLE, intensity, positions, quantile_cells, subset
from mammo_tf.errors import MammoError

# ------------------------------------------------------------------------------------------------ the PSF

PSF_RANGE = (0.3, 2.5)  # px: below 0.3 a Gaussian is a single pixel; above 2.5 it is no longer a speck's blur
PSF_QUANTILE = 0.25  # of the per-speck sigmas: the narrowest specks are the closest to points
PSF_MAX_AREA = 9  # px: specks this small (or up to the median isolated speck, if larger) approximate a point
PSF_ISOLATION = 6.0  # px: no other detected speck this close (the fit window is 9 x 9)
PSF_HALF = 4  # fit window (2 x 4 + 1) px
PSF_MIN_R2 = 0.5  # fraction of the window's variance the fit must explain


@dataclass(frozen=True)
class PointSpread:
    """Gaussian PSF estimate. sigma: px, clamped to PSF_RANGE; raw_sigma: before clamping; n_fitted of
    n_candidates small isolated specks gave an acceptable fit; per-speck sigmas' median for reference."""

    sigma: float
    raw_sigma: float
    median_sigma: float
    n_fitted: int
    n_candidates: int
    clamped: bool


def _fit_gaussian(window: np.ndarray) -> tuple[float, float] | None:
    """(sigma, R^2) of plane + A exp(-r^2 / 2 s^2) fitted to a float [9, 9] window, or None."""
    size = window.shape[0]
    yy, xx = np.mgrid[:size, :size].astype(np.float64) - PSF_HALF
    z = window.astype(np.float64).ravel()
    border = np.concatenate([window[0], window[-1], window[1:-1, 0], window[1:-1, -1]])
    base = float(np.median(border))
    amp0 = max(float(window.max()) - base, 1e-3)

    def residual(p):
        c0, cy, cx, amp, y0, x0, s = p
        model = c0 + cy * yy + cx * xx + amp * np.exp(-((yy - y0) ** 2 + (xx - x0) ** 2) / (2 * s * s))
        return model.ravel() - z

    peak = np.unravel_index(np.argmax(window), window.shape)
    y0, x0 = float(np.clip(peak[0] - PSF_HALF, -1.5, 1.5)), float(np.clip(peak[1] - PSF_HALF, -1.5, 1.5))
    start = [base, 0.0, 0.0, amp0, y0, x0, 1.0]
    lower = [-np.inf, -np.inf, -np.inf, 0.0, -2.0, -2.0, 0.2]
    upper = [np.inf, np.inf, np.inf, 2.0, 2.0, 2.0, 4.0]
    try:
        fit = optimize.least_squares(residual, start, bounds=(lower, upper), method="trf", x_scale="jac")
    except (ValueError, np.linalg.LinAlgError):
        return None
    if not fit.success:
        return None
    sigma = float(fit.x[6])
    total = float(np.sum((z - z.mean()) ** 2))
    r2 = 1.0 - float(np.sum(fit.fun**2)) / total if total > 0 else 0.0
    if not 0.21 < sigma < 3.9 or r2 < PSF_MIN_R2:
        return None
    return sigma, r2


def estimate_psf(catalog: Catalog, specks: pd.DataFrame, split: str | None = "train") -> PointSpread:
    """Gaussian sigma (px) of the imaging blur, from the small isolated specks of extract_specks' table.

    Method: every speck with no other detected speck within PSF_ISOLATION px, in images of `split`, of at
    most max(PSF_MAX_AREA, the median of those specks' areas) px (a thresholded area grows with the
    signal-to-noise ratio, so "small" is also relative), is fitted in a 9 x 9 window of its film with
    plane + A exp(-r^2 / 2 s^2) (least squares, R^2 >= 0.5). A speck's profile is its shape blurred by the
    PSF and integrated over a pixel, so s^2 = sigma_psf^2 + (its own size)^2 + 1/12: the per-speck sigma is
    sqrt(s^2 - 1/12) and the estimate is their PSF_QUANTILE (the narrowest specks are closest to points),
    clamped to PSF_RANGE. Checked on films blurred by a known sigma (0.6-2.0 px: within 0.08 px, slightly
    low). On a film without blur (the phantom) it measures the smallest specks' own size: an upper bound.
    MammoError if no speck could be fitted.
    """
    table = specks
    if split is not None:
        in_split = set(catalog.images.loc[catalog.images["split"] == split, "image_id"])
        table = table[table["image_id"].isin(in_split)]
    isolated = []
    for _, group in table.groupby("image_id", sort=True):
        rows, cols = group["row"].to_numpy(np.float64), group["col"].to_numpy(np.float64)
        dist = np.hypot(rows[:, None] - rows[None], cols[:, None] - cols[None])
        np.fill_diagonal(dist, np.inf)
        isolated.append(group[dist.min(axis=1) >= PSF_ISOLATION] if len(group) > 1 else group)
    chosen = pd.concat(isolated) if isolated else table.iloc[:0]
    if len(chosen):
        chosen = chosen[chosen["area_px"] <= max(PSF_MAX_AREA, float(chosen["area_px"].median()))]
    paths = catalog.images.set_index("image_id")["path"]
    sigmas = []
    for image_id, group in chosen.groupby("image_id", sort=True):
        prepared = prepare(paths[image_id])
        height, width = prepared.pixels.shape
        for speck in group.itertuples():
            row, col = to_oriented(speck.row, speck.col, width, prepared.flipped)
            r, c = int(round(row)), int(round(col))
            if not (PSF_HALF <= r < height - PSF_HALF and PSF_HALF <= c < width - PSF_HALF):
                continue
            fit = _fit_gaussian(prepared.pixels[r - PSF_HALF : r + PSF_HALF + 1, c - PSF_HALF : c + PSF_HALF + 1])
            if fit is not None:
                sigmas.append(np.sqrt(max(fit[0] ** 2 - 1.0 / 12.0, 0.0)))
    if not sigmas:
        raise MammoError(
            f"{catalog.root}: no small isolated speck ({len(chosen)} candidates) could be fitted for the PSF; "
            "give the PSF sigma yourself"
        )
    raw = float(np.quantile(sigmas, PSF_QUANTILE))
    sigma = float(np.clip(raw, *PSF_RANGE))
    return PointSpread(sigma, raw, float(np.median(sigmas)), len(sigmas), int(len(chosen)), sigma != raw)


# ------------------------------------------------------------------------------------------------ rendering

SUPERSAMPLE = 4  # sub-pixels per pixel side for a speck's coverage
BOUNDARY_NOISE = 0.12  # amplitude bound of each of the 2nd-4th outline harmonics (fraction of the radius)
MASK_MARGIN = 2  # px, plus 3 sigma of the PSF: the dilation of the specks' support that bounds every change


def mask_margin(psf_sigma: float) -> int:
    """Pixels the union of the specks' support is dilated by: MASK_MARGIN + ceil(3 sigma)."""
    return MASK_MARGIN + int(np.ceil(3.0 * psf_sigma))


def contrast_at(layout: Layout, contrast: float, background: float) -> float:
    """A speck's peak contrast (full scale) on a local background: the fitted log-linear model,
    contrast x exp(b (bg - reference)), bg clipped to the backgrounds the fit saw (no extrapolation)."""
    low, high = layout.background_range
    shift = float(np.clip(background, low, high)) - layout.reference_background
    return float(contrast * np.exp(layout.contrast_slope * shift))


def _coverage(speck, row: float, col: float, shape: tuple[int, int], noise: np.ndarray, pad: int):
    """Anti-aliased coverage of one irregular ellipse: (float [h, w] in [0, 1], top, left) in patch pixels."""
    a = np.sqrt(speck.area_px * speck.elongation / np.pi)  # semi-major axis
    b = np.sqrt(speck.area_px / (np.pi * speck.elongation))
    reach = a * (1 + np.sum(noise[:, 0])) + pad
    top, left = max(int(np.floor(row - reach)), 0), max(int(np.floor(col - reach)), 0)
    bottom, right = min(int(np.ceil(row + reach)) + 1, shape[0]), min(int(np.ceil(col + reach)) + 1, shape[1])
    if bottom <= top or right <= left:
        return None
    sub = (np.arange(SUPERSAMPLE) + 0.5) / SUPERSAMPLE - 0.5
    dy = (np.arange(top, bottom)[:, None] + sub[None]).reshape(-1, 1) - row
    dx = (np.arange(left, right)[:, None] + sub[None]).reshape(1, -1) - col
    cos, sin = np.cos(speck.angle), np.sin(speck.angle)
    p = (dx * cos + dy * sin) / a
    q = (-dx * sin + dy * cos) / b
    phi = np.arctan2(q, p)
    edge = 1.0 + sum(amp * np.cos(k * phi + phase) for k, (amp, phase) in zip((2, 3, 4), noise, strict=True))
    inside = (np.hypot(p, q) <= edge).astype(np.float32)
    cover = inside.reshape(bottom - top, SUPERSAMPLE, right - left, SUPERSAMPLE).mean(axis=(1, 3))
    return cover, top, left


def render_cluster(
    background: np.ndarray,
    layout: Layout,
    psf_sigma: float | PointSpread,
    rng_or_seed: np.random.Generator | int,
    centre: tuple[float, float] | None = None,
    *,
    detector_radius: int = DEFAULT_RADIUS,
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Draw `layout` into a real patch: (patch float32 [P, P] in [0, 1], mask bool [P, P], record).

    background: float [P, P] in [0, 1] (a real normal patch). Each speck: an ellipse of the layout's area,
    elongation and angle whose outline is perturbed by random 2nd-4th harmonics (<= BOUNDARY_NOISE each),
    anti-aliased, blurred by a Gaussian of psf_sigma px, scaled so its peak equals its contrast at the local
    background: contrast x exp(b (bg - reference)), bg = median of the background's grey opening (the
    detector's background estimate) under the speck, clipped to the fitted background range. The sum is ADDED
    to the background and clipped to [0, 1] only inside the mask: the specks' support dilated by
    mask_margin(psf_sigma) = 2 + ceil(3 sigma) px; every pixel outside it is the background's, bit for bit.
    centre: (row, col) of the cluster centre in the patch, default the patch centre (P // 2, P // 2), as
    sample_patches cuts. Specks whose centre falls outside the patch are dropped (n_dropped).
    record: klass, label, arrangement, centre, psf_sigma, margin_px, n_specks (drawn), n_dropped, mask_px and
    specks: one dict per drawn speck (row, col, area_px actually covered, contrast, background, elongation, angle).
    """
    background = np.asarray(background)
    if background.ndim != 2 or background.shape[0] != background.shape[1]:
        raise MammoError(f"background must be a square [P, P] patch, got shape {background.shape}")
    background = background.astype(np.float32, copy=False)
    if not np.all(np.isfinite(background)) or background.min() < 0 or background.max() > 1:
        raise MammoError("background must hold finite values in [0, 1]")
    sigma = float(psf_sigma.sigma if isinstance(psf_sigma, PointSpread) else psf_sigma)
    if not np.isfinite(sigma) or sigma < 0:
        raise MammoError(f"psf_sigma must be a finite number >= 0, got {psf_sigma!r}")
    rng = as_generator(rng_or_seed)
    size = background.shape[0]
    row0, col0 = (float(size // 2), float(size // 2)) if centre is None else (float(centre[0]), float(centre[1]))
    opening = background - speck_response(background, detector_radius)
    added = np.zeros_like(background)
    support = np.zeros(background.shape, bool)
    pad = int(np.ceil(4.0 * sigma)) + 2
    drawn, dropped = [], 0
    for speck in layout.specks:
        noise = np.stack([rng.uniform(0.0, BOUNDARY_NOISE, 3), rng.uniform(0.0, 2 * np.pi, 3)], axis=1)
        row, col = row0 + speck.dy, col0 + speck.dx
        if not (0 <= row <= size - 1 and 0 <= col <= size - 1):
            dropped += 1
            continue
        found = _coverage(speck, row, col, background.shape, noise, pad)
        if found is None or found[0].max() <= 0:
            dropped += 1
            continue
        cover, top, left = found
        window = (slice(top, top + cover.shape[0]), slice(left, left + cover.shape[1]))
        solid = cover > 0
        local = float(np.median(opening[window][solid]))
        contrast = contrast_at(layout, speck.contrast, local)
        profile = ndimage.gaussian_filter(cover, sigma, mode="constant", truncate=4.0) if sigma > 0 else cover
        added[window] += (contrast / float(profile.max())) * profile
        support[window] |= solid
        drawn.append({"row": row, "col": col, "area_px": float(cover.sum()), "contrast": contrast, "background": local,
                      "elongation": speck.elongation, "angle": speck.angle})  # fmt: skip
    margin = mask_margin(sigma)
    disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * margin + 1, 2 * margin + 1))
    mask = cv2.dilate(support.astype(np.uint8), disk).astype(bool)
    patch = background.copy()
    patch[mask] = np.clip(background[mask] + added[mask], 0.0, 1.0)
    record = {
        "klass": layout.klass, "label": int(layout.label), "arrangement": layout.arrangement,
        "centre": (row0, col0), "psf_sigma": sigma, "margin_px": margin, "n_specks": len(drawn),
        "n_dropped": dropped, "mask_px": int(mask.sum()), "specks": drawn,
    }  # fmt: skip
    return patch, mask, record


# ------------------------------------------------------------------------------------------------ backgrounds

PatchKey = tuple[str, int, int]  # (image_id, centre_row, centre_col), original array coordinates
MATCH_OVERSAMPLE = 4  # normal candidates per requested background, at least (before matching)


def patch_keys(patches: Patches) -> set[PatchKey]:
    """The (image_id, centre_row, centre_col) of every patch: what `exclude` and `used` hold."""
    where = zip(patches.image_id, patches.centre_row, patches.centre_col, strict=True)
    return {(str(i), int(r), int(c)) for i, r, c in where}


def _features(patches: Patches, catalog: Catalog) -> np.ndarray:
    """float [N, 3]: mean intensity, row fraction, distance from the chest wall (the matched task's features)."""
    return np.column_stack([intensity(patches)[:, 0], positions(patches, catalog)])


def matched_backgrounds(
    catalog: Catalog,
    positives: Patches,
    n: int,
    patch_size: int,
    seed: int,
    split: str | None = "train",
    exclude: Collection[PatchKey] = (),
    used: set[PatchKey] | None = None,
    *,
    bins: int = 3,
    normal_per_image: int | None = None,
) -> Patches:
    """n real normal patches [n, P, P, 1] whose intensity and position in the breast match `positives`.

    1. Candidates: sample_patches' normal patches of `split` (normal_per_image per image; default
       max(TASK_OVERSAMPLE, ceil(MATCH_OVERSAMPLE n / images))), the project's one acceptance rule.
    2. Matching: each positive is the target of n / N backgrounds (the remainder at random), in random order.
       A target takes the free candidate in its cell (as tasks.matched_task: quantile bins of the positives'
       mean intensity, row fraction and distance from the chest wall, bins**3 cells), else in the nearest
       cell (L1 over bin indices), and within it the nearest in those three features (each scaled by the
       positives' std): the matched task's cell frequencies are met, and inside a cell the match is closer.
    3. Never reused: a candidate sharing a pixel with a patch in `exclude` (same image, |d row| and
       |d col| < patch_size), or with a background already chosen, is skipped. `used`, if given, gets the
       keys of the returned patches (pass the same set as exclude and used to keep successive calls apart).
    Returned Patches: labels NORMAL; image_id, patient_id, centre_row, centre_col say where each came from
    (patch_keys gives the keys). MammoError if fewer than n candidates remain.
    """
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
        raise MammoError(f"n must be an integer >= 1, got {n!r}")
    pos_index = np.flatnonzero(positives.labels != NORMAL)
    if pos_index.size == 0:
        raise MammoError("matched_backgrounds needs at least one positive (calcification) patch")
    images = catalog.images if split is None else catalog.images[catalog.images["split"] == split]
    per_image = normal_per_image
    if per_image is None:
        per_image = max(TASK_OVERSAMPLE, int(np.ceil(MATCH_OVERSAMPLE * n / max(len(images), 1))))
    pool = sample_patches(
        catalog, patch_size=patch_size, per_cluster=0, normal_per_image=per_image, split=split, seed=seed
    )
    pool = subset(pool, np.flatnonzero(pool.labels == NORMAL))
    pos = subset(positives, pos_index)
    reference = _features(pos, catalog)
    features = _features(pool, catalog) if len(pool.labels) else np.zeros((0, 3))

    def cells(values: np.ndarray) -> np.ndarray:
        """int [N, 3]: the quantile bins (of the positives) of each feature."""
        return np.column_stack([quantile_cells(values[:, j], reference[:, j], bins) for j in range(3)]).astype(np.int64)

    bin_index, pos_bins = cells(features), cells(reference)
    ids = pool.image_id.astype(str)
    rows, cols = pool.centre_row.astype(np.int64), pool.centre_col.astype(np.int64)
    available = np.ones(len(ids), bool)

    def block(image_id: str, row: int, col: int) -> None:
        """Candidates sharing a pixel with a patch centred at (row, col) of image_id are no longer free."""
        available[(ids == image_id) & (np.abs(rows - row) < patch_size) & (np.abs(cols - col) < patch_size)] = False

    for image_id, row, col in exclude:
        block(str(image_id), int(row), int(col))
    if available.sum() < n:
        raise MammoError(
            f"{catalog.root}: only {int(available.sum())} of {len(ids)} candidate normal {patch_size}x{patch_size} "
            f"patches (split {split!r}) are free, {n} asked: ask for fewer, exclude fewer or raise normal_per_image"
        )
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0xB6]))
    copies = np.full(len(pos_bins), n // len(pos_bins))
    copies[rng.choice(len(pos_bins), n % len(pos_bins), replace=False)] += 1
    targets = rng.permutation(np.repeat(np.arange(len(pos_bins)), copies))  # each positive ~ n / N times
    scale = np.maximum(reference.std(axis=0), 1e-6)
    chosen: list[int] = []
    for t in targets:
        if not available.any():
            raise MammoError(
                f"{catalog.root}: ran out of free normal {patch_size}x{patch_size} patches ({len(chosen)} of {n} "
                "chosen; the candidates overlap): ask for fewer or raise normal_per_image"
            )
        free = np.flatnonzero(available)
        cell_gap = np.abs(bin_index[free] - pos_bins[t]).sum(axis=1)
        feature_gap = np.hypot.reduce((features[free] - reference[t]) / scale, axis=1)
        i = int(free[np.lexsort((feature_gap, cell_gap))[0]])
        chosen.append(i)
        block(ids[i], int(rows[i]), int(cols[i]))
    result = subset(pool, np.array(chosen)[rng.permutation(len(chosen))])
    if used is not None:
        used.update(patch_keys(result))
    return result
