"""Shipping trained SR models: evaluate, write a model card, copy the generator into saved_models/<name>/.

    saved_models/<name>/model.keras   the EMA generator (float32 weights)
    saved_models/<name>/card.json     data, split, steps, hours, machine, config, evaluate-sr numbers, curve data
    saved_models/<name>/card.md       the same for people, with curve.png (validation gain over bicubic vs hours)

`ship_sr` ships the PSNR model and (when the run reached it) the GAN model, and makes `sr-x2` (the
upscale default) a copy of the GAN model only if its PSNR stays within 0.1 dB of the PSNR model's and it
creates no more spurious specks than bicubic on the phantom; otherwise of the PSNR model. The reason is
written in the card.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
from pathlib import Path

from mammo_tf.errors import located
from mammo_tf.evaluation.report import metrics_json
from mammo_tf.inference.noise_gate import model_noise_ceiling
from mammo_tf.io.atomic import atomic_dir

GAN_PSNR_TOLERANCE_DB = 0.1


@contextlib.contextmanager
def _replacing(target: Path):
    """Yield a staging folder; on success it replaces `target` (the old one is removed only afterwards)."""
    staging, old = target.with_name(f".{target.name}.new"), target.with_name(f".{target.name}.old")
    with atomic_dir(staging) as tmp:
        yield tmp
    if target.exists():
        target.rename(old)
    staging.rename(target)
    shutil.rmtree(old, ignore_errors=True)


def _cores(machine: dict) -> str:
    """'1 of 2 CPU cores' when the run was pinned to fewer cores than the machine has."""
    cpus, total = machine.get("cpus", "?"), machine.get("machine_cpus")
    return f"{cpus} of {total} CPU cores" if total and total != cpus else f"{cpus} CPU cores"


def _curve(records: list[dict], out: Path, title: str) -> list[dict]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = [
        {"hours": r["seconds"] / 3600, "step": r["step"], "phase": r["phase"], "gain_db": r["val_gain_db"]}
        for r in records
        if "val_gain_db" in r
    ]
    fig, ax = plt.subplots(figsize=(5, 3), dpi=120)
    for phase, marker in (("pretrain", "o"), ("gan", "s")):
        pts = [p for p in points if p["phase"] == phase]
        if pts:
            ax.plot([p["hours"] for p in pts], [p["gain_db"] for p in pts], marker=marker, ms=3, label=phase)
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_xlabel("training hours")
    ax.set_ylabel("PSNR gain over bicubic (dB)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return points


def _table(metrics: dict) -> list[str]:
    rows = [
        "| LR | images | SR PSNR | bicubic | gain [95 % CI] | interior gain [95 % CI] | film foreground gain "
        "| worst image (interior) | below bicubic | SSIM SR / bicubic | max abs D(SR) - LR |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, v in metrics["variants"].items():
        g, i, a = v["gain_over_bicubic_db"], v["interior_gain_over_bicubic_db"], v["anchor_gain_over_bicubic_db"]
        ssim = f"{v['ssim_sr']:.4f} / {v['ssim_bicubic']:.4f}" if "ssim_sr" in v else "-"
        rows.append(
            f"| {name} | {v['images']} | {v['psnr_sr']:.2f} | {v['psnr_bicubic']:.2f} | {g['estimate']:+.3f} "
            f"[{g['low']:+.3f}, {g['high']:+.3f}] | {i['estimate']:+.3f} [{i['low']:+.3f}, {i['high']:+.3f}] | "
            f"{a['estimate']:+.3f} [{a['low']:+.3f}, {a['high']:+.3f}] | "
            f"{v['interior_worst_image']['image_id']} ({v['interior_worst_image']['gain_db']:+.3f}) | "
            f"{v['images_below_bicubic']} | {ssim} | {v['consistency_error_max']:.1e} |"
        )
    return rows


def _selection_text(step: int | None, records: list[dict]) -> str:
    """Which checkpoint of the run this model is, and how far into training it was taken."""
    if step is None:
        return " This model is the generator at the end of the run."
    seconds = next((r["seconds"] for r in records if r["step"] == step and "val_gain_db" in r), None)
    when = f", {seconds / 3600:.2f} h into training" if seconds is not None else ""
    return (
        f" This model is the EMA generator of step {step}{when}: the pretraining validation with the best gain "
        "over bicubic (chosen on validation patients, not test patients)."
    )


def _gate_text(ceiling: float | None) -> str:
    if ceiling is None:
        return "Noise gate: no ceiling recorded, so `upscale` super-resolves every film (`--noise-gate` sets one)."
    return (
        f"Noise gate: `upscale` writes a film noisier than {ceiling:g} grey levels (8-bit; its noisiest training "
        "film plus 3 %) as bicubic, since the model would sharpen noise it never saw into specks."
    )


def write_card(
    run_dir: Path,
    model_file: Path,
    name: str,
    out_root: Path,
    test: dict,
    phantom: dict | None,
    note: str = "",
    report: Path | None = None,
) -> Path:
    """saved_models/<name>/ with model.keras, card.json, card.md, curve.png (atomic; replaces an older one)."""
    config = json.loads((run_dir / "config.json").read_text())
    state = json.loads((run_dir / "state.json").read_text())
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    final = json.loads((run_dir / "metrics.json").read_text()) if (run_dir / "metrics.json").is_file() else {}
    target = out_root / name
    with _replacing(target) as tmp:
        shutil.copy2(model_file, tmp / "model.keras")
        # runs before whole-film validation (no val_films in their config) were validated on crops
        where = "films, film foreground" if "val_films" in config else "crops, whole crop"
        curve = _curve(records, tmp / "curve.png", f"validation {where}, 8-bit LR")
        if report is not None:  # the evaluate-sr report of the test patients: per-image table, crops
            shutil.copytree(report, tmp / "evaluate-sr")
        hours = state.get("seconds", 0) / 3600
        machine = final.get("machine") or config.get("machine")
        if machine is None:  # runs that predate the record: the shipping machine, said so
            from mammo_tf.machine import machine_summary

            machine = {**machine_summary(), "recorded": "at shipping time; the run did not record its machine"}
        card = {
            "name": name,
            "kind": "sr",
            "scale": config["scale"],
            "source_file": model_file.name,
            "selected_step": state.get("best_step") if model_file.name.startswith("generator_best") else None,
            "noise_ceiling_greys": model_noise_ceiling(model_file),  # upscale's noise gate (inference/noise_gate.py)
            "training": {
                "data": config["source"],
                "training_spacing_mm": config.get("training_spacing_mm"),
                "split": "patient-level train/val/test (seed 0), trained on train patients",
                "train_patients": sorted(config["train_patients"]),  # the study asserts against these ids
                "steps": state["step"],
                "planned_steps": config["pretrain_steps"] + config["gan_steps"],
                "phase": state["phase"],
                "finished": bool(state.get("finished")),
                "hours": round(hours, 2),
                "precision": config["precision_resolved"],
                "machine": machine,
                "config": {k: v for k, v in config.items() if k not in ("train_patients", "data")},
            },
            "evaluate_sr_test": {k: v for k, v in test.items() if k != "per_image"},
            "evaluate_sr_phantom": {k: v for k, v in phantom.items() if k != "per_image"} if phantom else None,
            "validation_curve": curve,
            "note": note,
        }
        (tmp / "card.json").write_text(metrics_json(card))
        lines = [
            f"# {name}: x{config['scale']} SR generator ({model_file.stem})",
            "",
            f"Trained by `mammo-tf train-sr` on {config['source']} training patients ({len(config['train_patients'])}"
            f" patients), {state['step']} of {card['training']['planned_steps']} steps ({state['phase']} phase"
            f"{', finished' if state.get('finished') else ', not finished'}), {hours:.2f} h on "
            f"{_cores(machine)} ({machine.get('processor', '?')}"
            f"{', avx512_bf16' if machine.get('avx512_bf16') else ''}), {config['precision_resolved']}."
            + _selection_text(card["selected_step"], records),
            "",
            f"## evaluate-sr on the {test['source']} {test['split']} patients ({test['patients']} patients)",
            "",
            *_table(test),
            "",
            f"Specks (8-bit LR): spurious SR {test['specks'].get('spurious_sr')}, bicubic "
            f"{test['specks'].get('spurious_bicubic')} (HR detections {test['specks'].get('specks_hr')}).",
            "",
            _gate_text(card["noise_ceiling_greys"]),
        ]
        if phantom:
            s = phantom["specks"]
            lines += [
                "",
                f"Phantom ({phantom['patients']} test patients): gain "
                f"{phantom['variants']['8-bit']['gain_over_bicubic_db']['estimate']:+.3f} dB (8-bit LR); true specks "
                f"found HR {s.get('truth_found_hr')}, bicubic {s.get('truth_found_bicubic')}, SR "
                f"{s.get('truth_found_sr')} of {s.get('truth_specks')}; spurious SR {s.get('spurious_sr')}, "
                f"bicubic {s.get('spurious_bicubic')}.",
            ]
        lines += ["", "![validation gain over bicubic against training hours](curve.png)", ""]
        if note:
            lines += [note, ""]
        (tmp / "card.md").write_text("\n".join(lines))
    return target


def ship_sr(
    run_dir: str | Path,
    data: str | Path | None,
    out_root: str | Path,
    *,
    prefix: str = "sr-x2",
    max_images: int | None = None,
) -> dict:
    """Evaluate the run's PSNR (and GAN) generators on `data` test patients and the phantom; write the cards."""
    from mammo_tf.evaluation.sr_eval import evaluate_sr
    from mammo_tf.training.sr_trainer import BEST_MODEL, GAN_MODEL, LATEST_MODEL, PSNR_MODEL

    run_dir, out_root = Path(run_dir), Path(out_root)
    # The PSNR model: the pretraining checkpoint with the best validation gain (chosen on validation patients),
    # else the end of pretraining, else (pretraining unfinished) the latest EMA generator; the card says which.
    found = [run_dir / n for n in (BEST_MODEL, PSNR_MODEL, LATEST_MODEL) if (run_dir / n).is_file()]
    if not found:
        raise located(run_dir, "no generator to ship (generator_best / generator_psnr / generator.keras)")
    candidates = {"psnr": found[0], "gan": run_dir / GAN_MODEL}
    shipped, results = {}, {}
    out_root.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".ship-sr-", dir=out_root))
    try:
        for which, path in candidates.items():
            if not path.is_file():
                continue
            report = scratch / which
            test = evaluate_sr(path, data, split="test", max_images=max_images, out=report)
            phantom = evaluate_sr(path, None, split="test", max_images=max_images)
            results[which] = (test, phantom, report)
            shipped[which] = write_card(run_dir, path, f"{prefix}-{which}", out_root, test, phantom, report=report)
        choice, reason = _default_choice(results)
        test, phantom, report = results[choice]
        note = f"Default `upscale` model: a copy of `{prefix}-{choice}`, because {reason}."
        shipped["default"] = write_card(run_dir, candidates[choice], prefix, out_root, test, phantom, note, report)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return {"shipped": {k: str(v) for k, v in shipped.items()}, "default": choice, "reason": reason}


