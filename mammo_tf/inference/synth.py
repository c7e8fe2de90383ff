"""synth: N synthetic patches of one class (or all) from a trained synthesis generator, plus manifest.csv.

The output folder is written atomically (a temporary folder renamed into place): a failed or interrupted
command leaves nothing behind, and an existing output is only replaced with ``overwrite`` (and only if it is
a previous synth output, i.e. holds a manifest.csv). Patch i's latent depends only on (seed, i), so the same
model, arguments and seed give the same bytes, and any row of the manifest can be regenerated alone.

manifest.csv columns: file, class, class_id, seed, index, truncation, model.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mammo_tf.data.schema import CLASS_NAMES
from mammo_tf.errors import MammoError, located
from mammo_tf.inference.patch_folder import FORMATS, MANIFEST, check_output_folder, encode_patch, write_patch_folder

CLASS_CHOICES = (*CLASS_NAMES, "all")
__all__ = ["FORMATS", "MANIFEST", "SynthesisModel", "synthesize"]


@dataclass(frozen=True)
class SynthesisModel:
    """A loaded synthesis generator and what sampling needs to know about it."""

    generator: Any  # functional: [z float32 [B, latent_dim], label int32 [B]] -> float32 [B, P, P, 1]
    patch_size: int
    latent_dim: int
    n_classes: int
    model_id: str
    path: Path | None


def as_synthesis_model(model: Any, path: Path | None = None, model_id: str | None = None) -> SynthesisModel:
    """Wrap a SynthesisGAN (its EMA generator is used) or a synthesis generator; MammoError for anything else."""
    import keras

    from mammo_tf.models.synthesis import SynthesisGAN

    where = path if path is not None else "model"
    generator = model.ema_generator if isinstance(model, SynthesisGAN) else model
    ok = isinstance(generator, keras.Model) and len(generator.inputs) == 2 and len(generator.outputs) == 1
    if ok:
        z, label = generator.inputs
        shape = tuple(generator.outputs[0].shape)
        ok = (
            len(z.shape) == 2
            and len(label.shape) == 1
            and "int" in str(label.dtype)
            and len(shape) == 4
            and shape[1] == shape[2]
            and shape[3] == 1
        )
    if not ok:
        name = getattr(model, "name", type(model).__name__)
        raise located(where, f"not a mammo-tf synthesis model (model {name!r})")
    embedding = next((layer for layer in generator.layers if isinstance(layer, keras.layers.Embedding)), None)
    n_classes = int(embedding.input_dim) if embedding is not None else len(CLASS_NAMES)
    return SynthesisModel(
        generator=generator,
        patch_size=int(shape[1]),
        latent_dim=int(z.shape[1]),
        n_classes=n_classes,
        model_id=model_id or f"{generator.name}@memory",
        path=path,
    )


def load_synthesis_model(spec: str | Path | None = None, *, command: str = "synth") -> SynthesisModel:
    """The synthesis generator named by ``spec`` (shipped name, .keras file or run directory; None = default).

    A generator or a SynthesisGAN checkpoint; a file of another kind is refused before it is loaded (MammoError:
    what the file is, what ``command`` needs).
    """
    import mammo_tf.models.synthesis  # noqa: F401  (registers the custom layers and SynthesisGAN)
    from mammo_tf.inference.registry import load_model, model_id

    model, path, _ = load_model(spec, ("synthesis", "synthesis-gan"), command)
    return as_synthesis_model(model, path, model_id(path))


def class_plan(n: int, class_name: str) -> np.ndarray:
    """int32 [n] class ids: one class, or 'all' split evenly in blocks (normal, then benign, then malignant)."""
    if class_name == "all":
        counts = [n // len(CLASS_NAMES) + (i < n % len(CLASS_NAMES)) for i in range(len(CLASS_NAMES))]
        return np.repeat(np.arange(len(CLASS_NAMES), dtype=np.int32), counts)
    return np.full(n, CLASS_NAMES.index(class_name), np.int32)


def generate(
    model: SynthesisModel, class_ids: np.ndarray, seed: int, truncation: float | None = None, batch_size: int = 64,
    progress: bool = False,
) -> np.ndarray:  # fmt: skip
    """float32 [n, P, P, 1] in [0, 1]: patch i from latent (seed, i) and class_ids[i]."""
    from tqdm import tqdm

    from mammo_tf.models.synthesis import latents

    n = len(class_ids)
    out = []
    starts = range(0, n, batch_size)
    for start in tqdm(starts, desc="synth", unit="batch", disable=not progress, leave=False):
        stop = min(start + batch_size, n)
        z = latents(stop - start, model.latent_dim, seed, truncation, start=start)
        out.append(np.asarray(model.generator([z, class_ids[start:stop]], training=False)))
    return np.clip(np.concatenate(out), 0.0, 1.0).astype(np.float32)


def synthesize(
    model: str | Path | SynthesisModel | Any | None,
    n: int,
    class_name: str,
    out: str | Path,
    seed: int = 0,
    fmt: str = "png",
    overwrite: bool = False,
    *,
    truncation: float | None = None,
    batch_size: int = 64,
    progress: bool = True,
) -> pd.DataFrame:
    """Write n patches and manifest.csv into ``out``; returns the manifest.

    model: a shipped name, .keras file or run directory (None = the shipped default), a loaded SynthesisGAN /
        generator, or a SynthesisModel. class_name: normal | benign | malignant | all (n in total, split
        evenly). fmt: png (16-bit grey) or npy (float32 [P, P]). truncation: resample |z| > t.
    Every argument is checked before anything is written (MammoError, one line).
    """
    n = int(n)
    out = Path(out)
    if n < 1:
        raise MammoError(f"--n must be >= 1, got {n}")
    if class_name not in CLASS_CHOICES:
        raise MammoError(f"unknown class {class_name!r} (choose from {', '.join(CLASS_CHOICES)})")
    if fmt not in FORMATS:
        raise MammoError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if truncation is not None and truncation <= 0:
        raise MammoError(f"--truncation must be > 0, got {truncation}")
    check_output_folder(out, overwrite, "synth")
    if isinstance(model, SynthesisModel):
        loaded = model
    elif model is None or isinstance(model, str | Path):
        loaded = load_synthesis_model(model)
    else:
        loaded = as_synthesis_model(model)
    class_ids = class_plan(n, class_name)
    if class_ids.max() >= loaded.n_classes:
        raise MammoError(f"{loaded.model_id} has {loaded.n_classes} classes; cannot make {class_name!r} patches")
    images = generate(loaded, class_ids, seed, truncation, batch_size, progress)
    width = max(5, len(str(n - 1)))
    files = [f"{CLASS_NAMES[c]}_{i:0{width}d}.{fmt}" for i, c in enumerate(class_ids)]
    manifest = pd.DataFrame(
        {
            "file": files,
            "class": [CLASS_NAMES[c] for c in class_ids],
            "class_id": class_ids,
            "seed": int(seed),
            "index": np.arange(n),
            "truncation": "" if truncation is None else float(truncation),
            "model": loaded.model_id,
        }
    )
    files = ((name, encode_patch(image[..., 0], fmt)) for name, image in zip(files, images, strict=True))
    write_patch_folder(out, manifest, files)
    return manifest
