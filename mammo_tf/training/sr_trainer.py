"""train-sr: the SR GAN trained on the training patients, validated on the validation patients.

Two phases in one run directory (training/loop.py, training/runs.py): L1 pretraining, then adversarial
fine-tuning. At every validation the EMA generator is scored by the validator passed in (whole validation
films against bicubic: evaluation/sr_validation.py), a comparison image is written, the checkpoint is saved,
and the EMA generator is exported as ``generator.keras`` (after
pretraining also ``generator_psnr.keras``, after the GAN phase ``generator_gan.keras``; the pretraining
validation with the best gain also as ``generator_best.keras``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from mammo_tf.config import SRConfig, resolve_sr_config
from mammo_tf.errors import MammoError
from mammo_tf.training.loop import Phase, Trainer

PSNR_MODEL = "generator_psnr.keras"
BEST_MODEL = "generator_best.keras"  # best validation gain of the pretraining phase (validation patients only)
GAN_MODEL = "generator_gan.keras"
LATEST_MODEL = "generator.keras"


def _pairs(catalog, config: SRConfig, n: int, hr_size: int, split: str, seed: int):
    """Sampled pairs with LR rounded to each source's bit depth (when quantise_lr, or "diverse"); q per pair."""
    from dataclasses import replace

    from mammo_tf.data.degrade import quant_step_for
    from mammo_tf.data.samplers import sample_sr_pairs
    from mammo_tf.io.images import quantize

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
    if config.lr_degradations != "box":  # a random scanner per pair, on the source's grey levels
        from mammo_tf.data.scanner_degradations import random_degradation

        rng = np.random.default_rng([seed, 1])
        mix, s = config.lr_degradations, config.scale
        lr = np.stack(
            [random_degradation(h, s, int(b), rng, mix) for h, b in zip(pairs.hr[..., 0], depths, strict=True)]
        )
        lr = lr[..., None]
    elif config.quantise_lr:
        lr = np.stack([quantize(x, int(b), as_float=True) for x, b in zip(pairs.lr, depths, strict=True)])
    else:
        return pairs, np.zeros(len(depths), np.float32)
    steps = np.array([quant_step_for(int(b)) for b in depths], np.float32)
    return replace(pairs, lr=lr), steps


def _pair_shards(data: str | Path | None, config: SRConfig) -> dict | None:
    """The manifest of `data` when it is a sr-pairs shard folder sampled for this config, else None.

    MammoError (one line, before TensorFlow) for pairs sampled at another scale, size or spacing, or for
    --lr-degradations other than box (shards hold the box-averaged LR; other LR is drawn per pair from the films).
    """
    from mammo_tf.data.sample_shards import trainer_shards

    expected = {"scale": config.scale, "hr_size": config.hr_size}
    if config.spacing_mm is not None:
        expected["spacing_mm"] = config.spacing_mm
    manifest = trainer_shards(data, "sr-pairs", expected)
    if manifest is not None and config.lr_degradations != "box":
        raise MammoError(
            f"{data}: sr-pairs shards hold box-averaged LR; --lr-degradations {config.lr_degradations} needs the films"
        )
    return manifest


def _shard_dataset(folder: str, manifest: dict, config: SRConfig):
    """The pairs of a sr-pairs shard folder as _dataset gives them: ((lr, q), hr), q the coarsest source step.

    Under --strategy multiworker each worker reads its own files (training/distribute.input_shard).
    """
    import tensorflow as tf

    from mammo_tf.data.degrade import quant_step_for
    from mammo_tf.data.shard_pipelines import sr_shard_dataset
    from mammo_tf.training.distribute import input_shard

    ds, _ = sr_shard_dataset(
        folder,
        config.batch_size,
        seed=config.seed,
        scale=config.scale,
        hr_size=config.hr_size,
        quantise_lr=config.quantise_lr,
        input_context=input_shard(config.strategy),
    )
    q = max(quant_step_for(int(b)) for b in manifest["bit_depths"]) if config.quantise_lr else 0.0
    return ds.map(lambda lr, hr: ((lr, tf.fill([tf.shape(lr)[0]], q)), hr))


