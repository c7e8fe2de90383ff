"""The augmentation study's report: metrics.json, predictions.csv.gz, report.md, ROC curves, a forest plot of
paired differences and, with positive fractions, the low-data curve."""

from __future__ import annotations

import gzip
from pathlib import Path

import pandas as pd

from mammo_tf.evaluation.report import metrics_json
from mammo_tf.io.atomic import write_bytes_atomic
from mammo_tf.workflows.study.plan import UPSCALINGS, sr_cell, sr_cell_task

PREDICTIONS = "predictions.csv.gz"  # every out-of-fold prediction (summary.PREDICTION_COLUMNS)


def _ci(d: dict, digits: int = 3, sign: str = "") -> str:
    return f"{d['estimate']:{sign}.{digits}f} [{d['low']:{sign}.{digits}f}, {d['high']:{sign}.{digits}f}]"


def _number(value: float | None, spec: str) -> str:
    """`value` formatted by `spec`, or '-' when there is none (a reference arm, a baseline, no fold AUC)."""
    return "-" if value is None else format(value, spec)


def _figures(out: Path, metrics: dict) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = []
    tasks = metrics["tasks"]
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.2 * len(tasks), 4), dpi=110, squeeze=False)
    for ax, (task, entry) in zip(axes[0], tasks.items(), strict=True):
        for arm, roc in entry["roc"].items():
            if roc["fpr"]:
                ax.plot(roc["fpr"], roc["tpr"], lw=1, label=f"{arm} ({entry['arms'][arm]['auc']['estimate']:.2f})")
        ax.plot([0, 1], [0, 1], color="grey", lw=0.6, ls="--")
        ax.set_title(task, fontsize=8)
        ax.set_xlabel("1 - specificity")
        ax.set_ylabel("sensitivity")
        ax.legend(fontsize=5, loc="lower right")
    fig.tight_layout()
    fig.savefig(out / "roc.png")
    plt.close(fig)
    names.append("roc.png")

    rows = [
        (task, f"{arm} vs {e['reference']}", a["auc_difference_vs_reference"])
        for task, e in tasks.items()
        for arm, a in e["arms"].items()
        if arm != e["reference"]
    ]
    if rows:
        fig, ax = plt.subplots(figsize=(11, 0.3 * len(rows) + 1.2), dpi=110)
        for i, (_, _, d) in enumerate(rows):
            ax.errorbar(
                d["estimate"],
                i,
                xerr=[[d["estimate"] - d["low"]], [d["high"] - d["estimate"]]],
                fmt="o",
                ms=3,
                color="black",
                capsize=2,
            )
        ax.axvline(0, color="grey", lw=0.8)
        ax.set_yticks(range(len(rows)), [f"{t}: {a}" for t, a, _ in rows], fontsize=6)
        ax.invert_yaxis()
        ax.set_xlabel("AUC difference, arm - reference arm of its task (paired, 95 % CI)")
        fig.tight_layout()
        fig.savefig(out / "forest.png")
        plt.close(fig)
        names.append("forest.png")
    if any(metrics.get("low_data", {}).values()):
        names.append(_low_data_figure(out, metrics["low_data"], plt))
    return names


