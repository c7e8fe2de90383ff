"""`mammo-tf data shard` and shard folders as `--data`: round trip, determinism, TensorFlow's reader, errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from cli_helpers import invoke, one_error_line
from dicom_builders import make_dataset, save
from pydicom.uid import RLELossless

from mammo_tf.data.catalog import load_catalog
from mammo_tf.data.phantom import write_phantom
from mammo_tf.data.shards import catalog_sha256, write_shards
from mammo_tf.errors import MammoError
from mammo_tf.io.images import probe_header, read_image
from mammo_tf.io.shard_images import MANIFEST_NAME, parse_record_path
from mammo_tf.io.tfrecord import HEADER_BYTES, masked_crc


@pytest.fixture(scope="module")
def phantom(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("phantom") / "phantom"
    write_phantom(out, n=4, seed=0, size=256)
    return out


@pytest.fixture(scope="module")
def phantom_shards(phantom: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The phantom (256x256 8-bit: 64 KiB a record) in shards of 0.15 MiB: two records a file."""
    out = tmp_path_factory.mktemp("shards") / "shards"
    result = invoke("data", "shard", "--data", phantom, "--out", out, "--shard-size", 0.15)
    assert result.exit_code == 0, result.output
    assert "wrote 4 images in 2 shard files" in result.output
    return out


