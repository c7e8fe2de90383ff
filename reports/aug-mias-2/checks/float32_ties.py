"""How often the float32 patch scores of the committed units tie a calcification patch with a normal one
(both exactly 1.0, or any equal value): per classifier unit of MIAS folds 0-1 on its fold's test patches.
Writes float32_ties.csv here. Run from the repository root: `.venv/bin/python
reports/aug-mias-2/checks/float32_ties.py` (about 1 min)."""

import sys
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from study_patches import test_sets  # noqa: E402

UNITS = Path("reports/aug-mias-2/units")
rows = []
for (k, task), (_, keys, y) in test_sets().items():
    for path in sorted(UNITS.glob(f"fold{k}/{task}/*/seed*/scores.npz")):
        scores = np.load(path)
        if "test.patch" not in scores.files or not np.array_equal(scores["test.patch"], keys):
            continue
        p = scores["test.calc"]
        pos, neg = p[y == 1], p[y == 0]
        tied = sum(int((pos == v).sum()) * int((neg == v).sum()) for v in np.unique(pos))
        rows.append(
            {
                "fold": k, "task": task, "arm": path.parts[-3], "seed": path.parts[-2],
                "positives": len(pos), "negatives": len(neg),
                "positives_at_1": int((pos == 1).sum()), "negatives_at_1": int((neg == 1).sum()),
                "tied_pair_fraction": tied / (len(pos) * len(neg)),
            }
        )  # fmt: skip
table = pd.DataFrame(rows)
table.to_csv(HERE / "float32_ties.csv", index=False)
print(f"{len(table)} units; {(table.tied_pair_fraction > 0).sum()} with a tied (calcification, normal) pair")
print(table.sort_values("tied_pair_fraction", ascending=False).head(5).to_string(index=False))
print("reference arm, largest:", table.loc[table.arm == "real", "tied_pair_fraction"].max())
