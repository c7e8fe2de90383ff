"""Fine-tune sr-x2-gan on "gated" LR: only the scanners upscale's noise gate lets through (half clean, the rest
blur and grainy noise up to 3 grey levels; data/scanner_degradations.DEGRADATION_MIXES), the recipe of the
grainy-noise fine-tune in reports/sr-grainy-diverse/run.py otherwise (docs/results-sr.md).

Why: the diverse fine-tune spent its draws on white noise, the bicubic kernel and JPEG too, which the gate
hands to bicubic anyway, and lost clean gain; a model behind the gate needs calm only on what gets past it.

Run from the repository root after `make data`; resumable (run again to continue). The run directory is
~/mammo-runs/sr-gated/run1."""

from pathlib import Path

from mammo_tf.workflows.training import train_sr

run = Path.home() / "mammo-runs" / "sr-gated" / "run1"
train_sr(
    "data/mias",  # run from the repository root
    run,
    preset="standard",
    lr_degradations="gated",
    init_from="sr-x2-gan",
    pretrain_steps=2500,
    gan_steps=500,
    val_every=500,
    lr_pretrain=1e-4,
    resume=(run / "checkpoints" / "last.keras").is_file(),
    verbose=2,
)
