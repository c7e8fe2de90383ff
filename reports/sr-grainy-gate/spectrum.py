"""Can the power spectrum see grainy noise? Per film, over 64-px Hann-windowed LR tiles inside the film: power
at 0.12-0.25 cycles/px over power at 0.04-0.08 (hi_mid), and above 0.35 over 0.12-0.25 (top_hi), on the MIAS
training films (default cell) and the validation films in 8 cells. Run from the repository root:
`.venv/bin/python reports/sr-grainy-gate/spectrum.py` (about 16 s); writes spectrum.csv here."""

from pathlib import Path

import numpy as np
import pandas as pd
from scipy import ndimage

from mammo_tf.data.catalog import load_catalog
from mammo_tf.data.scanner_degradations import GRID_CELLS, degrade_cell
from mammo_tf.evaluation.sr_eval import load_film

cat = load_catalog("data/mias")
cells = {c.name: c for c in GRID_CELLS}


def band_ratio(lr):
    fg = ndimage.binary_erosion(lr > 0.08, iterations=8)
    h, w = lr.shape
    t = 64
    ps = []
    for r in range(0, h - t + 1, t):
        for c in range(0, w - t + 1, t):
            if fg[r : r + t, c : c + t].all():
                tile = lr[r : r + t, c : c + t].astype(np.float64)
                tile = tile - tile.mean()
                win = np.outer(np.hanning(t), np.hanning(t))
                ps.append(np.abs(np.fft.fft2(tile * win)) ** 2)
    if not ps:
        return np.nan, np.nan
    p = np.mean(ps, axis=0)
    fy, fx = np.meshgrid(np.fft.fftfreq(t), np.fft.fftfreq(t), indexing="ij")
    f = np.hypot(fy, fx)
    hi = p[(f > 0.12) & (f < 0.25)].mean()
    mid = p[(f > 0.04) & (f < 0.08)].mean()
    top = p[(f > 0.35)].mean()
    return hi / mid, top / hi


rows = []
for split, names in (
    ("train", ["default"]),
    (
        "val",
        ["default", "noise-1", "noise-corr-1", "noise-corr-2", "blur-0.7", "blur-1.4", "kernel-gaussian", "bits-16"],
    ),
):
    films = cat.images[cat.images.split == split]
    for i, im in enumerate(films.itertuples()):
        hr, _ = load_film(im.path, 2)
        for n in names:
            lr = degrade_cell(hr, 2, cells[n], seed=(0, i))
            a, b = band_ratio(lr)
            rows.append(dict(split=split, cell=n, image_id=im.image_id, hi_mid=a, top_hi=b))
d = pd.DataFrame(rows)
d.to_csv(Path(__file__).with_name("spectrum.csv"), index=False)
print(d.groupby(["split", "cell"])[["hi_mid", "top_hi"]].agg(["min", "median", "max"]).round(4).to_string())
