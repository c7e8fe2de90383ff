"""insert --films: calcification clusters inserted into whole normal films, written as a dataset with a manifest.

Where `insert` writes patches, this writes films with known lesions, so the film-level task and `detect` can
train and be tested on them. Clusters are drawn from an insertion model's fitted layouts (as `insert`'s) and
rendered into NORMAL films (no finding) of the TRAINING split of ``data``, the films of the patients
insertion may use. n clusters are spread over those films in a seeded order, at most ``max_per_film`` to a
film, each at a position drawn uniformly among those where its whole disc (centre +- reach, reach =
ceil(layout radius) + the mask margin + SLACK_PX) lies inside the breast mask (preprocess.prepare) and
inside the image, and never overlaps another cluster's disc. Each cluster is rendered (render_cluster) into
a crop of the film around it, then (``refine``) passed through the refiner, and only the pixels of its
speck mask are pasted back: every other pixel of a written film is the source's, bit for bit.

Output folder (atomic, as `insert`'s: inference/patch_folder.py), only films that received a cluster:
``<image_id>_ins.pgm`` (the film in its own orientation at its own bit depth, 1-16 bits: PGM holds any of
them exactly), ``<image_id>_ins_mask.png`` (8-bit, 255 = a speck or its dilated margin) and manifest.csv
in the project's manifest format (data/manifest.py: `--data` loads the folder), one row per cluster:
path, image_id, patient_id (the background's, so patient-level splits stay honest), laterality, view,
tissue (the background's), abnormality CALC, severity B/M, row, col (the cluster centre in the film's
array coordinates) and radius (px: the smallest whole radius whose circle holds every changed pixel),
then class, mask, index, seed, refined, background_image, n_specks, arrangement, model (ignored by the
loader). There is no split column: a catalog of the folder splits its patients as for any manifest (all
of them are training patients of ``data``). Same model, data, arguments and seed: the same bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from mammo_tf.data.catalog import load_catalog
from mammo_tf.data.insertion import INSERTED_CLASSES, InsertionFit, load_insertion_fit
from mammo_tf.data.layouts import Layout, sample_layout
from mammo_tf.data.preprocess import Prepared, prepare, to_oriented
from mammo_tf.data.render import mask_margin, render_cluster
from mammo_tf.data.schema import BENIGN, CALCIFICATION, CLASS_NAMES, MALIGNANT, Catalog
from mammo_tf.errors import MammoError, located
from mammo_tf.inference.insert import CLASS_CHOICES, load_insertion_model, refine_patches
from mammo_tf.inference.patch_folder import check_output_folder, encode_patch, write_patch_folder
from mammo_tf.io.images import encode_pgm

MAX_PER_FILM = 3  # clusters in one film, at most: a film with known lesions, not a field of them
SLACK_PX = 2  # beyond layout radius + mask margin: a speck's outline harmonics reach past its ellipse
CROP_PAD = 12  # px of tissue around a cluster's disc in its rendering crop (the background opening is 9 px wide)
MAX_TRIES = 20  # positions tried for one cluster before its film counts as full
SUFFIX = "_ins"  # output image ids: <background image id>_ins, never the id of a source film
SEVERITY = {BENIGN: "B", MALIGNANT: "M"}


@dataclass(frozen=True)
class _Cluster:
    """One planned cluster: its index in the output, class, drawn layout and reach (px, disc radius)."""

    index: int
    label: int
    layout: Layout
    reach: int


def insert_films(
    n: int,
    out: str | Path,
    *,
    model: str | Path | None = None,
    class_name: str = "all",
    data: str | Path | None = None,
    seed: int = 0,
    refine: bool = False,
    overwrite: bool = False,
    max_per_film: int = MAX_PER_FILM,
) -> pd.DataFrame:
    """Insert n clusters into normal training films of `data`; write films, masks and manifest.csv into `out`.

    class_name: benign | malignant | all (alternating by cluster index). Returns the manifest (one row per
    cluster, module docstring). Every argument, the model, the data and the room in the films are checked
    before anything is written (MammoError, one line): n < 1, class normal, a model that is not an
    insertion model, a used `out` without overwrite, no normal film in the training split, more clusters
    than max_per_film x those films, no breast region that holds a cluster. TensorFlow is imported only to
    refine.
    """
    out = Path(out)
    _check_arguments(n, class_name, max_per_film)
    check_output_folder(out, overwrite, "insert --films")
    refiner, fit, ident = _insertion_model(model, refine)
    catalog = load_catalog(data)
    films = normal_training_films(catalog)
    if int(n) > max_per_film * len(films):
        raise located(
            catalog.root,
            f"--n {n} clusters do not fit: at most {max_per_film} go into one film and the training split has "
            f"{len(films)} normal film(s)",
        )
    klass = {"benign": BENIGN, "malignant": MALIGNANT}.get(class_name)
    plan = _plan(catalog, films, fit, int(n), klass, max_per_film, seed)
    for position in plan:
        _check_bit_depth(films.iloc[position])
    rows: list[dict] = []
    files: list[tuple[str, bytes]] = []
    for position in sorted(plan):  # films are sorted by image_id
        film = films.iloc[position]
        pixels, mask, records = _insert_into_film(film, plan[position], fit, refiner, seed, position)
        name = f"{film['image_id']}{SUFFIX}"
        files.append((f"{name}.pgm", encode_pgm(pixels, int(film["bit_depth"]))))
        files.append((f"{name}_mask.png", encode_patch(mask.astype(np.float32), "png", bits=8)))
        rows += [_manifest_row(film, name, record, seed, refine, ident) for record in records]
    manifest = pd.DataFrame.from_records(rows)
    write_patch_folder(out, manifest, files)
    return manifest


def _check_arguments(n: int, class_name: str, max_per_film: int) -> None:
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
        raise MammoError(f"--n must be >= 1, got {n}")
    if class_name not in CLASS_CHOICES:
        raise MammoError(f"--class must be one of {', '.join(CLASS_CHOICES)} (normal tissue is not inserted)")
    if isinstance(max_per_film, bool) or not isinstance(max_per_film, int | np.integer) or max_per_film < 1:
        raise MammoError(f"max_per_film must be an integer >= 1, got {max_per_film!r}")


def _check_bit_depth(film: pd.Series) -> None:
    """MammoError unless the film's own bit depth is one a PGM holds (1-16 bits; not a float TIFF)."""
    if not 1 <= int(film["bit_depth"]) <= 16:
        raise located(film["path"], f"a {film['bit_depth']}-bit film cannot be written at its own bit depth (1-16)")


