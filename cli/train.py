"""`mammo-tf train-sr ...`: the trainers. Each command parses, calls one library function, prints."""

from __future__ import annotations

import click

from mammo_tf.config.sr import LR_DEGRADATIONS
from mammo_tf_cli.data import DATA_OPTION
from mammo_tf_cli.options import (
    PRECISION_OPTION,
    SEED_OPTION,
    SPACING_MM_OPTION,
    STRATEGY_OPTION,
    preset_option,
    resumable_run,
    steps_option,
)
from mammo_tf_cli.paths import InputDataset, InputFolder


def val_data_option(what: str, validation: str):
    """--val-data D: the image dataset validating a run whose --data is a `what` shard folder."""
    return click.option(
        "--val-data",
        type=InputDataset(),
        default=None,
        help=f"With --data a {what} shard folder (data shard --what {what}): the image dataset whose validation "
        f"patients' {validation} validate the run [default: no validation].",
    )


@click.command(name="train-sr", context_settings={"show_default": True})
@DATA_OPTION
@click.option("--scale", type=click.Choice(["2", "4"]), default="2", help="Upscaling factor.")
@preset_option(
    "sr", "standard", "quick: minutes on 2 CPU cores (make demo); standard: the shipped models (hours, resumable)."
)
@click.option(
    "--generator",
    type=click.Choice(["compact", "large"]),
    default="compact",
    help="compact: 32 filters x 8 blocks (CPU); large: 64 x 16 (GPU).",
)
@click.option(
    "--lr-degradations",
    type=click.Choice(LR_DEGRADATIONS),
    default="box",
    help="How training LR is made from HR. box: the 2x2 mean (the film's own scanner); diverse: a random "
    "scanner per pair (blur, kernel, noise, JPEG; a third stays the box), so other scanners' noise is not "
    "sharpened into specks; gated: only the scanners upscale's noise gate lets through (blur, grainy noise; "
    "half stays the box), for a model that keeps the gate; gated-noisy: the same, with noise up to 5 grey "
    "levels, half of it white.",
)
@click.option(
    "--init-from", default=None, help="Start from this SR model's weights (shipped name, .keras or run directory)."
)
@val_data_option("sr-pairs", "whole films")
@steps_option("Total steps, split between pretraining and GAN fine-tuning as in the preset.")
@resumable_run
@PRECISION_OPTION
@STRATEGY_OPTION
@SPACING_MM_OPTION
@SEED_OPTION
def train_sr(
    data,
    scale,
    preset,
    generator,
    lr_degradations,
    init_from,
    val_data,
    steps,
    run_dir,
    resume,
    precision,
    strategy,
    spacing_mm,
    seed,
) -> None:
    """Train the SR GAN on the training patients.

    L1 pretraining, then adversarial fine-tuning; validation on the validation patients. The run
    directory gets config.json, checkpoints, TensorBoard logs, comparison images and metrics.
    """
    from mammo_tf.workflows.training import train_sr as run_training

    out = run_training(
        data,
        run_dir,
        preset=preset,
        resume=resume,
        scale=int(scale),
        generator=generator,
        lr_degradations=lr_degradations,
        init_from=init_from,
        val_data=val_data,
        steps=steps,
        precision=precision,
        strategy=strategy,
        spacing_mm=spacing_mm,
        seed=seed,
    )
    click.echo(f"run finished: {out} (generator.keras, metrics.json)")


@click.command(name="train-classifier", context_settings={"show_default": True})
@DATA_OPTION
@click.option("--synthetic", type=InputFolder(), default=None, help="Folder written by `mammo-tf synth`.")
@click.option(
    "--synthetic-ratio",
    type=click.FloatRange(min=0),
    default=0.0,
    help="Synthetic patches per real patch, per class (needs --synthetic).",
)
@click.option(
    "--task",
    type=click.Choice(["easy", "matched"]),
    default="easy",
    help="easy: clusters vs random tissue; matched: negatives matched in intensity and position.",
)
@preset_option("classifier", "standard", "quick: 300 steps; standard: 3000 steps.")
@val_data_option("patches", "patches")
@steps_option()
@resumable_run
@PRECISION_OPTION
@STRATEGY_OPTION
@SPACING_MM_OPTION
@SEED_OPTION
def train_classifier(
    data,
    synthetic,
    synthetic_ratio,
    task,
    preset,
    val_data,
    steps,
    run_dir,
    resume,
    precision,
    strategy,
    spacing_mm,
    seed,
) -> None:
    """Train the calcification classifier on the training patients.

    Calcification vs normal tissue, with benign vs malignant as an exploratory second head; flips, rot90
    and small intensity changes in every arm. Validation AUC and threshold on the validation patients.
    --data may be a patches shard folder (data shard --what patches): the patches stream from it.
    """
    from mammo_tf.workflows.training import train_classifier as run_training

    out = run_training(
        data,
        run_dir,
        preset=preset,
        synthetic=synthetic,
        synthetic_ratio=synthetic_ratio,
        task=task,
        val_data=val_data,
        resume=resume,
        steps=steps,
        precision=precision,
        strategy=strategy,
        spacing_mm=spacing_mm,
        seed=seed,
    )
    click.echo(f"run finished: {out} (classifier.keras, metrics.json)")
