"""evaluate-gan: a synthesis model against held-out real patches, every number beside its real-vs-real floor.

Protocol (also written into metrics.json and report.md):

- Real patches come from ``sample_patches`` at the model's patch size: TRAINING patients (``split="train"``)
  and HELD-OUT patients (the val and test splits pooled: one split's few benign patches would make per-class
  floors meaningless).
- Features: the project's own network (evaluation/features.py) trained on the training patches only, named
  (with its data hash) in every report.
- Per class, with n_h held-out and n_t training patches, m = min(n_h, n_t): m synthetic patches are compared
  with the n_h held-out ones, and, as the FLOOR, m training patches drawn at random against the same n_h
  held-out ones. Same sizes on both sides, so biased metrics (FD, precision/recall) are biased alike.
  "all" pools the per-class sets.
- FD, unbiased KID (mean and std over 100 subsets), precision/recall (k = 3) on the features.
- Memorisation: every synthetic patch's nearest TRAINING patch against how close held-out real patches come,
  in feature space and in pixel space (L2), with the closest pairs drawn.
- Calcification statistics: the project's speck detector per patch (count, mean area, mean contrast) and
  the fine texture it thresholds on,
  1-D Wasserstein distances synthetic-vs-held-out per class, beside training-vs-held-out.
- Class fidelity: the fraction of patches the feature network calls calcification, per class.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from mammo_tf.data.samplers import Patches
from mammo_tf.data.schema import CLASS_NAMES
from mammo_tf.errors import MammoError

KID_SUBSETS = 100
KID_SUBSET_SIZE = 1000
PR_K = 3
N_PAIRS = 8
GRID_COLUMNS = 8
SYNTH_SEED_OFFSET = 0xE7A1  # evaluation latents: never the grid or training noise


def _concat(parts: list[Patches]) -> Patches:
    fields = ("images", "labels", "image_id", "patient_id", "centre_row", "centre_col")
    return Patches(*(np.concatenate([getattr(p, f) for p in parts]) for f in fields))


def heldout_patches(catalog, patch_size: int, splits: tuple[str, ...], seed: int) -> tuple[Patches, list[str]]:
    """Patches of every present split in ``splits`` pooled; the splits used."""
    from mammo_tf.data.samplers import sample_patches

    present = [s for s in splits if (catalog.images["split"] == s).any()]
    parts = [sample_patches(catalog, patch_size=patch_size, split=s, seed=seed) for s in present]
    parts = [p for p in parts if len(p.images)]
    if not parts:
        raise MammoError(f"{catalog.root}: no held-out {patch_size}x{patch_size} patches (splits {', '.join(splits)})")
    return _concat(parts), present


def _set_metrics(candidate: np.ndarray, heldout: np.ndarray, seed: int) -> dict[str, Any]:
    """FD, KID, precision/recall of candidate features against held-out features (None where too few)."""
    from mammo_tf.evaluation.gan import frechet_distance, kid, precision_recall

    out: dict[str, Any] = {"n": int(len(candidate)), "n_heldout": int(len(heldout))}
    if len(candidate) >= 2 and len(heldout) >= 2:
        out["fd"] = frechet_distance(candidate, heldout)
        # Subsets of half the smaller set (at most 1000): all-of-it subsets would be mere permutations of one
        # value, and KID is unbiased at any subset size, so the spread over subsets stays informative.
        subset = max(2, min(KID_SUBSET_SIZE, min(len(candidate), len(heldout)) // 2))
        mean, std = kid(candidate, heldout, KID_SUBSETS, subset, seed)
        out["kid"], out["kid_std"] = mean, std
    else:
        out["fd"] = out["kid"] = out["kid_std"] = None
    if len(candidate) > PR_K and len(heldout) > PR_K:
        out["precision"], out["recall"] = precision_recall(heldout, candidate, PR_K)
    else:
        out["precision"] = out["recall"] = None
    return out


def _memorisation_summary(result, pairs_of: str) -> dict[str, Any]:
    return {
        "space": pairs_of,
        "threshold_percentile": result.percentile,
        "threshold": result.threshold,
        "fraction_below": result.fraction_below,
        "n_flagged": int(len(result.flagged)),
        "median_synthetic_to_train": float(np.median(result.synth_nn_distance)),
        "median_heldout_to_train": float(np.median(result.heldout_nn_distance)),
        "median_ratio": result.median_ratio,
        "closest": [{"synthetic": s, "train": t, "distance": d} for s, t, d in result.closest],
    }


def evaluate_gan(
    model: Any = None,
    data: str | Path | None = None,
    out: str | Path | None = None,
    *,
    seed: int = 0,
    feature_steps: int = 400,
    truncation: float | None = None,
    heldout_splits: tuple[str, ...] = ("val", "test"),
    detector=None,
    cache_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Score a synthesis model (see the module docstring); writes report.md, metrics.json and figures to ``out``.

    model: shipped name, .keras file, run directory, a loaded model or a SynthesisModel (None = default).
    data: what load_catalog takes, or a Catalog (the study passes a fold's, whose splits are that fold's).
    detector: speck detector ``image [P, P] -> DataFrame`` (default: mammo_tf.data.specks.detect_specks).
    Returns the metrics dictionary (also metrics.json).
    """
    from mammo_tf.data.catalog import Catalog, load_catalog
    from mammo_tf.data.samplers import sample_patches
    from mammo_tf.evaluation.features import feature_extractor
    from mammo_tf.evaluation.gan import memorisation, speck_comparison
    from mammo_tf.inference.synth import SynthesisModel, as_synthesis_model, generate, load_synthesis_model

    if out is not None:
        out = Path(out)
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            raise MammoError(f"{out}: output folder exists and is not empty")
    if isinstance(model, SynthesisModel):
        synth_model = model
    elif model is None or isinstance(model, str | Path):
        synth_model = load_synthesis_model(model, command="evaluate-gan")
    else:
        synth_model = as_synthesis_model(model)
    size = synth_model.patch_size
    catalog = data if isinstance(data, Catalog) else load_catalog(data)
    train = sample_patches(catalog, patch_size=size, split="train", seed=seed)
    if len(train.images) == 0:
        raise MammoError(f"{catalog.root}: no {size}x{size} training patches")
    heldout, splits = heldout_patches(catalog, size, heldout_splits, seed)
    net = feature_extractor(train, steps=feature_steps, seed=seed, cache_dir=cache_dir)

    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0xF100]))
    classes = [c for c in range(len(CLASS_NAMES)) if (heldout.labels == c).any() and (train.labels == c).any()]
    if not classes:
        raise MammoError(f"{catalog.root}: no class has both training and held-out patches")
    synth_labels = []
    floor_index = []
    for c in classes:
        n_h, n_t = int((heldout.labels == c).sum()), int((train.labels == c).sum())
        m = min(n_h, n_t)
        synth_labels.append(np.full(m, c, np.int32))
        floor_index.append(rng.choice(np.flatnonzero(train.labels == c), m, replace=False))
    synth_labels = np.concatenate(synth_labels)
    floor_index = np.concatenate(floor_index)
    synth = generate(synth_model, synth_labels, int(seed) + SYNTH_SEED_OFFSET, truncation)
    floor_images, floor_labels = train.images[floor_index], train.labels[floor_index]

    feats = {
        "train": net.embed(train.images),
        "heldout": net.embed(heldout.images),
        "synthetic": net.embed(synth),
    }
    feats["floor"] = feats["train"][floor_index]
    groups: dict[str, Any] = {}
    for name, c in [("all", None), *[(CLASS_NAMES[c], c) for c in classes]]:
        h = slice(None) if c is None else heldout.labels == c
        s = slice(None) if c is None else synth_labels == c
        f = slice(None) if c is None else floor_labels == c
        groups[name] = {
            "synthetic": _set_metrics(feats["synthetic"][s], feats["heldout"][h], seed),
            "floor": _set_metrics(feats["floor"][f], feats["heldout"][h], seed),
        }

    mem_features = memorisation(feats["train"], feats["heldout"], feats["synthetic"], n_pairs=N_PAIRS)
    flat = lambda x: x.reshape(len(x), -1).astype(np.float64)  # noqa: E731
    mem_pixels = memorisation(flat(train.images), flat(heldout.images), flat(synth), n_pairs=N_PAIRS)

    specks = speck_comparison(heldout.images, heldout.labels, synth, synth_labels, detector=detector)
    specks_floor = speck_comparison(heldout.images, heldout.labels, floor_images, floor_labels, detector=detector)
    if not specks.empty:
        floor = specks_floor.set_index(["class", "statistic"])["wasserstein"]
        keys = zip(specks["class"], specks["statistic"], strict=True)
        specks["wasserstein_floor"] = [floor.get(key, np.nan) for key in keys]

    fidelity = {}
    p_synth, p_held = net.calcification_probability(synth), net.calcification_probability(heldout.images)
    for c in classes:
        fidelity[CLASS_NAMES[c]] = {
            "synthetic_called_calcification": float((p_synth[synth_labels == c] > 0.5).mean()),
            "heldout_called_calcification": float((p_held[heldout.labels == c] > 0.5).mean()),
        }

    metrics: dict[str, Any] = {
        "model": synth_model.model_id,
        "model_path": str(synth_model.path) if synth_model.path else None,
        "patch_size": size,
        "data": str(catalog.root),
        "source": catalog.source,
        "heldout_splits": splits,
        "seed": int(seed),
        "truncation": truncation,
        "feature_network": net.name,
        "feature_network_info": {
            k: net.meta.get(k) for k in ("version", "sha256", "n_train", "final_accuracy", "final_loss", "task")
        },
        "counts": {
            "train": {CLASS_NAMES[c]: int((train.labels == c).sum()) for c in range(len(CLASS_NAMES))},
            "heldout": {CLASS_NAMES[c]: int((heldout.labels == c).sum()) for c in range(len(CLASS_NAMES))},
            "synthetic": {CLASS_NAMES[c]: int((synth_labels == c).sum()) for c in classes},
        },
        "groups": groups,
        "memorisation": {
            "features": _memorisation_summary(mem_features, net.name),
            "pixels": _memorisation_summary(mem_pixels, "pixels (L2 on [0, 1] values)"),
        },
        "specks": specks.to_dict(orient="records"),
        "class_fidelity": fidelity,
        "protocol": {
            "reference": "held-out real patches (patients outside the training split)",
            "floor": "random training patches, as many as synthetic, against the same held-out patches",
            "kid": f"unbiased MMD^2, cubic polynomial kernel, {KID_SUBSETS} subsets of min({KID_SUBSET_SIZE}, n / 2)",
            "precision_recall": f"k-NN manifolds, k = {PR_K} (Kynkaenniemi et al. 2019)",
            "memorisation": "nearest training patch; flagged below the 5th percentile of held-out-to-train",
            "specks": "mammo_tf.data.specks.detect_specks per patch; 1-D Wasserstein per statistic",
        },
    }
    if out is not None:
        _write(out, metrics, specks, heldout, synth, synth_labels, train, mem_features, mem_pixels, classes)
    return metrics