def _insertion_model(model: str | Path | None, refine: bool):
    """(refiner or None, InsertionFit, model id). Without refine the refiner is only identified, not loaded
    (no TensorFlow): its insertion.json must be there and the file must not be a model of another kind."""
    if refine:
        return load_insertion_model(model)
    from mammo_tf.inference.registry import identify_model, model_id, resolve_model_path

    path = resolve_model_path(model, "insert")
    fit = load_insertion_fit(path.parent)
    info = identify_model(path)
    if info.kind != "other":  # a refiner is a Functional model the registry does not name
        raise located(path, f"this is {info.what}; insert --films needs an insertion model (a refiner)")
    return None, fit, model_id(path)


def normal_training_films(catalog: Catalog) -> pd.DataFrame:
    """The images table's rows of films without any finding in the training split, sorted by image_id.

    MammoError naming the dataset if there is none (insertion uses training patients' tissue only).
    """
    labels = catalog.image_labels()
    images = catalog.images
    normal = images["image_id"].map(labels).eq("normal") & images["split"].eq("train")
    films = images[normal.to_numpy()].sort_values("image_id").reset_index(drop=True)
    if films.empty:
        raise located(catalog.root, "no normal film (no finding) in the training split: --films inserts into those")
    return films


def breast_room(mask: np.ndarray) -> np.ndarray:
    """float32 [H, W]: each pixel's distance (px) to the nearest pixel outside the breast or the image.

    mask: bool [H, W]. A disc of radius r centred on a pixel whose room exceeds r lies inside both.
    """
    padded = np.pad(mask.astype(np.uint8), 1)  # the image edge counts as outside
    return cv2.distanceTransform(padded, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)[1:-1, 1:-1]


