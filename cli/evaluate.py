"""`mammo-tf evaluate-sr ...`: what the models are worth. Parse, call one library function, print."""

from __future__ import annotations

from pathlib import Path

import click
from click.core import ParameterSource

from mammo_tf_cli.data import DATA_OPTION
from mammo_tf_cli.options import NOISE_GATE_OPTION, model_option, preset_option
from mammo_tf_cli.paths import InputFolder, OutputFolder


@click.command(name="evaluate-sr", context_settings={"show_default": True})
@model_option("sr-x2", "SR model")
@DATA_OPTION
@click.option("--split", type=click.Choice(["train", "val", "test"]), default="test", help="Patients to score.")
@click.option(
    "--out",
    type=OutputFolder(),
    default=None,
    help="Folder for report.md, metrics.json, per_image.csv, crops.png [default: print only].",
)
@click.option("--max-images", type=click.IntRange(min=1), default=None, help="Score only the first N images.")
@click.option(
    "--grid",
    is_flag=True,
    help="Also run the scanner grid: LR made from HR with more noise (Poisson-Gaussian), PSF blur, another "
    "downscaling kernel, 12/16 bits or JPEG, one factor at a time; per cell SR against bicubic (PSNR gain, "
    "calcification specks kept, spurious specks) and a pass/fail rule; grid.csv + a report section. "
    "With --max-images N, the grid runs on N films, those with calcifications first.",
)
@click.option(
    "--grid-cells",
    default=None,
    help="Comma-separated grid cells (implies --grid): default, noise-1, noise-2, noise-4, noise-corr-1, "
    "noise-corr-2, blur-0.7, blur-1.4, kernel-bicubic, kernel-gaussian, bits-12, bits-16, jpeg-75 [default: all].",
)
@click.option("--grid-seed", type=int, default=0, help="Seed of the grid's noise cells.")
@click.option(
    "--grid-draws",
    type=click.IntRange(min=1),
    default=1,
    help="Noise draws per noise cell, counts summed over them: one draw's kept count is a few specks, and noise "
    "puts specks near a reference speck by chance.",
)
@NOISE_GATE_OPTION
def evaluate_sr(model, data, split, out, max_images, grid, grid_cells, grid_seed, grid_draws, noise_gate) -> None:
    """Score an SR model on held-out patients against bicubic.

    PSNR/SSIM inside the breast mask against nearest, bicubic and Lanczos, with a patient-level bootstrap
    CI of the gain; the consistency error; specks kept and created. --grid adds the cross-scanner grid
    (docs/evaluation.md).
    """
    from mammo_tf.evaluation.sr_eval import evaluate_sr as run

    sections = []
    if grid or grid_cells:
        from mammo_tf.evaluation.sr_grid import scanner_grid

        names = [n.strip() for n in grid_cells.split(",") if n.strip()] if grid_cells else None
        sections.append(scanner_grid(names, seed=grid_seed, noise_gate=noise_gate, draws=grid_draws))
    metrics = run(model, data, split=split, out=out, max_images=max_images, sections=sections, noise_gate=noise_gate)
    click.echo(f"{metrics['model']} x{metrics['scale']} on {metrics['split']} ({metrics['patients']} patients)")
    for name, v in metrics["variants"].items():
        g, i = v["gain_over_bicubic_db"], v["interior_gain_over_bicubic_db"]
        click.echo(
            f"  {name:>6} LR: SR {v['psnr_sr']:.2f} dB, bicubic {v['psnr_bicubic']:.2f} dB, "
            f"gain {g['estimate']:+.3f} dB [{g['low']:+.3f}, {g['high']:+.3f}] "
            f"(interior {i['estimate']:+.3f} [{i['low']:+.3f}, {i['high']:+.3f}]), "
            f"consistency {v['consistency_error_max']:.1e}"
        )
    gate = metrics["noise_gate"]
    click.echo(
        f"  noise gate {gate['ceiling_greys'] or 'off'}: {gate['films_gated']} films written as bicubic "
        f"(noisiest input {gate['noise_greys_max']:.2f} grey levels, highest JPEG grid score "
        f"{gate['jpeg_grid_max']:.2f})"
    )
    s = metrics["specks"]
    click.echo(f"  spurious specks: SR {s.get('spurious_sr', 0)}, bicubic {s.get('spurious_bicubic', 0)}")
    if "grid" in metrics:
        click.echo(f"  scanner grid on {len(metrics['grid']['films'])} films (kept / spurious: SR vs bicubic):")
        for c in metrics["grid"]["cells"]:
            click.echo(
                f"    {c['cell']:<16} gain {c['gain_db']:+.3f} dB, kept {c['kept_sr']}/{c['kept_bicubic']} "
                f"of {c['reference']}, spurious {c['spurious_sr']}/{c['spurious_bicubic']}, "
                f"gated {c['gated']}/{c['films'] * c['draws']}  {'pass' if c['pass'] else 'FAIL'}"
            )
        click.echo(f"  grid: {'pass' if metrics['grid']['pass'] else 'FAIL'}")
    if out:
        click.echo(f"wrote {out}/report.md")