def _default_choice(results: dict) -> tuple[str, str]:
    """'gan' if it stays within GAN_PSNR_TOLERANCE_DB of the PSNR model and adds no spurious specks, else 'psnr'."""
    if "gan" not in results:
        return "psnr", "this run has no GAN-phase model yet (its adversarial phase has not run)"
    (psnr_test, _, _), (gan_test, gan_phantom, _) = results["psnr"], results["gan"]
    drop = psnr_test["variants"]["8-bit"]["psnr_sr"] - gan_test["variants"]["8-bit"]["psnr_sr"]
    spurious, bicubic = gan_phantom["specks"].get("spurious_sr", 0), gan_phantom["specks"].get("spurious_bicubic", 0)
    failed = []
    if drop > GAN_PSNR_TOLERANCE_DB:
        failed.append(f"the GAN model loses {drop:.3f} dB against the PSNR model (tolerance {GAN_PSNR_TOLERANCE_DB})")
    if spurious > bicubic:
        failed.append(f"the GAN model adds more spurious specks than bicubic on the phantom ({spurious} vs {bicubic})")
    if not failed:
        return "gan", (
            f"the GAN model is within {drop:.3f} dB of the PSNR model and creates no more spurious specks than "
            f"bicubic on the phantom ({spurious} vs {bicubic})"
        )
    return "psnr", " and ".join(failed)


