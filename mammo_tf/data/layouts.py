"""Calcification cluster layouts: a small generative model fitted on the real specks of the training patients'
clusters (speck_extraction.py finds and measures them), and new layouts drawn from it (NumPy/pandas, no
TensorFlow). About 440 lines: the fitted parameters and the sampler that reads them stay side by side.

Why: a whole-patch GAN trained on ~25 MIAS clusters learned the tissue, not the specks. Insertion
keeps every background pixel real and synthesises only the lesion: a layout (where the specks are, how big,
how bright) drawn from this model is rendered into real normal tissue by render.py.

Model (`fit_layouts`), per class (benign, malignant):
  - count per cluster: the empirical counts, smoothed: a real cluster's count times exp(h z - h^2 / 2),
    z ~ N(0, 1) (the mean count is kept), h Silverman's bandwidth of the log counts (>= 0.1), rounded, >= 1.
    Empty clusters (the detector found nothing) are not counts of zero calcifications: left out (n_empty).
  - spread: RMS distance of a cluster's specks from their own centroid, log-normal over clusters (>= 2 specks).
  - arrangement: clusters with >= MIN_ARRANGED specks are "linear" when the principal-axis ratio of their
    speck positions is >= LINEAR_RATIO, else "scatter". linear_fraction = (n_linear + 2 x 0.2) / (n + 2)
    (a Beta prior worth two clusters at 0.2). Axis ratios: geometric mean per mode (defaults 1.5 / 4.0
    when a mode has no cluster). Generative: "scatter" is an anisotropic Gaussian (axis ratio rho, RMS R,
    uniform orientation); "linear" is a curved main path through the centre (length sqrt(12) x major sd,
    heading a random walk of PATH_CURL rad per step) with 0-2 side branches (0.3-0.6 of its length, 20-57
    degrees off), specks uniform along the paths with a Gaussian across-path scatter (the minor sd).
    Speck outlines never touch (gap >= MIN_GAP px), as the detector would otherwise see one speck.
  - area: log-normal (log area_px), clipped to the observed range.
  - contrast: log contrast = a_class + b x (background - mean background) + N(0, s_class^2), the slope b
    SHARED by both classes (how the film attenuates is a property of the imaging, not of the lesion; one
    class alone has few specks). log-linear, not linear, so a contrast is never negative. The detector sees a
    speck only when its contrast clears its cluster's threshold, and thresholds are higher in brighter,
    busier tissue: an ordinary least-squares slope is biased up, and came out positive on MIAS film (+0.85)
    where film physics says negative. The slope is therefore fitted as a TRUNCATED regression (maximum
    likelihood, scipy: each speck's likelihood is N(log c; mu, s^2) / P(log c > log threshold), started
    from OLS, a_class kept within 3 OLS residual sds below the OLS value and s_class within [MIN_LOG_SIGMA /
    3, 3 x the OLS one]: a strongly truncated class would otherwise run off). Its intercepts are not used:
    how many faint specks lie below the threshold is not identified by the detected ones (on MIAS the fit
    runs to its bound). Given the slope, a_class and s_class are the mean and sd of the observed residuals,
    which are clipped to their observed range. Checked through the detector on MIAS (training patients, 400
    rendered patches a seed, jittered like the real ones): mean specks per patch and mean speck contrast
    3.71 / 0.087 rendered against 3.68 / 0.091 real (benign), 6.79 / 0.093 against 6.16 / 0.084
    (malignant). A calibration by simulation of a contrast shift and a detection rate per class was tried
    and dropped: the seed-to-seed spread of those numbers (benign count 2.9 to 3.7 between two seeds) is as
    large as what it corrected, and it did not bring a second seed closer.
    A layout carries each speck's contrast at its class's reference background (the class's mean) and the
    slope; render.py scales it to the local background, never beyond the fitted background range.
  - elongation: the empirical values, jittered (1 + (e - 1) exp(0.2 z)); angle uniform (not fitted).
Not modelled (too few clusters): correlations between count, spread, size and contrast; where in the breast a
cluster sits; speck orientation relative to the cluster axis.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from mammo_tf.data.schema import BENIGN, CLASS_NAMES, MALIGNANT
from mammo_tf.data.speck_extraction import SPECK_COLUMNS
from mammo_tf.errors import MammoError

LAYOUT_VERSION = 1
CLASSES = (CLASS_NAMES[BENIGN], CLASS_NAMES[MALIGNANT])  # ("benign", "malignant")
MIN_SPECKS = 5  # per class, to fit anything
MIN_CLUSTERS = 2  # per class, clusters with at least one speck
MIN_ARRANGED = 4  # specks a cluster needs before its principal-axis ratio says anything
LINEAR_RATIO = 2.5
LINEAR_PRIOR, PRIOR_WEIGHT = 0.2, 2.0
DEFAULT_SCATTER_RATIO, DEFAULT_LINEAR_RATIO = 1.5, 4.0
MIN_LOG_SIGMA = 0.15  # floor of every fitted log-normal spread (few clusters)
RATIO_JITTER = 0.2  # log-sd of a sampled axis ratio around its mode's value
ELONGATION_JITTER = 0.2
PATH_STEPS, PATH_CURL = 16, 0.12  # linear mode: polyline steps per path, heading random walk (rad per step)
MIN_GAP = 2.0  # px between speck outlines
MAX_TRIES = 60  # position draws per speck before the cluster is spread by GROWTH
GROWTH = 1.1


# ----------------------------------------------------------------------------------------------- the model


@dataclass(frozen=True)
class ClassLayout:
    """Fitted layout parameters of one class (lengths in px, contrasts and backgrounds in full scale)."""

    n_clusters: int  # clusters that gave at least one speck
    n_specks: int
    n_empty: int  # clusters examined where the detector found nothing
    counts: tuple[int, ...]  # specks per cluster (the empirical count distribution)
    count_bandwidth: float  # log-count kernel width
    spread_log_mu: float  # log RMS radius of a cluster
    spread_log_sigma: float
    spread_range: tuple[float, float]
    n_arranged: int  # clusters with >= MIN_ARRANGED specks
    n_linear: int
    linear_fraction: float
    scatter_ratio: float
    linear_ratio: float
    area_log_mu: float
    area_log_sigma: float
    area_range: tuple[float, float]
    contrast_log_mu: float  # log contrast at reference_background
    contrast_log_sigma: float
    contrast_residual_range: tuple[float, float]
    reference_background: float
    elongations: tuple[float, ...]


@dataclass(frozen=True)
class LayoutModel:
    """Per-class layout parameters fitted on real clusters, and what they were fitted on.

    contrast_slope: b of log contrast = a + b x background (shared by the classes); background_range: the
    backgrounds the fit saw (render.py never extrapolates beyond them). JSON via to_dict / from_dict.
    """

    classes: dict[str, ClassLayout]
    contrast_slope: float
    background_range: tuple[float, float]
    patients: tuple[str, ...]  # sorted ids of the patients whose specks the fit saw
    detector: dict[str, Any] = field(default_factory=dict)  # radius, k, max_area, split, root
    notes: tuple[str, ...] = ()  # clusters examined that gave nothing (no coordinates, outside the breast, empty)
    version: int = LAYOUT_VERSION
    contrast_fit: str = "ols"  # "truncated": corrected for the detector's threshold (fits before it: "ols")

    @property
    def n_clusters(self) -> dict[str, int]:
        return {name: c.n_clusters for name, c in self.classes.items()}

    @property
    def n_specks(self) -> dict[str, int]:
        return {name: c.n_specks for name, c in self.classes.items()}

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict (lists for tuples, Python numbers for NumPy ones)."""
        return _plain(asdict(self))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LayoutModel:
        """The model saved by to_dict; MammoError for another version or a malformed dict."""
        version = data.get("version")
        if version != LAYOUT_VERSION:
            raise MammoError(f"layout model version {version!r} is not {LAYOUT_VERSION}: refit it")
        try:
            classes = {}
            for name, c in data["classes"].items():
                values = dict(c)
                for key in ("counts", "spread_range", "area_range", "contrast_residual_range", "elongations"):
                    values[key] = tuple(values[key])
                values["counts"] = tuple(int(v) for v in values["counts"])
                classes[name] = ClassLayout(**values)
            return cls(
                classes=classes,
                contrast_slope=float(data["contrast_slope"]),
                background_range=tuple(data["background_range"]),
                patients=tuple(data["patients"]),
                detector=dict(data.get("detector", {})),
                notes=tuple(data.get("notes", ())),
                version=int(version),
                contrast_fit=str(data.get("contrast_fit", "ols")),
            )
        except (KeyError, TypeError) as err:
            raise MammoError(f"not a layout model: {err}") from None


