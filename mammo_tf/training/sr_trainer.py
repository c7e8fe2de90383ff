"""train-sr: the SR GAN trained on the training patients, validated on the validation patients.

Two phases in one run directory (training/runs.py): L1 pretraining, then adversarial fine-tuning. At every
validation the EMA generator is scored against bicubic on fixed validation crops, a comparison image is
written, the checkpoint is saved, and the EMA generator is exported as ``generator.keras`` (after
pretraining also ``generator_psnr.keras``, after the GAN phase ``generator_gan.keras``; the pretraining
validation with the best gain also as ``generator_best.keras``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mammo_tf.config import SRConfig, resolve_sr_config
from mammo_tf.errors import MammoError

PSNR_MODEL = "generator_psnr.keras"
BEST_MODEL = "generator_best.keras"  # best validation gain of the pretraining phase (validation patients only)
GAN_MODEL = "generator_gan.keras"
LATEST_MODEL = "generator.keras"


def quant_step(bit_depth: int) -> float:
    """Half-width x 2 of one grey level of a `bit_depth`-bit file, in units of full scale."""
    return 1.0 / ((1 << int(bit_depth)) - 1)


def quantise(pixels: np.ndarray, bit_depth: int) -> np.ndarray:
    """Round float [0, 1] pixels to the grey levels a `bit_depth`-bit file can hold (float32 out)."""
    levels = (1 << int(bit_depth)) - 1
    return (np.round(np.clip(pixels, 0.0, 1.0) * levels) / levels).astype(np.float32)


@dataclass(frozen=True)
class ValidationSet:
    """Fixed validation crops: lr float32 [N, h, w, 1], hr [N, H, W, 1], bicubic [N, H, W, 1], q float32 [N]."""

    lr: np.ndarray
    hr: np.ndarray
    bicubic: np.ndarray
    quant_step: np.ndarray
    split: str


def _pairs(catalog, config: SRConfig, n: int, hr_size: int, split: str, seed: int):
    """Sampled pairs with LR rounded to each source's bit depth (when quantise_lr); q per pair."""
    from mammo_tf.data.samplers import sample_sr_pairs

    pairs = sample_sr_pairs(
        catalog,
        n,
        hr_size=hr_size,
        scale=config.scale,
        split=split,
        foreground_share=config.foreground_share,
        seed=seed,
    )
    depths = catalog.images.set_index("image_id")["bit_depth"].loc[pairs.image_id].to_numpy()
    if not config.quantise_lr:
        return pairs, np.zeros(len(depths), np.float32)
    lr = np.stack([quantise(x, int(b)) for x, b in zip(pairs.lr, depths, strict=True)])
    steps = np.array([quant_step(int(b)) for b in depths], np.float32)
    from dataclasses import replace

    return replace(pairs, lr=lr), steps


def validation_set(catalog, config: SRConfig) -> ValidationSet:
    """Validation-patient crops (training patients if the catalog has no validation split, recorded)."""
    from mammo_tf.evaluation.sr import interpolate

    split = "val" if (catalog.images["split"] == "val").any() else "train"
    size = min(config.val_size, int(catalog.images["height"].min()), int(catalog.images["width"].min()))
    size -= size % (4 * config.scale)
    pairs, steps = _pairs(catalog, config, config.val_crops, size, split, config.seed + 1)
    bicubic = np.stack([interpolate(x[..., 0], config.scale, "bicubic")[..., None] for x in pairs.lr])
    return ValidationSet(pairs.lr, pairs.hr, bicubic, steps, split)


def validate(generator, val: ValidationSet, batch: int = 8) -> tuple[dict[str, float], np.ndarray]:
    """Mean PSNR of the generator and of bicubic on the validation crops, and the SR crops."""
    from mammo_tf.evaluation.sr import crop_border, psnr

    sr = np.concatenate(
        [
            np.asarray(generator([val.lr[i : i + batch], val.quant_step[i : i + batch]], training=False))
            for i in range(0, len(val.lr), batch)
        ]
    )
    border = val.hr.shape[1] // val.lr.shape[1]
    model = [
        psnr(crop_border(s[..., 0], border), crop_border(h[..., 0], border)) for s, h in zip(sr, val.hr, strict=True)
    ]
    base = [
        psnr(crop_border(b[..., 0], border), crop_border(h[..., 0], border))
        for b, h in zip(val.bicubic, val.hr, strict=True)
    ]
    gains = np.array(model) - np.array(base)
    return {
        "val_psnr": float(np.mean(model)),
        "val_psnr_bicubic": float(np.mean(base)),
        "val_gain_db": float(gains.mean()),
    }, sr


def comparison_image(val: ValidationSet, sr: np.ndarray, index: int = 0) -> np.ndarray:
    """LR (nearest-upscaled) | bicubic | SR | HR of one validation crop, side by side, float32 [H, 4W]."""
    scale = val.hr.shape[1] // val.lr.shape[1]
    lr = np.repeat(np.repeat(val.lr[index, ..., 0], scale, 0), scale, 1)
    tiles = [lr, val.bicubic[index, ..., 0], sr[index, ..., 0], val.hr[index, ..., 0]]
    gap = np.ones((tiles[0].shape[0], 2), np.float32)
    return np.concatenate([t for tile in tiles for t in (tile, gap)][:-1], axis=1)


