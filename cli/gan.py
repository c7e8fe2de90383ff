"""`mammo-tf train-gan / synth / evaluate-gan`: the synthesis GAN. Parse, call one library function, print."""

from __future__ import annotations

from pathlib import Path

import click

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

MODEL_OPTION = model_option("synth-64", "synthesis model")


@click.command(name="train-gan", context_settings={"show_default": True})
@DATA_OPTION
@click.option("--patch-size", type=int, default=64, help="Patch side in pixels: 4 * 2**k (64, or 128).")
@preset_option("synthesis", "quick", "quick: minutes on 2 CPU cores; standard: hours (resumable).")
@steps_option()
@resumable_run
@PRECISION_OPTION
@STRATEGY_OPTION
@SPACING_MM_OPTION
@SEED_OPTION
@click.option("--val-every", type=click.IntRange(min=1), default=None, help="Steps between validations.")
def train_gan(
    data, patch_size, preset, steps, run_dir, resume, precision, strategy, spacing_mm, seed, val_every
) -> None:
    """Train the class-conditional synthesis GAN on the training patients.

    Normal / benign / malignant patches, class-balanced; DiffAugment with an adaptive probability, lazy
    R1, an EMA generator. The run directory gets config.json, checkpoints, TensorBoard logs, sample grids
    per class, metrics and generator.keras. --data may be a patches shard folder (data shard --what
    patches): the patches stream from it.
    """
    from mammo_tf.workflows.training import train_gan as run_training

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
        val_every=val_every,
    )
    click.echo(f"run finished: {out} (generator.keras, metrics.json, samples/)")


@click.command(name="synth", context_settings={"show_default": True})
@click.option("--n", "n", type=int, default=500, help="Patches to write (with --class all: in total, split evenly).")
@MODEL_OPTION
@click.option(
    "--class",
    "class_name",
    type=click.Choice(["normal", "benign", "malignant", "all"]),
    default="all",
    help="Patch class; all: --n in total, split evenly.",
)
@click.option(
    "--out",
    type=OutputFolder(must_be_new_or_empty=False),
    default=Path("synth"),
    help="Output folder (new or empty, or a previous synth output with --overwrite).",
)
@click.option("--seed", type=int, default=0, help="Same model, arguments and seed: the same bytes.")
@click.option(
    "--format", "fmt", type=click.Choice(["png", "npy"]), default="png", help="png: 16-bit grey; npy: float32."
)
@click.option("--truncation", type=float, default=None, help="Resample latent entries with |z| above this.")
@click.option("--overwrite", is_flag=True, help="Replace a previous synth output in --out.")
def synth(n, model, class_name, out, seed, fmt, truncation, overwrite) -> None:
    """Write synthetic patches of a class, with manifest.csv.

    The folder is written atomically; manifest.csv lists file, class, seed, index and the model id.
    """
    from mammo_tf.inference.synth import synthesize

    manifest = synthesize(
        model, n, class_name, out, seed=seed, fmt=fmt, overwrite=overwrite, truncation=truncation, progress=True
    )
    counts = manifest["class"].value_counts().reindex(["normal", "benign", "malignant"]).dropna().astype(int)
    summary = ", ".join(f"{k} {v}" for k, v in counts.items())
    click.echo(f"wrote {len(manifest)} patches ({summary}) and manifest.csv to {out} [{manifest['model'].iloc[0]}]")


@click.command(name="evaluate-gan", context_settings={"show_default": True})
@MODEL_OPTION
@DATA_OPTION
@click.option("--out", type=OutputFolder(), default=None, help="Folder for report.md, metrics.json, figures.")
@click.option("--seed", type=int, default=0, help="Patch sampling, synthetic latents, feature network.")
@click.option("--feature-steps", type=click.IntRange(min=1), default=400, help="Feature network training steps.")
@click.option("--truncation", type=float, default=None, help="Truncation of the synthetic latents.")
def evaluate_gan(model, data, out, seed, feature_steps, truncation) -> None:
    """Score a synthesis model against held-out real patches.

    FD, KID, precision/recall on the project's own feature network, each beside the real-vs-real floor;
    a memorisation check; speck statistics per class.
    """
    from mammo_tf.evaluation.gan_report import evaluate_gan as run
    from mammo_tf.evaluation.gan_report import summary_lines

    metrics = run(model, data, out, seed=seed, feature_steps=feature_steps, truncation=truncation)
    for line in summary_lines(metrics):
        click.echo(line)
    if out:
        click.echo(f"wrote {out}/report.md")
