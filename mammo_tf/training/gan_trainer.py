"""train-gan: the class-conditional synthesis GAN, trained on the TRAINING patients' patches only.

One phase ("gan") in a run directory (training/runs.py). Patches come from ``sample_patches(split="train")``
and are fed class-balanced (``patch_dataset(balanced=True)``). At every validation: a sample grid per class
(fixed latents, so grids are comparable across steps) goes to ``samples/`` and TensorBoard, ADA's
augmentation probability and cheap pixel statistics are logged, the checkpoint is saved, and the EMA
generator is exported as ``generator.keras`` (what ``synth`` and ``evaluate-gan`` load from a run folder).

`--data` may also be a patches shard folder (`mammo-tf data shard --what patches`, sampled at the run's
patch size and spacing): the batches then stream from it (data/shard_pipelines.py), and the real patches
the sample grid and pixel statistics compare with are the first SHARD_SAMPLE of each class in the folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from mammo_tf.errors import MammoError
from mammo_tf.training.loop import Phase, Trainer

LATEST_MODEL = "generator.keras"
PHASE = "gan"
GRID_PER_CLASS = 8
GRID_SEED_OFFSET = 0x6A1D  # grid latents: fixed per run seed, never the training noise
SHARD_SAMPLE = 256  # real patches per class held in memory from a shard folder (grid, pixel statistics)


def sample_grid(model, per_class: int, seed: int, n_classes: int) -> np.ndarray:
    """EMA samples, one row per class (fixed latents from ``seed``), white 2 px gaps: float32 [H, W] in [0, 1]."""
    rows = [model.sample(per_class, c, seed=seed) for c in range(n_classes)]
    return tile_rows([[image[..., 0] for image in row] for row in rows])


def tile_rows(rows: list[list[np.ndarray]], gap: int = 2) -> np.ndarray:
    """Rows of equal-size float [P, P] tiles -> one float32 image with white gaps."""
    size = rows[0][0].shape[0]
    width = max(len(r) for r in rows) * (size + gap) - gap
    out = np.ones((len(rows) * (size + gap) - gap, width), np.float32)
    for i, row in enumerate(rows):
        for j, tile in enumerate(row):
            out[i * (size + gap) : i * (size + gap) + size, j * (size + gap) : j * (size + gap) + size] = tile
    return out


def pixel_statistics(model, patches, seed: int, n: int = 32) -> dict[str, float]:
    """Cheap validation numbers: per-class |mean synthetic - mean real| and std ratio, averaged over classes."""
    gaps, ratios = [], []
    for c in np.unique(patches.labels):
        real = patches.images[patches.labels == c]
        fake = model.sample(n, int(c), seed=seed)
        gaps.append(abs(float(fake.mean()) - float(real.mean())))
        ratios.append(float(fake.std()) / max(float(real.std()), 1e-6))
    return {"val_mean_gap": float(np.mean(gaps)), "val_std_ratio": float(np.mean(ratios))}


def ada_probability(model) -> float:
    """ADA's augmentation probability p of a SynthesisGAN (its variable is mirrored under a strategy)."""
    import keras

    return float(keras.ops.convert_to_numpy(model.ada.p))


