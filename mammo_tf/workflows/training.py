"""Trainers wired to what they are validated with: the Python calls behind `mammo-tf train-*`.

The trainers (mammo_tf/training/) do not import evaluation or inference; what they are scored with comes
from here. Only SR needs it today (whole-film PSNR against bicubic goes through inference's tiling).
"""

from __future__ import annotations

from pathlib import Path

from mammo_tf.training.classifier_trainer import train_classifier
from mammo_tf.training.gan_trainer import train_gan
from mammo_tf.training.insert_trainer import train_insert

__all__ = ["train_classifier", "train_gan", "train_insert", "train_sr"]


def train_sr(data: str | Path | None, run_dir: str | Path, *, init_from: str | Path | None = None, **kwargs) -> Path:
    """`mammo_tf.training.sr_trainer.train_sr` validated on whole validation films (evaluation.sr_validation).

    init_from: an SR model (shipped name, .keras file or run directory) whose generator weights the run starts
    from; resolved (and a missing one refused) before TensorFlow is imported.
    """
    from mammo_tf.evaluation.sr_validation import FilmValidation
    from mammo_tf.training.sr_trainer import train_sr as train

    init = None
    if init_from is not None:
        from mammo_tf.inference.registry import check_model, load_model, model_id, resolve_model_path

        path = resolve_model_path(init_from, "sr")
        check_model(path, ("sr",), "train-sr --init-from")
        init = (model_id(path), lambda: load_model(path, ("sr",), "train-sr --init-from")[0])
    return train(data, run_dir, validation=FilmValidation, init=init, **kwargs)