def _plain(value):
    """`value` as JSON reads it back: lists for tuples, string keys, Python numbers for NumPy scalars."""

    def number(v):
        if isinstance(v, np.generic):
            return v.item()
        raise TypeError(f"not JSON serialisable: {type(v).__name__}")

    return json.loads(json.dumps(value, default=number))


def _log_normal(values: np.ndarray) -> tuple[float, float]:
    logs = np.log(np.asarray(values, np.float64))
    sigma = float(np.std(logs, ddof=1)) if logs.size > 1 else 0.0
    return float(logs.mean()), max(sigma, MIN_LOG_SIGMA)


def _cluster_shape(dy: np.ndarray, dx: np.ndarray) -> tuple[float, float]:
    """(RMS radius about the centroid, principal-axis ratio) of a cluster's speck positions."""
    pos = np.stack([dy - dy.mean(), dx - dx.mean()])
    rms = float(np.sqrt(np.mean(np.sum(pos**2, axis=0))))
    values = np.linalg.eigvalsh(pos @ pos.T / pos.shape[1] + np.eye(2) * 0.25)  # 0.25 px^2: centroid jitter
    return rms, float(np.sqrt(values[1] / values[0]))


def _clusters_of(specks: pd.DataFrame) -> list[dict]:
    clusters = specks.attrs.get("clusters")
    if clusters is not None:
        return list(clusters)
    grouped = specks.groupby("finding", sort=True)
    return [
        {"finding": int(f), "image_id": g["image_id"].iloc[0], "patient_id": g["patient_id"].iloc[0],
         "klass": g["klass"].iloc[0], "n_specks": len(g), "skipped": ""}
        for f, g in grouped
    ]  # fmt: skip


