"""Can an input statistic see grainy noise? Immerkaer's noise estimate (s1, what the gate uses) and the same
on the 2x2-binned LR (s2), on the MIAS training films (default cell) and the validation films in every grid
cell but JPEG. Run from the repository root: `.venv/bin/python reports/sr-grainy-gate/input_noise.py`
(about 25 s); writes input_noise.csv here."""

from pathlib import Path

import pandas as pd

from mammo_tf.data.catalog import load_catalog
from mammo_tf.data.degrade import area_downsample
from mammo_tf.data.noise import estimate_noise_greys
from mammo_tf.data.scanner_degradations import GRID_CELLS, degrade_cell
from mammo_tf.evaluation.sr_eval import load_film

cat = load_catalog("data/mias")
rows = []
cells = {c.name: c for c in GRID_CELLS}
for split, names in (("train", ["default"]), ("val", list(cells))):
    films = cat.images[cat.images.split == split]
    for i, im in enumerate(films.itertuples()):
        hr, _ = load_film(im.path, 2)
        for n in names:
            if n.startswith("jpeg"):
                continue
            lr = degrade_cell(hr, 2, cells[n], seed=(0, i))
            rows.append(
                dict(
                    split=split,
                    cell=n,
                    image_id=im.image_id,
                    s1=estimate_noise_greys(lr),
                    s2=estimate_noise_greys(area_downsample(lr, 2)),
                )
            )
d = pd.DataFrame(rows)
d.to_csv(Path(__file__).with_name("input_noise.csv"), index=False)
print(d.groupby(["split", "cell"])[["s1", "s2"]].agg(["min", "median", "max"]).round(2).to_string())