@pytest.fixture(scope="module")
def dicoms(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A manifest of 16-bit DICOMs: RLE-compressed, plain, and a windowed one (pixels not k/65535)."""
    folder = tmp_path_factory.mktemp("dicom")
    rng = np.random.default_rng(0)
    rle = make_dataset(rng.integers(0, 65536, (40, 24), dtype=np.uint16), bits_stored=16, PixelSpacing=[0.07, 0.065])
    rle.compress(RLELossless)
    save(rle, folder / "rle.dcm")
    save(make_dataset(rng.integers(0, 4096, (24, 32), dtype=np.uint16), bits_stored=12), folder / "plain.dcm")
    windowed = make_dataset(rng.integers(0, 65536, (16, 16), dtype=np.uint16), bits_stored=16)
    windowed.WindowCenter, windowed.WindowWidth = 30000, 20000
    save(windowed, folder / "windowed.dcm")
    (folder / "manifest.csv").write_text(
        "path,patient_id,abnormality,severity,row,col,radius,split\n"
        "rle.dcm,P1,CALC,MALIGNANT,10,12,4,train\n"
        "rle.dcm,P1,CALC,BENIGN,30,5,2,train\n"
        "plain.dcm,P2,,,,,,test\n"
        "windowed.dcm,P3,CALC,,,,,val\n"
    )
    return folder


def _same_catalogs(source, shards) -> None:
    """Every column but the pixel paths, both tables; pixels bit for bit; bit depth; header facts."""
    pd.testing.assert_frame_equal(source.images.drop(columns="path"), shards.images.drop(columns="path"))
    pd.testing.assert_frame_equal(source.findings, shards.findings)
    assert (source.source, catalog_sha256(source)) == (shards.source, catalog_sha256(shards))
    for original, record in zip(source.images["path"], shards.images["path"], strict=True):
        a, b = read_image(original), read_image(record)
        assert b.bit_depth == a.bit_depth and b.pixels.dtype == np.float32 and b.pixels.flags.writeable
        assert np.array_equal(a.pixels, b.pixels), record
        header = probe_header(record)
        assert (header.height, header.width, header.bit_depth) == (*a.pixels.shape, a.bit_depth)


def test_phantom_round_trip_is_bit_exact(phantom: Path, phantom_shards: Path) -> None:
    source, shards = load_catalog(phantom), load_catalog(phantom_shards)
    assert shards.root == phantom_shards.resolve() and set(shards.images["split"]) == set(source.images["split"])
    _same_catalogs(source, shards)
    assert (phantom_shards / "phantom_truth.csv").read_bytes() == (phantom / "phantom_truth.csv").read_bytes()
    manifest = json.loads((phantom_shards / MANIFEST_NAME).read_text())
    assert manifest["counts"] == {"images": 4, "patients": 2, "findings": len(source.findings), "files": 2}
    assert [f["records"] for f in manifest["files"]] == [2, 2]


def test_sixteen_bit_dicoms_round_trip(dicoms: Path, tmp_path: Path) -> None:
    source = load_catalog(dicoms)
    manifest = write_shards(source, tmp_path / "shards", progress=False)
    shards = load_catalog(tmp_path / "shards")
    _same_catalogs(source, shards)
    rle = shards.images.set_index("image_id").loc[source.images["image_id"].iloc[0]]
    assert (rle["bit_depth"], rle["spacing_row_mm"], rle["spacing_col_mm"]) == (16, 0.07, 0.065)
    assert probe_header(rle["path"]).spacing.row_mm == 0.07
    assert manifest["counts"]["files"] == 1 and shards.summary()["splits"] == {"test": 1, "train": 1, "val": 1}
    assert manifest["catalog_sha256"] == catalog_sha256(source)


def test_a_second_run_is_byte_identical(phantom: Path, phantom_shards: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    assert invoke("data", "shard", "--data", phantom, "--out", again, "--shard-size", 0.15).exit_code == 0
    names = sorted(p.name for p in phantom_shards.iterdir())
    assert names == sorted(p.name for p in again.iterdir())
    for name in names:
        assert (again / name).read_bytes() == (phantom_shards / name).read_bytes(), name
    resharded = tmp_path / "resharded"  # a shard folder is a --data like any other
    write_shards(load_catalog(phantom_shards), resharded, shard_mb=0.15, progress=False)
    assert (resharded / "images-00000.tfrecord").read_bytes() == (phantom_shards / "images-00000.tfrecord").read_bytes()


def test_commands_and_samplers_read_shard_folders(phantom: Path, phantom_shards: Path) -> None:
    from mammo_tf.data.samplers import sample_sr_pairs

    source_info = invoke("data", "info", "--data", phantom, "--check").output.splitlines()
    shard_info = invoke("data", "info", "--data", phantom_shards, "--check").output.splitlines()
    assert shard_info[0].startswith(f"dataset      {phantom_shards.resolve()} (phantom)")
    assert shard_info[1:] == source_info[1:]  # same summary, and the same findings inside the breast
    a = sample_sr_pairs(load_catalog(phantom), 8, hr_size=32, split=None, seed=3)
    b = sample_sr_pairs(load_catalog(phantom_shards), 8, hr_size=32, split=None, seed=3)
    assert np.array_equal(a.hr, b.hr) and np.array_equal(a.lr, b.lr) and list(a.image_id) == list(b.image_id)


def test_a_shard_folder_is_brought_to_a_training_spacing(phantom: Path, phantom_shards: Path, tmp_path: Path) -> None:
    """What `--spacing-mm` does to a shard folder: the same resampled pixels as from the source files."""
    from mammo_tf.data.resample import at_training_spacing

    coarse = {}
    for name, data in (("source", phantom), ("shards", phantom_shards)):
        catalog, spacing = at_training_spacing(load_catalog(data), 1.6)  # the 256-px phantom's 0.8 mm, halved
        assert spacing == 1.6 and (catalog.images["width"] == 128).all()
        coarse[name] = [read_image(path).pixels for path in catalog.images["path"]]
    assert all(np.array_equal(a, b) for a, b in zip(coarse["source"], coarse["shards"], strict=True))


def test_tensorflow_reads_the_records(phantom: Path, phantom_shards: Path) -> None:
    """The files are genuine TFRecords of tf.train.Example: TFRecordDataset checks the CRCs and parses them."""
    import tensorflow as tf

    files = sorted(str(p) for p in phantom_shards.glob("*.tfrecord"))
    spec = {
        "image_id": tf.io.FixedLenFeature([], tf.string),
        "pixels": tf.io.FixedLenFeature([], tf.string),
        "height": tf.io.FixedLenFeature([], tf.int64),
        "width": tf.io.FixedLenFeature([], tf.int64),
        "spacing_mm": tf.io.FixedLenFeature([2], tf.float32),
        "finding/abnormality": tf.io.VarLenFeature(tf.string),
    }
    source = load_catalog(phantom).images.set_index("image_id")
    seen = []
    for record in tf.data.TFRecordDataset(files):
        parsed = tf.io.parse_single_example(record, spec)
        image_id = parsed["image_id"].numpy().decode()
        shape = (int(parsed["height"]), int(parsed["width"]))
        pixels = np.frombuffer(parsed["pixels"].numpy(), np.uint8).reshape(shape)
        assert np.array_equal(pixels / np.float32(255), read_image(source.loc[image_id, "path"]).pixels)
        assert parsed["spacing_mm"].numpy().tolist() == pytest.approx([source.loc[image_id, "spacing_row_mm"]] * 2)
        seen.append(image_id)
    assert seen == list(source.index)


# --- damaged shard folders: one line naming the file, exit 2 ---------------------------------------


def _copy(folder: Path, tmp_path: Path) -> Path:
    out = tmp_path / "copy"
    out.mkdir()
    for path in folder.iterdir():
        (out / path.name).write_bytes(path.read_bytes())
    return out


def _flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x10
    path.write_bytes(bytes(data))


def _rewrite_manifest(folder: Path, change) -> None:
    manifest = json.loads((folder / MANIFEST_NAME).read_text())
    change(manifest)
    (folder / MANIFEST_NAME).write_text(json.dumps(manifest))


def test_a_flipped_byte_is_a_checksum_error(phantom_shards: Path, tmp_path: Path) -> None:
    folder = _copy(phantom_shards, tmp_path)
    _flip(folder / "images-00001.tfrecord", 5000)
    result = invoke("data", "info", "--data", folder, "--check")  # --check reads the annotated images
    one_error_line(result, "images-00001.tfrecord: checksum differs from shards.json")


def test_a_damaged_record_is_refused_even_when_the_file_checksum_fits(phantom_shards: Path, tmp_path: Path) -> None:
    """The file's SHA-256 is checked once per process; each record's CRC on every read."""
    import hashlib

    folder = _copy(phantom_shards, tmp_path)
    shard = folder / "images-00000.tfrecord"
    _flip(shard, HEADER_BYTES + 100)
    digest = hashlib.sha256(shard.read_bytes()).hexdigest()
    _rewrite_manifest(folder, lambda m: m["files"][0].update(sha256=digest))
    path = load_catalog(folder).images["path"].iloc[0]
    with pytest.raises(MammoError, match=r"images-00000\.tfrecord#0: corrupt shard: .*data checksum mismatch"):
        read_image(path)


def test_a_record_path_off_a_record_boundary_is_refused(phantom_shards: Path) -> None:
    file, _ = parse_record_path(load_catalog(phantom_shards).images["path"].iloc[0])
    with pytest.raises(MammoError, match="length checksum mismatch"):
        read_image(f"{file}#7")
    assert masked_crc(b"") == 0xA282EAD8  # TensorFlow's mask of the CRC of nothing


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (
            lambda f: (f / "images-00001.tfrecord").write_bytes((f / "images-00001.tfrecord").read_bytes()[:-9]),
            "images-00001.tfrecord: truncated",
        ),
        (lambda f: (f / "images-00000.tfrecord").unlink(), "images-00000.tfrecord: shard file missing"),
        (
            lambda f: (f / MANIFEST_NAME).write_text('{"format": "mammo-tf shards", '),
            "shards.json:1: malformed manifest",
        ),
        (lambda f: _rewrite_manifest(f, lambda m: m.update(version=99)), "shards.json: manifest version 99"),
        (lambda f: _rewrite_manifest(f, lambda m: m.pop("images")), "shards.json: malformed manifest: KeyError"),
        (lambda f: _rewrite_manifest(f, lambda m: m["files"][0].pop("sha256")), "shards.json: malformed manifest"),
        (
            lambda f: _rewrite_manifest(f, lambda m: m["images"][0].update(file="nope.tfrecord")),
            "shards.json: malformed manifest: ValueError: image mdb001: record nope.tfrecord#0",
        ),
    ],
    ids=["truncated", "missing-file", "not-json", "version", "no-images", "no-checksum", "unknown-file"],
)
def test_damaged_folders_are_one_line(phantom_shards: Path, tmp_path: Path, damage, message: str) -> None:
    folder = _copy(phantom_shards, tmp_path)
    damage(folder)
    one_error_line(invoke("data", "info", "--data", folder), message)


# --- the command's own refusals, and atomicity ---------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--shard-size", "0"], "Invalid value for '--shard-size'"),
        (["--what", "films"], "Invalid value for '--what'"),
        (["--n", "5"], "--n is for --what sr-pairs, not --what images"),
        (["--what", "patches", "--hr-size", "32"], "--hr-size is for --what sr-pairs, not --what patches"),
        (["--what", "sr-pairs", "--patch-size", "32"], "--patch-size is for --what patches, not --what sr-pairs"),
        (["--what", "sr-pairs", "--hr-size", "33"], "hr_size 33 is not divisible by scale 2"),
        (["--what", "sr-pairs", "--foreground-share", "2"], "Invalid value for '--foreground-share'"),
        (["--what", "patches", "--seed", "-1"], "Invalid value for '--seed'"),
        (["--what", "patches", "--split", "nope"], "Invalid value for '--split'"),
        (["--what", "patches", "--split", "val"], "no images in split 'val'"),
    ],
)
def test_bad_flags(phantom: Path, tmp_path: Path, args: list[str], message: str) -> None:
    result = invoke("data", "shard", "--data", phantom, "--out", tmp_path / "out", *args)
    one_error_line(result, message)
    assert not (tmp_path / "out").exists()


def test_out_must_be_new(phantom: Path, phantom_shards: Path) -> None:
    one_error_line(
        invoke("data", "shard", "--data", phantom, "--out", phantom_shards), "already exists and is not empty"
    )


def test_an_interrupted_write_leaves_nothing(phantom: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import mammo_tf.data.shards as shards

    calls = []

    def interrupted(path):
        calls.append(path)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return read_image(path)

    monkeypatch.setattr(shards, "read_image", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_shards(load_catalog(phantom), tmp_path / "out", shard_mb=0.01, progress=False)
    assert list(tmp_path.iterdir()) == []


# --- pre-sampled SR pairs and patches, and their tf.data reader --------------------------------------

PAIRS = ["--what", "sr-pairs", "--n", 24, "--hr-size", 32, "--chunk", 10, "--seed", 3, "--shard-size", 0.01]


@pytest.fixture(scope="module")
def pair_shards(phantom: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """24 pairs (HR 32 px, 8-bit; LR 16 px float32: 2.2 KB a record) in 3 sampler calls, 6 files of 4 records."""
    out = tmp_path_factory.mktemp("pairs") / "pairs"
    result = invoke("data", "shard", "--data", phantom, "--out", out, *PAIRS)
    assert result.exit_code == 0, result.output
    assert "wrote 24 SR pairs (3 sampler calls) in 6 shard files" in result.output
    return out


@pytest.fixture(scope="module")
def patch_shards(phantom: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The phantom's 16-px patches (16 normal, 8 benign, 16 malignant), one image a sampler call, ~5 a file."""
    from mammo_tf.data.sample_shards import write_patch_shards

    out = tmp_path_factory.mktemp("patches") / "patches"
    write_patch_shards(load_catalog(phantom), out, patch_size=16, seed=1, chunk=1, shard_mb=0.002, progress=False)
    return out


def _python_records(folder: Path) -> list[dict]:
    """Every record's features in file order, read without TensorFlow."""
    from mammo_tf.io.tfrecord import FRAME_BYTES, decode_example, read_record_at

    records = []
    for entry in json.loads((folder / MANIFEST_NAME).read_text())["files"]:
        with open(folder / entry["name"], "rb") as handle:
            offset = 0
            while offset < entry["bytes"]:
                data = read_record_at(handle, offset, entry["bytes"])
                records.append(decode_example(data))
                offset += len(data) + FRAME_BYTES
    return records


def _arrays(dataset) -> tuple[np.ndarray, ...]:
    batches = list(dataset.as_numpy_iterator())
    return tuple(np.concatenate([b[i] for b in batches]) for i in range(len(batches[0])))


def _rows(*arrays: np.ndarray) -> list[bytes]:
    """One sortable key per element: its arrays' bytes, for comparing multisets."""
    return sorted(b"".join(a[i].tobytes() for a in arrays) for i in range(len(arrays[0])))


def _pair_reader(folder: Path, **options):
    from mammo_tf.data.shard_pipelines import sr_shard_dataset

    plain = {"shuffle": False, "augment": False, "repeat": False, "cycle_length": 1}
    return sr_shard_dataset(folder, 5, seed=0, scale=2, hr_size=32, **{**plain, **options})


def test_sr_pairs_read_back_as_the_sampler_drew_them(phantom: Path, pair_shards: Path) -> None:
    """In file order: exactly the sampler calls the manifest lists; interleaved and shuffled: the same multiset."""
    from mammo_tf.data.sample_shards import chunk_seed
    from mammo_tf.data.samplers import sample_sr_pairs

    catalog = load_catalog(phantom)
    dataset, manifest = _pair_reader(pair_shards)
    assert [c["seed"] for c in manifest["chunks"]] == [3, chunk_seed(3, 1), chunk_seed(3, 2)]
    assert [c["pairs"] for c in manifest["chunks"]] == [10, 10, 4]
    drawn = [
        sample_sr_pairs(catalog, c["pairs"], hr_size=32, scale=2, foreground_share=0.25, seed=c["seed"])
        for c in manifest["chunks"]
    ]
    lr, hr = _arrays(dataset)
    assert lr.dtype == hr.dtype == np.float32 and lr.shape == (24, 16, 16, 1) and hr.shape == (24, 32, 32, 1)
    assert np.array_equal(lr, np.concatenate([d.lr for d in drawn]))
    assert np.array_equal(hr, np.concatenate([d.hr for d in drawn]))
    records = _python_records(pair_shards)
    assert [r["image_id"][0].decode() for r in records] == [i for d in drawn for i in d.image_id]
    assert {r["hr/dtype"][0] for r in records} == {b"uint8"} and {r["bit_depth"][0] for r in records} == {8}
    assert manifest["patients"] == sorted({p for d in drawn for p in d.patient_id})
    assert manifest["sampling"]["split"] == "train" and manifest["counts"]["pairs"] == 24
    assert manifest["catalog_sha256"] == catalog_sha256(catalog)
    mixed, _ = _pair_reader(pair_shards, shuffle=True, cycle_length=8, shuffle_buffer=7)
    mixed_lr, mixed_hr = _arrays(mixed)
    assert _rows(mixed_lr, mixed_hr) == _rows(lr, hr) and not np.array_equal(mixed_hr, hr)


def test_every_iterator_of_a_shard_dataset_yields_the_same_stream(pair_shards: Path) -> None:
    # Training makes a new iterator per validation interval (ds.skip(step)); each must continue the one stream,
    # whatever the previous one read ahead and whatever the global seed (pipelines.seeded_epochs).
    import time

    import tensorflow as tf

    ds, _ = _pair_reader(pair_shards, shuffle=True, repeat=True, cycle_length=2, shuffle_buffer=7)
    whole = [lr for lr, _ in ds.take(12).as_numpy_iterator()]  # 60 pairs: 2.5 epochs of 24
    iterator = iter(ds)
    head = [next(iterator)[0].numpy() for _ in range(3)]
    time.sleep(0.5)  # the prefetch reads ahead
    del iterator
    tf.random.set_seed(321)
    pieced = head + [lr for lr, _ in ds.skip(3).take(9).as_numpy_iterator()]
    for a, b in zip(whole, pieced, strict=True):
        np.testing.assert_array_equal(a, b)
    order = np.concatenate(whole)
    first, second = _rows(order[:24]), _rows(order[24:48])
    assert first == second and not np.array_equal(order[:24], order[24:48])  # every epoch all pairs, reordered


def test_the_readers_yield_what_the_in_memory_pipelines_yield(phantom: Path, pair_shards: Path, patch_shards: Path):
    """Same element structure, shapes and dtypes as sr_dataset / patch_dataset, so a trainer swaps one for the other."""
    from mammo_tf.data.pipelines import patch_dataset, sr_dataset
    from mammo_tf.data.samplers import sample_patches, sample_sr_pairs
    from mammo_tf.data.shard_pipelines import patch_shard_dataset, sr_shard_dataset
    from mammo_tf.io.images import quantize

    catalog = load_catalog(phantom)
    pairs = sample_sr_pairs(catalog, 8, hr_size=32, seed=0)
    shards, _ = sr_shard_dataset(pair_shards, 4, seed=0, scale=2, hr_size=32)
    assert shards.element_spec == sr_dataset(pairs, 4).element_spec
    patches = sample_patches(catalog, patch_size=16, seed=1)
    balanced, _ = patch_shard_dataset(patch_shards, 6, seed=0, patch_size=16, balanced=True)
    assert balanced.element_spec == patch_dataset(patches, 6, balanced=True).element_spec
    labels = np.concatenate([labels for _, labels in balanced.take(8).as_numpy_iterator()])
    assert set(labels.tolist()) == {0, 1, 2}  # 48 draws, each class a third of the time
    lr, _ = _arrays(_pair_reader(pair_shards)[0])
    quantised, _ = _arrays(_pair_reader(pair_shards, quantise_lr=True)[0])
    assert np.array_equal(quantised, np.stack([quantize(x, 8, as_float=True) for x in lr]))  # the trainer's rounding


def test_patches_read_back_as_one_sampler_call(phantom: Path, patch_shards: Path) -> None:
    """Sampled one image a call, the patches are exactly one sample_patches call's (by class in file order)."""
    from mammo_tf.data.samplers import sample_patches
    from mammo_tf.data.shard_pipelines import patch_shard_dataset

    drawn = sample_patches(load_catalog(phantom), patch_size=16, split="train", seed=1)
    order = np.argsort(drawn.labels, kind="stable")
    dataset, manifest = patch_shard_dataset(
        patch_shards, 7, seed=0, patch_size=16, shuffle=False, augment=False, repeat=False, cycle_length=1
    )
    images, labels = _arrays(dataset)
    assert labels.dtype == np.int32 and np.array_equal(labels, drawn.labels[order])
    assert np.array_equal(images, drawn.images[order])
    records = _python_records(patch_shards)
    assert [r["centre_row"][0] for r in records] == drawn.centre_row[order].tolist()
    assert [r["image_id"][0].decode() for r in records] == drawn.image_id[order].tolist()
    counts = {"patches": 40, "normal": 16, "benign": 8, "malignant": 16, "images": 4, "patients": 2}
    assert manifest["counts"] == {**counts, "files": 10}
    assert manifest["report"]["calc_patches"] == 24 and manifest["patients"] == sorted(set(drawn.patient_id))
    mixed, _ = patch_shard_dataset(patch_shards, 7, seed=0, patch_size=16, augment=False, repeat=False)
    assert _rows(*_arrays(mixed)) == _rows(images, labels)


def test_a_second_run_of_pairs_and_patches_is_byte_identical(
    phantom: Path, pair_shards: Path, patch_shards: Path, tmp_path: Path
) -> None:
    """Same flags, same bytes; patches also whatever the chunking (the CLI samples all 4 images in one call)."""
    again = {"pairs": tmp_path / "pairs", "patches": tmp_path / "patches"}
    assert invoke("data", "shard", "--data", phantom, "--out", again["pairs"], *PAIRS).exit_code == 0
    patch_args = ["--what", "patches", "--patch-size", 16, "--seed", 1, "--shard-size", 0.002]
    assert invoke("data", "shard", "--data", phantom, "--out", again["patches"], *patch_args).exit_code == 0
    for first, second in ((pair_shards, again["pairs"]), (patch_shards, again["patches"])):
        names = sorted(p.name for p in first.iterdir())
        assert names == sorted(p.name for p in second.iterdir())
        assert all((first / n).read_bytes() == (second / n).read_bytes() for n in names), first


def test_workers_read_disjoint_files_that_cover_the_folder(pair_shards: Path, patch_shards: Path) -> None:
    import tensorflow as tf

    from mammo_tf.data.shard_pipelines import patch_shard_dataset, worker_files

    manifest = json.loads((pair_shards / MANIFEST_NAME).read_text())
    mine = [worker_files(pair_shards, manifest, (2, w)) for w in (0, 1)]
    assert [len(m) for m in mine] == [3, 3] and not set(mine[0]) & set(mine[1])
    assert sorted(mine[0] + mine[1]) == sorted(pair_shards / f["name"] for f in manifest["files"])
    _, everything = _arrays(_pair_reader(pair_shards)[0])
    seen = []
    for worker in (0, 1):
        context = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=worker, num_replicas_in_sync=2)
        dataset, _ = _pair_reader(pair_shards, input_context=context)
        policy = dataset.options().experimental_distribute.auto_shard_policy
        assert policy == tf.data.experimental.AutoShardPolicy.OFF  # sharded by file already
        _, hr = _arrays(dataset)
        records = sum(f["records"] for f in manifest["files"] if pair_shards / f["name"] in mine[worker])
        assert len(hr) == records
        seen.append(hr)
    assert _rows(np.concatenate(seen)) == _rows(everything)
    # balanced patches: each class's files are shared out; a class with fewer files than workers is refused
    patches = json.loads((patch_shards / MANIFEST_NAME).read_text())
    for label, count in ((0, 4), (1, 2), (2, 4)):
        halves = [worker_files(patch_shards, patches, (2, w), label) for w in (0, 1)]
        of_class = [patch_shards / f["name"] for f in patches["files"] if f["label"] == label]
        assert len(of_class) == count and sorted(halves[0] + halves[1]) == sorted(of_class)
        assert not set(halves[0]) & set(halves[1])
    with pytest.raises(MammoError, match=r"patches: 2 shard files of class 1 for 3 workers: .* smaller --shard-size"):
        patch_shard_dataset(patch_shards, 4, seed=0, patch_size=16, balanced=True, input_context=(3, 2))
    with pytest.raises(MammoError, match="6 sr-pairs shard files for 7 workers"):
        _pair_reader(pair_shards, input_context=(7, 0))


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda f: _flip(f / "pairs-00001.tfrecord", 3000), "pairs-00001.tfrecord: checksum differs from shards.json"),
        (
            lambda f: (f / "pairs-00003.tfrecord").write_bytes((f / "pairs-00003.tfrecord").read_bytes()[:-9]),
            "pairs-00003.tfrecord: truncated",
        ),
        (
            lambda f: _rewrite_manifest(f, lambda m: m["files"][4].update(sha256="0" * 64)),
            "pairs-00004.tfrecord: checksum differs from shards.json",
        ),
        (lambda f: (f / "pairs-00000.tfrecord").unlink(), "pairs-00000.tfrecord: shard file missing"),
        (lambda f: _rewrite_manifest(f, lambda m: m.pop("sampling")), "shards.json: malformed manifest"),
    ],
    ids=["flipped-byte", "truncated", "checksum-mismatch", "missing-file", "no-sampling"],
)
def test_damaged_pair_shards_are_one_line(pair_shards: Path, tmp_path: Path, damage, message: str) -> None:
    folder = _copy(pair_shards, tmp_path)
    damage(folder)
    with pytest.raises(MammoError) as caught:
        _pair_reader(folder)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_folders_of_the_wrong_kind_are_one_line(phantom_shards: Path, pair_shards: Path, patch_shards: Path) -> None:
    from mammo_tf.data.shard_pipelines import patch_shard_dataset, sr_shard_dataset

    one_error_line(invoke("data", "info", "--data", pair_shards), f"{pair_shards}: holds sr-pairs shards, not images")
    one_error_line(invoke("data", "info", "--data", patch_shards), "holds patches shards, not images: --data takes")
    cases = [
        (lambda: _pair_reader(phantom_shards), "holds images shards, not sr-pairs: write SR pairs with"),
        (lambda: patch_shard_dataset(pair_shards, 4, seed=0, patch_size=16), "holds sr-pairs shards, not patches"),
        (
            lambda: sr_shard_dataset(pair_shards, 4, seed=0, scale=2, hr_size=64),
            "sr-pairs shards sampled with hr_size 32; this run needs hr_size 64",
        ),
        (
            lambda: patch_shard_dataset(patch_shards, 4, seed=0, patch_size=16, require={"per_cluster": 4}),
            "patches shards sampled with per_cluster 8; this run needs per_cluster 4",
        ),
    ]
    for build, message in cases:
        with pytest.raises(MammoError, match=message):
            build()