def fit_layouts(specks: pd.DataFrame) -> LayoutModel:
    """Fit a LayoutModel on extract_specks' table (see the module docstring for every choice).

    MammoError if the table has no cluster at all, or a class has fewer than MIN_SPECKS specks or
    MIN_CLUSTERS clusters with specks.
    """
    root = specks.attrs.get("root", "the speck table")
    clusters = _clusters_of(specks)
    if not clusters:
        raise MammoError(f"no calcification findings in the training patients of {root}: nothing to fit")
    missing = [c for c in SPECK_COLUMNS if c not in specks.columns]
    if missing:
        raise MammoError(f"{root}: the speck table lacks columns {missing}")
    for name in CLASSES:
        part = specks[specks["klass"] == name]
        n_clusters = int(part["finding"].nunique())
        if len(part) < MIN_SPECKS or n_clusters < MIN_CLUSTERS:
            examined = sum(1 for c in clusters if c["klass"] == name)
            raise MammoError(
                f"{root}: {name} calcifications gave {len(part)} specks in {n_clusters} clusters ({examined} "
                f"examined); the layout fit needs at least {MIN_SPECKS} specks in {MIN_CLUSTERS} clusters per class"
            )
    contrast = _fit_contrast(specks)
    classes = {}
    for name in CLASSES:
        part = specks[specks["klass"] == name]
        is_class = (specks["klass"] == name).to_numpy()
        counts = part.groupby("finding").size().to_numpy()
        log_counts = np.log(counts)
        bandwidth = max(0.1, 1.06 * max(float(np.std(log_counts, ddof=1)) if counts.size > 1 else 0.0,
                                        MIN_LOG_SIGMA) * counts.size ** (-0.2))  # fmt: skip
        spreads_list, arranged = [], []
        for _, g in part.groupby("finding"):
            if len(g) >= 2:
                rms, ratio = _cluster_shape(g["dy"].to_numpy(np.float64), g["dx"].to_numpy(np.float64))
                spreads_list.append(rms)
                if len(g) >= MIN_ARRANGED:
                    arranged.append(ratio)
        spreads = np.array([r for r in spreads_list if r > 0])
        if spreads.size == 0:  # every cluster a single speck: the RMS offset from the annotated centres
            spreads = np.array([max(float(np.sqrt(np.mean(part["dy"] ** 2 + part["dx"] ** 2))), 1.0)])
        linear = [r for r in arranged if r >= LINEAR_RATIO]
        scatter = [r for r in arranged if r < LINEAR_RATIO]
        spread_mu, spread_sigma = _log_normal(spreads)
        area_mu, area_sigma = _log_normal(part["area_px"].to_numpy(np.float64))
        reference = float(contrast.background[is_class].mean())
        shifted = contrast.log_contrast[is_class] - contrast.slope * (contrast.background[is_class] - reference)
        log_mu = float(shifted.mean())
        residual = shifted - log_mu
        classes[name] = ClassLayout(
            n_clusters=int(counts.size),
            n_specks=int(len(part)),
            n_empty=sum(1 for c in clusters if c["klass"] == name and not c.get("skipped") and c["n_specks"] == 0),
            counts=tuple(int(c) for c in sorted(counts)),
            count_bandwidth=float(bandwidth),
            spread_log_mu=spread_mu,
            spread_log_sigma=spread_sigma,
            spread_range=(float(spreads.min() / 1.25), float(spreads.max() * 1.25)),
            n_arranged=len(arranged),
            n_linear=len(linear),
            linear_fraction=float((len(linear) + PRIOR_WEIGHT * LINEAR_PRIOR) / (len(arranged) + PRIOR_WEIGHT)),
            scatter_ratio=float(np.exp(np.mean(np.log(scatter)))) if scatter else DEFAULT_SCATTER_RATIO,
            linear_ratio=float(np.exp(np.mean(np.log(linear)))) if linear else DEFAULT_LINEAR_RATIO,
            area_log_mu=area_mu,
            area_log_sigma=area_sigma,
            area_range=(float(part["area_px"].min()), float(part["area_px"].max())),
            contrast_log_mu=log_mu,
            contrast_log_sigma=max(float(np.std(residual, ddof=1)) if residual.size > 1 else 0.0, MIN_LOG_SIGMA / 3),
            contrast_residual_range=(float(residual.min()), float(residual.max())),
            reference_background=reference,
            elongations=tuple(round(float(e), 4) for e in part["elongation"]),
        )
    patients = set(specks["patient_id"].astype(str))
    notes = tuple(
        f"{c['image_id']} ({c['klass']}, finding {c['finding']}): {c.get('skipped') or 'the detector found no speck'}"
        for c in clusters
        if c.get("skipped") or c["n_specks"] == 0
    )
    detector = {key: specks.attrs.get(key) for key in ("root", "split", "radius", "k", "max_area")}
    return LayoutModel(
        classes=classes,
        contrast_slope=contrast.slope,
        background_range=(float(contrast.background.min()), float(contrast.background.max())),
        patients=tuple(sorted(patients)),
        detector=_plain(detector),
        notes=notes,
        contrast_fit=contrast.method,
    )