def _write(out, metrics, specks, heldout, synth, synth_labels, train, mem_features, mem_pixels, classes) -> None:
    from mammo_tf.evaluation.report import grid, label, metrics_json, report_folder, to_uint8, write_png

    zoom = max(1, 96 // metrics["patch_size"])
    with report_folder(out) as tmp:
        rows = []
        for c in classes:
            real = heldout.images[heldout.labels == c][:GRID_COLUMNS]
            fake = synth[synth_labels == c][:GRID_COLUMNS]
            rows.append([label(to_uint8(x[..., 0], zoom), f"real {CLASS_NAMES[c]}") for x in real])
            rows.append([label(to_uint8(x[..., 0], zoom), f"synth {CLASS_NAMES[c]}") for x in fake])
        write_png(tmp / "grids.png", grid(rows))
        pair_rows = []
        for space, result in (("feat", mem_features), ("pixel", mem_pixels)):
            for s, t, d in result.closest[:4]:
                pair_rows.append(
                    [
                        label(to_uint8(synth[s, ..., 0], zoom), f"{space} synth {s}"),
                        label(to_uint8(train.images[t, ..., 0], zoom), f"train {t} d={d:.3g}"),
                    ]
                )
        write_png(tmp / "closest_pairs.png", grid(pair_rows))
        specks.to_csv(tmp / "specks.csv", index=False)
        (tmp / "metrics.json").write_text(metrics_json(metrics))
        (tmp / "report.md").write_text(render_markdown(metrics))


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "n/a"
    return f"{value:.{digits}g}" if isinstance(value, float) else str(value)


def render_markdown(m: dict[str, Any]) -> str:
    lines = [
        f"# evaluate-gan: {m['model']} ({m['patch_size']}x{m['patch_size']})",
        "",
        f"Data: {m['data']} ({m['source']}); held-out splits: {', '.join(m['heldout_splits'])}; seed {m['seed']}; "
        f"truncation {m['truncation'] or 'none'}.",
        f"Feature network: **{m['feature_network']}** (trained on the training patches only; "
        f"final training accuracy {_fmt(m['feature_network_info'].get('final_accuracy'), 3)}).",
        "",
        "Every synthetic number stands beside its FLOOR: random real training patches, as many as synthetic, "
        "against the same held-out patches. KID is x1e3.",
        "",
        "| group | n synth / held-out | FD synth | FD floor | KID synth | KID floor | precision synth / floor "
        "| recall synth / floor |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, g in m["groups"].items():
        s, f = g["synthetic"], g["floor"]
        kid_s = "n/a" if s["kid"] is None else f"{1e3 * s['kid']:.3g} ± {1e3 * s['kid_std']:.2g}"
        kid_f = "n/a" if f["kid"] is None else f"{1e3 * f['kid']:.3g} ± {1e3 * f['kid_std']:.2g}"
        lines.append(
            f"| {name} | {s['n']} / {s['n_heldout']} | {_fmt(s['fd'])} | {_fmt(f['fd'])} | {kid_s} | {kid_f} "
            f"| {_fmt(s['precision'], 3)} / {_fmt(f['precision'], 3)} "
            f"| {_fmt(s['recall'], 3)} / {_fmt(f['recall'], 3)} |"
        )
    lines += ["", "## Memorisation", ""]
    lines += [
        "| space | flagged (below the 5th percentile of held-out-to-train) | median synth-to-train "
        "| median held-out-to-train | ratio |",
        "|---|---|---|---|---|",
    ]
    for key, mem in m["memorisation"].items():
        lines.append(
            f"| {key} | {mem['n_flagged']} ({100 * mem['fraction_below']:.1f} %) | "
            f"{_fmt(mem['median_synthetic_to_train'])} | {_fmt(mem['median_heldout_to_train'])} | "
            f"{_fmt(mem['median_ratio'], 3)} |"
        )
    lines += ["", "Closest synthetic/training pairs: `closest_pairs.png`. Real beside synthetic: `grids.png`.", ""]
    lines += ["## Calcification statistics (speck detector)", ""]
    if m["specks"]:
        lines += [
            "| class | statistic | real mean | synthetic mean | Wasserstein | floor (train vs held-out) |",
            "|---|---|---|---|---|---|",
        ]
        for row in m["specks"]:
            lines.append(
                f"| {row['class']} | {row['statistic']} | {_fmt(row['real_mean'], 3)} | "
                f"{_fmt(row['synthetic_mean'], 3)} | {_fmt(row['wasserstein'], 3)} | "
                f"{_fmt(row.get('wasserstein_floor'), 3)} |"
            )
    else:
        lines.append("No class with patches on both sides.")
    lines += ["", "## Class fidelity (feature network: fraction called calcification)", ""]
    lines += ["| class | synthetic | held-out real |", "|---|---|---|"]
    for name, v in m["class_fidelity"].items():
        lines.append(
            f"| {name} | {100 * v['synthetic_called_calcification']:.0f} % | "
            f"{100 * v['heldout_called_calcification']:.0f} % |"
        )
    counts = m["counts"]
    lines += [
        "",
        "## Counts and protocol",
        "",
        "Training patches: "
        + ", ".join(f"{k} {v}" for k, v in counts["train"].items())
        + "; held-out: "
        + ", ".join(f"{k} {v}" for k, v in counts["heldout"].items())
        + ".",
        "",
    ]
    lines += [f"- {k}: {v}" for k, v in m["protocol"].items()]
    lines += [
        "",
        "Small sets: FD is biased and precision/recall saturate at small n; read every number against its floor.",
        "",
    ]
    return "\n".join(lines)


def summary_lines(m: dict[str, Any]) -> list[str]:
    """The console summary of evaluate-gan."""
    lines = [f"{m['model']} {m['patch_size']}px against held-out {', '.join(m['heldout_splits'])}; "
             f"features {m['feature_network']}"]  # fmt: skip
    for name, g in m["groups"].items():
        s, f = g["synthetic"], g["floor"]
        kid = "n/a" if s["kid"] is None else f"{1e3 * s['kid']:.3g}"
        floor = "n/a" if f["kid"] is None else f"{1e3 * f['kid']:.3g}"
        lines.append(f"  {name:>9}: KIDx1e3 {kid} (floor {floor}), FD {_fmt(s['fd'])} (floor {_fmt(f['fd'])})")
    mem = m["memorisation"]["features"]
    lines.append(f"  memorisation: {mem['n_flagged']} synthetic patches closer to training than 95 % of held-out")
    return lines
