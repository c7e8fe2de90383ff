"""`mammo-tf train-insert / insert`: calcification insertion into real tissue. Parse, call one function, print."""

from __future__ import annotations

from pathlib import Path

import click

from mammo_tf.config import preset_names
from mammo_tf_cli.data import DATA_OPTION
from mammo_tf_cli.options import (
    PRECISION_OPTION,
    SEED_OPTION,
    SPACING_MM_OPTION,
    STRATEGY_OPTION,
    model_option,
    preset_option,
    resumable_run,
    steps_option,
)
from mammo_tf_cli.paths import OutputFolder


@click.command(name="train-insert", context_settings={"show_default": True})
@DATA_OPTION
@click.option("--patch-size", type=click.IntRange(min=16), default=64, help="Patch side in pixels (a multiple of 4).")
@preset_option("insert", "quick", "quick: minutes on 2 CPU cores; standard: the shipped model (resumable).")
@steps_option()
@resumable_run
@PRECISION_OPTION
@STRATEGY_OPTION
@SPACING_MM_OPTION
@SEED_OPTION
def train_insert(data, patch_size, preset, steps, run_dir, resume, precision, strategy, spacing_mm, seed) -> None:
    """Fit cluster layouts on the training patients' specks and train the GAN refiner.

    Positives are rendered into matched normal tissue of training patients; the refiner changes pixels
    inside the speck masks only. The run directory gets config.json, checkpoints, sample grids (rendered |
    refined | real), refiner.keras and insertion.json.
    """
    from mammo_tf.workflows.training import train_insert as run_training

    out = run_training(
        data,
        run_dir,
        preset=preset,
        patch_size=patch_size,
        steps=steps,
        resume=resume,
        precision=precision,
        strategy=strategy,
        spacing_mm=spacing_mm,
        seed=seed,
    )
    click.echo(f"run finished: {out} (refiner.keras, insertion.json, metrics.json, samples/)")


@click.command(name="insert", context_settings={"show_default": True})
@click.option(
    "--n",
    "n",
    type=int,
    default=None,
    help="Patches to write [default: 500]; with --films, clusters to insert [default: 100] (with --class all: "
    "alternating classes).",
)
@model_option("insert-64", "insertion model")
@click.option(
    "--class", "class_name", type=click.Choice(["benign", "malignant", "all"]), default="all", help="Cluster class."
)
@DATA_OPTION
@click.option(
    "--out",
    type=OutputFolder(must_be_new_or_empty=False),
    default=Path("insert"),
    help="Output folder (new or empty, or a previous insert output with --overwrite).",
)
@click.option("--seed", type=int, default=0, help="Same model, data, arguments and seed: the same bytes.")
@click.option(
    "--refine/--no-refine",
    default=False,
    help="Pass the patches (with --films: each cluster's crop) through the GAN refiner: on MIAS its patches "
    "trained better classifiers (3 seeds) but were not shown harder to tell from real.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["png", "npy"]),
    default="png",
    help="Patches only. png: 16-bit grey; npy: float32.",
)
@click.option("--overwrite", is_flag=True, help="Replace a previous insert output in --out.")
@click.option(
    "--films",
    is_flag=True,
    help="Insert into whole normal training films (at most 3 clusters a film) instead of patches: films (PGM, "
    "their own bit depth), masks and a manifest that --data reads.",
)
def insert(n, model, class_name, data, out, seed, refine, fmt, overwrite, films) -> None:
    """Insert calcification clusters into real normal tissue of the training patients.

    Writes the patches, their speck masks (*_mask.png) and manifest.csv (class, seed, the background's image
    and patient, speck count), atomically. `train-classifier --synthetic` reads this folder. With --films:
    the normal films that received clusters, their masks and a manifest with one row per cluster (centre,
    radius, class, the background film), a dataset for --data (`detect`, the film task).
    """
    if films:
        _insert_films(n, model, class_name, data, out, seed, refine, fmt, overwrite)
        return
    from mammo_tf.inference.insert import insert as run

    n = 500 if n is None else n
    manifest = run(
        n, out, model=model, class_name=class_name, data=data, seed=seed, refine=refine, fmt=fmt, overwrite=overwrite
    )
    counts = manifest["class"].value_counts()
    summary = ", ".join(f"{k} {counts[k]}" for k in ("benign", "malignant") if k in counts)
    ident = manifest["model"].iloc[0]
    click.echo(f"wrote {len(manifest)} patches ({summary}), masks and manifest.csv to {out} [{ident}]")


