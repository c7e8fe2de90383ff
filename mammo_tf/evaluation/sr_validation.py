"""SR validation during training: whole validation films scored against bicubic, as evaluate-sr scores the
test films. Passed to the SR trainer from above (`mammo_tf.workflows.training.train_sr`), so training does not
import evaluation or inference.

    validator = FilmValidation(catalog, config)      # reads config.val_films films of the validation patients
    values, image = validator(generator)             # {"val_psnr", "val_psnr_bicubic", "val_gain_db"}, crops
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mammo_tf.config import SRConfig


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
    from mammo_tf.data.degrade import crop_to_scale, degrade, interpolate
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
    # The network alone (no scanner-line averaging): checkpoints are chosen on what training changes.
    sr = [upscale_array(model, lr, bits, scanner_lines="keep") for lr, bits in zip(val.lr, val.bits, strict=True)]
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


class FilmValidation:
    """The SR trainer's validator: (values, comparison image) for a generator, on fixed validation films."""

    def __init__(self, catalog, config: SRConfig) -> None:
        self.films = validation_set(catalog, config)
        self.split = self.films.split

    def __call__(self, generator) -> tuple[dict[str, float], np.ndarray]:
        values, sr = validate(generator, self.films)
        return values, comparison_image(self.films, sr)