def _noise_ceiling(catalog, config: SRConfig) -> float | None:
    """The noise ceiling `upscale` gates with (inference/noise_gate.py): the noisiest training film's LR as
    the model saw it (the box average, rounded to the film's bits), plus a margin, in 8-bit grey levels.
    None for degradation-diverse training: the model saw noisy LR on purpose. "gated" training keeps the
    box's ceiling: such a model is meant to stand behind the gate, which hands it only what it trained on."""
    if config.lr_degradations == "diverse":
        return None
    from mammo_tf.data.degrade import crop_to_scale, degrade
    from mammo_tf.data.noise import noise_ceiling
    from mammo_tf.io.images import read_image

    films = catalog.images[catalog.images["split"] == "train"]
    s = config.scale
    return noise_ceiling(
        degrade(crop_to_scale(read_image(path).pixels, s), s, int(bits) if config.quantise_lr else None)
        for path, bits in zip(films["path"], films["bit_depth"], strict=True)
    )


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
    validation: Callable[[Any, SRConfig], Validator] | None = None,
    catalog: Any = None,
    init: tuple[str, Callable[[], Any]] | None = None,
    val_data: str | Path | None = None,
    **overrides,
) -> Path:
    """Train (or resume) an SR GAN; returns the run directory. overrides: SRConfig fields (None = preset's).

    `steps` (total) is accepted as an override and split between the phases in the preset's proportion.
    validation: (catalog, config) -> a Validator, called once; without it nothing is scored (no
    generator_best.keras). `mammo_tf.workflows.training.train_sr` passes the whole-film validation.
    catalog: an already loaded catalog instead of ``data`` (a study passes one fold's, its splits set).
    init: (model id, a loader of an SR generator) to start from its weights instead of the bicubic-equal
    initialisation (fine-tuning a shipped model); the id is recorded as ``init_from`` in config.json.
    data may also be a sr-pairs shard folder (`mammo-tf data shard --what sr-pairs`, sampled at this config's
    scale and hr_size): the pairs stream from it (data/shard_pipelines.py) instead of being sampled here, and
    the whole-film validation runs on val_data's validation patients (an image dataset; None: no validation).
    Every check a user can fail (config, dataset, run directory) runs before TensorFlow is imported, so its
    error is the only line on stderr.
    """
    from mammo_tf.data.catalog import load_catalog
    from mammo_tf.data.resample import at_training_spacing
    from mammo_tf.data.sample_shards import shard_record
    from mammo_tf.training.loop import train
    from mammo_tf.training.runs import Run

    Run.precheck(run_dir, resume=resume)
    total = overrides.pop("steps", None)
    config = resolve_sr_config(preset, **overrides)
    if total is not None:
        if total < 1:
            raise MammoError(f"--steps must be >= 1, got {total}")
        share = config.gan_steps / max(config.steps, 1)
        gan = int(round(total * share))
        config = resolve_sr_config(preset, **{**overrides, "pretrain_steps": total - gan, "gan_steps": gan})
    shards = _pair_shards(data, config) if catalog is None else None
    if shards is not None:
        catalog = None if val_data is None else at_training_spacing(load_catalog(val_data), config.spacing_mm)[0]
        record = {
            **config.to_dict(),
            "kind": "sr",
            **shard_record(data, shards, "pair_shards"),
            "val_data": None if catalog is None else str(catalog.root),
        }
    else:
        if val_data is not None:
            raise MammoError("--val-data is for --data a sr-pairs shard folder (a dataset validates on its own films)")
        catalog = catalog if catalog is not None else load_catalog(data)
        catalog, spacing_mm = at_training_spacing(catalog, config.spacing_mm)
        record = {
            **config.to_dict(),
            "kind": "sr",
            "data": str(catalog.root),
            "source": catalog.source,
            "training_spacing_mm": spacing_mm,
            "train_patients": sorted(catalog.images.loc[catalog.images["split"] == "train", "patient_id"].unique()),
        }
    if init is not None:
        record["init_from"] = init[0]
    validation = validation if catalog is not None else None
    trainer = SRTrainer(config, record, catalog, validation, init[1] if init else None, pair_shards=shards)
    return train(trainer, run_dir, resume=resume, verbose=verbose)


