"""Pre-sampled SR pairs and labelled patches in TFRecord shards (`mammo-tf data shard --what sr-pairs|patches`).

Why: a trainer samples its pairs or patches from the images at every start (decode, breast mask,
crops), and every worker of a cluster would do it again. Sampled once into shards, the pairs and
patches are read by a tf.data pipeline (data/shard_pipelines.py) that interleaves files, shards
them by file per worker and never holds the set in memory.

A pairs folder: `pairs-00000.tfrecord`, ... and `shards.json`. A patches folder: one file series per
class, `patches-normal-00000.tfrecord`, `patches-benign-...`, `patches-malignant-...` (so a
class-balanced reader draws each class from its own files), and `shards.json`. Files start anew at
the size limit, as for images (data/shards.py); records are tf.train.Example:

    sr-pairs   hr/pixels, hr/dtype, hr/maxval   the HR crop, [hr_size, hr_size] (encoding below)
               lr/pixels, lr/dtype, lr/maxval   its LR, [hr_size/scale]^2, as the sampler made it
               image_id, patient_id (bytes), bit_depth (int64: the source's, for rounding LR to it)
    patches    pixels, dtype, maxval            the patch, [patch_size, patch_size]
               label (int64 0 normal, 1 benign, 2 malignant), image_id, patient_id (bytes),
               centre_row, centre_col (int64, the original image's array coordinates), bit_depth

Pixels (io/shard_images.encode_pixels): little-endian integers i read as float32(i) / float32(maxval)
(uint8 or uint16) whenever they give the sampler's float32 values back bit for bit, else those
float32 values (maxval 0). Either way the reader yields exactly what the sampler returned.

Chunks, so a large set is never held whole in memory:
- sr-pairs: N pairs are drawn as ceil(N / chunk) calls of `sample_sr_pairs(chunk)` (the last one
  smaller), call k with seed `chunk_seed(seed, k)`: `seed` itself for k = 0, then seeds derived
  from (seed, k). N <= chunk gives exactly `sample_sr_pairs(N, seed=seed)`; a larger N differs from
  one such call (other draws, same distribution), and each chunk can be redrawn from the seeds
  the manifest lists. Memory: about 4 x chunk x pair bytes (46 KB a 96-px pair: 0.75 GB at 4096).
  Cost: each chunk prepares the images it draws from again (the preprocessing cache makes that a
  file read, not a decode).
- patches: `sample_patches` over the split's images, PATCH_CHUNK images a call; each chunk's images
  are selected through the split column, so every image keeps its catalog row, and with it its
  random stream: the chunks together are exactly one `sample_patches(split=...)` call, in its order.

shards.json (keys in a fixed order, no timestamps: the same input gives the same bytes):

    format, version, what   "mammo-tf shards", 1, "sr-pairs" | "patches"
    source, catalog_sha256  the source catalog's kind and hash (data/shards.catalog_sha256), before
                            any resampling to spacing_mm
    sampling                every sampler argument: sr-pairs n, scale, hr_size, lr_size, split, seed,
                            blur_sigma, noise, foreground_share, spacing_mm, chunk; patches
                            patch_size, per_cluster, jitter, normal_per_image, split, seed, spacing_mm
    training_spacing_mm     the pixel size the samples have (data/resample.at_training_spacing; null
                            when the images had no shared one)
    chunks                  sr-pairs: [{seed, pairs}] per sampler call, in file order
    counts                  pairs | patches and per class, images, patients, files
    bit_depths              {source bit depth: samples}
    report                  patches: what sample_patches kept and dropped (PatchReport, counts)
    patients                the sorted patient ids the samples come from (a run's record)
    files                   [{name, bytes, records, sha256}] (patches: and label, class)
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path

import numpy as np

from mammo_tf.data.importers.common import progress_bar
from mammo_tf.data.resample import at_training_spacing
from mammo_tf.data.samplers import Patches, PatchReport, sample_patches, sample_sr_pairs
from mammo_tf.data.schema import CLASS_NAMES, Catalog
from mammo_tf.data.shards import (
    DEFAULT_SHARD_MB,
    ShardFiles,
    catalog_sha256,
    check_new_folder,
    check_sizes,
    shard_bytes,
)
from mammo_tf.errors import MammoError, located
from mammo_tf.io.atomic import atomic_dir
from mammo_tf.io.shard_images import (
    FORMAT,
    FORMAT_VERSION,
    MANIFEST_NAME,
    decode_pixels,
    encode_pixels,
    read_manifest,
    read_records,
    record_scalar,
)
from mammo_tf.io.tfrecord import encode_example, frame_record

SR_CHUNK = 4096  # pairs a sampler call (see the module docstring)
PATCH_CHUNK = 256  # images a sampler call
PAIR_PREFIX, PATCH_PREFIX = "pairs", "patches"
_CHUNK_STREAM = 0x63686E6B  # "chnk": mixed into derived chunk seeds
_IN_CHUNK, _OUT_OF_CHUNK = "in-chunk", "out-of-chunk"  # split labels that select one chunk's images


def chunk_seed(seed: int, index: int) -> int:
    """The seed of sampler call `index`: `seed` for the first, then a 64-bit seed derived from (seed, index)."""
    if index == 0:
        return seed
    return int(np.random.SeedSequence([seed, _CHUNK_STREAM, index]).generate_state(1, np.uint64)[0])


def _depths(bit_depth: int) -> tuple[int, ...]:
    """Bit depths to try for exact integers: the source's, then 16 (a resampled copy is a 16-bit PNG)."""
    return tuple(dict.fromkeys((bit_depth, 16)))


