"""Where the shipped sr-x2's spurious specks lie on the phantom's mdb004, grainy noise at 2 grey levels.

The 9 draws of reports/sr-grid-phantom-draws10 in which the gate lets mdb004 through (draws 0-8), scored
with the grid's detector and threshold (sr_eval.speck_counts). For every output speck with no HR speck
within MATCH_PX, the script prints:
- its distance to the breast edge;
- the local tissue level (the 33-px mean of HR);
- the output's speck response, over the threshold;
- HR's own response there, as the 5x5 maximum, over the same threshold.

    .venv/bin/python reports/sr-grid-phantom-draws10/where.py > reports/sr-grid-phantom-draws10/where.txt
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import ndimage

from mammo_tf.data.catalog import load_catalog
from mammo_tf.data.degrade import interpolate
from mammo_tf.data.scanner_degradations import degrade_cell, resolve_cells
from mammo_tf.data.specks import detect_specks, match_specks, robust_threshold, speck_response
from mammo_tf.evaluation.sr_eval import MATCH_PX, load_film
from mammo_tf.inference.upscale import load_sr_model, upscale_array

films = load_catalog(None).images
films = films[films["split"] == "test"].reset_index(drop=True)
number = int(films.index[films["image_id"] == "mdb004"][0])  # the grid seeds film k's noise with (0, k, draw)
hr, mask = load_film(films.loc[number, "path"], 2)
(cell,) = resolve_cells(["noise-corr-2"])[1:]  # resolve_cells always puts the default cell first
model = load_sr_model("sr-x2", engine="xla")
threshold = robust_threshold(speck_response(hr), mask)
found_hr = detect_specks(hr, mask, threshold=threshold)
hr_response = speck_response(hr) / threshold
edge, tissue = ndimage.distance_transform_edt(mask), ndimage.uniform_filter(hr, 33)
rows = []
for draw in range(9):
    lr = degrade_cell(hr, 2, cell, seed=(0, number, draw) if draw else (0, number))
    for name, out in (("sr", upscale_array(model, lr, 8)), ("bicubic", interpolate(lr, 2, "bicubic"))):
        found, response = detect_specks(out, mask, threshold=threshold), speck_response(out) / threshold
        near = match_specks(found_hr, found["row"], found["col"], MATCH_PX) if len(found) else np.zeros(0, bool)
        for r, c in zip(found["row"][~near].astype(int), found["col"][~near].astype(int), strict=True):
            rows.append(
                {"draw": draw, "output": name, "row": r, "col": c, "edge_px": round(edge[r, c], 1),
                 "tissue": round(tissue[r, c], 3), "response": round(response[r, c], 3),
                 "hr_response": round(hr_response[max(r - 2, 0) : r + 3, max(c - 2, 0) : c + 3].max(), 3)}
            )  # fmt: skip
table = pd.DataFrame(rows).sort_values(["output", "draw"])
print(table.to_string(index=False))
print()
print(table.groupby("output")[["edge_px", "tissue", "response", "hr_response"]].describe().T.round(3).to_string())
print()
print("HR response over the threshold inside the breast mask, quantiles 0.5 / 0.99 / 0.999:",
      np.quantile(hr_response[mask], [0.5, 0.99, 0.999]).round(3))  # fmt: skip