def _reach(layout: Layout, psf_sigma: float) -> int:
    """The radius (px) of the disc that holds every pixel rendering `layout` may change."""
    return int(np.ceil(layout.radius)) + mask_margin(psf_sigma) + SLACK_PX


def _plan(
    catalog: Catalog, films: pd.DataFrame, fit: InsertionFit, n: int, klass: int | None, max_per_film: int, seed: int
) -> dict[int, list[_Cluster]]:
    """{film position in `films`: its clusters}: layouts drawn in index order, films taken in a seeded cycle.

    Cluster i goes to the next film in the cycle that holds fewer than max_per_film clusters and whose
    largest inscribed disc in the breast exceeds the cluster's reach.
    """
    room = np.array([float(breast_room(prepare(path).mask).max()) for path in films["path"]])
    order = np.random.default_rng([int(seed), 0xF11]).permutation(len(films))
    layouts = np.random.default_rng([int(seed), 0x1A5E])
    counts = np.zeros(len(films), np.int64)
    plan: dict[int, list[_Cluster]] = {}
    cursor = 0
    for index in range(n):
        label = klass if klass is not None else INSERTED_CLASSES[index % 2]
        layout = sample_layout(fit.layouts, label, layouts)
        reach = _reach(layout, fit.psf_sigma)
        for step in range(len(order)):
            position = int(order[(cursor + step) % len(order)])
            if counts[position] < max_per_film and room[position] > reach:
                break
        else:
            if not (room > reach).any():
                raise located(
                    catalog.root,
                    f"no usable breast region: no normal training film's breast holds a cluster of radius {reach} px",
                )
            raise located(catalog.root, f"--n {n}: only {index} clusters fit in the normal training films")
        counts[position] += 1
        plan.setdefault(position, []).append(_Cluster(index, int(label), layout, reach))
        cursor = (cursor + step + 1) % len(order)
    return plan


def _free_position(
    room: np.ndarray, reach: int, placed: list[tuple[int, int, int]], rng: np.random.Generator
) -> tuple[int, int] | None:
    """A (row, col) drawn uniformly where a disc of `reach` fits the breast and misses every placed disc."""
    candidates = np.flatnonzero(room.ravel() > reach)
    rows, cols = np.divmod(candidates, room.shape[1])
    free = np.ones(candidates.size, bool)
    for row, col, other in placed:
        free &= np.hypot(rows - row, cols - col) > reach + other
    if not free.any():
        return None
    pick = int(rng.choice(np.flatnonzero(free)))
    return int(rows[pick]), int(cols[pick])