def _dataset(pairs, steps: np.ndarray, config: SRConfig):
    import tensorflow as tf

    from mammo_tf.data.pipelines import sr_dataset

    q = float(steps.max()) if len(steps) else 0.0  # one step per batch: the coarsest source depth
    ds = sr_dataset(pairs, config.batch_size, seed=config.seed)
    return ds.map(lambda lr, hr: ((lr, tf.fill([tf.shape(lr)[0]], q)), hr))


def train_sr(
    data: str | Path | None,
    run_dir: str | Path,
    *,
    preset: str = "standard",
    resume: bool = False,
    verbose: int | str = "auto",
    **overrides,
) -> Path:
    """Train (or resume) an SR GAN; returns the run directory. overrides: SRConfig fields (None = preset's).

    `steps` (total) is accepted as an override and split between the phases in the preset's proportion.
    Every check a user can fail (config, dataset, run directory) runs before TensorFlow is imported, so its
    error is the only line on stderr.
    """
    from mammo_tf.data.catalog import load_catalog
    from mammo_tf.training.runs import Run

    total = overrides.pop("steps", None)
    config = resolve_sr_config(preset, **overrides)
    if total is not None:
        if total < 1:
            raise MammoError(f"--steps must be >= 1, got {total}")
        share = config.gan_steps / max(config.steps, 1)
        gan = int(round(total * share))
        config = resolve_sr_config(preset, **{**overrides, "pretrain_steps": total - gan, "gan_steps": gan})
    catalog = load_catalog(data)
    record = {
        **config.to_dict(),
        "kind": "sr",
        "data": str(catalog.root),
        "source": catalog.source,
        "train_patients": sorted(catalog.images.loc[catalog.images["split"] == "train", "patient_id"].unique()),
    }
    run = Run.create(run_dir, record, resume=resume)
    if run.state.get("finished") and run.step >= config.steps:
        raise MammoError(f"{run.path}: --resume: this run already finished at step {run.step}")
    try:
        return _train(run, catalog, config, verbose)
    except BaseException:
        run.discard()  # a new run that failed before its first checkpoint leaves nothing behind
        raise


def _train(run, catalog, config: SRConfig, verbose: int | str) -> Path:
    """The part of train_sr that needs TensorFlow: data, model, both phases, final metrics."""
    import keras
    import tensorflow as tf

    from mammo_tf.models.sr import compiled_srgan
    from mammo_tf.training.distribute import machine_summary, resolve_precision, set_precision, strategy
    from mammo_tf.training.runs import fit_in_run, save_keras_atomic

    policy = resolve_precision(config.precision)
    run.add_to_config("precision_resolved", policy)
    run.add_to_config("machine", machine_summary())
    pairs, steps = _pairs(catalog, config, config.n_pairs, config.hr_size, "train", config.seed)
    val = validation_set(catalog, config)
    dataset = _dataset(pairs, steps, config)

    previous = keras.mixed_precision.dtype_policy().name
    set_precision(policy)
    keras.utils.set_random_seed(config.seed)
    try:
        with strategy().scope():
            model = run.load_checkpoint() if run.resumed else compiled_srgan(config)

        best = {"step": run.state.get("best_step"), "gain": run.state.get("best_gain_db", float("-inf"))}

        def on_validate(model, step: int) -> dict[str, float]:
            values, sr = validate(model.ema_generator, val)
            run.image("compare", step, comparison_image(val, sr))
            save_keras_atomic(model.ema_generator, run.path / LATEST_MODEL)
            if step <= config.pretrain_steps and values["val_gain_db"] > best["gain"]:
                best.update(step=step, gain=values["val_gain_db"])
                save_keras_atomic(model.ema_generator, run.path / BEST_MODEL)
            if step == config.pretrain_steps:
                save_keras_atomic(model.ema_generator, run.path / PSNR_MODEL)
            if step == config.steps and config.gan_steps:
                save_keras_atomic(model.ema_generator, run.path / GAN_MODEL)
            return values

        interval = config.val_every
        for phase, start, end in (("pretrain", 0, config.pretrain_steps), ("gan", config.pretrain_steps, config.steps)):
            begin = max(run.step, start)
            if begin >= end:
                continue
            model.phase = phase
            fit_in_run(
                model,
                dataset,
                run,
                phase=phase,
                start=begin,
                end=end,
                interval=interval,
                on_validate=on_validate,
                verbose=verbose,
                checkpoint_extra=lambda: {"best_step": best["step"], "best_gain_db": best["gain"]},
            )
        final, _ = validate(model.ema_generator, val)
        run.finish(
            {
                **final,
                "steps": config.steps,
                "hours": round(run.seconds / 3600, 3),
                "validation_split": val.split,
                "best_pretrain_step": best["step"],
                "best_pretrain_val_gain_db": best["gain"],
                "precision": policy,
                "machine": machine_summary(),
                "tensorflow": tf.__version__,
            }
        )
    finally:
        set_precision(previous)
    return run.path
