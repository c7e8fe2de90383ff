"""Mutation fuzz of the readers: a corrupt file is one MammoError naming it, never a traceback or stray stderr.

Small seed files of every format (PGM 8/12-bit, PNG 8/16-bit, TIFF 8/16-bit,
DICOM plain and RLE, Info.txt) are mutated with a seeded generator (bit flips,
overwritten/deleted/inserted/duplicated spans, truncation, DICOM header bytes,
Info.txt tokens) and fed to `probe_image`, `read_image` and `parse_info`.
Each case must either succeed with a plausible result (float32 in [0, 1],
probe and read agreeing on shape and bit depth) or raise MammoError whose
single-line message starts with the file's path. Nothing may reach the
process's stderr (file descriptor 2: libpng and OpenCV print there) and no
Python warning may escape.

MAMMO_FUZZ_SCALE=10 runs ten times the cases (the default is a few hundred,
a few seconds); the seed is fixed, so a failure reproduces.
"""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import warnings
import zlib
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
from dicom_builders import make_dataset, save
from pydicom.uid import RLELossless

from mammo_tf.data.mias import parse_info
from mammo_tf.errors import MammoError
from mammo_tf.io.images import encode_pgm, probe_image, read_image

SCALE = int(os.environ.get("MAMMO_FUZZ_SCALE", "1"))
SEED = 20240611
INFO_TXT = (
    b"MIAS database (mini)\r\n\r\n"
    b"mdb001 G CIRC B 535 425 197\r\n"
    b"mdb002 G CIRC B 522 280 69\r\n"
    b"mdb003 D NORM \r\n"
    b"mdb004 D NORM \r\n"
    b"mdb005 F CALC M *NOTE 3*\r\n"
    b"mdb005 F CALC B 477 133 30\r\n"
    b"mdb006 F NORM\r\n"
    b"=============\r\n"
)
INFO_TOKENS = [
    b"mdb007",
    b"mdb1",
    b"CALC",
    b"NORM",
    b"XYZ",
    b"B",
    b"M",
    b"Q",
    b"*NOTE 3*",
    b"999999",
    b"-5",
    b"0",
    b"",
    b"\t",
    b"\r\n",
    b"\n\n",
    b"\xc3\xa9",
    b"\x00",
    b"=====",
    b"G",
    b"F",
]


# --- seeds -------------------------------------------------------------------------------------------


def _grey(dtype, maximum: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, maximum + 1, size=(12, 16)).astype(dtype)


def _encoded(suffix: str, array: np.ndarray) -> bytes:
    ok, data = cv2.imencode(suffix, array)
    assert ok
    return data.tobytes()


def _dicom(tmp: Path, rle: bool) -> bytes:
    ds = make_dataset(
        _grey(np.uint16, 4095), bits_stored=12, WindowCenter=2048, WindowWidth=4096, RescaleSlope=1, RescaleIntercept=0
    )
    if rle:
        ds.compress(RLELossless)
    return save(ds, tmp / "seed.dcm").read_bytes()


def seeds(tmp: Path) -> dict[str, tuple[str, bytes]]:
    """name -> (suffix, bytes) of one small valid file per format and depth."""
    return {
        "pgm8": (".pgm", encode_pgm(_grey(np.uint8, 255) / 255.0, 8)),
        "pgm12": (".pgm", encode_pgm(_grey(np.uint16, 4095) / 4095.0, 12)),
        "png8": (".png", _encoded(".png", _grey(np.uint8, 255))),
        "png16": (".png", _encoded(".png", _grey(np.uint16, 65535))),
        "tif8": (".tif", _encoded(".tif", _grey(np.uint8, 255))),
        "tif16": (".tif", _encoded(".tif", _grey(np.uint16, 65535))),
        "dcm": (".dcm", _dicom(tmp, rle=False)),
        "dcm-rle": (".dcm", _dicom(tmp, rle=True)),
        "info": (".txt", INFO_TXT),
    }


# --- mutations -------------------------------------------------------------------------------------


def _position(rng: np.random.Generator, size: int, header: int) -> int:
    """Mostly inside the header (where parsers branch), sometimes anywhere."""
    return int(rng.integers(0, min(size, header) if rng.random() < 0.75 else size))