def _crop(shape: tuple[int, int], row: int, col: int, reach: int) -> tuple[slice, slice]:
    """A square window inside the image around (row, col) that holds the disc of `reach` and CROP_PAD more."""
    height, width = shape
    size = min(2 * (reach + CROP_PAD) + 1, height, width)
    top = int(np.clip(row - size // 2, 0, height - size))
    left = int(np.clip(col - size // 2, 0, width - size))
    return slice(top, top + size), slice(left, left + size)


def _insert_into_film(
    film: pd.Series, clusters: list[_Cluster], fit: InsertionFit, refiner, seed: int, position: int
) -> tuple[np.ndarray, np.ndarray, list[dict]]:
    """(pixels float32 [H, W] in [0, 1], mask bool [H, W], one record per cluster), in the film's own orientation.

    Clusters are placed and rendered in the prepared orientation (chest wall left, where the layouts were
    fitted), each cluster's masked pixels pasted into a copy of the film; the result is mirrored back.
    """
    prepared = prepare(film["path"])
    room = breast_room(prepared.mask)
    pixels = prepared.pixels.copy()
    changed = np.zeros(pixels.shape, bool)
    rng = np.random.default_rng([int(seed), 0xF1D, int(position)])
    placed: list[tuple[int, int, int]] = []
    records = []
    for cluster in clusters:
        for _ in range(MAX_TRIES):
            found = _render(pixels, prepared, room, cluster, placed, fit, refiner, rng)
            if found is not None:
                break
        else:
            raise located(
                film["path"],
                f"no room left for cluster {cluster.index} (radius {cluster.reach} px) beside {len(placed)} "
                "other(s): ask for fewer clusters (--n)",
            )
        window, patch, mask, record = found
        pixels[window][mask] = patch[mask]
        changed[window] |= mask
        placed.append((record["row"], record["col"], cluster.reach))
        records.append(record)
    return _original(pixels, prepared), _original(changed, prepared), _in_original(records, prepared)


def _render(pixels, prepared: Prepared, room, cluster: _Cluster, placed, fit: InsertionFit, refiner, rng):
    """(window, patch, mask, record) of `cluster` rendered at a free position, or None when no position is
    free or its mask left its disc or the breast (the caller tries again). patch float32 [S, S] in [0, 1],
    mask bool [S, S] in the window's crop; record: index, label, row, col (prepared), radius, n_specks,
    arrangement."""
    where = _free_position(room, cluster.reach, placed, rng)
    if where is None:
        return None
    row, col = where
    window = _crop(pixels.shape, row, col, cluster.reach)
    centre = (row - window[0].start, col - window[1].start)
    patch, mask, rendered = render_cluster(pixels[window], cluster.layout, fit.psf_sigma, rng, centre)
    if refiner is not None:
        patch = refine_patches(refiner, patch[None, ..., None], mask[None])[0]
    dy, dx = np.nonzero(mask)
    distance = np.hypot(dy - centre[0], dx - centre[1])
    if distance.size == 0 or distance.max() > cluster.reach or not prepared.mask[window][mask].all():
        return None
    record = {
        "index": cluster.index, "label": cluster.label, "row": row, "col": col,
        "radius": max(1, int(np.ceil(distance.max()))), "n_specks": int(rendered["n_specks"]),
        "arrangement": rendered["arrangement"],
    }  # fmt: skip
    return window, patch, mask, record


def _original(array: np.ndarray, prepared: Prepared) -> np.ndarray:
    """A prepared-orientation [H, W] array in the film's own orientation."""
    return np.ascontiguousarray(array[:, ::-1] if prepared.flipped else array)


def _in_original(records: list[dict], prepared: Prepared) -> list[dict]:
    """The records with row, col mapped from prepared to the film's own array coordinates."""
    width = prepared.mask.shape[1]
    return [{**r, "col": int(to_oriented(r["row"], r["col"], width, prepared.flipped)[1])} for r in records]


def _manifest_row(film: pd.Series, name: str, record: dict, seed: int, refine: bool, ident: str) -> dict:
    """One manifest row (module docstring): the film's image fields, the finding, and where it came from."""
    return {
        "path": f"{name}.pgm",
        "image_id": name,
        "patient_id": film["patient_id"],
        "laterality": film["laterality"],
        "view": film["view"],
        "tissue": film["tissue"],
        "abnormality": CALCIFICATION,
        "severity": SEVERITY[record["label"]],
        "row": record["row"],
        "col": record["col"],
        "radius": record["radius"],
        "class": CLASS_NAMES[record["label"]],
        "mask": f"{name}_mask.png",
        "index": record["index"],
        "seed": int(seed),
        "refined": bool(refine),
        "background_image": film["image_id"],
        "n_specks": record["n_specks"],
        "arrangement": record["arrangement"],
        "model": ident,
    }
