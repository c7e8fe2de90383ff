"""evaluate-insert's report: report.md text, the console summary and grids.png, from its metrics dict.

Separate from the scoring (insert_report.py) because it only formats: no model, no data.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mammo_tf.data.samplers import Patches
from mammo_tf.data.schema import BENIGN, CLASS_NAMES, MALIGNANT

GRID_COLUMNS = 6
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
    lines += [
        "",
        "## Figures and what was not done",
        "",
        "`grids.png`: per class, real test-patient patches | rendered | refined, speck masks outlined in red.",
        "",
        f"Closest training cluster to each synthetic layout: {m['closest_training_cluster']}.",
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
    if m["gan_skipped"]:
        lines.append(f"  GAN arm: {m['gan_skipped']}")
    return lines