@dataclass(frozen=True)
class _ContrastFit:
    """The shared slope of log contrast on background, and per speck its background and log contrast."""

    slope: float
    method: str  # "truncated", or "ols" when the table has no usable thresholds
    background: np.ndarray  # float [N]
    log_contrast: np.ndarray  # float [N]


def _fit_contrast(specks: pd.DataFrame) -> _ContrastFit:
    """The contrast slope of the module docstring: OLS, then the truncated-regression MLE from it."""
    from scipy import optimize, stats

    background = specks["background"].to_numpy(np.float64)
    log_contrast = np.log(np.maximum(specks["contrast"].to_numpy(np.float64), 1e-6))
    if np.var(background) <= 1e-6:
        return _ContrastFit(0.0, "ols", background, log_contrast)
    centre = float(background.mean())
    onehot = np.column_stack([(specks["klass"] == name).to_numpy(np.float64) for name in CLASSES])
    design = np.column_stack([onehot, background - centre])
    coef, *_ = np.linalg.lstsq(design, log_contrast, rcond=None)
    klass = onehot.argmax(axis=1)
    residual = log_contrast - design @ coef
    ols_sigma = np.array([
        max(float(np.std(residual[klass == i], ddof=1)) if np.sum(klass == i) > 1 else 0.0, MIN_LOG_SIGMA / 3)
        for i in range(len(CLASSES))
    ])  # fmt: skip
    threshold = specks["threshold"].to_numpy(np.float64) if "threshold" in specks else np.full(len(specks), np.nan)
    if not np.all(np.isfinite(threshold) & (threshold > 0)):
        return _ContrastFit(float(coef[2]), "ols", background, log_contrast)
    log_threshold = np.log(threshold)

    def negative_log_likelihood(theta: np.ndarray) -> float:
        mu = theta[:2][klass] + theta[2] * (background - centre)
        s = np.exp(theta[3:5])[klass]
        tail = stats.norm.logsf((log_threshold - mu) / s)
        return float(-np.sum(stats.norm.logpdf((log_contrast - mu) / s) - np.log(s) - tail))

    start = np.concatenate([coef, np.log(ols_sigma)])
    bounds = [(c - 3 * s, c) for c, s in zip(coef[:2], ols_sigma, strict=True)] + [(None, None)]
    bounds += [(np.log(MIN_LOG_SIGMA / 3), np.log(3 * s)) for s in ols_sigma]
    fitted = optimize.minimize(negative_log_likelihood, start, method="L-BFGS-B", bounds=bounds)
    if np.all(np.isfinite(fitted.x)) and fitted.fun <= negative_log_likelihood(start):
        return _ContrastFit(float(fitted.x[2]), "truncated", background, log_contrast)
    return _ContrastFit(float(coef[2]), "ols", background, log_contrast)


