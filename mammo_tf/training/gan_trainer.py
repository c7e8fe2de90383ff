"""train-gan: the class-conditional synthesis GAN, trained on the TRAINING patients' patches only.

One phase ("gan") in a run directory (training/runs.py). Patches come from ``sample_patches(split="train")``
and are fed class-balanced (``patch_dataset(balanced=True)``). At every validation: a sample grid per class
(fixed latents, so grids are comparable across steps) goes to ``samples/`` and TensorBoard, ADA's
augmentation probability and cheap pixel statistics are logged, the checkpoint is saved, and the EMA
generator is exported as ``generator.keras`` (what ``synth`` and ``evaluate-gan`` load from a run folder).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from mammo_tf.errors import MammoError

LATEST_MODEL = "generator.keras"
PHASE = "gan"
VAL_EVERY = {"tiny": 1, "quick": 250, "standard": 1_000}
GRID_PER_CLASS = 8
GRID_SEED_OFFSET = 0x6A1D  # grid latents: fixed per run seed, never the training noise


def segments(start: int, end: int, every: int) -> list[tuple[int, int, int]]:
    """(start, end, interval) pieces for fit_in_run: whole validation intervals, plus partial ones at the ends.

    A run may stop at a step that is not a multiple of ``every`` (``--steps``), and a resumed, extended run
    may start at such a step; each partial piece is one epoch of its own length.
    """
    pieces, pos = [], int(start)
    while pos < end:
        if pos % every == 0 and end - pos >= every:
            stop = pos + (end - pos) // every * every
            pieces.append((pos, stop, every))
        else:
            stop = min((pos // every + 1) * every, end)
            pieces.append((pos, stop, stop - pos))
        pos = stop
    return pieces


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


def resolve_gan_config(preset: str, *, patch_size: int | None = None, steps: int | None = None, **overrides: Any):
    """The SynthesisConfig of a preset with overrides (None = the preset's); MammoError on bad values."""
    from mammo_tf.models.synthesis import PRESETS
    from mammo_tf.models.synthesis import preset as synthesis_preset

    if preset not in PRESETS:
        raise MammoError(f"unknown synthesis preset {preset!r} (choose from {', '.join(sorted(PRESETS))})")
    changes = {k: v for k, v in overrides.items() if v is not None}
    if patch_size is not None:
        changes["patch_size"] = int(patch_size)
    if steps is not None:
        if int(steps) < 1:
            raise MammoError(f"--steps must be >= 1, got {steps}")
        changes["steps"] = int(steps)
    try:
        return synthesis_preset(preset, **changes)
    except (TypeError, ValueError) as err:
        raise MammoError(f"synthesis config: {err}") from None


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
    """
    from mammo_tf.training.runs import Run

    Run.precheck(run_dir, resume=resume)  # before TensorFlow prints its start-up lines

    import keras
    import tensorflow as tf

    from mammo_tf.data.catalog import load_catalog
    from mammo_tf.data.pipelines import patch_dataset
    from mammo_tf.data.samplers import CLASS_NAMES, sample_patches
    from mammo_tf.models.synthesis import SynthesisGAN, build_synthesis_gan
    from mammo_tf.training.distribute import machine_summary, resolve_precision, set_precision, strategy
    from mammo_tf.training.runs import fit_in_run, save_keras_atomic

    config = resolve_gan_config(preset, patch_size=patch_size, steps=steps, **overrides)
    every = int(val_every or VAL_EVERY.get(preset, 250))
    if every < 1:
        raise MammoError(f"val_every must be >= 1, got {every}")
    every = min(every, config.steps)
    policy = resolve_precision(precision)
    catalog = catalog if catalog is not None else load_catalog(data)
    train = sample_patches(catalog, patch_size=config.patch_size, split="train", seed=seed)
    if len(train.images) == 0:
        raise MammoError(f"{catalog.root}: no {config.patch_size}x{config.patch_size} training patches")
    counts = {name: int((train.labels == c).sum()) for c, name in enumerate(CLASS_NAMES)}
    record = {
        **config.to_dict(),
        "kind": "synthesis",
        "preset": preset,
        "seed": int(seed),
        "val_every": every,
        "precision": precision,
        "precision_resolved": policy,
        "data": str(catalog.root),
        "source": catalog.source,
        "train_patients": sorted(set(train.patient_id.tolist())),
        "train_patches": counts,
    }
    run = Run.create(run_dir, record, resume=resume)
    if run.state.get("finished") and run.step >= config.steps:
        raise MammoError(f"{run.path}: --resume: this run already finished at step {run.step}")
    dataset = patch_dataset(train, config.batch_size, balanced=True, seed=seed)
    grid_seed = int(seed) + GRID_SEED_OFFSET

    previous = keras.mixed_precision.dtype_policy().name
    set_precision(policy)
    keras.utils.set_random_seed(int(seed))
    try:
        with strategy().scope():
            if run.resumed:
                model = run.load_checkpoint()
                if not isinstance(model, SynthesisGAN):
                    raise MammoError(f"{run.path}: the checkpoint is not a synthesis GAN")
            else:
                model = build_synthesis_gan(config, seed=int(seed))
                model.compile()
                model.build_optimizers()
        if not run.resumed:  # what the generator should learn, once, beside its samples
            real_rows = [
                [img[..., 0] for img in train.images[train.labels == c][:GRID_PER_CLASS]]
                for c in range(config.n_classes)
                if (train.labels == c).any()
            ]
            run.image("real", 0, tile_rows(real_rows))

        def on_validate(model, step: int) -> dict[str, float]:
            run.image("samples", step, sample_grid(model, GRID_PER_CLASS, grid_seed, config.n_classes))
            save_keras_atomic(model.ema_generator, run.path / LATEST_MODEL)
            return {"ada_p": float(model.ada.p), **pixel_statistics(model, train, grid_seed)}

        for start, end, interval in segments(run.step, config.steps, every):
            fit_in_run(
                model,
                dataset,
                run,
                phase=PHASE,
                start=start,
                end=end,
                interval=interval,
                on_validate=on_validate,
                log_every=min(50, interval),
                verbose=verbose,
            )
        last = [r for r in run.records() if "d_loss" in r]
        run.finish(
            {
                "steps": config.steps,
                "hours": round(run.seconds / 3600, 3),
                "ada_p": float(model.ada.p),
                "final": {k: last[-1][k] for k in ("d_loss", "g_loss", "real_sign") if last and k in last[-1]},
                **pixel_statistics(model, train, grid_seed),
                "train_patches": counts,
                "precision": policy,
                "machine": machine_summary(),
                "tensorflow": tf.__version__,
            }
        )
    finally:
        set_precision(previous)
    return run.path
