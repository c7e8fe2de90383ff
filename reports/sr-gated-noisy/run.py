"""Fine-tune sr-x2-gan on "gated-noisy" LR: the "gated" mix of reports/sr-gated/run.py (half clean, blur,
the area or Gaussian kernel) with noise up to 5 grey levels, half of it white (data/scanner_degradations.py).

Why: the "gated" fine-tune kept the clean gain but not the calm on the phantom's grainy noise; of all the
fine-tunes, only the diverse one, which also saw white noise up to 5 grey levels, made no more specks than
bicubic there. This run tests whether that noise, without the bicubic kernel and JPEG, brings the calm back
while keeping the clean gain. Same recipe otherwise (docs/results-sr.md).

Run from the repository root after `make data`; resumable (run again to continue). The run directory is
~/mammo-runs/sr-gated-noisy/run1."""

from pathlib import Path

from mammo_tf.workflows.training import train_sr

run = Path.home() / "mammo-runs" / "sr-gated-noisy" / "run1"
train_sr(
    "data/mias",  # run from the repository root
    run,
    preset="standard",
    lr_degradations="gated-noisy",
    init_from="sr-x2-gan",
    pretrain_steps=2500,
    gan_steps=500,
    val_every=500,
    lr_pretrain=1e-4,
    resume=(run / "checkpoints" / "last.keras").is_file(),
    verbose=2,
)