SIDE_FILES = {"insert": ("insertion.json",)}  # what a kind's model needs beside model.keras


def ship_run(run_dir: str | Path, name: str, out_root: str | Path, *, report: str | Path | None = None) -> Path:
    """Ship a synthesis, classifier or insertion run: its model (and SIDE_FILES), and a card from its config,
    state, metrics and report.

    report: an evaluation folder (evaluate-gan) whose metrics.json and figures go into the card.
    """
    from mammo_tf.inference.registry import RUN_ARTIFACTS

    run_dir, out_root = Path(run_dir), Path(out_root)
    model_file = next((run_dir / n for n in RUN_ARTIFACTS if (run_dir / n).is_file()), None)
    if model_file is None or not (run_dir / "config.json").is_file():
        raise located(run_dir, "not a finished training run (no config.json and model file)")
    config = json.loads((run_dir / "config.json").read_text())
    state = json.loads((run_dir / "state.json").read_text())
    final = json.loads((run_dir / "metrics.json").read_text()) if (run_dir / "metrics.json").is_file() else {}
    evaluation = json.loads((Path(report) / "metrics.json").read_text()) if report else None
    target = out_root / name
    with _replacing(target) as tmp:
        shutil.copy2(model_file, tmp / "model.keras")
        for side in SIDE_FILES.get(config.get("kind"), ()):
            shutil.copy2(run_dir / side, tmp / side)
        card = {
            "name": name,
            "kind": config.get("kind"),
            "source_file": model_file.name,
            "training": {
                "data": config.get("source"),
                "training_spacing_mm": config.get("training_spacing_mm"),
                "train_patients": sorted(config.get("train_patients", [])),
                "steps": state.get("step"),
                "finished": bool(state.get("finished")),
                "hours": round(state.get("seconds", 0) / 3600, 3),
                "precision": config.get("precision_resolved"),
                "config": {k: v for k, v in config.items() if k != "data"},
            },
            "final_metrics": final,
            "evaluation": evaluation,
        }
        (tmp / "card.json").write_text(metrics_json(card))
        lines = [
            f"# {name}: {config.get('kind')} model ({model_file.name})",
            "",
            f"Trained on {config.get('source')} training patients ({len(config.get('train_patients', []))} "
            f"patients), {state.get('step')} steps, {card['training']['hours']:.2f} h, "
            f"{config.get('precision_resolved')}"
            + (
                f" on {_cores(final['machine'])} ({final['machine'].get('processor', '?')})."
                if "machine" in final
                else "."
            )
            + (
                ""
                if card["training"]["finished"]
                else f" The run was not finished: this is its checkpoint at step "
                f"{state.get('step')} of {config.get('steps', '?')}."
            ),
            "",
            "Final run metrics (validation patients):" if final else "No final run metrics (the run is not finished).",
            "",
        ]
        lines += [f"- {k}: {v}" for k, v in final.items() if isinstance(v, int | float | str)]
        if report:
            report = Path(report)
            for figure in sorted(report.glob("*.png")):
                shutil.copy2(figure, tmp / figure.name)
            if (report / "report.md").is_file():
                lines += ["", "## Evaluation", "", (report / "report.md").read_text()]
        (tmp / "card.md").write_text("\n".join(lines) + "\n")
    return target
