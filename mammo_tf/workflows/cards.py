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
from collections.abc import Sequence
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
    """Gains over bicubic per LR variant and region, and the worst film of each region."""
    rows = [
        "| LR | images | SR PSNR | bicubic | gain, breast mask [95 % CI] | tissue interior | film foreground "
        "| worst film: foreground / interior / mask | films below bicubic: foreground / interior / mask "
        "| SSIM SR / bicubic | max abs D(SR) - LR |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, v in metrics["variants"].items():
        g, i, a = v["gain_over_bicubic_db"], v["interior_gain_over_bicubic_db"], v["anchor_gain_over_bicubic_db"]
        ssim = f"{v['ssim_sr']:.4f} / {v['ssim_bicubic']:.4f}" if "ssim_sr" in v else "-"
        worst = [v.get("anchor_worst_image"), v["interior_worst_image"], v["worst_image"]]  # older cards: no anchor
        below = v.get("images_below_bicubic_by_region")
        below = (
            f"{below['film_foreground']} / {below['interior']} / {below['breast_mask']}"
            if below
            else f"- / - / {v['images_below_bicubic']}"
        )
        rows.append(
            f"| {name} | {v['images']} | {v['psnr_sr']:.2f} | {v['psnr_bicubic']:.2f} | {g['estimate']:+.3f} "
            f"[{g['low']:+.3f}, {g['high']:+.3f}] | {i['estimate']:+.3f} [{i['low']:+.3f}, {i['high']:+.3f}] | "
            f"{a['estimate']:+.3f} [{a['low']:+.3f}, {a['high']:+.3f}] | "
            + " / ".join(f"{w['image_id']} ({w['gain_db']:+.3f})" if w else "-" for w in worst)
            + f" | {below} | {ssim} | {v['consistency_error_max']:.1e} |"
        )
    return rows


def _selection_text(step: int | None, curve: list[dict]) -> str:
    """Which checkpoint of the run this model is, and how far into training it was taken (from the curve)."""
    if step is None:
        return " This model is the generator at the end of the run."
    hours = next((p["hours"] for p in curve if p["step"] == step), None)
    when = f", {hours:.2f} h into training" if hours is not None else ""
    return (
        f" This model is the EMA generator of step {step}{when}: the pretraining validation with the best gain "
        "over bicubic (chosen on validation patients, not test patients)."
    )


def _blend_text(blend: dict, config: dict) -> str:
    """What a blended model is (workflows.blend): its two sources and alpha."""
    start = f", started from `{config['init_from']}`" if config.get("init_from") else ""
    return (
        f" This model's weights are (1 - {blend['alpha']:g}) x `{blend['clean']}` + {blend['alpha']:g} x the run's "
        f"GAN generator `{blend['robust']}` (network interpolation; the run trained on "
        f"{config.get('lr_degradations', 'box')} LR degradations{start})."
    )


def _gate_text(ceiling: float | None) -> str:
    if ceiling is None:
        return "Noise gate: no ceiling recorded, so `upscale` super-resolves every film (`--noise-gate` sets one)."
    return (
        f"Noise gate: `upscale` writes a film noisier than {ceiling:g} grey levels (8-bit; its noisiest training "
        "film plus 3 %) as bicubic, since the model would sharpen noise it never saw into specks."
    )


def _run_card(run_dir: Path, model_file: Path, name: str, curve_png: Path) -> dict:
    """The card's training part (everything but the evaluation) from a run directory; draws curve_png."""
    config = json.loads((run_dir / "config.json").read_text())
    state = json.loads((run_dir / "state.json").read_text())
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    final = json.loads((run_dir / "metrics.json").read_text()) if (run_dir / "metrics.json").is_file() else {}
    # runs before whole-film validation (no val_films in their config) were validated on crops
    where = "films, film foreground" if "val_films" in config else "crops, whole crop"
    curve = _curve(records, curve_png, f"validation {where}, 8-bit LR")
    machine = final.get("machine") or config.get("machine")
    if machine is None:  # runs that predate the record: the shipping machine, said so
        from mammo_tf.machine import machine_summary

        machine = {**machine_summary(), "recorded": "at shipping time; the run did not record its machine"}
    return {
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
            "hours": round(state.get("seconds", 0) / 3600, 2),
            "precision": config["precision_resolved"],
            "machine": machine,
            "config": {k: v for k, v in config.items() if k not in ("train_patients", "data")},
        },
        "validation_curve": curve,
    }