# ----------------------------------------------------------------------------------------------- sampling


@dataclass(frozen=True)
class LayoutSpeck:
    """One speck of a layout: offset from the cluster centre (px, prepared orientation), blob area (px),
    contrast (full scale, at the layout's reference_background), elongation (>= 1), angle (rad, major axis
    from +col towards +row)."""

    dy: float
    dx: float
    area_px: float
    contrast: float
    elongation: float
    angle: float

    @property
    def extent(self) -> float:
        """Semi-major axis (px) of the speck's ellipse."""
        return float(np.sqrt(self.area_px * self.elongation / np.pi))


@dataclass(frozen=True)
class Layout:
    """A drawn cluster: its class, specks and size (radius: max centre distance + semi-major axis, px)."""

    klass: str
    label: int
    arrangement: str  # "scatter" or "linear"
    specks: tuple[LayoutSpeck, ...]
    radius: float
    spread: float  # the RMS radius drawn (px)
    axis_ratio: float  # the principal-axis ratio drawn
    contrast_slope: float  # b: contrast x exp(b (background - reference_background))
    reference_background: float
    background_range: tuple[float, float]

    @property
    def n_specks(self) -> int:
        return len(self.specks)


def as_generator(rng_or_seed: np.random.Generator | int) -> np.random.Generator:
    """A Generator as is, or a new one from an integer seed (same seed, same draws)."""
    if isinstance(rng_or_seed, np.random.Generator):
        return rng_or_seed
    if isinstance(rng_or_seed, bool) or not isinstance(rng_or_seed, int | np.integer):
        raise MammoError(f"seed must be an integer or a numpy Generator, got {rng_or_seed!r}")
    return np.random.default_rng(int(rng_or_seed))


def class_name(klass: int | str) -> str:
    """'benign' or 'malignant' from BENIGN/MALIGNANT, a class name, or a MIAS severity B/M."""
    if isinstance(klass, str):
        name = {"B": "benign", "M": "malignant"}.get(klass, klass.lower())
    elif isinstance(klass, int | np.integer) and int(klass) in (BENIGN, MALIGNANT):
        name = CLASS_NAMES[int(klass)]
    else:
        name = None
    if name not in CLASSES:
        raise MammoError(f"no layout class {klass!r}: give benign/malignant (or {BENIGN}/{MALIGNANT}, B/M)")
    return name


def _paths(rng: np.random.Generator, major_sd: float) -> list[np.ndarray]:
    """Linear mode: a curved main path through (0, 0) and 0-2 side branches, each float [PATH_STEPS+1, 2] (dy, dx)."""
    length = np.sqrt(12.0) * major_sd
    heading0 = rng.uniform(0, np.pi)
    step = length / PATH_STEPS
    half = PATH_STEPS // 2
    halves = []
    for direction in (0.0, np.pi):
        turns = np.cumsum(rng.normal(0.0, PATH_CURL, half))
        heading = heading0 + direction + turns
        pts = np.cumsum(np.stack([np.sin(heading), np.cos(heading)], axis=1) * step, axis=0)
        halves.append(np.vstack([[0.0, 0.0], pts]))
    main = np.vstack([halves[1][::-1], halves[0][1:]])
    paths = [main]
    for _ in range(int(rng.integers(0, 3))):
        start = int(rng.integers(1, len(main) - 1))
        local = np.arctan2(*(main[start + 1] - main[start - 1]))
        heading = local + rng.choice([-1.0, 1.0]) * rng.uniform(0.35, 1.0)
        n = max(2, int(round(PATH_STEPS * rng.uniform(0.3, 0.6))))
        heading = heading + np.cumsum(rng.normal(0.0, PATH_CURL, n))
        pts = main[start] + np.cumsum(np.stack([np.sin(heading), np.cos(heading)], axis=1) * step, axis=0)
        paths.append(np.vstack([main[start], pts]))
    return paths