def _pixel_fields(prefix: str, pixels: np.ndarray, bit_depth: int) -> dict:
    raw, dtype, maxval = encode_pixels(pixels, _depths(bit_depth))
    return {
        f"{prefix}pixels": ("bytes", [raw]),
        f"{prefix}dtype": ("bytes", [dtype]),
        f"{prefix}maxval": ("int64", [maxval]),
    }


def _check_seed(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise MammoError(f"seed must be an integer >= 0, got {seed!r}")
    return int(seed)


def _write_manifest(folder: Path, manifest: dict) -> None:
    (folder / MANIFEST_NAME).write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")


def _header(what: str, catalog: Catalog, source_sha256: str, sampling: dict, spacing: float | None) -> dict:
    return {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "what": what,
        "source": catalog.source,
        "catalog_sha256": source_sha256,
        "sampling": sampling,
        "training_spacing_mm": spacing,
    }


def write_sr_pair_shards(
    catalog: Catalog,
    out: str | Path,
    *,
    n: int,
    scale: int = 2,
    hr_size: int = 96,
    split: str | None = "train",
    seed: int = 0,
    foreground_share: float = 0.0,
    spacing_mm: float | None = None,
    chunk: int = SR_CHUNK,
    shard_mb: float = DEFAULT_SHARD_MB,
    progress: bool = True,
) -> dict:
    """Sample n SR pairs from `catalog` into a new shard folder `out`, chunk by chunk; returns the manifest.

    The sampler's arguments are `sample_sr_pairs`'s (blur_sigma and noise 0: a trainer degrades LR
    itself), after the catalog is brought to spacing_mm (None: as it is). Atomic, as write_shards.
    """
    out = check_new_folder(out)
    limit = shard_bytes(shard_mb)
    seed = _check_seed(seed)
    if isinstance(n, bool) or not isinstance(n, int) or n < 1 or isinstance(chunk, bool) or chunk < 1:
        raise MammoError(f"n and chunk must be integers >= 1, got {n!r} and {chunk!r}")
    source_sha256 = catalog_sha256(catalog)
    catalog, spacing = at_training_spacing(catalog, spacing_mm)
    depth_of = catalog.images.set_index("image_id")["bit_depth"]
    chunks = [{"seed": chunk_seed(seed, k), "pairs": min(chunk, n - k * chunk)} for k in range(math.ceil(n / chunk))]
    patients, images, depths = set(), set(), Counter()
    with atomic_dir(out) as tmp:
        files = ShardFiles(tmp, limit, PAIR_PREFIX)
        with progress_bar(chunks, progress, desc="sr-pairs", unit=" chunks") as bar:
            for part in bar:
                pairs = sample_sr_pairs(
                    catalog,
                    part["pairs"],
                    hr_size=hr_size,
                    scale=scale,
                    split=split,
                    foreground_share=foreground_share,
                    seed=part["seed"],
                )
                for hr, lr, image_id, patient_id in zip(
                    pairs.hr, pairs.lr, pairs.image_id, pairs.patient_id, strict=True
                ):
                    bit_depth = int(depth_of[image_id])
                    features = {
                        **_pixel_fields("hr/", hr[..., 0], bit_depth),
                        **_pixel_fields("lr/", lr[..., 0], bit_depth),
                        "image_id": ("bytes", [str(image_id)]),
                        "patient_id": ("bytes", [str(patient_id)]),
                        "bit_depth": ("int64", [bit_depth]),
                    }
                    files.add(frame_record(encode_example(features)))
                    depths[bit_depth] += 1
                patients.update(pairs.patient_id.tolist())
                images.update(pairs.image_id.tolist())
        sampling = {
            "sampler": "sample_sr_pairs",
            "n": n,
            "scale": scale,
            "hr_size": hr_size,
            "lr_size": hr_size // scale,
            "split": split,
            "seed": seed,
            "blur_sigma": 0.0,
            "noise": 0.0,
            "foreground_share": float(foreground_share),
            "spacing_mm": spacing_mm,
            "chunk": chunk,
        }
        shard_files = files.close()
        manifest = {
            **_header("sr-pairs", catalog, source_sha256, sampling, spacing),
            "chunks": chunks,
            "counts": {"pairs": n, "images": len(images), "patients": len(patients), "files": len(shard_files)},
            "bit_depths": {str(b): depths[b] for b in sorted(depths)},
            "patients": sorted(patients),
            "files": shard_files,
        }
        _write_manifest(tmp, manifest)
    return manifest


def _chunk_catalog(catalog: Catalog, rows: np.ndarray) -> Catalog:
    """`catalog` with split _IN_CHUNK on `rows` (positions) and _OUT_OF_CHUNK elsewhere: same rows, same order."""
    images = catalog.images.copy()
    inside = np.zeros(len(images), bool)
    inside[rows] = True
    images["split"] = np.where(inside, _IN_CHUNK, _OUT_OF_CHUNK)
    return Catalog(images, catalog.findings, catalog.source, catalog.root)


def write_patch_shards(
    catalog: Catalog,
    out: str | Path,
    *,
    patch_size: int = 64,
    per_cluster: int = 8,
    jitter: int = 16,
    normal_per_image: int = 4,
    split: str | None = "train",
    seed: int = 0,
    spacing_mm: float | None = None,
    chunk: int = PATCH_CHUNK,
    shard_mb: float = DEFAULT_SHARD_MB,
    progress: bool = True,
) -> dict:
    """Sample `catalog`'s labelled patches into a new shard folder `out`, one file series per class.

    Exactly `sample_patches(catalog, split=split, seed=seed, ...)` after the catalog is brought to
    spacing_mm, `chunk` images a call (see the module docstring). MammoError if there is no patch.
    """
    out = check_new_folder(out)
    limit = shard_bytes(shard_mb)
    seed = _check_seed(seed)
    if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
        raise MammoError(f"chunk must be an integer >= 1, got {chunk!r}")
    source_sha256 = catalog_sha256(catalog)
    catalog, spacing = at_training_spacing(catalog, spacing_mm)
    splits = catalog.images["split"]
    rows = np.arange(len(splits)) if split is None else np.flatnonzero(splits == split)
    if not len(rows):
        raise MammoError(f"{catalog.root}: no images in split '{split}' (splits present: {sorted(set(splits))})")
    depth_of = catalog.images.set_index("image_id")["bit_depth"]
    report = PatchReport()
    patients, images, depths = set(), set(), Counter()
    starts = range(0, len(rows), chunk)
    with atomic_dir(out) as tmp:
        series = [
            ShardFiles(tmp, limit, f"{PATCH_PREFIX}-{name}", label=label, **{"class": name})
            for label, name in enumerate(CLASS_NAMES)
        ]
        with progress_bar(starts, progress, desc="patches", unit=" chunks") as bar:
            for start in bar:
                part = _chunk_catalog(catalog, rows[start : start + chunk])
                patches = sample_patches(
                    part,
                    patch_size=patch_size,
                    per_cluster=per_cluster,
                    jitter=jitter,
                    normal_per_image=normal_per_image,
                    split=_IN_CHUNK,
                    seed=seed,
                    report=report,
                )
                for i, label in enumerate(patches.labels.tolist()):
                    bit_depth = int(depth_of[patches.image_id[i]])
                    features = {
                        **_pixel_fields("", patches.images[i, ..., 0], bit_depth),
                        "label": ("int64", [label]),
                        "image_id": ("bytes", [str(patches.image_id[i])]),
                        "patient_id": ("bytes", [str(patches.patient_id[i])]),
                        "centre_row": ("int64", [int(patches.centre_row[i])]),
                        "centre_col": ("int64", [int(patches.centre_col[i])]),
                        "bit_depth": ("int64", [bit_depth]),
                    }
                    series[label].add(frame_record(encode_example(features)))
                    depths[bit_depth] += 1
                patients.update(patches.patient_id.tolist())
                images.update(patches.image_id.tolist())
        per_class = {name: sum(f["records"] for f in s.files) for name, s in zip(CLASS_NAMES, series, strict=True)}
        total = sum(per_class.values())
        if total == 0:
            where = "" if split is None else f" in split '{split}'"
            raise MammoError(f"{catalog.root}: no {patch_size}x{patch_size} patches{where} (nothing to shard)")
        sampling = {
            "sampler": "sample_patches",
            "patch_size": patch_size,
            "per_cluster": per_cluster,
            "jitter": jitter,
            "normal_per_image": normal_per_image,
            "split": split,
            "seed": seed,
            "spacing_mm": spacing_mm,
        }
        shard_files = [entry for s in series for entry in s.close()]
        counts = {"patches": total, **per_class, "images": len(images), "patients": len(patients)}
        manifest = {
            **_header("patches", catalog, source_sha256, sampling, spacing),
            "counts": {**counts, "files": len(shard_files)},
            "bit_depths": {str(b): depths[b] for b in sorted(depths)},
            "report": {k: len(v) if isinstance(v, list) else v for k, v in asdict(report).items()},
            "patients": sorted(patients),
            "files": shard_files,
        }
        _write_manifest(tmp, manifest)
    return manifest


def sample_manifest(folder: str | Path, what: str, expected: Mapping[str, object] | None = None) -> dict:
    """The manifest of a sr-pairs or patches shard folder, checked for a reader; MammoError (one line) else.

    what: "sr-pairs" or "patches" (a folder of another kind is refused, naming what it holds).
    expected: sampling values the caller needs ({"scale": 2, "hr_size": 96}, any key of the
    manifest's `sampling`); a folder sampled otherwise is refused, naming both.
    Also checked: every listed file is there with its size (SHA-256: shard_pipelines, per worker).
    """
    folder = Path(folder).resolve()
    manifest = read_manifest(folder, what)
    sampling = manifest.get("sampling")
    if not isinstance(sampling, dict) or not isinstance(manifest.get("patients"), list):
        raise located(folder / MANIFEST_NAME, "malformed manifest: no 'sampling' or 'patients'")
    wrong = {key: value for key, value in (expected or {}).items() if key not in sampling or sampling[key] != value}
    if wrong:
        have = ", ".join(f"{key} {sampling.get(key)!r}" for key in wrong)
        want = ", ".join(f"{key} {value!r}" for key, value in wrong.items())
        raise located(folder, f"{what} shards sampled with {have}; this run needs {want} (write shards to match)")
    check_sizes(folder, manifest["files"])
    return manifest


def trainer_shards(data: str | Path | None, what: str, expected: Mapping[str, object]) -> dict | None:
    """The manifest of `data` when it is a `what` shard folder sampled as `expected`, else None.

    None for a dataset, an images shard folder or no data (load_catalog reads or refuses those); a `what`
    folder sampled otherwise (e.g. another patch_size or spacing_mm) is one line naming both (MammoError),
    before TensorFlow. The trainers' one test of "is --data pre-sampled input for me".
    """
    if data is None or not (Path(data) / MANIFEST_NAME).is_file():
        return None
    try:
        manifest = json.loads((Path(data) / MANIFEST_NAME).read_text("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None  # a broken manifest: load_catalog names what is wrong
    if not isinstance(manifest, dict) or manifest.get("what") != what:
        return None
    return sample_manifest(data, what, expected)


def patch_sampling(config) -> dict[str, object]:
    """The sampling values a patches shard folder must have for a trainer's `config` (a ClassifierConfig or
    SynthesisConfig): its patch_size, and its spacing_mm (None: sampled from the images as they were)."""
    return {"patch_size": config.patch_size, "spacing_mm": config.spacing_mm}


def shard_record(data: str | Path, manifest: Mapping, key: str) -> dict:
    """What a run trained on a shard folder records in config.json: the folder, the source catalog's kind,
    the samples' pixel size, the patients they come from, and under `key` the sampling and catalog hash."""
    return {
        "data": str(Path(data).resolve()),
        "source": manifest["source"],
        "training_spacing_mm": manifest["training_spacing_mm"],
        "train_patients": manifest["patients"],
        key: {"sampling": manifest["sampling"], "catalog_sha256": manifest["catalog_sha256"]},
    }


def first_patches(folder: str | Path, manifest: Mapping, per_class: int) -> Patches:
    """The first up to `per_class` patches of each class of a patches shard folder, read in manifest order.

    A bounded, deterministic sample in memory, never the whole set: for what needs real patches beside the
    stream (train-gan's real grid and pixel statistics). Patches as sample_patches gives them: images float32
    [N, P, P, 1] in [0, 1], labels int32 [N], by class then file order. Files and records are checked as
    read_shard_image checks them.
    """
    folder, size = Path(folder), int(manifest["sampling"]["patch_size"])
    rows: list[tuple] = []
    for label in range(len(CLASS_NAMES)):
        left = per_class
        for entry in (f for f in manifest["files"] if f.get("label") == label and f["records"]):
            if left <= 0:
                break
            for where, fields in read_records(folder / entry["name"], left):
                ids = [record_scalar(fields, k, where) for k in ("image_id", "patient_id", "centre_row", "centre_col")]
                rows.append((decode_pixels(fields, "", size, size, where), label, *ids))
                left -= 1
    if not rows:  # write_patch_shards writes no folder without a patch
        raise located(folder, "no patches to read (per_class must be >= 1)")
    pixels, labels, image_ids, patient_ids, centre_rows, centre_cols = zip(*rows, strict=True)
    return Patches(
        images=np.stack(pixels)[..., None],
        labels=np.array(labels, np.int32),
        image_id=np.array([i.decode() for i in image_ids]),
        patient_id=np.array([p.decode() for p in patient_ids]),
        centre_row=np.array(centre_rows, np.int64),
        centre_col=np.array(centre_cols, np.int64),
    )