def _with_evaluation(card: dict, test: dict, phantom: dict | None) -> dict:
    """The card with evaluate-sr's summaries (per-image rows stay in the evaluate-sr/ report folder)."""
    return {
        **card,
        "evaluate_sr_test": {k: v for k, v in test.items() if k != "per_image"},
        "evaluate_sr_phantom": {k: v for k, v in phantom.items() if k != "per_image"} if phantom else None,
    }


def _machine_text(machine: dict) -> str:
    """'1 of 2 CPU cores (Intel(R) Xeon(R) Processor, avx512_bf16)'."""
    bf16 = ", avx512_bf16" if machine.get("avx512_bf16") else ""
    return f"{_cores(machine)} ({machine.get('processor', '?')}{bf16})"


def _refresh_text(refreshed: dict) -> str:
    """Says that, when and where the evaluation was recomputed, and that training is the original card's."""
    engine = f", `{refreshed['engine']}` engine" if refreshed.get("engine") else ""
    return (
        f"Evaluation recomputed on {refreshed['date'][:10]} ({refreshed['date'][11:16]} UTC) on "
        f"{_machine_text(refreshed['machine'])} with the current `upscale` pipeline{engine} (films scored as "
        "`upscale` writes them: noise / JPEG gate and averaging at scanner lines included). The training "
        "paragraph below is from the original card: the model file is the one shipped then."
    )


def _gated_text(metrics: dict) -> str:
    """How many scored films the gate wrote as bicubic (they count as 0 dB gain); '' for older evaluations."""
    gate = metrics.get("noise_gate")
    if not gate or gate["ceiling_greys"] is None:
        return ""
    films = metrics["variants"]["8-bit"]["images"]
    return (
        f" The gate wrote {gate['films_gated']} of these {films} films as bicubic (noisiest input "
        f"{gate['noise_greys_max']:.2f} grey levels); such a film counts as 0 dB gain."
    )


def _grid_text(grid: dict) -> list[str]:
    """A card's "Scanner grid" section: the report it came from, the rule, how many cells pass, the table."""
    from mammo_tf.evaluation.sr_grid import grid_table

    passed = sum(bool(c["pass"]) for c in grid["cells"])
    gate = "" if grid.get("noise_gate") else " It was scored before the noise gate existed (the network on every film)."
    draws = grid.get("draws", 1)
    gate += f" Each noise cell on {draws} noise draws (counts summed)." if draws > 1 else ""
    return [
        "",
        f"## Scanner grid: {grid['source']} {grid['split']} films",
        "",
        f"From `{grid['report']}` (`evaluate-sr --grid`, model {grid['model']}, {grid['source']} {grid['split']} "
        f"patients, {len(grid['films'])} films: {', '.join(grid['films'])}).{gate} Rule: {grid['rule']}. "
        f"{passed} of {len(grid['cells'])} cells pass: grid **{'pass' if grid['pass'] else 'FAIL'}**.",
        "",
        *grid_table(grid),
    ]


