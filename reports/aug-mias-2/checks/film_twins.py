"""The film task after film scores version 3 (the maximum logit), for MIAS folds 0-1: per fold and seed the
film AUC from the logit, from its float64 and float32 probability, and the films at probability 1.0; with a
work folder holding the twins (`work/fold{k}/film classifier/seed{s}`, which are not committed), each twin's
easy-task patch AUC beside its unit's. Writes film_twins.csv here. Run from the repository root:
`.venv/bin/python reports/aug-mias-2/checks/film_twins.py [~/mammo-runs/aug-mias-2/work]`."""

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.special import expit
from sklearn.metrics import roc_auc_score

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
UNITS = Path("reports/aug-mias-2/units")
work = Path(sys.argv[1]).expanduser() if len(sys.argv) > 1 else None
sets = None
if work is not None:
    from study_patches import test_sets

    from mammo_tf.inference.registry import load_keras
    from mammo_tf.models.classifier import CalcificationClassifier  # noqa: F401  (registers the class)
    from mammo_tf.training.classifier_trainer import predict

    sets = test_sets(tasks=("easy",))
rows = []
for k in (0, 1):
    for s in range(3):
        films = json.loads(((work or UNITS) / f"fold{k}" / f"film-seed{s}.json").read_text())
        assert films["version"] == 3, "film scores of an older version"
        y = np.array([f["label"] for f in films["films"]])
        logit = np.array([f["score"] for f in films["films"]])
        p64, p32 = expit(logit), expit(logit).astype(np.float32)
        row = {
            "fold": k, "seed": s, "film_auc_logit": roc_auc_score(y, logit),
            "film_auc_float64_probability": roc_auc_score(y, p64), "films_at_1_float64": int((p64 == 1).sum()),
            "film_auc_float32_probability": roc_auc_score(y, p32), "films_at_1_float32": int((p32 == 1).sum()),
            "largest_logit": logit.max(),
        }  # fmt: skip
        if sets is not None:
            test, keys, labels = sets[k, "easy"]
            unit = np.load(UNITS / f"fold{k}/easy/real/seed{s}/scores.npz")
            assert np.array_equal(unit["test.patch"], keys)
            twin = load_keras(work / f"fold{k}" / "film classifier" / f"seed{s}" / "classifier.keras")
            row["unit_easy_auc"] = roc_auc_score(labels, unit["test.calc"])
            row["twin_easy_auc"] = roc_auc_score(labels, predict(twin, test.images)["calc"])
        rows.append(row)
table = pd.DataFrame(rows).round(4)
table.to_csv(HERE / "film_twins.csv", index=False)
print(table.to_string(index=False))
