"""Calcification insertion (issue 26): cluster layouts fitted on real specks (layouts.py), rendered into real
normal tissue with a fitted PSF, on backgrounds matched to the real positives (render.py).

Most tests use the cached phantom (load_catalog(None)): its train split (patients p003-p008) holds 2 benign and
7 malignant clusters, and phantom_truth.csv lists every true speck.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from dataclasses import replace
from functools import cache
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from mammo_tf.data.catalog import load_catalog
from mammo_tf.data.layouts import LayoutModel, fit_layouts, sample_layout
from mammo_tf.data.phantom import TRUTH_NAME
from mammo_tf.data.render import (
    _features,
    contrast_at,
    estimate_psf,
    mask_margin,
    matched_backgrounds,
    patch_keys,
    render_cluster,
)
from mammo_tf.data.samplers import Patches, sample_patches
from mammo_tf.data.schema import BENIGN, MALIGNANT, NORMAL, Catalog
from mammo_tf.data.speck_extraction import extract_specks
from mammo_tf.data.specks import detect_specks, match_specks, robust_threshold, speck_response
from mammo_tf.data.tasks import subset
from mammo_tf.errors import MammoError
from mammo_tf.io.images import write_image

REPO = Path(__file__).resolve().parents[1]
FILES = [REPO / "mammo_tf" / "data" / f for f in ("speck_extraction.py", "layouts.py", "render.py")]
P = 96  # patch size of the rendering tests: every phantom layout fits (radius < 48 px)


@cache
def phantom() -> Catalog:
    return load_catalog(None)


@cache
def specks() -> pd.DataFrame:
    return extract_specks(phantom(), "train")


@cache
def model() -> LayoutModel:
    return fit_layouts(specks())


@cache
def normal_patches() -> Patches:
    patches = sample_patches(phantom(), patch_size=P, per_cluster=0, normal_per_image=2, split="train", seed=3)
    assert len(patches.labels) >= 10
    return patches


def split_patients(catalog: Catalog, split: str) -> set[str]:
    return set(catalog.images.loc[catalog.images["split"] == split, "patient_id"])


# ------------------------------------------------------------------------------------------------ layering


def test_no_tensorflow_in_the_insertion_modules() -> None:
    for path in FILES:
        tree = ast.parse(path.read_text("utf-8"))
        roots = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        roots |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        assert not roots & {"tensorflow", "keras"}, (path.name, roots)
    code = "import sys, mammo_tf.data.layouts, mammo_tf.data.render; print('tensorflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == "False"


# ------------------------------------------------------------------------------------------------ the fit


def test_the_fit_sees_exactly_the_training_patients() -> None:
    catalog, table, fitted = phantom(), specks(), model()
    train = split_patients(catalog, "train")
    held_out = split_patients(catalog, "val") | split_patients(catalog, "test")
    calc_images = set(catalog.findings.loc[catalog.findings["abnormality"] == "CALC", "image_id"])
    images = catalog.images
    expected = set(images.loc[(images["split"] == "train") & images["image_id"].isin(calc_images), "patient_id"])
    assert expected and list(fitted.patients) == sorted(expected) == sorted(set(table["patient_id"]))
    assert set(fitted.patients) <= train and not set(fitted.patients) & held_out
    assert set(table["image_id"]) <= set(images.loc[images["split"] == "train", "image_id"])
    assert fitted.n_clusters == {"benign": 2, "malignant": 7}  # the phantom's train split, every cluster found
    assert fitted.n_specks == {k: int((table["klass"] == k).sum()) for k in ("benign", "malignant")}
    assert fitted.detector["split"] == "train" and fitted.notes == ()


def test_fit_and_sampling_are_deterministic_by_seed() -> None:
    fitted = model()
    assert fit_layouts(extract_specks(phantom(), "train")) == fitted  # measuring and fitting draw nothing
    for klass in (BENIGN, MALIGNANT, "benign", "M"):
        first, again = sample_layout(fitted, klass, 11), sample_layout(fitted, klass, 11)
        assert first == again
        assert sample_layout(fitted, klass, 12) != first
        assert sample_layout(fitted, klass, np.random.default_rng(11)) == first  # a Generator from the seed
    with pytest.raises(MammoError, match="no layout class"):
        sample_layout(fitted, NORMAL, 0)


def test_model_json_round_trip() -> None:
    fitted = model()
    text = json.dumps(fitted.to_dict())
    assert LayoutModel.from_dict(json.loads(text)) == fitted
    stale = json.loads(text) | {"version": fitted.version + 1}
    with pytest.raises(MammoError, match="version"):
        LayoutModel.from_dict(stale)


def test_extracted_specks_agree_with_phantom_truth() -> None:
    """Every split's clusters against phantom_truth.csv: recall and precision >= 90% within 2.5 px (measured:
    120/125 true specks found, 119 of 120 detections true), each cluster's count within 2 of the truth."""
    catalog = phantom()
    table = extract_specks(catalog, None)
    truth = pd.read_csv(catalog.root / TRUTH_NAME)
    calcs = catalog.findings[catalog.findings["abnormality"] == "CALC"]
    assert len(calcs) == 12
    found = true = correct = detected = 0
    for finding in calcs.itertuples():
        inside = truth[truth["image_id"] == finding.image_id]
        inside = inside[np.hypot(inside["row"] - finding.row, inside["col"] - finding.col) <= finding.radius]
        ours = table[table["finding"] == finding.Index]
        hit = match_specks(ours, inside["row"].to_numpy(), inside["col"].to_numpy(), 2.5)
        back = match_specks(inside, ours["row"].to_numpy(), ours["col"].to_numpy(), 2.5)
        assert abs(len(ours) - len(inside)) <= 2, (finding.image_id, len(ours), len(inside))
        found, true = found + hit.sum(), true + len(inside)
        correct, detected = correct + back.sum(), detected + len(ours)
    assert found >= 0.9 * true and correct >= 0.9 * detected, (found, true, correct, detected)
    assert table["area_px"].min() >= 1 and (table["elongation"] >= 1).all()
    assert table["angle"].between(0, np.pi).all() and table["background"].between(0, 1).all()


