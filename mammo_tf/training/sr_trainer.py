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


def _pairs(catalog, config: SRConfig, n: int, hr_size: int, split: str, seed: int):
    """Sampled pairs with LR rounded to each source's bit depth (when quantise_lr); q per pair."""
    from mammo_tf.data.samplers import sample_sr_pairs
    from mammo_tf.evaluation.sr import quantise
    from mammo_tf.inference.upscale import quant_step_for

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
    steps = np.array([quant_step_for(int(b)) for b in depths], np.float32)
    from dataclasses import replace

    return replace(pairs, lr=lr), steps


@dataclass(frozen=True)
class ValidationSet:
    """Whole validation films, scored as the test films are (film-foreground region, 8-bit LR for MIAS).

    Per film: lr float32 [h, w] (rounded to the source bit depth when quantise_lr), hr [h*s, w*s], bicubic
    [h*s, w*s], region bool [h*s, w*s] (HR > 0.08 eroded 9x9, 4-px border), bits (None = float LR).
    Crops would mislead: their gain is dominated by the film background next to the breast, where any
    consistent model beats bicubic, not by the tissue a reader looks at.
    """

    lr: list[np.ndarray]
    hr: list[np.ndarray]
    bicubic: list[np.ndarray]
    region: list[np.ndarray]
    bits: list[int | None]
    split: str


def validation_set(catalog, config: SRConfig) -> ValidationSet:
    """`config.val_films` validation-patient films, evenly spread over the split (training patients if the
    catalog has no validation split, recorded)."""
    from mammo_tf.evaluation.sr import crop_to_scale, degrade, interpolate
    from mammo_tf.evaluation.sr_eval import anchor_mask
    from mammo_tf.io.images import read_image

    split = "val" if (catalog.images["split"] == "val").any() else "train"
    images = catalog.images[catalog.images["split"] == split]
    picks = np.unique(np.linspace(0, len(images) - 1, min(config.val_films, len(images))).round().astype(int))
    s = config.scale
    films: dict[str, list] = {"lr": [], "hr": [], "bicubic": [], "region": [], "bits": []}
    for image in images.iloc[picks].itertuples():
        pixels = read_image(image.path).pixels
        hr = crop_to_scale(pixels, s).astype(np.float32)
        bits = int(image.bit_depth) if config.quantise_lr else None
        lr = degrade(hr, s, bits)
        region = anchor_mask(hr)
        films["lr"].append(lr)
        films["hr"].append(hr)
        films["bicubic"].append(interpolate(lr, s, "bicubic"))
        films["region"].append(region if region.any() else np.ones_like(region))  # a film with no tissue
        films["bits"].append(bits)
    return ValidationSet(**films, split=split)


def validate(generator, val: ValidationSet) -> tuple[dict[str, float], list[np.ndarray]]:
    """Mean PSNR of the generator and of bicubic inside each film's region, and the SR films.

    Films go through inference's tiling, as `upscale` runs them, so memory stays bounded on large films.
    """
    from mammo_tf.evaluation.sr import psnr
    from mammo_tf.inference.upscale import SRModel, receptive_margin, upscale_array
    from mammo_tf.models.sr import generator_scale

    model = SRModel(generator, generator_scale(generator), receptive_margin(generator), "training", None)
    sr = [upscale_array(model, lr, bits) for lr, bits in zip(val.lr, val.bits, strict=True)]
    ours = np.array([psnr(x, h, r) for x, h, r in zip(sr, val.hr, val.region, strict=True)])
    base = np.array([psnr(b, h, r) for b, h, r in zip(val.bicubic, val.hr, val.region, strict=True)])
    return {
        "val_psnr": float(ours.mean()),
        "val_psnr_bicubic": float(base.mean()),
        "val_gain_db": float((ours - base).mean()),
    }, sr


def comparison_image(val: ValidationSet, sr: list[np.ndarray], index: int = 0, size: int = 192) -> np.ndarray:
    """LR (nearest-upscaled) | bicubic | SR | HR of a crop at the centre of film `index`'s region, float32."""
    hr = val.hr[index]
    scale = hr.shape[0] // val.lr[index].shape[0]
    size = min(size, *hr.shape) // scale * scale
    rows, cols = np.nonzero(val.region[index])
    r0 = int(np.clip(int(np.median(rows)) - size // 2, 0, hr.shape[0] - size)) // scale * scale
    c0 = int(np.clip(int(np.median(cols)) - size // 2, 0, hr.shape[1] - size)) // scale * scale
    lr = np.repeat(np.repeat(val.lr[index], scale, 0), scale, 1)
    tiles = [x[r0 : r0 + size, c0 : c0 + size] for x in (lr, val.bicubic[index], sr[index], hr)]
    gap = np.ones((size, 2), np.float32)
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
