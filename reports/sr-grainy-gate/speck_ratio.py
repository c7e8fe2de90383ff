"""Can the model's own output tell? Specks in sr-x2's output over specks in bicubic's, on the same input,
threshold from the bicubic film (no HR at inference), on the validation films in 7 cells and every third
training film. Run from the repository root: `.venv/bin/python reports/sr-grainy-gate/speck_ratio.py`
(about 6 min on 2 AMD cores); writes speck_ratio.csv here."""

import time
from pathlib import Path

import pandas as pd

from mammo_tf.data.catalog import load_catalog
from mammo_tf.data.degrade import interpolate
from mammo_tf.data.scanner_degradations import GRID_CELLS, degrade_cell
from mammo_tf.data.specks import detect_specks, robust_threshold, speck_response
from mammo_tf.evaluation.sr_eval import load_film
from mammo_tf.inference.upscale import load_sr_model, upscale_array

cat = load_catalog("data/mias")
m = load_sr_model("sr-x2-gan")  # the default sr-x2 when this ran (same file)
cells = {c.name: c for c in GRID_CELLS}
plan = [
    ("val", ["default", "noise-1", "noise-corr-1", "noise-corr-2", "blur-0.7", "kernel-gaussian", "bits-16"]),
    ("train", ["default"]),
]
rows = []
t = time.time()
for split, names in plan:
    films = cat.images[cat.images.split == split]
    if split == "train":
        films = films.iloc[::3]
    for i, im in enumerate(films.itertuples()):
        hr, mask = load_film(im.path, 2)
        for n in names:
            c = cells[n]
            lr = degrade_cell(hr, 2, c, seed=(0, i))
            sr = upscale_array(m, lr, c.bits)
            bic = interpolate(lr, 2, "bicubic")
            thr = robust_threshold(speck_response(bic), mask)
            n_sr = len(detect_specks(sr, mask, threshold=thr))
            n_b = len(detect_specks(bic, mask, threshold=thr))
            rows.append(dict(split=split, cell=n, image_id=im.image_id, n_sr=n_sr, n_bic=n_b))
    print(split, time.time() - t, flush=True)
d = pd.DataFrame(rows)
d["ratio"] = (d.n_sr + 1) / (d.n_bic + 1)
d["excess"] = d.n_sr - d.n_bic
d.to_csv(Path(__file__).with_name("speck_ratio.csv"), index=False)
print(d.groupby(["split", "cell"])[["ratio", "excess"]].agg(["min", "median", "max"]).round(2).to_string())
