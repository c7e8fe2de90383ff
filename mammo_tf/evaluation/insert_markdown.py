"""evaluate-insert's report: report.md text, the console summary and grids.png, from its metrics dict.

Separate from the scoring (insert_report.py) because it only formats: no model, no data.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mammo_tf.data.samplers import Patches
from mammo_tf.data.schema import BENIGN, CLASS_NAMES, MALIGNANT
from mammo_tf.evaluation.layout_memorisation import PERCENTILE

GRID_COLUMNS = 6
FEW_HELDOUT = 10  # held-out clusters below which the copy test's threshold is called loose in the report
REAL, RENDERED, REFINED = "real only", "inserted, rendered", "inserted, refined"  # the arms' names


def grids_png(real: Patches, made, rendered: np.ndarray, refined: np.ndarray) -> bytes:
    """PNG bytes: per class three rows (test patients' real | rendered | refined), masks outlined in red."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    classes = [c for c in (BENIGN, MALIGNANT) if (made.labels == c).any()]
    cols = GRID_COLUMNS
    fig, axes = plt.subplots(3 * len(classes), cols, figsize=(1.6 * cols, 1.7 * 3 * len(classes)), squeeze=False)
    for block, c in enumerate(classes):
        reals = real.images[real.labels == c][:cols, ..., 0]
        picks = np.flatnonzero(made.labels == c)[:cols]
        rows = [("real", reals, None), ("rendered", rendered[picks], made.masks[picks]),
                ("refined", refined[picks], made.masks[picks])]  # fmt: skip
        for r, (what, images, masks) in enumerate(rows):
            for j in range(cols):
                ax = axes[3 * block + r, j]
                ax.set_axis_off()
                if j >= len(images):
                    continue
                ax.imshow(images[j], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
                if masks is not None and masks[j].any():
                    ax.contour(masks[j].astype(float), levels=[0.5], colors="red", linewidths=0.6)
                if j == 0:
                    ax.set_title(f"{CLASS_NAMES[c]}: {what}", fontsize=7, loc="left")
    fig.tight_layout(pad=0.3)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return buffer.getvalue()


def _ci(interval: dict, digits: int = 3) -> str:
    values = [interval.get(k) for k in ("estimate", "low", "high")]
    if any(v is None or not np.isfinite(v) for v in values):
        return "n/a"
    est, low, high = values
    return f"{est:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def _signed(interval: dict) -> str:
    values = [interval.get(k) for k in ("estimate", "low", "high")]
    if any(v is None or not np.isfinite(v) for v in values):
        return "n/a"
    return f"{values[0]:+.3f} [{values[1]:+.3f}, {values[2]:+.3f}]"


def _num(value, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "n/a"
    return f"{value:.{digits}g}" if isinstance(value, float) else str(value)


def _kid(entry: dict) -> str:
    """KID x 1e3 as "mean ± std" (evaluate-gan's scale), n/a when not computed."""
    if entry.get("kid") is None:
        return "n/a"
    return f"{1e3 * entry['kid']:.3g} ± {1e3 * entry['kid_std']:.2g}"


def _ratio(entry: dict) -> str:
    return "n/a" if entry.get("ratio_to_floor") is None else f"{entry['ratio_to_floor']:.2g}"


def _kid_lines(k: dict[str, Any]) -> list[str]:
    info = k["feature_network_info"]
    lines = [
        "## KID against the real-vs-real floor",
        "",
        f"Feature network `{k['feature_network']}` (the project's own, as evaluate-gan; trained on "
        f"{info.get('n_train')} real training-patient patches, final training accuracy "
        f"{_num(info.get('final_accuracy'))}). KID x 1e3 (mean ± std over subsets) of each set against the test "
        "patients' real calcification patches; floor: the training patients' real calcification patches against "
        "the same test patches, what two real sets differ by. Ratio: set / floor (about 1: as close as real; "
        "n/a when the floor is <= 0, which the unbiased estimate allows). `all` pools each set's classes as the set "
        "has them (their mix differs between sets); the per-class rows compare like with like. With a few dozen "
        "real test patches the std over subsets is of the order of the KID itself: read the ratios with it.",
        "",
    ]
    if not k["groups"]:
        return lines + ["No class with 2 or more real test patches.", ""]
    set_names = [name for name in next(iter(k["groups"].values())) if name not in ("n_real", "floor")]
    lines += [
        "| group | real test patches | floor (n) | " + " | ".join(f"{name} (ratio)" for name in set_names) + " |",
        "|---|---|---|" + "---|" * len(set_names),
    ]
    for group, g in k["groups"].items():
        cells = [f"{_kid(g[name])} ({_ratio(g[name])})" for name in set_names]
        lines.append(
            f"| {group} | {g['n_real']} | {_kid(g['floor'])} ({g['floor']['n']}) | " + " | ".join(cells) + " |"
        )
    return lines + [""]


def _copy_verdict(c: dict[str, Any]) -> str:
    """In words: does any layout look copied (the summary of layout_memorisation.closest_training_clusters)."""
    if c["passed"] is None:
        return (
            f"Not decided: {c['groups']['inserted']['all']['n_checked']} layouts and "
            f"{c['groups']['held-out']['all']['n_checked']} held-out clusters could be measured (clusters of "
            f"{c['min_specks']} or more specks with a training cluster of their class)."
        )
    closest = c["closest"][0]
    words = (
        f"{c['n_below']} of {c['groups']['inserted']['all']['n_checked']} layouts ({c['fraction_below']:.1%}) are "
        f"closer to a training cluster than the threshold ({c['threshold_rule']}: {c['threshold']:.2f} px); a "
        f"model that does not copy gives about {c['expected_fraction']:.1%} (one-sided beta-binomial p = "
        f"{c['p_value']:.2g}). The closest layout, {closest['name']} ({closest['n_specks']} specks), is "
        f"{closest['distance']:.2f} px from {closest['nearest']}; the closest held-out cluster comes "
        f"{c['min_heldout']:.2f} px. "
    )
    held = c["groups"]["held-out"]["all"]["n_checked"]
    if held < FEW_HELDOUT:
        words += (
            f"Only {held} held-out cluster{'s' if held > 1 else ''} could be measured: the threshold is loose and "
            "the test detects only wholesale copying. "
        )
    if c["passed"]:
        return words + "No sign that the layouts copy training clusters."
    return words + "More layouts than expected sit that close: they look copied (cluster_distances.csv lists them)."


def _cluster_lines(c: dict[str, Any]) -> list[str]:
    lines = [
        "## Closest training cluster of each layout",
        "",
        f"Distance: {c['distance']}; clusters of fewer than {c['min_specks']} specks are not measured (one or two "
        "specks have no arrangement to copy). Training clusters: the real clusters the layouts were fitted on "
        f"({', '.join(f'{k} {v}' for k, v in c['n_training_clusters'].items())} measured); held-out: real "
        f"clusters of the {' and '.join(c['heldout_splits']) or 'no'} patients, never seen by the model, against "
        "the same training clusters. Both are cut to the patch window, as the layouts are; each to the nearest "
        "training cluster of its class. Every distance is in cluster_distances.csv.",
        "",
        f"| set | class | clusters | measured | min (px) | {PERCENTILE:g}th percentile | median |",
        "|---|---|---|---|---|---|---|",
    ]
    low = f"p{PERCENTILE:g}"
    for what, groups in c["groups"].items():
        for klass, g in groups.items():
            lines.append(
                f"| {what} | {klass} | {g['n']} | {g['n_checked']} | {_num(g['min'])} | {_num(g[low])} | "
                f"{_num(g['median'])} |"
            )
    return lines + ["", _copy_verdict(c), ""]


def render_markdown(m: dict[str, Any]) -> str:
    counts = m["counts"]
    real_counts = counts["real_calcification_patches"]
    lines = [
        f"# evaluate-insert: {m['model']} ({m['patch_size']}x{m['patch_size']})",
        "",
        f"Data: {m['data']} ({m['source']}). Held-out: the **{m['n_test_patients']} test patients** "
        f"({len(m['test_patients_with_calcifications'])} with calcification clusters: "
        f"{real_counts['test'].get('benign', 0)} benign and {real_counts['test'].get('malignant', 0)} malignant "
        "real patches). The insertion model saw none of them "
        f"({len(m['model_patients'])} patients recorded in its fit and config).",
        f"{m['n_inserted']} inserted patches ({counts['inserted']['benign']} benign, "
        f"{counts['inserted']['malignant']} malignant) drawn into tissue of {counts['inserted_background_patients']} "
        f"training patients; classifiers: preset {m['classifier_preset']}, {m['classifier_steps']} steps, seed "
        f"{m['seed']}, one run per arm; {m['bootstrap']} patient-bootstrap resamples for every 95 % CI.",
        "",
        "## Train on synthetic positives, test on real (TSTR)",
        "",
        "Each classifier is trained on the real NORMAL patches of the training patients (none overlapping an "
        "insertion background) plus the arm's positives; `real only` uses the real positives instead. All are "
        "tested on the same real patches of the test patients. AUC: calcification vs normal. Difference: the arm "
        "minus real only, paired on the same bootstrap draws (an interval above 0: the synthetic positives teach "
        "more than the real ones).",
        "",
    ]
    if m["gan_skipped"]:
        lines += [f"GAN arm: {m['gan_skipped']}.", ""]
    for task, t in m["tstr"].items():
        lines += [
            f"**{task}** task: {t['n_test']} test patches ({t['n_test_positive']} calcification) of "
            f"{t['n_test_patients']} patients.",
            "",
            "| arm | AUC [95 % CI] | minus real only |",
            "|---|---|---|",
        ]
        for arm, a in t["arms"].items():
            diff = "reference" if arm == t["reference"] else _signed(a["difference"])
            lines.append(f"| {arm} | {_ci(a['auc'])} | {diff} |")
        lines.append("")
    r = m["realism"]
    lines += [
        "## Realism: can a detector tell inserted from real?",
        "",
        "A detector trained on real calcification patches of the training patients against inserted patches "
        f"({r['n_inserted']['train']} for training, {r['n_inserted']['val']} validation, {r['n_inserted']['test']} "
        "test; split by background patient), tested on the test patients' real calcification patches "
        f"({r['n_real']['test']}) against the held-out inserted ones. AUC 0.5 = indistinguishable, 1 = always "
        "told apart. cnn: the classifier network; texture: logistic regression on 26 texture features. "
        "refined minus rendered < 0: the refiner made the patches harder to tell from real.",
        "",
        "| detector | rendered AUC | refined AUC | refined minus rendered |",
        "|---|---|---|---|",
    ]
    for det in ("cnn", "texture"):
        arms = r[det]["arms"]
        lines.append(
            f"| {det} | {_ci(arms[RENDERED]['auc'])} | {_ci(arms[REFINED]['auc'])} | "
            f"{_signed(arms[REFINED]['difference'])} |"
        )
    lines += [
        "",
        "## Speck statistics (project detector, whole patch)",
        "",
        "Per patch: specks found, their mean area (px), mean contrast (top-hat peak, full scale), mean distance to "
        "the nearest other speck (px). Means, and the 1-D Wasserstein distance to the test patients' real "
        "patches; floor: the training patients' real patches against the same test patches (what two real sets "
        "differ by).",
        "",
    ]
    set_names = list(dict.fromkeys(row["set"] for row in m["specks"]))
    if set_names:
        lines += [
            "Cells: mean (Wasserstein to the real test patches).",
            "",
            "| class | statistic | real test | real train (floor) | " + " | ".join(set_names) + " |",
            "|---|---|---|---|" + "---|" * len(set_names),
        ]
        keyed = {(row["class"], row["statistic"], row["set"]): row for row in m["specks"]}
        for klass, statistic in dict.fromkeys((row["class"], row["statistic"]) for row in m["specks"]):
            first = keyed[(klass, statistic, set_names[0])]
            cells = []
            for name in set_names:
                row = keyed[(klass, statistic, name)]
                cells.append(f"{_num(row['set_mean'])} ({_num(row['wasserstein'])})")
            lines.append(
                f"| {klass} | {statistic} | {_num(first['real_mean'])} | {_num(first['train_real_mean'])} "
                f"({_num(first['wasserstein_floor'])}) | " + " | ".join(cells) + " |"
            )
    else:
        lines.append("No class with real test patches.")
    lines += ["", *_kid_lines(m["kid"]), *_cluster_lines(m["closest_training_cluster"])]
    lines += [
        "## Figures",
        "",
        "`grids.png`: per class, real test-patient patches | rendered | refined, speck masks outlined in red.",
        "",
        "## Models trained and their patients",
        "",
        "Every classifier's training, validation and synthetic-source patients are in metrics.json "
        "(`classifiers`); none is a test patient (checked).",
        "",
        "| classifier | train patients | val patients | synthetic from | val AUC |",
        "|---|---|---|---|---|",
    ]
    for c in m["classifiers"]:
        lines.append(
            f"| {c['name']} | {len(c['train_patients'])} | {len(c['val_patients'])} | "
            f"{len(c['synthetic_source_patients'])} | {_num(c['val_auc'])} |"
        )
    lines += ["", "## Protocol", ""] + [f"- {k}: {v}" for k, v in m["protocol"].items()] + [""]
    return "\n".join(lines)


def summary_lines(m: dict[str, Any]) -> list[str]:
    """The console summary of evaluate-insert."""
    lines = [f"{m['model']} on {m['n_test_patients']} test patients of {m['data']}"]
    for task, t in m["tstr"].items():
        for arm, a in t["arms"].items():
            diff = "" if arm == t["reference"] else f"  vs real only {_signed(a['difference'])}"
            lines.append(f"  TSTR {task:<8} {arm:<20} AUC {_ci(a['auc'])}{diff}")
    for det in ("cnn", "texture"):
        arms = m["realism"][det]["arms"]
        lines.append(
            f"  realism {det:<8} rendered {_ci(arms[RENDERED]['auc'])}, refined {_ci(arms[REFINED]['auc'])} "
            "(0.5 = indistinguishable)"
        )
    pooled = m["kid"]["groups"].get("all")
    if pooled:
        sets = ", ".join(f"{k} {_kid(v)}" for k, v in pooled.items() if k not in ("n_real", "floor"))
        lines.append(f"  KID x1e3 (all)   {sets}; floor {_kid(pooled['floor'])}")
    c = m["closest_training_cluster"]
    if c["passed"] is None:
        lines.append("  layouts          copying not decided (no layout or held-out cluster measured)")
    else:
        verdict = "no sign of copying" if c["passed"] else "MORE than expected: look copied"
        lines.append(
            f"  layouts          {c['n_below']} of {c['groups']['inserted']['all']['n_checked']} closer to a training "
            f"cluster than {c['threshold']:.2f} px ({c['threshold_rule']}; expected {c['expected_fraction']:.1%}): "
            f"{verdict}"
        )
    if m["gan_skipped"]:
        lines.append(f"  GAN arm: {m['gan_skipped']}")
    return lines
