#!/bin/sh
# Score the "gated" fine-tune (run.py) where the shipped sr-x2 fails or is tight, each noise cell on several
# noise draws: the phantom's two grainy cells on 10 draws (noise gate at 1.19, as for every model in
# reports/sr-grid-phantom-draws10) and the scanner grid of 4 MIAS validation films on 3 draws (as the blend's
# alpha was chosen in reports/sr-grainy-diverse). MODEL defaults to the fine-tune's GAN generator; RUN and HERE
# (where the reports go) score another run, e.g. reports/sr-gated-noisy.
# Run from the repository root after run.py has finished: sh reports/sr-gated/score.sh
set -e
RUN=${RUN:-$HOME/mammo-runs/sr-gated/run1}
MODEL=${MODEL:-$RUN/generator_gan.keras}
NAME=${NAME:-ft}
HERE=${HERE:-reports/sr-gated}
.venv/bin/mammo-tf evaluate-sr --model "$MODEL" --split test --grid --grid-cells noise-corr-1,noise-corr-2 \
    --grid-draws 10 --noise-gate 1.19 --out "$HERE/$NAME-phantom-draws10"
.venv/bin/mammo-tf evaluate-sr --model "$MODEL" --data data/mias --split val --max-images 4 --grid \
    --grid-draws 3 --out "$HERE/$NAME-val-draws3"