def test_an_interrupted_pair_write_leaves_nothing(phantom: Path, tmp_path: Path, monkeypatch) -> None:
    import mammo_tf.data.sample_shards as sample_shards

    real, calls = sample_shards.sample_sr_pairs, []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(sample_shards, "sample_sr_pairs", interrupted)
    with pytest.raises(KeyboardInterrupt):
        sample_shards.write_sr_pair_shards(load_catalog(phantom), tmp_path / "out", n=4, hr_size=32, chunk=2)
    assert list(tmp_path.iterdir()) == []


def test_train_sr_streams_its_pairs_from_shards(pair_shards: Path, phantom: Path, tmp_path: Path) -> None:
    """train-sr --data PAIRS: the pairs stream from the shards, validation on --val-data's films; a folder
    sampled for another run is refused before anything is written."""
    from mammo_tf.workflows.training import train_sr

    run = train_sr(pair_shards, tmp_path / "run", preset="tiny", val_data=phantom, verbose=0)
    config = json.loads((run / "config.json").read_text())
    manifest = json.loads((pair_shards / MANIFEST_NAME).read_text())
    assert config["data"] == str(pair_shards.resolve()) and config["train_patients"] == manifest["patients"]
    assert config["pair_shards"]["sampling"]["hr_size"] == 32 and config["val_data"]
    final = json.loads((run / "metrics.json").read_text())
    assert final["steps"] == 6 and np.isfinite(final["val_psnr"]) and final["noise_ceiling_greys"] is None
    with pytest.raises(MammoError, match="sr-pairs shards sampled with hr_size 32; this run needs hr_size 64"):
        train_sr(pair_shards, tmp_path / "bigger", preset="tiny", hr_size=64, verbose=0)
    with pytest.raises(MammoError, match="--lr-degradations diverse needs the films"):
        train_sr(pair_shards, tmp_path / "diverse", preset="tiny", lr_degradations="diverse", verbose=0)
    with pytest.raises(MammoError, match="--val-data is for --data a sr-pairs shard folder"):
        train_sr(phantom, tmp_path / "films", preset="tiny", val_data=phantom, verbose=0)
    assert not any((tmp_path / name).exists() for name in ("bigger", "diverse", "films"))