def test_malignant_layouts_have_more_smaller_specks_as_the_phantom_does() -> None:
    """Asserted because the phantom's truth shows it (train clusters: benign 2-5 specks of radius 2-4 px,
    malignant 8-20 of 0.7-1.5 px); on mini-MIAS the fit gives more malignant specks but not smaller ones."""
    catalog = phantom()
    truth = pd.read_csv(catalog.root / TRUTH_NAME)
    train = set(catalog.images.loc[catalog.images["split"] == "train", "image_id"])
    truth = truth[truth["image_id"].isin(train)]
    per_cluster = truth.groupby(["image_id", "cluster", "severity"]).size().groupby("severity").mean()
    radius = truth.groupby("severity")["radius_px"].mean()
    assert per_cluster["M"] > per_cluster["B"] and radius["M"] < radius["B"]  # what the data says
    fitted = model()
    benign, malignant = fitted.classes["benign"], fitted.classes["malignant"]
    assert np.mean(malignant.counts) > np.mean(benign.counts) and malignant.area_log_mu < benign.area_log_mu
    drawn = {k: [sample_layout(fitted, k, seed) for seed in range(200)] for k in ("benign", "malignant")}
    count = {k: np.mean([layout.n_specks for layout in v]) for k, v in drawn.items()}
    area = {k: np.median([s.area_px for layout in v for s in layout.specks]) for k, v in drawn.items()}
    assert count["malignant"] > 2 * count["benign"] and area["malignant"] < area["benign"] / 2


def test_contrast_fit_follows_the_phantom_film() -> None:
    """The phantom stamps contrast x (1 - background)^0.8: brighter tissue, fainter specks. The shared slope of
    log contrast on background must be negative (about -0.8 / (1 - 0.55) = -1.8 mid-range)."""
    fitted = model()
    assert -3.0 < fitted.contrast_slope < -0.5
    low, high = fitted.background_range
    assert 0 <= low < high <= 1


def test_speck_mask_covers_the_specks_dilated_and_leaves_out_ridges() -> None:
    """What the refiner's discriminator looks at in a real patch: the detector's specks, dilated like a
    rendered mask; a component larger than max_area (a ridge) is not a speck."""
    from mammo_tf.data.specks import speck_mask

    rng = np.random.default_rng(0)
    image = (0.4 + 0.005 * rng.standard_normal((64, 64))).astype(np.float32)
    image[20:22, 20:22] += 0.2  # a speck
    image[50, 5:60] += 0.2  # a 55-px ridge
    mask = speck_mask(image, 3, max_area=20)
    assert mask[21, 21] and mask[21, 24] and mask[24, 21] and not mask[21, 26]
    assert not mask[50, 30] and not mask[5, 50]
    assert speck_mask(image, 3)[50, 30]  # without max_area the ridge counts


