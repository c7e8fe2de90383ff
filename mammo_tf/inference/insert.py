"""insert: N calcification patches made by inserting fitted clusters into real normal tissue, with masks.

An insertion model is a refiner (``refiner.keras`` in a train-insert run, ``model.keras`` shipped) with
``insertion.json`` beside it (the layouts and point spread fitted on its training patients). Patches are
drawn into matched normal tissue of the TRAINING patients of ``data``, rendered, then (``refine``) passed
through the refiner, which changes pixels inside the speck mask only. Refinement is off by default: the
shipped refiner's patches trained better classifiers on MIAS (3 seeds) but were not shown to be harder to
tell from real, which is what it is for (docs/results-insertion.md).

Output folder (atomic, as `synth`'s: data/.. inference/patch_folder.py): ``<class>_<i>.png`` (16-bit) or
``.npy``, ``<class>_<i>_mask.png`` (8-bit, 255 = speck or its dilated margin) and manifest.csv with columns
file, mask, class, class_id, seed, index, refined, background_image, background_patient, background_row,
background_col, n_specks, arrangement, model. Same model, data, arguments and seed: same bytes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from mammo_tf.data.schema import BENIGN, CLASS_NAMES, MALIGNANT
from mammo_tf.errors import MammoError, located
from mammo_tf.inference.patch_folder import FORMATS, check_output_folder, encode_patch, write_patch_folder

CLASS_CHOICES = ("benign", "malignant", "all")
DEFAULT_PATCH = 64


def load_insertion_model(spec: str | Path | None):
    """(refiner keras.Model, InsertionFit, model id) for a shipped name, a .keras file or a train-insert run."""
    import mammo_tf.models.refiner  # noqa: F401  (registers its layers)
    from mammo_tf.data.insertion import load_insertion_fit
    from mammo_tf.inference.registry import load_keras, model_id, resolve_model_path

    path = resolve_model_path(spec, "insert")
    fit = load_insertion_fit(path.parent)
    refiner = load_keras(path)
    if len(refiner.inputs) != 2:  # [rendered, mask]
        raise located(path, f"this is not a calcification refiner (model {refiner.name!r}); insert needs one")
    return refiner, fit, model_id(path)


def insert(
    n: int,
    out: str | Path,
    *,
    model: str | Path | None = None,
    class_name: str = "all",
    data: str | Path | None = None,
    seed: int = 0,
    refine: bool = False,
    fmt: str = "png",
    overwrite: bool = False,
) -> pd.DataFrame:
    """Write n inserted patches, their masks and manifest.csv into `out`; returns the manifest.

    class_name: benign | malignant | all (alternating). Every argument is checked before anything is
    written (MammoError, one line); a folder without usable training tissue or calcification findings fails
    the same way.
    """
    from mammo_tf.data.catalog import load_catalog
    from mammo_tf.data.insertion import insert_clusters

    out = Path(out)
    if isinstance(n, bool) or int(n) < 1:
        raise MammoError(f"--n must be >= 1, got {n}")
    if class_name not in CLASS_CHOICES:
        raise MammoError(f"--class must be one of {', '.join(CLASS_CHOICES)} (normal tissue is not inserted)")
    if fmt not in FORMATS:
        raise MammoError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    check_output_folder(out, overwrite, "insert")
    refiner, fit, ident = load_insertion_model(model)
    patch_size = fit.patch_size or DEFAULT_PATCH  # the refiner is fully convolutional: the fit says its size
    catalog = load_catalog(data)
    klass = {"benign": BENIGN, "malignant": MALIGNANT}.get(class_name)
    made = insert_clusters(catalog, fit, int(n), patch_size, seed, klass=klass, jitter=fit.jitter)
    images = made.images[..., 0]
    if refine:
        images = refine_patches(refiner, made.images, made.masks)
    width = max(5, len(str(int(n) - 1)))
    names = [f"{CLASS_NAMES[c]}_{i:0{width}d}" for i, c in enumerate(made.labels)]
    manifest = pd.DataFrame(
        {
            "file": [f"{name}.{fmt}" for name in names],
            "mask": [f"{name}_mask.png" for name in names],
            "class": [CLASS_NAMES[c] for c in made.labels],
            "class_id": made.labels,
            "seed": int(seed),
            "index": np.arange(int(n)),
            "refined": bool(refine),
            **{key: [r[key] for r in made.records] for key in BACKGROUND_COLUMNS},
            "n_specks": [r["n_specks"] for r in made.records],
            "arrangement": [r["arrangement"] for r in made.records],
            "model": ident,
        }
    )
    files = []
    for name, image, mask in zip(names, images, made.masks, strict=True):
        files.append((f"{name}.{fmt}", encode_patch(image, fmt)))
        files.append((f"{name}_mask.png", encode_patch(mask.astype(np.float32), "png", bits=8)))
    write_patch_folder(out, manifest, files)
    return manifest


BACKGROUND_COLUMNS = ("background_image", "background_patient", "background_row", "background_col")


def refine_patches(refiner, images: np.ndarray, masks: np.ndarray, batch: int = 128) -> np.ndarray:
    """float32 [N, P, P]: the refiner's output for rendered images [N, P, P, 1] and bool masks [N, P, P]."""
    mask = masks[..., None].astype(np.float32)
    out = [
        np.asarray(refiner([images[i : i + batch], mask[i : i + batch]], training=False))
        for i in range(0, len(images), batch)
    ]
    return np.clip(np.concatenate(out)[..., 0], 0.0, 1.0).astype(np.float32)