def card_markdown(card: dict, test: dict, phantom: dict | None, *, curve: bool = True) -> str:
    """card.md of an SR model from its card dict and evaluate-sr results: one renderer for ship and refresh.

    A card with a `refreshed` record says the evaluation was recomputed (when, where) and that the training
    paragraph is the original card's; each of `scanner_grids` adds a section; curve: whether curve.png is beside it.
    """
    from mammo_tf.evaluation.sr_eval import files_table

    training, machine = card["training"], card["training"]["machine"]
    lines = [f"# {card['name']}: x{card['scale']} SR generator ({Path(card['source_file']).stem})", ""]
    if card.get("refreshed"):
        lines += [_refresh_text(card["refreshed"]), ""]
    lines += [
        f"Trained by `mammo-tf train-sr` on {training['data']} training patients ({len(training['train_patients'])}"
        f" patients), {training['steps']} of {training['planned_steps']} steps ({training['phase']} phase"
        f"{', finished' if training['finished'] else ', not finished'}), {training['hours']:.2f} h on "
        f"{_machine_text(machine)}, {training['precision']}."
        + (
            _blend_text(training["config"]["interpolation"], training["config"])
            if "interpolation" in training.get("config", {})
            else _selection_text(card["selected_step"], card["validation_curve"])
        ),
        "",
        f"## evaluate-sr on the {test['source']} {test['split']} patients ({test['patients']} patients)",
        "",
        *_table(test),
        *(
            ["", "Films as `upscale` writes them (8-bit LR, film foreground):", "", *files_table(test["files"])]
            if test.get("files")
            else []
        ),
        "",
        f"Specks (8-bit LR): spurious SR {test['specks'].get('spurious_sr')}, bicubic "
        f"{test['specks'].get('spurious_bicubic')} (HR detections {test['specks'].get('specks_hr')}).",
        "",
        _gate_text(card["noise_ceiling_greys"]) + _gated_text(test),
    ]
    if phantom:
        s = phantom["specks"]
        lines += [
            "",
            f"Phantom ({phantom['patients']} test patients): gain "
            f"{phantom['variants']['8-bit']['gain_over_bicubic_db']['estimate']:+.3f} dB (8-bit LR); true specks "
            f"found HR {s.get('truth_found_hr')}, bicubic {s.get('truth_found_bicubic')}, SR "
            f"{s.get('truth_found_sr')} of {s.get('truth_specks')}; spurious SR {s.get('spurious_sr')}, "
            f"bicubic {s.get('spurious_bicubic')}." + _gated_text(phantom),
        ]
    for grid in card.get("scanner_grids", ()):
        lines += _grid_text(grid)
    lines += [""]
    if curve:
        lines += ["![validation gain over bicubic against training hours](curve.png)", ""]
    if card.get("note"):
        kept = " (Written at shipping, from the evaluation of then.)" if card.get("refreshed") else ""
        lines += [card["note"] + kept, ""]
    return "\n".join(lines)


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
    target = out_root / name
    with _replacing(target) as tmp:
        shutil.copy2(model_file, tmp / "model.keras")
        card = _run_card(run_dir, model_file, name, tmp / "curve.png")
        if report is not None:  # the evaluate-sr report of the test patients: per-image table, crops
            shutil.copytree(report, tmp / "evaluate-sr")
        card = {**_with_evaluation(card, test, phantom), "note": note}
        (tmp / "card.json").write_text(metrics_json(card))
        (tmp / "card.md").write_text(card_markdown(card, test, phantom))
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


# What a refresh recomputes; everything else of the old card is kept as it is.
_EVALUATION_KEYS = ("evaluate_sr_test", "evaluate_sr_phantom", "noise_ceiling_greys", "refreshed", "scanner_grids")
_REPLACED_FILES = ("card.json", "card.md", "evaluate-sr")
_CARD_NEEDS = ("name", "scale", "source_file", "training", "validation_curve")
_TRAINING_NEEDS = ("data", "train_patients", "steps", "planned_steps", "phase", "finished", "hours", "precision")


def _read_json(path: Path) -> dict:
    """A JSON object from `path`, or a located MammoError saying what is wrong with the file."""
    if not path.is_file():
        raise located(path, "not found")
    try:
        record = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise located(path, f"not readable JSON ({err})") from None
    if not isinstance(record, dict):
        raise located(path, "not a JSON object")
    return record


def _shipped_sr_card(model_dir: Path) -> dict:
    """The card.json of a shipped SR folder, checked for what a refresh keeps and renders (MammoError if not)."""
    card_file = model_dir / "card.json"
    if not card_file.is_file():
        raise located(card_file, "not found: --refresh needs a folder that ship-sr wrote (model.keras, card.json)")
    card = _read_json(card_file)
    if card.get("kind") != "sr":
        raise located(card_file, f"a card of kind {card.get('kind')!r}, not an SR model's (--refresh is for ship-sr)")
    missing = [k for k in _CARD_NEEDS if k not in card]
    training = card.get("training")
    if isinstance(training, dict):
        missing += [f"training.{k}" for k in _TRAINING_NEEDS if k not in training]
    else:
        missing.append("training")
    if missing:
        raise located(card_file, f"an SR card without {', '.join(missing)}: cannot keep its training record")
    if not (model_dir / "model.keras").is_file():
        raise located(model_dir / "model.keras", "not found: a shipped SR folder holds its model beside card.json")
    return card