def _low_data_figure(out: Path, curve: dict[str, list[dict]], plt) -> str:
    """low_data.png: per task, the AUC of real only and real + inserted against the positive fraction (left),
    and their paired difference with its 95 % CI (right)."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.6), dpi=110)
    for task, points in curve.items():
        x = [p["fraction"] for p in points]
        for key, style in (("auc_real", "--"), ("auc_inserted", "-")):
            label = f"{task}: {'real only' if key == 'auc_real' else 'real + inserted'}"
            left.plot(x, [p[key]["estimate"] for p in points], style, marker="o", ms=3, label=label)
        d = [p["difference"] for p in points]
        low = [e["estimate"] - e["low"] for e in d]
        high = [e["high"] - e["estimate"] for e in d]
        right.errorbar(x, [e["estimate"] for e in d], yerr=[low, high], marker="o", ms=3, capsize=2, label=task)
    right.axhline(0, color="grey", lw=0.8)
    left.set_ylabel("pooled AUC")
    right.set_ylabel("AUC difference, inserted - real (95 % CI)")
    for ax in (left, right):
        ax.set_xlabel("fraction of training patients with calcifications")
        ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(out / "low_data.png")
    plt.close(fig)
    return "low_data.png"


def verdict_sentence(task: str, entry: dict) -> str:
    """One sentence per task: each arm under test, its verdict and its paired AUC difference."""
    tested = [(arm, a) for arm, a in entry["arms"].items() if a["verdict"] not in ("reference", "baseline")]
    if not tested:
        return f"{task}: no arm under test."
    parts = [
        f"{arm} {a['verdict']} ({a['auc_difference_vs_reference']['estimate']:+.3f} "
        f"[{a['auc_difference_vs_reference']['low']:+.3f}, {a['auc_difference_vs_reference']['high']:+.3f}])"
        for arm, a in tested
    ]
    return f"{task}, against {entry['reference']}: " + "; ".join(parts) + "."


def low_data_lines(curve: dict[str, list[dict]]) -> list[str]:
    """The low-data section: what it is, then per task one row per positive fraction."""
    lines = [
        "",
        "## Low-data curve",
        "",
        "Real positives restricted to the clusters of a fraction of each fold's training patients with "
        "calcifications (nested patient subsets, seeded per fold; negatives, validation and test patches "
        "unchanged), the insertion model fitted on the same restricted set; real only against real + inserted "
        "(refined, x1), difference paired on the same bootstrap draws. Fraction 1 is the full-data task above.",
        "",
        "| task | fraction | positive patients per fold | real only AUC | real + inserted AUC | difference "
        "[95 % CI] | verdict |",
        "|---|---|---|---|---|---|---|",
    ]
    for task, points in curve.items():
        for p in points:
            per_fold = ", ".join(map(str, p["positive_patients_per_fold"] or [])) or "-"
            lines.append(
                f"| {task} | {p['fraction']:g} | {per_fold} | {_ci(p['auc_real'])} | {_ci(p['auc_inserted'])} | "
                f"{_ci(p['difference'], sign='+')} | {p['verdict']} |"
            )
    return lines


def sr_matrix_lines(metrics: dict) -> list[str]:
    """The SR utility 3x3 (trained on rows, tested on columns: pooled AUC, mean fold AUC); no lines when the
    study had no SR arms."""
    tasks = metrics["tasks"]
    if not any(sr_cell_task(t) in tasks for t in UPSCALINGS):
        return []
    lines = [
        "",
        "## SR utility: trained on (rows) by tested on (columns)",
        "",
        "LR is the HR patch box-averaged by the SR scale and rounded to 8 bits; bicubic and the SR model upscale "
        "it back. Pooled AUC [95 % CI] / mean of the per-fold AUCs; the paired differences are in the two SR "
        "tasks above (SR against bicubic for the classifier trained on HR, and trained-and-tested on SR against "
        "trained-and-tested on bicubic).",
        "",
        "| trained on | " + " | ".join(f"tested on {t}" for t in UPSCALINGS) + " |",
        "|---|" + "---|" * len(UPSCALINGS),
    ]
    for trained in UPSCALINGS:
        arms = tasks.get(sr_cell_task(trained), {}).get("arms", {})
        cells = []
        for tested in UPSCALINGS:
            a = arms.get(sr_cell(trained, tested).name)
            cells.append("-" if a is None else f"{_ci(a['auc'])} / {_number(a['fold_auc_mean'], '.3f')}")
        lines.append(f"| {trained} | " + " | ".join(cells) + " |")
    return lines


def _hours(entry: dict) -> str:
    return f"{entry['seconds'] / 3600:.2f} h" if entry.get("seconds") else "-"


def fold_models_lines(metrics: dict) -> list[str]:
    """Per fold, the generative models the arms used: the GAN (steps, hours, KID over its real-vs-real floor,
    all classes, and its TSTR: the easy task's synthetic-only AUC on that fold's test patients, mean over
    seeds), the insertion model (the same for inserted only) and the SR model (its validation gain over
    bicubic); none: no lines."""
    records = [r for r in metrics["audit"].get("models", []) if r.get("gan") or r.get("insert") or r.get("sr")]
    if not records:
        return []
    tstr = {"gan": _fold_auc(metrics, "synthetic only"), "insert": _fold_auc(metrics, "inserted only (real negatives)")}
    lines = [
        "",
        "## Per-fold models",
        "",
        "Each trained on its fold's training patients only. GAN quality: KID of its patches against the fold's "
        "validation patches, beside the floor (training patches against the same), on a feature network "
        "trained on the fold's training patches (x1e3; the full evaluate-gan report is in the work folder).",
        "",
        "| fold | GAN: steps, hours | GAN KID / floor (all) | GAN TSTR AUC | insertion model: steps, hours | "
        "insertion TSTR AUC | SR model: steps, hours | SR validation gain (dB) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in records:
        gan, insert, sr = r.get("gan") or {}, r.get("insert") or {}, r.get("sr") or {}
        quality = (gan.get("quality") or {}).get("groups", {}).get("all")
        kid = f"{1e3 * quality['kid']:,.0f} / {1e3 * quality['kid_floor']:,.0f}" if quality else "-"
        gan_tstr, insert_tstr = (_number(tstr[k].get(r["fold"]), ".3f") for k in ("gan", "insert"))
        lines.append(
            f"| {r['fold']} | {gan.get('steps', '-')}, {_hours(gan)} | {kid} | {gan_tstr} | "
            f"{insert.get('steps', '-')}, {_hours(insert)} | {insert_tstr} | {sr.get('steps', '-')}, {_hours(sr)} | "
            f"{_number(sr.get('val_gain_db'), '+.3f')} |"
        )
    return lines


def _fold_auc(metrics: dict, arm: str, task: str = "easy") -> dict[int, float]:
    """fold -> the arm's AUC on that fold's test items, mean over seeds (folds without both classes left out)."""
    entry = metrics["tasks"].get(task) or {}
    rows = (entry.get("arms", {}).get(arm) or {}).get("fold_auc_by_seed") or []
    out = {}
    for i, fold in enumerate(entry.get("folds", [])):
        values = [row[i] for row in rows if row[i] is not None]
        if values:
            out[fold] = float(sum(values) / len(values))
    return out


def render_markdown(metrics: dict, figures: list[str]) -> str:
    c = metrics["config"]
    families = c.get("arms", ("gan",))  # studies made before the insertion arms had the GAN's only
    models = [f"GAN preset `{c['gan_preset']}`"] if "gan" in families else []
    models += [f"insertion preset `{c['insert_preset']}`"] if "insert" in families else []
    if "sr" in families and not metrics.get("sr_model"):  # else one given SR model (--sr-model) in every fold
        models += [f"SR preset `{c['sr_preset']}`"]
    retrained = f"{' and '.join(models)}, retrained inside every fold on its training patients only; " if models else ""
    lines = [
        "# evaluate-aug: does synthetic data or SR help recognise calcifications?",
        "",
        f"Data: {metrics['data']} ({metrics['source']}); preset `{c['preset']}`: {c['folds']} patient folds x "
        f"{c['seeds']} seeds; classifier preset `{c['classifier_preset']}` ({c['classifier_steps'] or 'preset'} "
        f"steps, same in every arm); {retrained}"
        f"{c['bootstrap']} patient-level bootstrap resamples. Training units took "
        f"{metrics.get('training_seconds_all_sessions', 0) / 3600:.2f} h of process time over all sessions "
        f"(work/progress.jsonl, or a restored unit's own run record; units run in parallel overlap); the last "
        f"invocation took "
        f"{metrics.get('wall_seconds', 0) / 3600:.2f} h.",
        "",
        "AUC, sensitivity and specificity (threshold chosen on validation patients) are pooled over folds per "
        "seed and averaged over seeds. Pooling mixes the calibrations of the fold models, so the mean of the "
        "per-fold AUCs stands beside the pooled AUC. Sensitivity at "
        f"{c['fixed_specificity']:.2f} specificity uses, per seed, the smallest threshold giving that "
        "specificity on the same test items' negatives (a point of the ROC curve, not a validation choice). "
        "Differences are paired against the reference arm on the same bootstrap "
        "draws; the verdict of an arm under test (synthetic data, SR) reads the difference's 95 % CI (above 0: "
        "helps, below 0: hurts, else no detectable effect); baselines and probes are there to be compared, and "
        "a model that does not beat the speck detector has learnt nothing beyond bright specks. DeLong's test "
        "compares each arm under test's pooled AUC with the reference's on the same items, per seed (the median "
        "p is shown); it treats patches as independent, which patches of one patient are not, so its p-values "
        "are optimistic beside the patient bootstrap. MIAS 'normal' tissue holds calcifications MIAS does not "
        "annotate (vascular, coarse, secretory).",
    ]
    if "insert" in families:
        lines += [
            "",
            "Insertion arms: clusters rendered into real normal tissue of the fold's training patients by an "
            "insertion model fitted on them, refined by its GAN refiner (real+inserted at a ratio of inserted to "
            "real calcification patches per class) or not (rendered); 'inserted only' trains on inserted positives "
            "and the real negatives (train on synthetic, test on real); the pretraining arm trains so for half the "
            "step budget, then on the real patches for the other half from those weights.",
        ]
    spec = f"{c['fixed_specificity']:.2f}"
    for task, e in metrics["tasks"].items():
        lines += [
            "",
            f"## {task}",
            "",
            f"{e['n_items']} test items ({e['n_positive']} positive) from {e['n_patients']} patients; "
            f"reference arm: {e['reference']}.",
            "",
            f"**Verdict.** {verdict_sentence(task, e)}",
            "",
            f"| arm | pooled AUC [95 % CI] | mean fold AUC | difference [95 % CI] | DeLong p | Holm p | verdict | "
            f"sensitivity at {spec} specificity | its difference | sensitivity | specificity |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for arm, a in e["arms"].items():
            reference = arm == e["reference"]
            diff = "-" if reference else _ci(a["auc_difference_vs_reference"], sign="+")
            diff_at_spec = (
                "-" if reference else _ci(a["sensitivity_at_fixed_specificity_difference_vs_reference"], 2, "+")
            )
            delong = a["delong_vs_reference"] or {}
            lines.append(
                f"| {arm} | {_ci(a['auc'])} | {_number(a['fold_auc_mean'], '.3f')} | {diff} | "
                f"{_number(delong.get('p_median'), '.3g')} | {_number(delong.get('p_holm'), '.3g')} | "
                f"{a['verdict']} | {_ci(a['sensitivity_at_fixed_specificity'], 2)} | {diff_at_spec} | "
                f"{_ci(a['sensitivity'], 2)} | {_ci(a['specificity'], 2)} |"
            )
        if e["holm"]["family"]:
            lines += [
                "",
                f"Holm adjusted the DeLong p-values (median over seeds) across this task's "
                f"{len(e['holm']['family'])} arms under test ({', '.join(e['holm']['family'])}); baselines are "
                "not in the family.",
            ]
        if "exploratory" in task:
            lines += [
                "",
                "Exploratory only: MIAS holds too few calcification clusters to tell benign from malignant; "
                "do not read this row as a result.",
            ]
    lines += sr_matrix_lines(metrics)
    lines += fold_models_lines(metrics)
    if metrics.get("low_data"):
        lines += low_data_lines(metrics["low_data"])
    loc = metrics.get("film_localisation") or {}
    if loc.get("clusters_films"):
        lines += [
            "",
            f"Film localisation: the top region lies inside an annotated calcification circle on "
            f"{loc['top_region_in_circle']:.0%} of {loc['clusters_films']} film-seeds with circles.",
        ]
    lines += ["", *[f"![{n}]({n})" for n in figures], ""]
    return "\n".join(lines)


def write_study_report(out: Path, metrics: dict, predictions: pd.DataFrame) -> None:
    """metrics.json, predictions.csv.gz (Pool.table(), gzip without a timestamp so that a rerun gives the
    same bytes), report.md and the figures into `out` (each file atomically)."""
    figures = _figures(out, metrics)
    write_bytes_atomic(out / "metrics.json", metrics_json(metrics).encode())
    write_bytes_atomic(out / PREDICTIONS, gzip.compress(predictions.to_csv(index=False).encode(), mtime=0))
    write_bytes_atomic(out / "report.md", render_markdown(metrics, figures).encode())