def mutate(data: bytes, rng: np.random.Generator, header: int, tokens: list[bytes] | None = None) -> bytes:
    """One to three random edits of `data`."""
    out = bytearray(data)
    for _ in range(int(rng.integers(1, 4))):
        if not out:
            out = bytearray(rng.integers(0, 256, 8, dtype=np.uint8).tobytes())
        kind = int(rng.integers(0, 8 if tokens else 7))
        at = _position(rng, len(out), header)
        span = int(rng.integers(1, 17))
        if kind == 0:  # flip bits
            out[at] ^= 1 << int(rng.integers(0, 8))
        elif kind == 1:  # an interesting byte
            out[at] = int(rng.choice([0x00, 0x01, 0x7F, 0x80, 0xFE, 0xFF, 0x20, 0x0A]))
        elif kind == 2:  # overwrite a span with noise
            out[at : at + span] = rng.integers(0, 256, span, dtype=np.uint8).tobytes()
        elif kind == 3:  # truncate
            del out[at:]
        elif kind == 4:  # delete a span
            del out[at : at + span]
        elif kind == 5:  # insert noise
            out[at:at] = rng.integers(0, 256, span, dtype=np.uint8).tobytes()
        elif kind == 6:  # duplicate a span
            out[at:at] = out[at : at + span]
        else:  # swap in a token of the format's own vocabulary
            end = at + int(rng.integers(0, 8))
            out[at:end] = tokens[int(rng.integers(0, len(tokens)))]
    return bytes(out)


def fix_png_checksums(data: bytes) -> bytes:
    """Recompute every complete chunk's CRC, so the mutation reaches libpng's decoder instead of its CRC check."""
    out, pos = bytearray(data), 8
    while pos + 12 <= len(out):
        length = struct.unpack(">I", out[pos : pos + 4])[0]
        end = pos + 8 + length
        if end + 4 > len(out):
            break
        out[end : end + 4] = struct.pack(">I", zlib.crc32(out[pos + 4 : end]))
        pos = end + 4
    return bytes(out)


def cases(tmp: Path, per_format: int) -> list[tuple[str, Path]]:
    """Write `per_format` mutated copies of every seed; (format name, path) pairs."""
    rng = np.random.default_rng(SEED)
    written = []
    for name, (suffix, data) in seeds(tmp).items():
        header = 400 if name.startswith("dcm") else (len(data) if name == "info" else 96)
        tokens = INFO_TOKENS if name == "info" else None
        for index in range(per_format):
            path = tmp / f"{name}-{index:04d}{suffix if name != 'info' else '.Info.txt'}"
            mutated = mutate(data, rng, header, tokens)
            if name.startswith("png") and index % 2:
                mutated = fix_png_checksums(mutated)
            path.write_bytes(mutated)
            written.append((name, path))
    return written


# --- the checks --------------------------------------------------------------------------------------


def _check_image(path: Path) -> str:
    """'ok' or 'refused'; anything else raises (an escape or an implausible result)."""
    try:
        height, width, depth = probe_image(path)
    except MammoError as err:
        _check_message(path, err)
        probed = None
    else:
        assert height > 0 and width > 0 and 1 <= depth <= 32, (path, height, width, depth)
        probed = (height, width, depth)
    try:
        image = read_image(path)
    except MammoError as err:
        _check_message(path, err)
        return "refused"
    pixels = image.pixels
    assert pixels.dtype == np.float32 and pixels.ndim == 2 and pixels.size > 0, path
    assert np.isfinite(pixels).all() and pixels.min() >= 0.0 and pixels.max() <= 1.0, path
    assert 1 <= image.bit_depth <= 32, (path, image.bit_depth)
    if probed is not None:  # the header probe and the decoder must tell the same story
        assert probed == (*pixels.shape, image.bit_depth), (path, probed, pixels.shape, image.bit_depth)
    return "ok"


def _check_info(path: Path) -> str:
    try:
        table = parse_info(path)
    except MammoError as err:
        _check_message(path, err)
        return "refused"
    assert len(table) > 0 and table["image_id"].str.fullmatch(r"mdb\d{3}").all(), path
    return "ok"