def _grid_record(grid: Path, model_file: Path) -> dict:
    """The scanner grid of an evaluate-sr --grid report, refused unless it scored the same model file.

    Models are compared by the digest of model_id (<name>@<SHA-256 prefix>): the same bytes shipped under
    another name (sr-x2 and sr-x2-gan) are the same model.
    """
    from mammo_tf.inference.registry import model_id

    metrics_file = grid / "metrics.json"
    metrics = _read_json(metrics_file)
    if not isinstance(metrics.get("grid"), dict) or not metrics["grid"].get("cells"):
        raise located(metrics_file, "no scanner grid in this evaluate-sr report (it was made without --grid)")
    ours, theirs = model_id(model_file), str(metrics.get("model"))
    if theirs.rpartition("@")[2] != ours.rpartition("@")[2]:
        raise located(
            metrics_file,
            f"a grid of another model ({theirs}), not of {model_file} ({ours}): run evaluate-sr --grid with it",
        )
    provenance = {k: metrics.get(k) for k in ("model", "data", "source", "split", "noise_gate")}
    return {**metrics["grid"], **provenance, "report": str(grid)}


def refresh_sr_card(
    model_dir: str | Path,
    data: str | Path | None,
    *,
    max_images: int | None = None,
    grids: Sequence[str | Path] = (),
) -> Path:
    """Recompute a shipped SR model's evaluation with the current `upscale` pipeline, in place.

    Why: a card's numbers go stale when inference changes (noise gate, scanner lines), and the training run
    that ship-sr reads may be gone; the shipped card already holds the training record. evaluate-sr runs as
    in ship_sr (`data`'s test patients with a report folder, then the phantom); model.keras (byte for byte),
    curve.png, the training record, validation curve, selected step, note and source file stay; the
    evaluation, evaluate-sr/, the noise ceiling and a `refreshed` record (UTC date, machine) are new.
    grids: evaluate-sr --grid reports of the same model file (e.g. on test and on validation films), put into
    the card (scanner_grids) in that order; a grid of an earlier refresh not given again is dropped.
    Atomic: on any error (MammoError for a folder without an SR card or model) the folder is unchanged.
    """
    from datetime import UTC, datetime

    from mammo_tf.evaluation.sr_eval import evaluate_sr
    from mammo_tf.machine import machine_summary

    model_dir = Path(model_dir)
    old = _shipped_sr_card(model_dir)
    model_file = model_dir / "model.keras"
    grid_records = [_grid_record(Path(grid), model_file) for grid in grids]
    scratch = Path(tempfile.mkdtemp(prefix=f".refresh-{model_dir.name}-", dir=model_dir.parent))
    try:
        report = scratch / "evaluate-sr"
        test = evaluate_sr(model_file, data, split="test", max_images=max_images, out=report)
        phantom = evaluate_sr(model_file, None, split="test", max_images=max_images)
        refreshed = {
            "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "machine": machine_summary(),
            "pipeline": "evaluate-sr scoring what `upscale` writes (noise / JPEG gate, scanner-line averaging)",
        }
        if test.get("engine"):
            refreshed["engine"] = test["engine"]
        card = {k: v for k, v in old.items() if k not in _EVALUATION_KEYS}
        card["noise_ceiling_greys"] = model_noise_ceiling(model_file)  # read before the folder is replaced
        card = {**_with_evaluation(card, test, phantom), "refreshed": refreshed}
        if grid_records:
            card["scanner_grids"] = grid_records
        with _replacing(model_dir) as tmp:
            for item in model_dir.iterdir():  # model.keras, curve.png and anything else the folder holds
                if item.name in _REPLACED_FILES:
                    continue
                if item.is_dir():
                    shutil.copytree(item, tmp / item.name)
                else:
                    shutil.copy2(item, tmp / item.name)
            shutil.copytree(report, tmp / "evaluate-sr")
            (tmp / "card.json").write_text(metrics_json(card))
            curve = (tmp / "curve.png").is_file()
            (tmp / "card.md").write_text(card_markdown(card, test, phantom, curve=curve))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return model_dir


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