def train_gan(
    data: str | Path | None,
    run_dir: str | Path,
    *,
    preset: str = "quick",
    patch_size: int | None = None,
    steps: int | None = None,
    resume: bool = False,
    precision: str = "auto",
    seed: int = 0,
    val_every: int | None = None,
    verbose: int | str = "auto",
    catalog: Any = None,
    **overrides: Any,
) -> Path:
    """Train (or resume) a synthesis GAN on the training patients; returns the run directory.

    overrides: SynthesisConfig fields (None = the preset's). ``steps`` may grow on ``resume``.
    catalog: an already loaded catalog instead of ``data`` (the study passes one fold's).
    data may also be a patches shard folder sampled at this config's patch_size and spacing_mm (another is
    refused in one line, before TensorFlow): the batches stream from it, and config.json records the
    shards' patients, sampling, catalog hash, pixel size and per-class counts.
    """
    from mammo_tf.config import resolve
    from mammo_tf.data.catalog import load_catalog
    from mammo_tf.data.resample import at_training_spacing
    from mammo_tf.data.sample_shards import first_patches, patch_sampling, shard_record, trainer_shards
    from mammo_tf.data.samplers import sample_patches
    from mammo_tf.data.schema import CLASS_NAMES
    from mammo_tf.training.loop import train
    from mammo_tf.training.runs import Run

    Run.precheck(run_dir, resume=resume)  # before the patches are drawn
    config = resolve(
        "synthesis",
        preset,
        patch_size=patch_size,
        steps=steps,
        seed=seed,
        precision=precision,
        val_every=val_every,
        **overrides,
    )
    shards = trainer_shards(data, "patches", patch_sampling(config)) if catalog is None else None
    if shards is not None:
        record = {
            **config.to_dict(),
            "kind": "synthesis",
            "preset": preset,
            **shard_record(data, shards, "patch_shards"),
            "train_patches": {name: int(shards["counts"][name]) for name in CLASS_NAMES},
        }
        patches = first_patches(data, shards, SHARD_SAMPLE)
        trainer = GANTrainer(config, record, patches, patch_shards=shards)
        return train(trainer, run_dir, resume=resume, verbose=verbose)
    catalog = catalog if catalog is not None else load_catalog(data)
    catalog, spacing_mm = at_training_spacing(catalog, config.spacing_mm)
    patches = sample_patches(catalog, patch_size=config.patch_size, split="train", seed=config.seed)
    if len(patches.images) == 0:
        raise MammoError(f"{catalog.root}: no {config.patch_size}x{config.patch_size} training patches")
    counts = {name: int((patches.labels == c).sum()) for c, name in enumerate(CLASS_NAMES)}
    record = {
        **config.to_dict(),
        "kind": "synthesis",
        "preset": preset,
        "data": str(catalog.root),
        "source": catalog.source,
        "training_spacing_mm": spacing_mm,
        "train_patients": sorted(set(patches.patient_id.tolist())),
        "train_patches": counts,
    }
    return train(GANTrainer(config, record, patches), run_dir, resume=resume, verbose=verbose)


class GANTrainer(Trainer):
    """One phase ("gan") in whole validation intervals; at each validation a sample grid, ADA's p, pixel
    statistics and generator.keras (the EMA generator)."""

    kind = "synthesis"

    def __init__(self, config, record: dict, patches, patch_shards: dict | None = None) -> None:
        from mammo_tf.models.synthesis import SynthesisGAN

        super().__init__(config, record)
        self.model_class = SynthesisGAN
        self.patches = patches  # the training patches, or a shard folder's first SHARD_SAMPLE of each class
        self.patch_shards = patch_shards  # the manifest when the batches stream from a shard folder
        self.grid_seed = config.seed + GRID_SEED_OFFSET

    def build(self):
        from mammo_tf.models.synthesis import build_synthesis_gan

        model = build_synthesis_gan(self.config)
        model.compile()
        model.build_optimizers()
        return model

    def dataset(self):
        """Class-balanced training batches: (float32 [B, P, P, 1], int32 [B]), B the global batch."""
        from mammo_tf.data.pipelines import patch_dataset

        config = self.config
        if self.patch_shards is not None:
            from mammo_tf.data.shard_pipelines import trainer_patch_batches
            from mammo_tf.training.distribute import input_shard

            return trainer_patch_batches(self.record()["data"], config, input_shard(config.strategy))
        return patch_dataset(self.patches, config.batch_size, balanced=True, seed=config.seed)

    def phases(self, step: int) -> list[Phase]:
        every = self.config.val_every
        return [Phase(PHASE, 0, self.config.steps, every, log_every=min(50, every))]

    def start(self, run, model) -> None:
        if run.resumed:
            return
        patches = self.patches  # what the generator should learn, once, beside its samples
        rows = [
            [img[..., 0] for img in patches.images[patches.labels == c][:GRID_PER_CLASS]]
            for c in range(self.config.n_classes)
            if (patches.labels == c).any()
        ]
        run.image("real", 0, tile_rows(rows))

    def validate(self, run, model, step: int) -> dict[str, float]:
        from mammo_tf.training.runs import save_keras_atomic

        run.image("samples", step, sample_grid(model, GRID_PER_CLASS, self.grid_seed, self.config.n_classes))
        save_keras_atomic(model.ema_generator, run.path / LATEST_MODEL)
        return {"ada_p": ada_probability(model), **pixel_statistics(model, self.patches, self.grid_seed)}

    def finish(self, run, model) -> dict:
        last = [r for r in run.records() if "d_loss" in r]
        return {
            "ada_p": ada_probability(model),
            "final": {k: last[-1][k] for k in ("d_loss", "g_loss", "real_sign") if last and k in last[-1]},
            **pixel_statistics(model, self.patches, self.grid_seed),
            "train_patches": self._record["train_patches"],
        }
