"""Does the gate's noise estimate see grainy noise on the phantom's films? Immerkaer's estimate (what the gate
uses) of the default phantom's LR, clean and with 1 or 2 grey levels of grainy or white noise (3 draws each),
per split; the phantom's test films one by one. Run from the repository root:
`.venv/bin/python reports/sr-grainy-gate/phantom_noise.py` (about 30 s); writes phantom_noise.csv here."""

from pathlib import Path

import pandas as pd

from mammo_tf.data.catalog import load_catalog
from mammo_tf.data.noise import estimate_noise_greys
from mammo_tf.data.phantom import cached_phantom_dir
from mammo_tf.data.scanner_degradations import GRID_CELLS, degrade_cell
from mammo_tf.evaluation.sr_eval import load_film

CELLS = {"default": 1, "noise-corr-1": 3, "noise-corr-2": 3, "noise-1": 3}  # cell -> draws
cat = load_catalog(str(cached_phantom_dir()))
cells = {c.name: c for c in GRID_CELLS}
rows = []
for split in ("train", "val", "test"):
    films = cat.images[cat.images.split == split]
    for i, im in enumerate(films.itertuples()):
        hr, _ = load_film(im.path, 2)
        for name, draws in CELLS.items():
            for draw in range(draws):
                lr = degrade_cell(hr, 2, cells[name], seed=(draw, i))
                rows.append(dict(split=split, cell=name, image_id=im.image_id, draw=draw, s1=estimate_noise_greys(lr)))
d = pd.DataFrame(rows)
d.to_csv(Path(__file__).with_name("phantom_noise.csv"), index=False)
print(d.groupby(["split", "cell"]).s1.agg(["min", "median", "max"]).round(3).to_string())
print(d[d.split == "test"].groupby(["image_id", "cell"]).s1.agg(["min", "max"]).round(3).to_string())