def _insert_films(n, model, class_name, data, out, seed, refine, fmt, overwrite) -> None:
    """`insert --films`: call the library, print one summary line."""
    from mammo_tf.inference.insert_films import insert_films as run

    if fmt != "png":
        raise click.UsageError("--format applies to patches; --films writes each film as PGM at its own bit depth")
    manifest = run(
        100 if n is None else n, out, model=model, class_name=class_name, data=data, seed=seed, refine=refine,
        overwrite=overwrite,
    )  # fmt: skip
    counts = manifest["class"].value_counts()
    summary = ", ".join(f"{k} {counts[k]}" for k in ("benign", "malignant") if k in counts)
    films = manifest["image_id"].nunique()
    ident = manifest["model"].iloc[0]
    click.echo(
        f"wrote {len(manifest)} clusters ({summary}) into {films} films, masks and manifest.csv to {out} [{ident}]"
    )


@click.command(name="evaluate-insert", context_settings={"show_default": True})
@model_option("insert-64", "insertion model (a train-insert run, or a refiner .keras with insertion.json)")
@DATA_OPTION
@click.option(
    "--out",
    type=OutputFolder(),
    required=True,
    help="Folder for report.md, metrics.json, grids.png and cluster_distances.csv (new or empty).",
)
@click.option("--n", "n", type=click.IntRange(min=10), default=1000, help="Inserted patches (benign and malignant).")
@click.option(
    "--classifier-preset",
    type=click.Choice(list(preset_names("classifier"))),
    default="standard",
    help="Preset of every classifier trained (the same in every arm).",
)
@click.option(
    "--classifier-steps", type=click.IntRange(min=1), default=None, help="Steps per classifier [default: the preset's]."
)
@click.option("--tasks", default="easy,matched", help="Comma-separated patch tasks: easy, matched.")
@click.option("--bootstrap", type=click.IntRange(min=10), default=1000, help="Patient-bootstrap resamples per CI.")
@click.option(
    "--gan-model",
    default=None,
    help="Whole-patch synthesis GAN measured the same way; 'none' to skip [default: synth-64 when usable].",
)
@click.option("--seed", type=int, default=0, help="Insertion, patches, classifier initialisation and bootstrap.")
def evaluate_insert(
    model, data, out, n, classifier_preset, classifier_steps, tasks, bootstrap, gan_model, seed
) -> None:
    """Score an insertion model on the held-out test patients.

    Train on inserted positives (rendered; refined) and real normals, test on real patches (AUC against the
    real-only classifier, patient bootstrap CIs); how well a detector tells inserted from real; speck
    statistics against real test clusters; KID beside the real-vs-real floor on the project's feature network;
    each layout's closest training cluster against held-out clusters' (a copying check); grids. Refuses a model
    whose fit saw a test patient.
    """
    from mammo_tf.evaluation.insert_markdown import summary_lines
    from mammo_tf.evaluation.insert_report import evaluate_insert as run

    chosen = tuple(t.strip() for t in tasks.split(",") if t.strip())
    metrics = run(
        model,
        data,
        out,
        seed=seed,
        n=n,
        classifier_preset=classifier_preset,
        classifier_steps=classifier_steps,
        tasks=chosen,
        bootstrap=bootstrap,
        gan_model=gan_model,
        log=lambda line: click.echo(line, err=True),
    )
    for line in summary_lines(metrics):
        click.echo(line)
    click.echo(f"wrote {out}/report.md, metrics.json, grids.png, cluster_distances.csv")