@click.command(name="ship-sr", context_settings={"show_default": True})
@click.argument("run_dir", type=InputFolder())
@DATA_OPTION
@click.option(
    "--out",
    type=OutputFolder(must_be_new_or_empty=False),
    default=Path("saved_models"),
    help="Folder of shipped models.",
)
@click.option("--name", default="sr-x2", help="Prefix: <name>-psnr, <name>-gan and <name> (the upscale default).")
@click.option(
    "--refresh",
    is_flag=True,
    help="RUN_DIR is a shipped SR folder (e.g. saved_models/sr-x2): recompute its evaluation with the current "
    "upscale pipeline, in place; its model file and the card's training record stay (no run directory needed).",
)
@click.option(
    "--grid",
    "grids",
    type=InputFolder(),
    multiple=True,
    help="With --refresh: an evaluate-sr --grid report folder of the same model, whose scanner grid goes into "
    "the card (repeat for several, e.g. test and validation films).",
)
@click.option(
    "--blend-with",
    default=None,
    help="Ship only <name>: the weights (1 - alpha) x this SR model (shipped name or .keras) + alpha x RUN_DIR's "
    "GAN generator, for a run fine-tuned from it (e.g. --lr-degradations diverse --init-from sr-x2-gan); "
    "the blend keeps this model's noise gate. Needs --alpha.",
)
@click.option(
    "--alpha",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    default=None,
    help="With --blend-with: the run's share of the weights (choose it on validation films, e.g. evaluate-sr "
    "--split val --grid).",
)
def ship_sr(run_dir, data, out, name, refresh, grids, blend_with, alpha) -> None:
    """Ship an SR run's generators with model cards, or refresh a shipped card.

    Evaluates them on the test patients and the phantom, writes <name>-psnr, <name>-gan and <name>.
    With --refresh, RUN_DIR is a shipped folder whose evaluation is recomputed. With --blend-with and
    --alpha, only <name> is written: a blend of that model and the run's.
    """
    ctx = click.get_current_context()
    if grids and not refresh:
        raise click.UsageError("--grid goes with --refresh (a grid report for a shipped card)", ctx)
    if (blend_with is None) != (alpha is None):
        raise click.UsageError("--blend-with and --alpha go together", ctx)
    if refresh:
        given = [f"--{p}" for p in ("out", "name") if ctx.get_parameter_source(p) is ParameterSource.COMMANDLINE]
        given += ["--blend-with"] if blend_with else []
        if given:
            raise click.UsageError(f"{' and '.join(given)}: not with --refresh (RUN_DIR is rewritten in place)", ctx)
        _refresh(run_dir, data, grids)
        return
    if blend_with:
        from mammo_tf.workflows.blend import ship_sr_blend

        click.echo(f"{name}: {ship_sr_blend(run_dir, data, out, clean=blend_with, alpha=alpha, name=name)}")
        return
    from mammo_tf.workflows.cards import ship_sr as run

    summary = run(run_dir, data, out, prefix=name)
    for which, path in summary["shipped"].items():
        click.echo(f"{which:>8}: {path}")
    click.echo(f"default: {summary['default']} ({summary['reason']})")