def _on_paths(rng: np.random.Generator, paths: list[np.ndarray], minor_sd: float) -> np.ndarray:
    """A point uniform along the paths (by length) plus Gaussian scatter across: float [2] (dy, dx)."""
    lengths = np.array([np.sum(np.hypot(*np.diff(p, axis=0).T)) for p in paths])
    path = paths[int(rng.choice(len(paths), p=lengths / lengths.sum()))]
    seg = np.hypot(*np.diff(path, axis=0).T)
    t = rng.random() * seg.sum()
    i = int(np.searchsorted(np.cumsum(seg), t, side="right").clip(0, len(seg) - 1))
    frac = (t - (np.cumsum(seg)[i] - seg[i])) / max(seg[i], 1e-9)
    point = path[i] + frac * (path[i + 1] - path[i])
    direction = (path[i + 1] - path[i]) / max(seg[i], 1e-9)
    normal = np.array([direction[1], -direction[0]])
    return point + normal * rng.normal(0.0, minor_sd)


def sample_layout(model: LayoutModel, klass: int | str, rng_or_seed: np.random.Generator | int) -> Layout:
    """Draw one cluster layout of `klass` from the model (module docstring); same seed -> identical layout."""
    rng = as_generator(rng_or_seed)
    name = class_name(klass)
    p = model.classes[name]
    base = p.counts[int(rng.integers(len(p.counts)))]
    h = p.count_bandwidth
    n = max(1, int(round(base * np.exp(h * rng.standard_normal() - h * h / 2))))  # mean kept: E exp(hz - h^2/2) = 1
    spread = float(np.clip(np.exp(rng.normal(p.spread_log_mu, p.spread_log_sigma)), *p.spread_range))
    linear = bool(rng.random() < p.linear_fraction)
    ratio = max(1.0, (p.linear_ratio if linear else p.scatter_ratio) * float(np.exp(RATIO_JITTER * rng.normal())))
    minor_sd = spread / np.sqrt(1.0 + ratio**2)
    major_sd = ratio * minor_sd
    orientation = rng.uniform(0, np.pi)
    paths = _paths(rng, major_sd) if linear else None
    low, high = np.log(p.area_range[0]), np.log(p.area_range[1])
    res_low, res_high = p.contrast_residual_range
    specks: list[LayoutSpeck] = []
    scale = 1.0
    for _ in range(n):
        area = float(np.exp(np.clip(rng.normal(p.area_log_mu, p.area_log_sigma), low, high)))
        residual = float(np.clip(rng.normal(0.0, p.contrast_log_sigma), res_low, res_high))
        contrast = float(np.exp(p.contrast_log_mu + residual))
        e = p.elongations[int(rng.integers(len(p.elongations)))]
        elongation = 1.0 + (e - 1.0) * float(np.exp(ELONGATION_JITTER * rng.normal()))
        angle = float(rng.uniform(0, np.pi))
        extent = float(np.sqrt(area * elongation / np.pi))
        for attempt in range(10 * MAX_TRIES):
            if attempt and attempt % MAX_TRIES == 0:
                scale *= GROWTH  # crowded: spread the cluster a little
            if linear:
                dy, dx = scale * _on_paths(rng, paths, minor_sd)
            else:
                u, v = rng.normal(0.0, major_sd), rng.normal(0.0, minor_sd)
                dy = scale * (u * np.sin(orientation) + v * np.cos(orientation))
                dx = scale * (u * np.cos(orientation) - v * np.sin(orientation))
            if all(np.hypot(dy - s.dy, dx - s.dx) >= extent + s.extent + MIN_GAP for s in specks):
                break
        specks.append(LayoutSpeck(float(dy), float(dx), area, contrast, float(elongation), angle))
    radius = max(np.hypot(s.dy, s.dx) + s.extent for s in specks)
    return Layout(
        klass=name,
        label=BENIGN if name == CLASSES[0] else MALIGNANT,
        arrangement="linear" if linear else "scatter",
        specks=tuple(specks),
        radius=float(radius),
        spread=spread,
        axis_ratio=float(ratio),
        contrast_slope=model.contrast_slope,
        reference_background=p.reference_background,
        background_range=tuple(model.background_range),
    )