def _check_message(path: Path, err: MammoError) -> None:
    message = str(err)
    assert message.startswith(f"{path}"), message
    assert "\n" not in message and "\r" not in message, repr(message)


def test_mutated_files_fail_cleanly(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    written = cases(tmp_path, per_format=40 * SCALE)
    outcomes: dict[str, dict[str, int]] = {}
    for name, path in written:
        check: Callable[[Path], str] = _check_info if name == "info" else _check_image
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                outcome = check(path)
            except MammoError:
                raise
            except AssertionError:
                raise
            except Exception as err:  # an escape: report the file and what came out
                pytest.fail(f"{path.name}: {type(err).__name__}: {err}")
        assert not caught, f"{path.name}: warnings escaped: {[str(w.message) for w in caught]}"
        err_text = capfd.readouterr().err
        assert err_text == "", f"{path.name}: wrote to stderr: {err_text!r}"
        outcomes.setdefault(name, {}).setdefault(outcome, 0)
        outcomes[name][outcome] += 1
    assert len(written) == 9 * 40 * SCALE
    # The mutations must bite: every format sees refusals, and the loop is not all refusals either.
    for name, counts in outcomes.items():
        assert counts.get("refused", 0) > 0, (name, counts)
    assert sum(c.get("ok", 0) for c in outcomes.values()) > 0, outcomes


# --- through the CLI: one line on stderr and nothing else -----------------------------------------------


CORRUPT = {  # the kinds of damage the fuzz found noisy or escaping
    "bad.tif": lambda d: d[:4] + bytes([d[4] ^ 0x55]) + d[5:],
    "bad.png": lambda d: d[:20] + bytes([d[20] ^ 0xFF]) + d[21:],
    # BitsStored (0028,0101) with its VR damaged from US to an unknown one: pydicom raised NotImplementedError.
    "bad.dcm": lambda d: d.replace(b"\x28\x00\x01\x01US", b"\x28\x00\x01\x01\x55\x5b"),
    "bad.pgm": lambda d: d[: len(d) // 2],
}


@pytest.mark.parametrize("name", sorted(CORRUPT))
def test_data_info_on_a_corrupt_file_prints_one_line(tmp_path: Path, name: str) -> None:
    suffix = Path(name).suffix
    source = {".tif": "tif16", ".png": "png16", ".dcm": "dcm", ".pgm": "pgm12"}[suffix]
    data = seeds(tmp_path)[source][1]
    (tmp_path / name).write_bytes(CORRUPT[name](data))
    (tmp_path / "good.pgm").write_bytes(seeds(tmp_path)["pgm8"][1])
    manifest = tmp_path / "manifest.csv"
    manifest.write_text(f"path,patient_id\ngood.pgm,P1\n{name},P2\n")
    code = "from mammo_tf_cli.main import main; main()"
    result = subprocess.run(
        [sys.executable, "-c", code, "data", "info", "--data", str(manifest)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"mammo-tf: error: {manifest}:3: {tmp_path / name}: "), lines[0]
    assert result.stdout == ""


def test_concurrent_reads_capture_libpng_and_restore_stderr(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """fd 2 is process-wide: readers in threads share one redirection, and the last one out restores it."""
    from concurrent.futures import ThreadPoolExecutor

    data = bytearray(seeds(tmp_path)["png16"][1])
    data[60] ^= 0xFF  # inside IDAT: the chunk layout is sound, libpng fails while inflating
    bad = tmp_path / "bad.png"
    bad.write_bytes(fix_png_checksums(bytes(data)))

    def read(_: int) -> str:
        try:
            read_image(bad)
        except MammoError as err:
            return str(err)
        return "decoded"

    with ThreadPoolExecutor(max_workers=8) as pool:
        messages = list(pool.map(read, range(64)))
    assert all(m.startswith(f"{bad}: cannot decode image") for m in messages), set(messages)
    assert any("libpng error" in m for m in messages), set(messages)
    os.write(2, b"stderr is back\n")
    assert capfd.readouterr().err == "stderr is back\n"
