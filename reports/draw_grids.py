"""Draw grid.png beside every committed scanner-grid report (reports/*/grid.csv) that predates the picture.

`evaluate-sr --grid` now writes grid.png itself (mammo_tf.evaluation.sr_grid.grid_png); the reports under
reports/ were scored before, so their pictures are drawn from their grid.csv with the same function:

    .venv/bin/python reports/draw_grids.py
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from mammo_tf.evaluation.sr_grid import grid_png

for table in sorted(Path(__file__).resolve().parent.glob("*/grid.csv")):
    title = f"{table.parent.name}: SR against bicubic per cell, counts summed over films and draws (red: fails)"
    (table.parent / "grid.png").write_bytes(grid_png(pd.read_csv(table), title))
    print(table.parent / "grid.png")
