"""The recognition tasks: which patches are positives and negatives (NumPy, no TensorFlow).

easy     calcification-cluster patches against random normal tissue (the sampler's output as it is).
matched  the same positives against normal-tissue negatives resampled so that patch intensity and position
         in the breast match the positives' (stratified on quantile cells of the positives): a classifier
         can no longer win on how bright or where a patch is (such probes reached AUC 0.60-0.80 on MIAS
         patches otherwise). Report the intensity-only and position-only probes beside every model.

MIAS "normal" tissue is not calcification-free: it holds vascular, coarse and secretory calcifications
that MIAS does not annotate; annotated clusters are groups of fine specks.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from mammo_tf.data.samplers import Patches
from mammo_tf.data.schema import NORMAL, Catalog

TASK_OVERSAMPLE = 6  # normal candidates drawn per image for the matched task, before resampling


def subset(patches: Patches, index: np.ndarray) -> Patches:
    """The patches at `index` (every field)."""
    return replace(
        patches,
        images=patches.images[index],
        labels=patches.labels[index],
        image_id=patches.image_id[index],
        patient_id=patches.patient_id[index],
        centre_row=patches.centre_row[index],
        centre_col=patches.centre_col[index],
    )


def concat(parts: list[Patches]) -> Patches:
    """One Patches from several (same patch size)."""
    fields = ("images", "labels", "image_id", "patient_id", "centre_row", "centre_col")
    return Patches(**{f: np.concatenate([getattr(p, f) for p in parts]) for f in fields})


def positions(patches: Patches, catalog: Catalog) -> np.ndarray:
    """float [N, 2]: (row / height, distance from the chest wall / width) of each patch centre."""
    from mammo_tf.data.preprocess import prepare

    info = catalog.images.set_index("image_id")
    out = np.zeros((len(patches.labels), 2))
    flipped = {}
    for i, (image_id, row, col) in enumerate(
        zip(patches.image_id, patches.centre_row, patches.centre_col, strict=True)
    ):
        height, width = int(info.at[image_id, "height"]), int(info.at[image_id, "width"])
        if image_id not in flipped:
            flipped[image_id] = prepare(info.at[image_id, "path"]).flipped
        from_wall = (width - 1 - col) if flipped[image_id] else col  # prepared films have the chest wall left
        out[i] = (row / height, from_wall / width)
    return out


def intensity(patches: Patches) -> np.ndarray:
    """float [N, 2]: mean and standard deviation of each patch."""
    flat = patches.images.reshape(len(patches.labels), -1)
    return np.stack([flat.mean(1), flat.std(1)], axis=1)


def quantile_cells(values: np.ndarray, reference: np.ndarray, bins: int) -> np.ndarray:
    """int [N]: the quantile bin (0 .. bins - 1) of `reference` that each of `values` falls in (equal-count bins
    of the reference; a value on an inner edge goes to the lower bin, values beyond its range to the end bins)."""
    edges = np.quantile(reference, np.linspace(0, 1, bins + 1)[1:-1])
    return np.searchsorted(edges, values)


def matched_task(patches: Patches, catalog: Catalog, *, ratio: float = 4.0, seed: int = 0, bins: int = 3) -> Patches:
    """All positives, plus up to `ratio` negatives per positive drawn cell by cell.

    Cells: quantile bins (of the positives) of patch mean intensity, row fraction and distance from the
    chest wall: bins**3 cells. Within a cell, negatives are drawn without replacement, ratio x the positives
    there (fewer if the cell has fewer).
    """
    rng = np.random.default_rng(seed)
    pos = np.flatnonzero(patches.labels != NORMAL)
    neg = np.flatnonzero(patches.labels == NORMAL)
    if pos.size == 0 or neg.size == 0:
        return patches
    features = np.column_stack([intensity(patches)[:, 0], positions(patches, catalog)])
    cell = np.zeros(len(patches.labels), np.int64)
    for j in range(features.shape[1]):
        cell = cell * bins + quantile_cells(features[:, j], features[pos, j], bins)
    chosen = []
    for c in np.unique(cell[pos]):
        want = int(round(ratio * np.sum(cell[pos] == c)))
        pool = neg[cell[neg] == c]
        chosen.append(rng.choice(pool, size=min(want, pool.size), replace=False))
    keep = np.sort(np.concatenate([pos, *chosen]))
    return subset(patches, keep)
