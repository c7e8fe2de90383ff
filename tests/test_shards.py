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
        (["--what", "patches"], "--what patches: not implemented yet"),
        (["--what", "sr-pairs"], "--what sr-pairs: not implemented yet"),
        (["--what", "films"], "Invalid value for '--what'"),
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
