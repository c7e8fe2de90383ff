"""train-insert: calcification layouts fitted on the training patients, and a GAN refiner for their renderings.

Before TensorFlow: the layouts and point spread are fitted on the training patients' real specks
(data/insertion.py), `n_rendered` positives are rendered into matched normal tissue of training patients,
and real calcification patches of the training patients are drawn for the discriminator, with the detector's
speck masks (dilated like the rendered ones: where the discriminator's loss looks). One phase
("refine", training/loop.py): at every validation a grid (rendered | refined | real, per class) goes to
``samples/``, the refiner is exported as ``refiner.keras`` and the fit as ``insertion.json`` beside it (what
`mammo-tf insert` loads from a run folder).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np

from mammo_tf.data.insertion import FIT_NAME
from mammo_tf.training.loop import Phase, Trainer

MODEL_NAME = "refiner.keras"
GRID_PER_CLASS = 6


def train_insert(
    data: str | Path | None,
    run_dir: str | Path,
    *,
    preset: str = "standard",
    resume: bool = False,
    verbose: int | str = "auto",
    catalog: Any = None,
    **overrides: Any,
) -> Path:
    """Fit the layouts and train the refiner on the training patients; returns the run directory.

    overrides: InsertConfig fields (None = the preset's). catalog: an already loaded catalog instead of
    ``data`` (a study passes one fold's). MammoError before TensorFlow starts when the training patients have
    no calcification findings or no usable normal tissue.
    """
    from mammo_tf.config import resolve
    from mammo_tf.data.catalog import load_catalog
    from mammo_tf.data.insertion import fit_insertion, insert_clusters, real_positives
    from mammo_tf.data.render import mask_margin
    from mammo_tf.data.resample import at_training_spacing
    from mammo_tf.data.speck_extraction import MAX_AREA
    from mammo_tf.data.specks import speck_mask
    from mammo_tf.training.loop import train
    from mammo_tf.training.runs import Run

    Run.precheck(run_dir, resume=resume)
    config = resolve("insert", preset, **overrides)
    catalog = catalog if catalog is not None else load_catalog(data)
    catalog, spacing_mm = at_training_spacing(catalog, config.spacing_mm)
    fit = dataclasses.replace(fit_insertion(catalog, "train"), patch_size=config.patch_size, jitter=config.jitter)
    real = real_positives(catalog, config.patch_size, config.per_cluster, config.jitter, config.seed)
    rendered = insert_clusters(
        catalog, fit, config.n_rendered, config.patch_size, config.seed, positives=real, jitter=fit.jitter
    )
    real_masks = np.stack([speck_mask(p, mask_margin(fit.psf_sigma), max_area=MAX_AREA) for p in real.images[..., 0]])
    seen = set(fit.patients) | set(real.patient_id.tolist()) | set(rendered.backgrounds.patient_id.tolist())
    record = {
        **config.to_dict(),
        "kind": "insert",
        "data": str(catalog.root),
        "source": catalog.source,
        "training_spacing_mm": spacing_mm,
        "train_patients": sorted(seen),
        "layout_patients": fit.patients,
        "psf_sigma": fit.psf_sigma,
        "real_patches": {"benign": int((real.labels == 1).sum()), "malignant": int((real.labels == 2).sum())},
        "real_patches_without_specks": int((~real_masks.any(axis=(1, 2))).sum()),
    }
    trainer = InsertTrainer(config, record, fit, rendered, real, real_masks)
    return train(trainer, run_dir, resume=resume, verbose=verbose)


class InsertTrainer(Trainer):
    """One phase ("refine") of the RefinerGAN on (rendered, mask, class) against real patches of the class."""

    kind = "insert"

    def __init__(self, config, record: dict, fit, rendered, real, real_masks: np.ndarray) -> None:
        from mammo_tf.models.refiner import RefinerGAN

        super().__init__(config, record)
        self.model_class = RefinerGAN
        self.fit, self.rendered, self.real, self.real_masks = fit, rendered, real, real_masks

    def build(self):
        from mammo_tf.models.refiner import build_refiner_gan

        return build_refiner_gan(self.config)

    def dataset(self):
        import tensorflow as tf

        c, rendered, real = self.config, self.rendered, self.real
        fake = tf.data.Dataset.from_tensor_slices(
            (rendered.images, rendered.masks[..., None].astype(np.float32), rendered.labels)
        )
        real_masks = self.real_masks[..., None].astype(np.float32)
        reals = tf.data.Dataset.from_tensor_slices(
            (real.images.astype(np.float32), real_masks, real.labels.astype(np.int32))
        )
        fake = fake.shuffle(len(rendered.labels), seed=c.seed).repeat()
        reals = reals.shuffle(len(real.labels), seed=c.seed + 1).repeat()
        return tf.data.Dataset.zip((fake, reals)).batch(c.batch_size, drop_remainder=True).prefetch(2)

    def phases(self, step: int) -> list[Phase]:
        return [Phase("refine", 0, self.config.steps, self.config.val_every, log_every=min(50, self.config.val_every))]

    def start(self, run, model) -> None:
        from mammo_tf.io.atomic import write_bytes_atomic

        write_bytes_atomic(run.path / FIT_NAME, (json.dumps(self.fit.to_dict(), indent=1) + "\n").encode())

    def validate(self, run, model, step: int) -> dict[str, float]:
        from mammo_tf.training.runs import save_keras_atomic

        refined = model.refine(self.rendered.images[..., 0], self.rendered.masks)
        run.image("samples", step, self._grid(refined))
        save_keras_atomic(model.refiner, run.path / MODEL_NAME)
        inside = self.rendered.masks
        change = np.abs(refined - self.rendered.images[..., 0])
        return {"val_change_in_mask": float(change[inside].mean()) if inside.any() else 0.0}

    def _grid(self, refined: np.ndarray) -> np.ndarray:
        """Rows per class: rendered | refined | real, GRID_PER_CLASS each, white gaps: float32 [H, W]."""
        from mammo_tf.training.gan_trainer import tile_rows

        rows = []
        for label in (1, 2):
            picks = np.flatnonzero(self.rendered.labels == label)[:GRID_PER_CLASS]
            real = np.flatnonzero(self.real.labels == label)[:GRID_PER_CLASS]
            if picks.size:
                rows.append([self.rendered.images[i, ..., 0] for i in picks])
                rows.append([refined[i] for i in picks])
            if real.size:
                rows.append([self.real.images[i, ..., 0] for i in real])
        return tile_rows(rows)

    def finish(self, run, model) -> dict:
        last = [r for r in run.records() if "d_loss" in r]
        return {
            "final": {k: last[-1][k] for k in ("d_loss", "g_loss", "adv_loss", "reg_loss") if last and k in last[-1]},
            "rendered": int(len(self.rendered.labels)),
            "layout_clusters": {k: int(v) for k, v in self.fit.layouts.n_clusters.items()},
        }
