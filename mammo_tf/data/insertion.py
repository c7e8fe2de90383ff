"""Inserted positives: fitted cluster layouts rendered into matched real normal tissue (NumPy only).

    fit = fit_insertion(catalog, split="train")            # layouts + point spread of the training patients
    batch = insert_clusters(catalog, fit, n, patch_size, seed, split="train", jitter=fit.jitter)
    batch.images float32 [n, P, P, 1] in [0, 1], batch.masks bool [n, P, P], batch.labels int32 [n]
    (BENIGN / MALIGNANT, alternating), batch.records (one dict a patch), batch.backgrounds (Patches: where
    each background came from, so a caller never reuses one as a negative)

Backgrounds are matched to the real positives of the same split in intensity and position in the breast
(render.matched_backgrounds), so an inserted positive cannot be told from a real one by its tissue.
Cluster centres are jittered off the patch centre as sample_patches jitters real positives (uniform in a disc
of min(jitter, cluster radius) px), so the position of a cluster in its patch does not tell inserted from real.
Deterministic by seed. The layouts see only `split`'s patients; `fit.patients` records them.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mammo_tf.data.layouts import LayoutModel, fit_layouts, sample_layout
from mammo_tf.data.render import PatchKey, estimate_psf, matched_backgrounds, render_cluster
from mammo_tf.data.samplers import Patches, disc_offset, sample_patches
from mammo_tf.data.schema import BENIGN, CLASS_NAMES, MALIGNANT, NORMAL
from mammo_tf.data.speck_extraction import extract_specks
from mammo_tf.data.tasks import subset
from mammo_tf.errors import MammoError, located

INSERTED_CLASSES = (BENIGN, MALIGNANT)
FIT_NAME = "insertion.json"  # beside an insertion model's refiner: the layouts and point spread it renders with


@dataclass(frozen=True)
class InsertionFit:
    """What insertion learned from real clusters: the layout model and the point-spread sigma (px)."""

    layouts: LayoutModel
    psf_sigma: float
    patch_size: int | None = None  # the patch side its refiner was trained at (None: not trained yet)
    jitter: int = 0  # px: how far real positives' centres were jittered in its training patches

    @property
    def patients(self) -> list[str]:
        return list(self.layouts.patients)

    def to_dict(self) -> dict[str, Any]:
        return {
            "layouts": self.layouts.to_dict(), "psf_sigma": float(self.psf_sigma), "patch_size": self.patch_size,
            "jitter": self.jitter,
        }  # fmt: skip

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> InsertionFit:
        size = data.get("patch_size")
        return cls(
            LayoutModel.from_dict(data["layouts"]), float(data["psf_sigma"]), None if size is None else int(size),
            int(data.get("jitter", 0)),
        )  # fmt: skip


@dataclass(frozen=True)
class Inserted:
    """n rendered positives: images float32 [n, P, P, 1], masks bool [n, P, P], labels int32 [n], records,
    and the real background patches they were drawn into."""

    images: np.ndarray
    masks: np.ndarray
    labels: np.ndarray
    records: list[dict]
    backgrounds: Patches


def load_insertion_fit(folder: str | Path) -> InsertionFit:
    """The InsertionFit saved beside a refiner (insertion.json in `folder`); MammoError naming the file."""
    path = Path(folder) / FIT_NAME
    if not path.is_file():
        raise located(path, "missing: an insertion model is a refiner .keras file with insertion.json beside it")
    try:
        return InsertionFit.from_dict(json.loads(path.read_text()))
    except (ValueError, KeyError, TypeError) as err:
        raise located(path, f"not an insertion fit ({type(err).__name__}: {err})") from None


def fit_insertion(catalog, split: str | None = "train") -> InsertionFit:
    """Layouts and point spread from the real specks of `split`'s calcification clusters (MammoError if none)."""
    specks = extract_specks(catalog, split)
    return InsertionFit(fit_layouts(specks), float(estimate_psf(catalog, specks, split).sigma))


def real_positives(catalog, patch_size: int, per_cluster: int, jitter: int, seed: int, split: str | None = "train"):
    """The real calcification patches of `split` (what matched backgrounds imitate and the refiner's D sees)."""
    patches = sample_patches(
        catalog, patch_size=patch_size, per_cluster=per_cluster, jitter=jitter, normal_per_image=0, split=split,
        seed=seed,
    )  # fmt: skip
    positives = subset(patches, np.flatnonzero(patches.labels != NORMAL))
    if len(positives.labels) == 0:
        raise MammoError(f"{catalog.root}: no calcification patches in the {split} patients")
    return positives


def insert_clusters(
    catalog,
    fit: InsertionFit,
    n: int,
    patch_size: int,
    seed: int,
    *,
    split: str | None = "train",
    klass: int | None = None,
    positives: Patches | None = None,
    exclude: Collection[PatchKey] = (),
    used: set[PatchKey] | None = None,
    jitter: int = 0,
) -> Inserted:
    """n positives rendered into matched normal backgrounds of `split` (module docstring).

    klass: BENIGN or MALIGNANT for one class, None for both alternating. positives: the real positives the
    backgrounds are matched to (default: real_positives of `split` with 4 per cluster). exclude / used: as in
    render.matched_backgrounds (keys of patches that must not be reused, and the set that gets the new ones).
    jitter: the cluster centre's offset from the patch centre, uniform in a disc of min(jitter, the layout's
    radius) px (0: at the centre; callers pass fit.jitter to imitate the real positives of its training).
    """
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
        raise MammoError(f"n must be an integer >= 1, got {n!r}")
    if klass is not None and klass not in INSERTED_CLASSES:
        raise MammoError(f"only calcification classes can be inserted (benign, malignant), got {CLASS_NAMES[klass]}")
    if positives is None:
        positives = real_positives(catalog, patch_size, per_cluster=4, jitter=0, seed=seed, split=split)
    backgrounds = matched_backgrounds(catalog, positives, int(n), patch_size, seed, split, exclude, used)
    rng = np.random.default_rng([seed, 0x1A5E])
    offsets = np.random.default_rng([seed, 0x0FF5])  # its own stream: jitter 0 draws the same layouts
    images, masks, labels, records = [], [], [], []
    for i, background in enumerate(backgrounds.images[..., 0]):
        label = klass if klass is not None else INSERTED_CLASSES[i % 2]
        layout = sample_layout(fit.layouts, label, rng)
        dy, dx = disc_offset(offsets, min(int(jitter), int(layout.radius))) if jitter > 0 else (0, 0)
        centre = (patch_size // 2 + dy, patch_size // 2 + dx)
        patch, mask, record = render_cluster(background, layout, fit.psf_sigma, rng, centre)
        record.update(
            layout_radius=layout.radius,
            background_image=str(backgrounds.image_id[i]),
            background_patient=str(backgrounds.patient_id[i]),
            background_row=int(backgrounds.centre_row[i]),
            background_col=int(backgrounds.centre_col[i]),
        )
        images.append(patch)
        masks.append(mask)
        labels.append(label)
        records.append(record)
    return Inserted(
        images=np.stack(images)[..., None].astype(np.float32),
        masks=np.stack(masks),
        labels=np.asarray(labels, np.int32),
        records=records,
        backgrounds=backgrounds,
    )