def test_the_contrast_slope_survives_the_detectors_threshold() -> None:
    """Specks whose log contrast falls with the background (slope -1), seen only above a threshold that rises
    with it (busier tissue): least squares on what is seen gets a positive slope (as on MIAS film); the
    truncated fit gets the sign and roughly the size."""
    rng = np.random.default_rng(0)
    table = specks().iloc[[0]].copy()
    n = 3000
    background = rng.uniform(0.3, 0.8, n)
    log_contrast = -2.5 - 1.0 * (background - 0.55) + rng.normal(0.0, 0.5, n)
    threshold = np.exp(-2.9 + 3.0 * (background - 0.55))
    seen = np.exp(log_contrast) > threshold
    rows = table.loc[table.index.repeat(int(seen.sum()))].reset_index(drop=True)
    rows["klass"] = np.where(np.arange(len(rows)) % 2, "benign", "malignant")
    rows["finding"] = np.arange(len(rows)) // 4
    rows["background"], rows["threshold"] = background[seen], threshold[seen]
    rows["contrast"] = np.exp(log_contrast[seen])
    ols = np.polyfit(rows["background"], np.log(rows["contrast"]), 1)[0]
    fitted = fit_layouts(rows)
    assert ols > 0 and fitted.contrast_fit == "truncated"
    assert -1.5 < fitted.contrast_slope < -0.5
    assert model().contrast_fit == "truncated"  # the phantom's table has its thresholds


# ------------------------------------------------------------------------------------------------ rendering


def rendered(klass: str, seed: int):
    fitted, patches = model(), normal_patches()
    layout = sample_layout(fitted, klass, seed)
    background = patches.images[seed % len(patches.labels), ..., 0]
    psf = estimate_psf(phantom(), specks())
    return layout, background, psf, *render_cluster(background, layout, psf, seed)


def test_rendering_changes_nothing_outside_the_mask() -> None:
    for klass in ("benign", "malignant"):
        for seed in range(6):
            layout, background, psf, patch, mask, record = rendered(klass, seed)
            assert patch.dtype == np.float32 and patch.shape == background.shape == mask.shape
            assert np.array_equal(patch[~mask], background[~mask])  # bit for bit
            assert (patch[mask] >= background[mask]).all() and patch.min() >= 0 and patch.max() <= 1
            assert record["n_specks"] + record["n_dropped"] == layout.n_specks and record["n_dropped"] == 0
            for speck in record["specks"]:
                r, c = int(round(speck["row"])), int(round(speck["col"]))
                assert mask[r, c] and patch[r, c] > background[r, c]
            # the mask is the specks' support dilated by 2 + ceil(3 sigma): no wider than that around the specks
            margin = record["margin_px"]
            assert margin == mask_margin(psf.sigma) == 2 + int(np.ceil(3 * psf.sigma))
            rows, cols = np.nonzero(mask)
            reach = np.full(rows.shape, np.inf)
            for speck, drawn in zip(layout.specks, record["specks"], strict=True):
                gap = np.hypot(rows - drawn["row"], cols - drawn["col"]) - 1.4 * speck.extent  # outline noise < 36%
                reach = np.minimum(reach, gap)
            assert reach.max() <= margin + 1.5
            assert np.array_equal(render_cluster(background, layout, psf, seed)[0], patch)  # deterministic


def test_the_detector_finds_the_rendered_specks() -> None:
    """Threshold: the background patch's own robust threshold (k = 6). Per layout the count is within
    max(1, 20%) of the specks drawn, and over all layouts within 10% (measured on the phantom: 0-3 off per
    malignant cluster, specks that touch after blurring merge; benign exact but for one faint speck)."""
    drawn = found = 0
    for klass in ("benign", "malignant"):
        for seed in range(10):
            layout, background, psf, patch, mask, record = rendered(klass, seed)
            threshold = robust_threshold(speck_response(background), None, 6.0)
            n = len(detect_specks(patch, mask, threshold=threshold))
            assert abs(n - record["n_specks"]) <= max(1, int(0.2 * record["n_specks"])), (klass, seed, n, record)
            drawn, found = drawn + record["n_specks"], found + n
    assert abs(found - drawn) <= 0.1 * drawn


