"""Samplers: SR training pairs and labelled patches, drawn from preprocessed images.

Plain NumPy (no TensorFlow): the tf.data pipelines in pipelines.py wrap these arrays.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np
import pandas as pd

from mammo_tf.data.catalog import CALCIFICATION, NORMAL_FINDING, Catalog
from mammo_tf.data.preprocess import Prepared, centres_in_mask, prepare, to_oriented
from mammo_tf.data.schema import BENIGN, MALIGNANT, NORMAL
from mammo_tf.errors import MammoError


@dataclass(frozen=True)
class SRPairs:
    """Super-resolution training pairs.

    lr: float32 [N, h, w, 1] in [0, 1], never rounded to 8 bits.
    hr: float32 [N, h*scale, w*scale, 1] in [0, 1].
    image_id, patient_id: str [N], where each pair came from (for leakage checks).
    scale: the integer downsampling factor.
    """

    lr: np.ndarray
    hr: np.ndarray
    image_id: np.ndarray
    patient_id: np.ndarray
    scale: int


@dataclass(frozen=True)
class Patches:
    """Labelled patches.

    images: float32 [N, P, P, 1] in [0, 1].
    labels: int32 [N] in {NORMAL, BENIGN, MALIGNANT}.
    image_id, patient_id: str [N].
    centre_row, centre_col: int [N] patch centre in the original image's array coordinates.
    """

    images: np.ndarray
    labels: np.ndarray
    image_id: np.ndarray
    patient_id: np.ndarray
    centre_row: np.ndarray
    centre_col: np.ndarray


# Acceptance rule shared by EVERY patch class: a class-dependent rule lets a classifier learn where a patch
# was taken instead of what it shows (requiring only negatives to lie in dense tissue inflated a MIAS CNN's AUC).
MIN_BREAST_FRACTION = 0.95  # of the patch inside the breast mask
SATURATION_LEVEL = 0.99  # of full scale
MAX_SATURATED_FRACTION = 0.01  # of the patch at or above SATURATION_LEVEL
EDGE_MARGIN = 8  # pixels between the patch and the image edge (centre >= patch_size/2 + 8)
MAX_REDRAWS = 20  # tries per patch (calcification: within its jitter) before it is dropped
MAX_NORMAL_TRIES = 200  # uniform draws per normal patch before it is dropped
SR_MIN_BREAST_FRACTION = 0.90  # of an SR crop inside the breast mask (or, for foreground crops, the foreground)
FOREGROUND_LEVEL = 0.08  # of full scale: the film foreground, labels and markers included (evaluate-sr's region)
LABELS = {"B": BENIGN, "M": MALIGNANT}


@dataclass
class PatchReport:
    """What sample_patches kept and dropped."""

    clusters: int = 0  # CALC findings with coordinates in the requested images
    clusters_outside_breast: list[str] = field(default_factory=list)  # image ids, centre outside the mask
    clusters_used: int = 0  # clusters that gave at least one patch
    calc_patches: int = 0
    calc_dropped: int = 0  # calcification patches that failed the acceptance rule MAX_REDRAWS times
    normal_patches: int = 0
    normal_dropped: int = 0
    images_without_coords: list[str] = field(default_factory=list)  # no normal patches taken from these


def _rng(seed: int, *keys: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(seed), *keys]))


def _select_images(catalog: Catalog, split: str | None) -> pd.DataFrame:
    images = catalog.images
    if split is not None:
        known = sorted(set(images["split"]))
        images = images[images["split"] == split]
        if images.empty:
            raise MammoError(f"{catalog.root}: no images in split '{split}' (splits present: {known})")
    if images.empty:
        raise MammoError(f"{catalog.root}: the catalog has no images")
    return images


def _check_int(name: str, value: int, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise MammoError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _check_nonnegative(name: str, value: float) -> float:
    if not np.isfinite(value) or value < 0:
        raise MammoError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


def degrade(
    hr: np.ndarray,
    scale: int,
    *,
    blur_sigma: float = 0.0,
    noise: float = 0.0,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Low-resolution float32 version of HR images in [0, 1]: [H, W], [H, W, 1] or [N, H, W, 1].

    1. optional Gaussian blur, sigma in HR pixels (reflected borders), before downsampling;
    2. box average over scale x scale blocks (exact block mean, computed in float64), never rounded to 8 bits;
    3. optional Poisson-Gaussian noise on the LR image x: x + sqrt(noise**2 * x + noise**2) * N(0, 1),
       i.e. Gaussian read noise of std `noise` plus a signal-dependent (Poisson, Gaussian-approximated)
       part whose std is also `noise` at full scale; then clipped to [0, 1].
    rng defaults to a generator seeded with 0, so the result is always reproducible.
    """
    scale = _check_int("scale", scale, 2)
    blur_sigma = _check_nonnegative("blur_sigma", blur_sigma)
    noise = _check_nonnegative("noise", noise)
    hr = np.asarray(hr, dtype=np.float32)
    shape = hr.shape
    if hr.ndim == 2:
        stack = hr[None]
    elif hr.ndim == 3 and shape[-1] == 1:
        stack = hr[None, ..., 0]
    elif hr.ndim == 4 and shape[-1] == 1:
        stack = hr[..., 0]
    else:
        raise MammoError(f"HR images must be [H, W], [H, W, 1] or [N, H, W, 1], got shape {shape}")
    count, height, width = stack.shape
    if height % scale or width % scale:
        raise MammoError(f"HR size {height}x{width} is not divisible by scale {scale}")
    if blur_sigma > 0:
        stack = np.stack([cv2.GaussianBlur(img, (0, 0), blur_sigma, borderType=cv2.BORDER_REFLECT) for img in stack])
    blocks = stack.astype(np.float64).reshape(count, height // scale, scale, width // scale, scale)
    low = blocks.mean(axis=(2, 4))
    if noise > 0:
        rng = rng if rng is not None else np.random.default_rng(0)
        std = np.sqrt(noise**2 * np.clip(low, 0.0, 1.0) + noise**2)
        low = low + std * rng.standard_normal(low.shape)
    low = np.clip(low, 0.0, 1.0).astype(np.float32)
    if hr.ndim == 2:
        return low[0]
    return low[0, ..., None] if hr.ndim == 3 else low[..., None]


def _window_sums(mask: np.ndarray, size: int) -> np.ndarray:
    """Mask pixel count of every size x size window, indexed by its top-left corner."""
    integral = cv2.integral(mask.astype(np.uint8))
    return integral[size:, size:] - integral[:-size, size:] - integral[size:, :-size] + integral[:-size, :-size]


def sample_sr_pairs(
    catalog: Catalog,
    n: int,
    *,
    hr_size: int = 96,
    scale: int = 2,
    split: str | None = "train",
    blur_sigma: float = 0.0,
    noise: float = 0.0,
    foreground_share: float = 0.0,
    seed: int = 0,
) -> SRPairs:
    """n (LR, HR) pairs: HR crops with >= 90% breast, images uniform, positions uniform among fitting ones.

    foreground_share: the expected share of crops drawn instead among those that the breast rule rejects but
    that are >= 90% film foreground (pixels > 0.08): the film's labels and markers and the breast edge, so a
    model also learns the sharp, high-contrast edges it meets on a whole film (a breast crop where an image
    has none). An image where no breast crop fits is dropped and its draws go to the others; MammoError if
    none fits. Crop positions depend only on `seed` and `foreground_share` (not on blur_sigma or noise), so
    HR is the same for any degradation.
    """
    n = _check_int("n", n, 1)
    scale = _check_int("scale", scale, 2)
    hr_size = _check_int("hr_size", hr_size, scale)
    if hr_size % scale:
        raise MammoError(f"hr_size {hr_size} is not divisible by scale {scale}")
    _check_nonnegative("blur_sigma", blur_sigma)
    _check_nonnegative("noise", noise)
    if not 0.0 <= foreground_share <= 1.0:
        raise MammoError(f"foreground_share must be in [0, 1], got {foreground_share}")
    images = _select_images(catalog, split)
    crop_seed, noise_seed = np.random.SeedSequence(int(seed)).spawn(2)
    rng = np.random.default_rng(crop_seed)
    needed = int(np.ceil(SR_MIN_BREAST_FRACTION * hr_size * hr_size))
    candidates = list(range(len(images)))
    crops: list[np.ndarray] = []
    sources: list[int] = []
    pending = n
    while pending:
        if not candidates:
            raise MammoError(
                f"{catalog.root}: no image{'' if split is None else f' in split {split!r}'} has room for a "
                f"{hr_size}x{hr_size} crop with {SR_MIN_BREAST_FRACTION:.0%} breast"
            )
        picks = rng.choice(np.array(candidates), size=pending)
        pending = 0
        for index, count in zip(*np.unique(picks, return_counts=True), strict=True):
            prepared = prepare(images["path"].iloc[index])
            valid = np.flatnonzero(_window_sums(prepared.mask, hr_size) >= needed)
            if valid.size == 0:
                candidates.remove(int(index))
                pending += int(count)
                continue
            span = prepared.mask.shape[1] - hr_size + 1
            corners = valid[rng.integers(valid.size, size=int(count))]
            if foreground_share > 0:
                fits = _window_sums(prepared.pixels > FOREGROUND_LEVEL, hr_size) >= needed
                foreground = np.setdiff1d(np.flatnonzero(fits), valid, assume_unique=True)
                use = rng.random(int(count)) < foreground_share
                if foreground.size and use.any():
                    corners[use] = foreground[rng.integers(foreground.size, size=int(use.sum()))]
            for corner in corners:
                top, left = divmod(int(corner), span)
                # a copy: a view would keep the whole prepared image alive until the pairs are stacked
                crops.append(prepared.pixels[top : top + hr_size, left : left + hr_size].copy())
                sources.append(int(index))
    order = rng.permutation(n)
    hr = np.stack(crops)[order][..., None].astype(np.float32)
    lr = degrade(hr, scale, blur_sigma=blur_sigma, noise=noise, rng=np.random.default_rng(noise_seed))
    picked = images.iloc[np.array(sources)[order]]
    return SRPairs(
        lr=lr,
        hr=hr,
        image_id=picked["image_id"].to_numpy(dtype=str),
        patient_id=picked["patient_id"].to_numpy(dtype=str),
        scale=scale,
    )


def accept_patch(prepared: Prepared, row: int, col: int, patch_size: int) -> bool:
    """The one acceptance rule, in prepared coordinates: edge margin, >= 95% breast, <= 1% saturated."""
    height, width = prepared.mask.shape
    top, left = row - patch_size // 2, col - patch_size // 2
    if top < EDGE_MARGIN or left < EDGE_MARGIN:
        return False
    if top + patch_size > height - EDGE_MARGIN or left + patch_size > width - EDGE_MARGIN:
        return False
    if prepared.mask[top : top + patch_size, left : left + patch_size].mean() < MIN_BREAST_FRACTION:
        return False
    window = prepared.pixels[top : top + patch_size, left : left + patch_size]
    return (window >= SATURATION_LEVEL).mean() <= MAX_SATURATED_FRACTION


def _cut(prepared: Prepared, row: int, col: int, patch_size: int) -> np.ndarray:
    top, left = row - patch_size // 2, col - patch_size // 2
    return prepared.pixels[top : top + patch_size, left : left + patch_size]


def disc_offset(rng: np.random.Generator, radius: int) -> tuple[int, int]:
    """Integer offset uniform over the disc of `radius` pixels."""
    while True:
        dy, dx = (int(v) for v in rng.integers(-radius, radius + 1, size=2))
        if dy * dy + dx * dx <= radius * radius:
            return dy, dx


def _calc_patches(prepared, cluster, per_cluster, jitter, patch_size, rng, report) -> list[tuple[int, int]]:
    """Oriented centres of one cluster's accepted patches (each redrawn within its jitter, then dropped)."""
    width = prepared.mask.shape[1]
    row, col = to_oriented(int(cluster["row"]), int(cluster["col"]), width, prepared.flipped)
    radius = cluster["radius"]
    reach = min(jitter, int(radius)) if pd.notna(radius) else jitter
    centres = []
    for _ in range(per_cluster):
        for _ in range(MAX_REDRAWS):
            dy, dx = disc_offset(rng, reach)
            if accept_patch(prepared, row + dy, col + dx, patch_size):
                centres.append((row + dy, col + dx))
                break
        else:
            report.calc_dropped += 1
    return centres


def _normal_patches(prepared, findings, count, patch_size, rng, report) -> list[tuple[int, int]]:
    """Oriented centres uniform among accepted positions farther than radius + patch_size/2 from every finding."""
    height, width = prepared.mask.shape
    located = findings[findings["has_coords"]]
    f_rows, f_cols = to_oriented(
        located["row"].to_numpy(np.int64), located["col"].to_numpy(np.int64), width, prepared.flipped
    )
    keep_out = located["radius"].to_numpy(dtype=np.float64, na_value=0.0) + patch_size / 2
    low = patch_size // 2 + EDGE_MARGIN
    centres = []
    for _ in range(count):
        for _ in range(MAX_NORMAL_TRIES):
            row = int(rng.integers(low, max(low + 1, height - low + 1)))
            col = int(rng.integers(low, max(low + 1, width - low + 1)))
            if np.any(np.hypot(f_rows - row, f_cols - col) <= keep_out):
                continue
            if accept_patch(prepared, row, col, patch_size):
                centres.append((row, col))
                break
        else:
            report.normal_dropped += 1
    return centres


def sample_patches(
    catalog: Catalog,
    *,
    patch_size: int = 64,
    per_cluster: int = 8,
    jitter: int = 16,
    normal_per_image: int = 4,
    split: str | None = None,
    seed: int = 0,
    report: PatchReport | None = None,
) -> Patches:
    """Calcification-cluster and normal-tissue patches under one acceptance rule (see accept_patch).

    CALC findings with a centre inside the breast give `per_cluster` patches each, centres jittered
    uniformly within min(jitter, radius) pixels, labelled BENIGN/MALIGNANT by severity. Every image of
    the split gives `normal_per_image` NORMAL patches farther than radius + patch_size/2 from every
    finding, except images with findings lacking coordinates (calcifications could be anywhere).
    Patches come from the prepared (chest wall left) image; centres are in original array coordinates.
    Pass a PatchReport as `report` to learn what was kept and dropped, and why.
    """
    patch_size = _check_int("patch_size", patch_size, 8)
    per_cluster = _check_int("per_cluster", per_cluster, 0)
    jitter = _check_int("jitter", jitter, 0)
    normal_per_image = _check_int("normal_per_image", normal_per_image, 0)
    images = _select_images(catalog, split)
    report = report if report is not None else PatchReport()
    out: dict[str, list] = {k: [] for k in ("images", "labels", "image_id", "patient_id", "row", "col")}
    by_image = dict(tuple(catalog.findings.groupby("image_id", sort=False)))
    empty = catalog.findings.iloc[:0]
    for position, image in zip(images.index, images.itertuples(index=False), strict=True):
        findings = by_image.get(image.image_id, empty)
        calcs = findings[(findings["abnormality"] == CALCIFICATION) & findings["has_coords"]]
        calcs = calcs[calcs["severity"].isin(list(LABELS))]
        lacks_coords = ((findings["abnormality"] != NORMAL_FINDING) & ~findings["has_coords"]).any()
        if calcs.empty and (lacks_coords or normal_per_image == 0):
            if lacks_coords:
                report.images_without_coords.append(image.image_id)
            continue
        prepared = prepare(image.path)
        rng = _rng(seed, int(position))
        taken: list[tuple[int, int, int]] = []
        report.clusters += len(calcs)
        inside = centres_in_mask(prepared, calcs["row"].to_numpy(np.int64), calcs["col"].to_numpy(np.int64))
        report.clusters_outside_breast += [image.image_id] * int((~inside).sum())
        for (_, cluster), ok in zip(calcs.iterrows(), inside, strict=True):
            if not ok:
                continue
            centres = _calc_patches(prepared, cluster, per_cluster, jitter, patch_size, rng, report)
            report.clusters_used += bool(centres)
            report.calc_patches += len(centres)
            taken += [(r, c, LABELS[cluster["severity"]]) for r, c in centres]
        if lacks_coords:
            report.images_without_coords.append(image.image_id)
        else:
            centres = _normal_patches(prepared, findings, normal_per_image, patch_size, rng, report)
            report.normal_patches += len(centres)
            taken += [(r, c, NORMAL) for r, c in centres]
        width = prepared.mask.shape[1]
        for row, col, label in taken:
            out["images"].append(_cut(prepared, row, col, patch_size).copy())  # not a view: frees the image
            out["labels"].append(label)
            out["image_id"].append(image.image_id)
            out["patient_id"].append(image.patient_id)
            original = to_oriented(row, col, width, prepared.flipped)
            out["row"].append(original[0])
            out["col"].append(original[1])
    shape = (len(out["images"]), patch_size, patch_size, 1)
    return Patches(
        images=np.stack(out["images"]).reshape(shape).astype(np.float32) if out["images"] else np.zeros(shape, "f4"),
        labels=np.array(out["labels"], dtype=np.int32),
        image_id=np.array(out["image_id"], dtype=str),
        patient_id=np.array(out["patient_id"], dtype=str),
        centre_row=np.array(out["row"], dtype=np.int64),
        centre_col=np.array(out["col"], dtype=np.int64),
    )
