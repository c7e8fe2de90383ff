"""Fine-tune the shipped sr-x2 on MIAS with the speck term (argv[1] = speck_weight; 0 is the control).

Run from the repository root after `make data`; resumable (run again to continue)."""

import sys
from pathlib import Path

from mammo_tf.workflows.training import train_sr

weight = float(sys.argv[1])
run = Path.home() / "mammo-runs" / "sr-speck" / f"w{weight:g}"
train_sr(
    "data/mias",  # run from the repository root
    run,
    preset="standard",
    init_from="sr-x2-gan",  # the default sr-x2 when this ran (same file)
    pretrain_steps=500,
    gan_steps=500,
    val_every=500,
    n_pairs=8192,
    lr_pretrain=1e-4,
    speck_weight=weight,
    resume=(run / "checkpoints" / "last.keras").is_file(),
    verbose=2,
)
