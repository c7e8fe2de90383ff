"""The study's finished units as small files: what `make study-units` commits and `make study` puts back.

Why: the study runs over many sessions, on whichever machine a session gets, while its work folder
(``<out>/work``) stays on one machine. A unit's small files let another machine go on without training
it again:

- per-fold models (``gan``, ``sr``, ``insert``, the low-data ``insert positives f``): config.json,
  metrics.json, state.json and the model files (generator.keras, refiner.keras, insertion.json);
- the GAN's quality record, ``gan-quality``: metrics.json and report.md;
- classifier units: config.json, metrics.json and scores.npz, their scores on every patch set the study
  scored them on (UnitScores), without the model (0.9 MB each, hundreds of units). A classifier whose
  scoring did not finish has no scores.npz and is not saved;
- the inserted-pretraining first stages: config.json and metrics.json. Their model is needed only by an
  unfinished second stage, which then trains the first again (Units.pretrained);
- the film task's per-film scores, ``fold{k}/film-seed{s}.json``.

Restoring copies a saved unit into the work folder unless the work folder has it finished already. The
patches a restored GAN or insertion model writes are drawn again on the new machine; on another CPU they can
differ in the last bits, so the units trained after a move see slightly different synthetic patches.
"""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np

from mammo_tf.io.atomic import write_bytes_atomic
from mammo_tf.workflows.study.plan import PRETRAINING

SCORES_NAME = "scores.npz"
MODEL_FILES = ("config.json", "metrics.json", "state.json", "generator.keras", "refiner.keras", "insertion.json")
QUALITY_FILES = ("metrics.json", "report.md")
CLASSIFIER_FILES = ("config.json", "metrics.json", SCORES_NAME)
FILM_SCORES = "fold*/film-seed*.json"


def _unit_files(run: Path) -> tuple[str, ...]:
    """The files of the finished unit folder `run` worth keeping; () for a classifier not yet scored."""
    config = run / "config.json"
    if not config.is_file():
        return QUALITY_FILES  # evaluate-gan's report: the only finished folder without a run config
    if json.loads(config.read_text()).get("kind") != "classifier":
        return MODEL_FILES
    if (run / SCORES_NAME).is_file():
        return CLASSIFIER_FILES
    return CLASSIFIER_FILES[:2] if run.parent.name == PRETRAINING.folder else ()


def _finished(root: Path) -> list[Path]:
    """The unit folders under `root` (relative, sorted) that hold a metrics.json: finished units."""
    return sorted(p.parent.relative_to(root) for p in root.rglob("metrics.json"))


def save_units(work: str | Path, dest: str | Path) -> list[str]:
    """Copy the finished units of the study work folder `work` into `dest` (module docstring); returns the
    units saved. Files already in `dest` are overwritten (the same unit gives the same files)."""
    work, dest = Path(work), Path(dest)
    saved = []
    for unit in _finished(work):
        files = [name for name in _unit_files(work / unit) if (work / unit / name).is_file()]
        if not files:
            continue
        (dest / unit).mkdir(parents=True, exist_ok=True)
        for name in files:
            shutil.copyfile(work / unit / name, dest / unit / name)
        saved.append(unit.as_posix())
    for film in work.glob(FILM_SCORES):
        (dest / film.parent.name).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(film, dest / film.relative_to(work))
    return saved


def restore_units(saved: str | Path, work: str | Path) -> list[str]:
    """Copy each unit saved in `saved` into the work folder `work`, unless `work` has it finished already
    (an unfinished folder of the same name is replaced); returns the units restored."""
    saved, work = Path(saved), Path(work)
    restored = []
    for unit in _finished(saved):
        target = work / unit
        if (target / "metrics.json").is_file():
            continue
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(saved / unit, target)
        restored.append(unit.as_posix())
    for film in saved.glob(FILM_SCORES):
        target = work / film.relative_to(saved)
        if not target.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(film, target)
    return restored


def patch_keys(patches) -> np.ndarray:
    """str [N]: 'image_id:row:col' per patch, what a saved score is checked against."""
    where = zip(patches.image_id, patches.centre_row, patches.centre_col, strict=True)
    return np.array([f"{image}:{row}:{col}" for image, row, col in where])


class UnitScores:
    """A finished classifier unit's probabilities on named patch sets, kept in its run folder (scores.npz).

    ``scores(key, patches)`` -> {"calc", "malignant"}: float [N] probabilities, read from scores.npz when it
    holds `key` for these very patches, else predicted by the unit's model (loaded on first need) and kept
    in memory; ``save()`` writes every set scored so far, once the unit's scoring is complete, so that a
    saved unit never lacks a set the study asks for. ``model()``: the classifier itself (the film task).
    """

    def __init__(self, run: Path) -> None:
        self.run = run
        self.metrics: dict = json.loads((run / "metrics.json").read_text())
        path = run / SCORES_NAME
        self._sets: dict[str, np.ndarray] = dict(np.load(path)) if path.is_file() else {}
        self._model = None
        self._changed = False

    def model(self):
        from mammo_tf.errors import located
        from mammo_tf.inference.registry import load_keras
        from mammo_tf.models.classifier import CalcificationClassifier  # noqa: F401  (registers the class)
        from mammo_tf.training.classifier_trainer import MODEL_NAME

        if self._model is None:
            path = self.run / MODEL_NAME
            if not path.is_file():
                raise located(self.run, f"no {MODEL_NAME} and no saved scores for this set: remove it to retrain")
            self._model = load_keras(path)
        return self._model

    def scores(self, key: str, patches) -> dict[str, np.ndarray]:
        from mammo_tf.training.classifier_trainer import predict

        keys = patch_keys(patches)
        if f"{key}.patch" in self._sets and np.array_equal(self._sets[f"{key}.patch"], keys):
            return {name: self._sets[f"{key}.{name}"] for name in ("calc", "malignant")}
        probs = predict(self.model(), patches.images)
        self._sets.update({f"{key}.patch": keys, **{f"{key}.{name}": np.asarray(p) for name, p in probs.items()}})
        self._changed = True
        return probs

    def save(self) -> None:
        if self._changed:
            buffer = io.BytesIO()
            np.savez_compressed(buffer, **self._sets)
            write_bytes_atomic(self.run / SCORES_NAME, buffer.getvalue())
            self._changed = False