def test_contrast_scales_with_the_local_background_as_fitted() -> None:
    """On flat backgrounds every speck sits on the same local background, so the whole added image scales
    by exp(b x difference) between two levels; the recorded contrasts are the fitted model's."""
    fitted = model()
    low, high = fitted.background_range
    levels = (low + 0.25 * (high - low), low + 0.75 * (high - low))
    layout = sample_layout(fitted, "malignant", 5)
    added = []
    for level in levels:
        flat = np.full((P, P), level, np.float32)
        patch, mask, record = render_cluster(flat, layout, 0.8, 7)
        assert patch.max() < 1.0  # nothing clipped
        for speck, drawn in zip(layout.specks, record["specks"], strict=True):
            assert drawn["background"] == pytest.approx(level, abs=1e-6)
            assert drawn["contrast"] == pytest.approx(contrast_at(layout, speck.contrast, level), rel=1e-6)
        added.append(patch.astype(np.float64) - level)
    factor = np.exp(fitted.contrast_slope * (levels[1] - levels[0]))
    assert not np.isclose(factor, 1.0, atol=0.05)
    assert np.allclose(added[1], factor * added[0], rtol=1e-3, atol=2e-6)
    assert contrast_at(layout, 0.2, 2.0) == contrast_at(layout, 0.2, high)  # never extrapolated


def test_render_rejects_bad_input() -> None:
    layout = sample_layout(model(), "benign", 0)
    with pytest.raises(MammoError, match="square"):
        render_cluster(np.zeros((P, P, 1), np.float32), layout, 1.0, 0)
    with pytest.raises(MammoError, match=r"\[0, 1\]"):
        render_cluster(np.full((P, P), 2.0, np.float32), layout, 1.0, 0)
    with pytest.raises(MammoError, match="psf_sigma"):
        render_cluster(np.zeros((P, P), np.float32), layout, -1.0, 0)


# ------------------------------------------------------------------------------------------------ the PSF


def blurred_film(sigma: float, size: int = 384) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """16-bit-ready film: a bright half-disc breast from the left edge, faint grain, 25 isolated point specks
    (a 0.3 px disc integrated over each pixel) blurred by a Gaussian of `sigma` px around (192, 120)."""
    rng = np.random.default_rng(0)
    rows, cols = np.mgrid[0:size, 0:size]
    pixels = np.full((size, size), 0.02, np.float32)
    breast = (rows - size / 2) ** 2 + cols**2 <= (0.75 * size) ** 2
    pixels[breast] = 0.5
    points = np.zeros((size * 8, size * 8), np.float32)
    centres = []
    for i in range(5):
        for j in range(5):
            r, c = 192 + (i - 2) * 12 + rng.uniform(-0.5, 0.5), 120 + (j - 2) * 12 + rng.uniform(-0.5, 0.5)
            cv2.circle(points, (int(c * 8 + 4), int(r * 8 + 4)), 2, 1.0, -1)
            centres.append((int(round(r)), int(round(c))))
    specks = points.reshape(size, 8, size, 8).mean(axis=(1, 3))
    specks = cv2.GaussianBlur(specks, (0, 0), sigma)
    pixels += 0.25 * specks / specks.max() + rng.normal(0, 0.001, pixels.shape).astype(np.float32)
    return np.clip(pixels, 0, 1), centres


def one_film_catalog(root: Path, pixels: np.ndarray, findings: list[dict]) -> Catalog:
    path = root / "f1.pgm"
    write_image(path, pixels, 16)
    images = pd.DataFrame([{"image_id": "f1", "patient_id": "q1", "path": str(path), "laterality": "L", "view": "MLO",
                            "tissue": "F", "height": pixels.shape[0], "width": pixels.shape[1], "bit_depth": 16,
                            "split": "train"}])  # fmt: skip
    rows = [{"image_id": "f1", "x": f["col"], "y": pixels.shape[0] - 1 - f["row"], "has_coords": True,
             "source_line": i + 1, **f} for i, f in enumerate(findings)]  # fmt: skip
    return Catalog(images, pd.DataFrame(rows), "test", root)