def _refresh(folder: Path, data, grids: tuple[Path, ...]) -> None:
    """ship-sr --refresh: run refresh_sr_card and print what the new card says."""
    import json

    from mammo_tf.workflows.cards import refresh_sr_card

    card = json.loads((refresh_sr_card(folder, data, grids=grids) / "card.json").read_text())
    click.echo(f"refreshed: {folder} (card.md, card.json, evaluate-sr/; {card['refreshed']['date']})")
    for key in ("evaluate_sr_test", "evaluate_sr_phantom"):
        m = card[key]
        g = m["variants"]["8-bit"]["gain_over_bicubic_db"]
        click.echo(
            f"  {m['source']} {m['split']} ({m['patients']} patients): 8-bit gain {g['estimate']:+.3f} dB "
            f"[{g['low']:+.3f}, {g['high']:+.3f}], spurious specks SR {m['specks'].get('spurious_sr')} / bicubic "
            f"{m['specks'].get('spurious_bicubic')}"
        )
    for grid in card.get("scanner_grids", ()):
        cells = grid["cells"]
        click.echo(
            f"  scanner grid, {grid['source']} {grid['split']}: {sum(bool(c['pass']) for c in cells)} of "
            f"{len(cells)} cells pass"
        )


@click.command(name="evaluate-aug", context_settings={"show_default": True})
@DATA_OPTION
@click.option("--folds", type=click.IntRange(min=2), default=None, help="Patient folds [default: the preset's].")
@click.option(
    "--seeds", type=click.IntRange(min=1), default=None, help="Training seeds per arm [default: the preset's]."
)
@click.option("--tasks", default=None, help="Comma-separated: easy, matched, film [default: all three].")
@click.option(
    "--arms",
    default=None,
    help="Comma-separated arm families beside real only: gan (whole-patch GAN), insert (cluster insertion), "
    "sr (SR utility: classifiers trained on HR, bicubic and SR, tested on each; an SR model per fold unless "
    "--sr-model) [default: all three].",
)
@click.option(
    "--positive-fractions",
    callback=lambda ctx, param, value: _fractions(value),
    default=None,
    help="Low-data curve: comma-separated fractions of each fold's training patients with calcifications whose "
    "clusters are the real positives (e.g. 0.25,0.5,1), real only against real + inserted at each "
    "[default: the preset's; standard: none].",
)
@preset_option(
    "study", "standard", "quick: minutes on the phantom (2 folds, 1 seed, tiny models); standard: 5 folds x 3 seeds."
)
@click.option(
    "--sr-model",
    default=None,
    help="One SR model for the SR utility arms instead of one per fold (a run directory or shipped name); "
    "the patients it trained on are left out of those arms.",
)
@click.option(
    "--precision",
    type=click.Choice(["float32", "mixed_bfloat16", "auto"]),
    default=None,
    help="Every unit's training precision [default: float32, so that a study resumed on another CPU trains its "
    "units alike; auto: bf16 only on a GPU or a CPU with avx512_bf16/AMX].",
)
@click.option(
    "--out",
    type=OutputFolder(must_be_new_or_empty=False),
    required=True,
    help="Report folder; its work/ subfolder lets an interrupted study resume.",
)
@click.option(
    "--only-fold",
    type=click.IntRange(min=0),
    default=None,
    help="Train that fold's units and stop (as --train-only, for one fold).",
)
@click.option(
    "--train-only",
    is_flag=True,
    help="Train the units and stop, without the report. Several processes may run it at once with the same "
    "--out on one machine: they share the units, each waiting for the others before it stops. A run without "
    "it writes the report.",
)
@click.option(
    "--status",
    is_flag=True,
    help="Print how far the study in --out is (per fold: units finished of those planned, units being trained "
    "now; its compute so far) and stop; give the options it was started with.",
)
def evaluate_aug(
    data, folds, seeds, tasks, arms, positive_fractions, preset, sr_model, precision, out, only_fold, train_only, status
) -> None:
    """Measure whether synthetic data or SR helps recognition (patient k-fold).

    Arms: real only; real + GAN patches (0.5, 1), GAN only; real + inserted clusters (0.5, 1, 2), rendered
    without the refiner, inserted only, inserted pretraining then real fine-tuning; texture logistic
    regression, the speck detector, intensity and position probes; SR utility (a 3x3 of trained on by tested
    on HR, bicubic and SR); optionally the low-data curve. Paired bootstrap CIs, DeLong p-values with Holm's
    adjustment and a verdict per arm; every
    prediction in predictions.csv.gz.
    """
    from mammo_tf.workflows.study import evaluate_aug as run

    chosen = tuple(t.strip() for t in tasks.split(",")) if tasks else None
    families = tuple(a.strip() for a in arms.split(",") if a.strip()) if arms is not None else None
    if status:
        import pandas as pd

        from mammo_tf.workflows.study import study_status

        options = {"folds": folds, "seeds": seeds, "tasks": chosen, "arms": families}
        rows, seconds = study_status(
            data, out=out, preset=preset, sr_model=sr_model, positive_fractions=positive_fractions, **options
        )
        click.echo(pd.DataFrame(rows).to_string(index=False))
        click.echo(f"compute so far: {seconds / 3600:.1f} h of process time")
        return
    metrics = run(
        data,
        out=out,
        preset=preset,
        folds=folds,
        seeds=seeds,
        tasks=chosen,
        arms=families,
        positive_fractions=positive_fractions,
        sr_model=sr_model,
        precision=precision,
        log=lambda line: click.echo(line, err=True),
        only_fold=only_fold,
        train_only=train_only,
    )
    if metrics is None:
        what, flag = ("every unit", "--train-only") if only_fold is None else (f"fold {only_fold}", "--only-fold")
        click.echo(f"{what} done in {out}/work; run again without {flag} to write the report")
        return
    for task, entry in metrics["tasks"].items():
        click.echo(task)
        for arm, a in entry["arms"].items():
            click.echo(f"  {arm:<45} AUC {a['auc']['estimate']:.3f}  {a['verdict']}")
    click.echo(f"wrote {out}/report.md")


def _fractions(value: str | None) -> tuple[float, ...] | None:
    """'0.25,0.5,1' -> (0.25, 0.5, 1.0); '' -> () (no curve); None -> None (the preset's)."""
    if value is None:
        return None
    try:
        return tuple(float(v) for v in value.split(",") if v.strip())
    except ValueError:
        raise click.BadParameter(f"comma-separated numbers expected, got {value!r}") from None


@click.command(name="ship", context_settings={"show_default": True})
@click.argument("run_dir", type=InputFolder())
@click.option("--name", required=True, help="Folder name under --out (e.g. synth-64, calc-classifier, insert-64).")
@click.option(
    "--report", type=InputFolder(), default=None, help="An evaluate-gan or evaluate-insert folder to put into the card."
)
@click.option(
    "--out",
    type=OutputFolder(must_be_new_or_empty=False),
    default=Path("saved_models"),
    help="Folder of shipped models.",
)
def ship(run_dir, name, report, out) -> None:
    """Ship a synthesis, classifier or insertion run with a model card (an insertion run: with insertion.json)."""
    from mammo_tf.workflows.cards import ship_run

    click.echo(f"shipped {ship_run(run_dir, name, out, report=report)}")
