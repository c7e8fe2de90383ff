#!/bin/sh
# Blends of sr-x2-gan (the default sr-x2 until the blend was shipped) and the grainy-noise fine-tune (interpolate.py), each scored on the scanner grid of 4 MIAS
# validation films: reports/sr-grainy-diverse/val-blend-ALPHA[-draws3]/ (alpha 0 = sr-x2-gan itself; alpha 1 = the
# fine-tune itself, its gate off; with DRAWS=3 the noise cells are scored on 3 noise draws each).
# Run from the repository root after run.py has finished: [DRAWS=3] sh reports/sr-grainy-diverse/sweep.sh
set -e
RUN=${RUN:-$HOME/mammo-runs/sr-grainy/run1}
HERE=reports/sr-grainy-diverse
ALPHAS=${ALPHAS:-"0.25 0.5 0.75"}
DRAWS=${DRAWS:-1}
SUFFIX=$([ "$DRAWS" = 1 ] || echo "-draws$DRAWS")
.venv/bin/python $HERE/interpolate.py "$RUN/generator_gan.keras" "$RUN" $ALPHAS
for alpha in 0 $ALPHAS 1; do
    case $alpha in
        0) model=sr-x2-gan ;;
        1) model="$RUN/generator_gan.keras" ;;
        *) model="$RUN/blend-$alpha/generator.keras" ;;
    esac
    .venv/bin/mammo-tf evaluate-sr --model "$model" --data data/mias --split val --max-images 4 --grid \
        --grid-draws "$DRAWS" --out "$HERE/val-blend-$alpha$SUFFIX"
done