def test_psf_estimate_recovers_a_known_blur(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAMMO_CACHE", str(tmp_path / "cache"))
    for sigma in (0.9, 1.5):
        folder = tmp_path / f"s{sigma}"
        folder.mkdir()
        pixels, centres = blurred_film(sigma)
        catalog = one_film_catalog(
            folder, pixels, [{"abnormality": "CALC", "severity": "M", "row": 192, "col": 120, "radius": 34}]
        )
        table = extract_specks(catalog)
        assert len(table) == 25
        psf = estimate_psf(catalog, table)
        assert psf.n_fitted >= 12 and psf.n_fitted == psf.n_candidates and not psf.clamped
        assert psf.sigma == pytest.approx(sigma, abs=0.15), psf


def test_psf_on_the_phantom_is_in_range() -> None:
    """The phantom has no blur: the estimate is its smallest specks' own size (radius 0.7-1.5 px)."""
    psf = estimate_psf(phantom(), specks())
    assert psf.n_fitted >= 10 and 0.3 <= psf.sigma <= 1.0 and psf.sigma <= psf.median_sigma


# ------------------------------------------------------------------------------------------------ backgrounds


def test_matched_backgrounds_match_the_positives_and_honour_exclude() -> None:
    catalog, size = phantom(), 64
    everything = sample_patches(catalog, patch_size=size, per_cluster=8, normal_per_image=4, split="train", seed=0)
    positives = subset(everything, np.flatnonzero(everything.labels != NORMAL))
    negatives = subset(everything, np.flatnonzero(everything.labels == NORMAL))
    n = len(positives.labels)
    used: set = set()
    chosen = matched_backgrounds(catalog, positives, n, size, seed=5, exclude=patch_keys(negatives), used=used)
    assert len(chosen.labels) == n and (chosen.labels == NORMAL).all() and chosen.images.shape == (n, size, size, 1)
    assert used == patch_keys(chosen) and len(used) == n
    assert set(chosen.patient_id) <= split_patients(catalog, "train")

    def overlaps(a: Patches, b: Patches, same: bool = False) -> int:
        count = 0
        for i, (image, row, col) in enumerate(zip(a.image_id, a.centre_row, a.centre_col, strict=True)):
            for j, (other, r, c) in enumerate(zip(b.image_id, b.centre_row, b.centre_col, strict=True)):
                if (not same or i != j) and image == other and abs(row - r) < size and abs(col - c) < size:
                    count += 1
        return count

    assert overlaps(chosen, negatives) == 0 and overlaps(chosen, chosen, same=True) == 0  # no pixel shared
    again = matched_backgrounds(catalog, positives, 16, size, seed=6, exclude=used, used=used)
    assert overlaps(again, chosen) == 0 and len(used) == n + 16
    # closer to the positives than random normal patches: KS of mean intensity and, averaged, of all three
    # features (intensity, row fraction, distance from the chest wall); measured 0.12 vs 0.27 on intensity
    pool = sample_patches(catalog, patch_size=size, per_cluster=0, normal_per_image=8, split="train", seed=7)
    random = subset(pool, np.random.default_rng(0).choice(len(pool.labels), n, replace=False))
    target, ours, theirs = _features(positives, catalog), _features(chosen, catalog), _features(random, catalog)
    ks = [(stats.ks_2samp(target[:, j], ours[:, j]).statistic, stats.ks_2samp(target[:, j], theirs[:, j]).statistic)
          for j in range(3)]  # fmt: skip
    assert ks[0][0] < ks[0][1] and np.mean([m for m, _ in ks]) < np.mean([r for _, r in ks]), ks
    with pytest.raises(MammoError, match="free"):
        matched_backgrounds(catalog, positives, 10_000, size, seed=5, normal_per_image=2)


# ------------------------------------------------------------------------------------------------ errors


def test_no_calcifications_in_the_split_names_the_root() -> None:
    catalog = phantom()
    calc_images = set(catalog.findings.loc[catalog.findings["abnormality"] == "CALC", "image_id"])
    normal_only = catalog.subset([i for i in catalog.images["image_id"] if i not in calc_images])
    message = "no calcification findings in the training patients of .*: nothing to fit"
    with pytest.raises(MammoError, match=message) as e:
        extract_specks(normal_only)
    assert str(catalog.root) in str(e.value)
    with pytest.raises(MammoError, match="nothing to fit"):
        fit_layouts(pd.DataFrame(columns=specks().columns))


def test_too_few_specks_in_a_class_says_how_many() -> None:
    table = specks()
    only_one = table[(table["klass"] == "malignant") | (table.index == table.index[table["klass"] == "benign"][0])]
    only_one.attrs.update(table.attrs)
    with pytest.raises(MammoError, match=r"benign calcifications gave 1 specks in 1 clusters"):
        fit_layouts(only_one)


def test_model_fields_are_plain_and_named() -> None:
    fitted = model()
    assert set(fitted.classes) == {"benign", "malignant"} and fitted.version == 1
    for params in fitted.classes.values():
        assert params.n_clusters == len(params.counts) and 0 < params.linear_fraction < 1
        assert params.area_range[0] >= 1 and params.contrast_log_sigma > 0
    assert replace(fitted, patients=("x",)) != fitted
