"""Pixel I/O: bit depth from the file, never from the values; atomic writes; clear refusals."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from mammo_tf.errors import MammoError
from mammo_tf.io.images import encode_pgm, probe_image, read_image, read_pgm_header, write_image


@pytest.mark.parametrize("bit_depth", [8, 12, 16])
def test_pgm_round_trip_keeps_depth(tmp_path: Path, bit_depth: int) -> None:
    maxval = (1 << bit_depth) - 1
    values = np.random.default_rng(0).integers(0, maxval + 1, size=(13, 17))
    path = tmp_path / "a.pgm"
    write_image(path, values / maxval, bit_depth)
    header = read_pgm_header(path)
    assert (header.width, header.height, header.maxval, header.bit_depth) == (17, 13, maxval, bit_depth)
    image = read_image(path)
    assert image.bit_depth == bit_depth and image.pixels.dtype == np.float32
    assert np.array_equal(np.round(image.pixels * maxval).astype(int), values)


def test_dark_16_bit_image_is_not_mistaken_for_8_bit(tmp_path: Path) -> None:
    """Real-ESRGAN guesses depth from max(img) > 256; we read it from the file."""
    dark = np.full((8, 8), 200, np.uint16)
    cv2.imwrite(str(tmp_path / "dark.png"), dark)
    image = read_image(tmp_path / "dark.png")
    assert image.bit_depth == 16 and np.allclose(image.pixels, 200 / 65535)


def test_16_bit_pgm_is_big_endian(tmp_path: Path) -> None:
    (tmp_path / "be.pgm").write_bytes(b"P5\n1 1\n65535\n\x01\x02")
    assert read_image(tmp_path / "be.pgm").pixels[0, 0] == pytest.approx(258 / 65535)


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_16_bit_raster_round_trip(tmp_path: Path, suffix: str) -> None:
    values = np.arange(0, 65536, 257, dtype=np.uint16).reshape(16, 16)
    write_image(tmp_path / f"x{suffix}", values / 65535.0, 16)
    image = read_image(tmp_path / f"x{suffix}")
    assert image.bit_depth == 16 and np.array_equal(np.round(image.pixels * 65535).astype(np.uint16), values)
    assert probe_image(tmp_path / f"x{suffix}") == (16, 16, 16)


def test_grey_stored_as_bgr_is_accepted_colour_is_refused(tmp_path: Path) -> None:
    grey = np.dstack([np.full((4, 4), 9, np.uint8)] * 3)
    cv2.imwrite(str(tmp_path / "g.png"), grey)
    assert read_image(tmp_path / "g.png").pixels.shape == (4, 4)
    grey[0, 0, 2] = 255
    cv2.imwrite(str(tmp_path / "c.png"), grey)
    with pytest.raises(MammoError, match="colour image"):
        read_image(tmp_path / "c.png")


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("x.png", b"not a png", "cannot decode image"),
        ("x.bmp", b"BM", "unsupported image type '.bmp'"),
        ("missing.pgm", None, "file not found"),
    ],
)
def test_unreadable_files_name_the_file(tmp_path: Path, name: str, content: bytes | None, message: str) -> None:
    if content is not None:
        (tmp_path / name).write_bytes(content)
    with pytest.raises(MammoError, match=message) as err:
        read_image(tmp_path / name)
    assert str(tmp_path / name) in str(err.value)


def test_write_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A failure while writing leaves neither the target nor a temporary file."""
    import mammo_tf.io.images as images

    monkeypatch.setattr(images, "encode_pgm", lambda *a: (_ for _ in ()).throw(RuntimeError("disk full")))
    with pytest.raises(RuntimeError):
        write_image(tmp_path / "out.pgm", np.zeros((4, 4), np.float32), 8)
    write_image(tmp_path / "ok.png", np.zeros((4, 4), np.float32), 8)
    assert [p.name for p in tmp_path.iterdir()] == ["ok.png"]


def test_encode_pgm_rejects_impossible_depth() -> None:
    with pytest.raises(MammoError, match="17-bit"):
        encode_pgm(np.zeros((2, 2), np.float32), 17)


def test_atomic_writes_get_normal_permissions(tmp_path: Path) -> None:
    """mkstemp/mkdtemp create private files; finished outputs must be readable like any other file."""
    import os

    from mammo_tf.io.atomic import atomic_dir

    write_image(tmp_path / "a.png", np.zeros((4, 4), np.float32), 8)
    with atomic_dir(tmp_path / "d"):
        pass
    mask = os.umask(0)
    os.umask(mask)
    assert (tmp_path / "a.png").stat().st_mode & 0o777 == 0o666 & ~mask
    assert (tmp_path / "d").stat().st_mode & 0o777 == 0o777 & ~mask