class Validator(Protocol):
    """Scores an SR generator: ({"val_psnr", "val_psnr_bicubic", "val_gain_db", ...}, comparison image or None)."""

    split: str  # the catalog split it scores ("val", or "train" when the data has no validation patients)

    def __call__(self, generator) -> tuple[dict[str, float], np.ndarray | None]: ...


class SRTrainer(Trainer):
    """L1 pretraining, then GAN fine-tuning; each validation exports the EMA generator (module docstring)."""

    kind = "sr"

    def __init__(self, config: SRConfig, record: dict, catalog, validation, init=None, pair_shards=None) -> None:
        from mammo_tf.models.sr import SRGAN

        super().__init__(config, record)
        self.model_class = SRGAN
        self.catalog, self.validation, self.init = catalog, validation, init
        self.validator: Validator | None = None
        self.pair_shards: dict | None = pair_shards  # the manifest when the pairs stream from a shard folder
        self.best: dict = {}

    def build(self):
        from mammo_tf.models.sr import compiled_srgan

        model = compiled_srgan(self.config)
        if self.init is not None:  # a resumed run then loads its checkpoint over these weights
            weights = self.init().get_weights()
            shapes = [w.shape for w in model.generator.get_weights()]
            if [w.shape for w in weights] != shapes:
                raise MammoError(
                    f"--init-from {self.record()['init_from']}: another generator architecture than this "
                    f"config's ({self.config.generator}, x{self.config.scale})"
                )
            model.generator.set_weights(weights)
            model.ema_generator.set_weights(weights)
        return model

    def dataset(self):
        config = self.config
        if self.pair_shards is None:
            pairs, steps = _pairs(self.catalog, config, config.n_pairs, config.hr_size, "train", config.seed)
        if self.validation is not None:  # built here, where it always was: before the model
            self.validator = self.validation(self.catalog, config)
        if self.pair_shards is not None:
            return _shard_dataset(self.record()["data"], self.pair_shards, config)
        return _dataset(pairs, steps, config)

    def phases(self, step: int) -> list[Phase]:
        c = self.config
        return [
            Phase("pretrain", 0, c.pretrain_steps, c.val_every),
            Phase("gan", c.pretrain_steps, c.steps, c.val_every),
        ]

    def enter_phase(self, model, phase: Phase) -> None:
        model.phase = phase.name

    def start(self, run, model) -> None:
        self.best = {"step": run.state.get("best_step"), "gain": run.state.get("best_gain_db", float("-inf"))}

    def validate(self, run, model, step: int) -> dict[str, float]:
        from mammo_tf.training.runs import save_keras_atomic

        config, generator = self.config, model.ema_generator
        values, image = self.validator(generator) if self.validator else ({}, None)
        if image is not None:
            run.image("compare", step, image)
        save_keras_atomic(generator, run.path / LATEST_MODEL)
        gain = values.get("val_gain_db")
        if step <= config.pretrain_steps and gain is not None and gain > self.best["gain"]:
            self.best.update(step=step, gain=gain)
            save_keras_atomic(generator, run.path / BEST_MODEL)
        if step == config.pretrain_steps:
            save_keras_atomic(generator, run.path / PSNR_MODEL)
        if step == config.steps and config.gan_steps:
            save_keras_atomic(generator, run.path / GAN_MODEL)
        return values

    def checkpoint_extra(self) -> dict:
        return {"best_step": self.best["step"], "best_gain_db": self.best["gain"]}

    def finish(self, run, model) -> dict:
        final = self.validator(model.ema_generator)[0] if self.validator else {}
        return {
            **final,
            "noise_ceiling_greys": None if self.pair_shards else _noise_ceiling(self.catalog, self.config),
            "validation_split": self.validator.split if self.validator else None,
            "best_pretrain_step": self.best["step"],
            "best_pretrain_val_gain_db": self.best["gain"],
        }
