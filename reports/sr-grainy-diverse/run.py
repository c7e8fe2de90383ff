"""Fine-tune the shipped sr-x2 on degradation-diverse LR that includes grainy noise (half of the noisy draws,
data/scanner_degradations.random_degradation), the recipe of the first diverse fine-tune (docs/results-sr.md).

Run from the repository root after `make data`; resumable (run again to continue). The run directory is
~/mammo-runs/sr-grainy/run1."""

from pathlib import Path

from mammo_tf.workflows.training import train_sr

run = Path.home() / "mammo-runs" / "sr-grainy" / "run1"
train_sr(
    "data/mias",  # run from the repository root
    run,
    preset="standard",
    lr_degradations="diverse",
    init_from="sr-x2-gan",  # the default sr-x2 when this ran (same file)
    pretrain_steps=2500,
    gan_steps=500,
    val_every=500,
    lr_pretrain=1e-4,
    resume=(run / "checkpoints" / "last.keras").is_file(),
    verbose=2,
)
