"""Read and write mammograms with their true bit depth.

Pixels leave this module as float32 arrays in [0, 1], shape [H, W], plus the
source bit depth. The depth comes from the file (PGM maxval, PNG/TIFF dtype,
DICOM BitsStored), never from the pixel values, so a dark 16-bit image is not
mistaken for an 8-bit one. Writers take [0, 1] floats and a bit depth and
write atomically. `probe_header` reads size, depth and (DICOM only) pixel
spacing in mm per pixel from the header, without decoding pixels.

A path `SHARDS/images-00000.tfrecord#OFFSET` names one image inside a shard folder
(io/shard_images.py): both functions read that one record instead of a file.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mammo_tf.errors import MammoError, located
from mammo_tf.io.atomic import write_bytes_atomic
from mammo_tf.io.base import Image, ImageHeader, Spacing
from mammo_tf.io.native import captured_stderr, opencv
from mammo_tf.io.shard_images import parse_record_path, probe_shard_header, read_shard_image

__all__ = [
    "Image",
    "ImageHeader",
    "PgmHeader",
    "Spacing",
    "encode_pgm",
    "probe_header",
    "probe_image",
    "quantize",
    "read_image",
    "read_pgm_header",
    "write_image",
]

PGM_SUFFIXES = {".pgm"}
RASTER_SUFFIXES = {".png", ".tif", ".tiff"}
DICOM_SUFFIXES = {".dcm", ".dicom"}
SUPPORTED_SUFFIXES = PGM_SUFFIXES | RASTER_SUFFIXES | DICOM_SUFFIXES
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_DEPTHS = {0: (1, 2, 4, 8, 16), 2: (8, 16), 3: (1, 2, 4, 8), 4: (8, 16), 6: (8, 16)}  # colour type -> depths


@dataclass(frozen=True)
class PgmHeader:
    """The header of a binary (P5) PGM: size, maxval and where the pixel data starts."""

    width: int
    height: int
    maxval: int
    data_offset: int

    @property
    def bit_depth(self) -> int:
        return int(self.maxval).bit_length()

    @property
    def data_bytes(self) -> int:
        return self.width * self.height * (1 if self.maxval < 256 else 2)


def read_pgm_header(path: str | Path) -> PgmHeader:
    """Parse and check a binary PGM header (comments allowed); the file size must match it."""
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            head = handle.read(512)
        size = path.stat().st_size
    except OSError as err:
        raise located(path, f"cannot read: {err.strerror or err}") from None
    if not head.startswith(b"P5"):
        raise located(path, "not a binary PGM (P5) file")
    fields: list[int] = []
    pos = 2
    while len(fields) < 3:
        while pos < len(head) and head[pos : pos + 1].isspace():
            pos += 1
        if pos < len(head) and head[pos : pos + 1] == b"#":
            end = head.find(b"\n", pos)
            if end < 0:
                raise located(path, "truncated PGM header")
            pos = end + 1
            continue
        start = pos
        while pos < len(head) and head[pos : pos + 1].isdigit():
            pos += 1
        if start == pos:
            raise located(path, "malformed PGM header (expected width, height and maxval)")
        fields.append(int(head[start:pos]))
    if pos >= len(head) or not head[pos : pos + 1].isspace():
        raise located(path, "malformed PGM header (no whitespace after maxval)")
    width, height, maxval = fields
    if width <= 0 or height <= 0 or not 0 < maxval < 65536:
        raise located(path, f"bad PGM header values: {width}x{height}, maxval {maxval}")
    header = PgmHeader(width, height, maxval, pos + 1)
    expected = header.data_offset + header.data_bytes
    if size < expected:
        raise located(path, f"truncated PGM: {size} bytes, header promises {expected}")
    if size > expected:
        raise located(path, f"PGM has {size - expected} bytes after the pixel data (wrong size in header?)")
    return header


def _png_ihdr(path: Path, walk: bool = True) -> tuple[int, int, int, int] | None:
    """(width, height, bit depth, colour type) of a PNG whose chunk layout is sound, else a MammoError.

    None when the file does not start with the PNG signature (OpenCV then sniffs
    the content). With `walk`, every chunk header is checked up to IEND (seeks,
    no pixel data: ~10 ms for a 20 MB film), so a damaged file is refused here
    in one line before OpenCV decodes it: libpng would print to stderr, and a
    chunk length damaged into gigabytes makes OpenCV allocate that much.
    Without `walk` (probing a manifest's sizes) only the IHDR chunk is checked.
    """

    def corrupt(what: str) -> MammoError:
        return located(path, f"cannot decode image: corrupt PNG ({what})")

    try:
        size = path.stat().st_size
        with open(path, "rb", buffering=0) as handle:  # unbuffered: read 8 bytes per chunk, not the whole file
            if handle.read(8) != _PNG_SIGNATURE:
                return None
            pos, ihdr = 8, None
            while True:
                head = handle.read(8)
                if len(head) < 8:
                    raise corrupt("truncated: it ends before its IEND chunk")
                length, kind = struct.unpack(">I4s", head)
                if pos + 12 + length > size:
                    name = kind.decode("ascii") if kind.isalpha() else f"0x{kind.hex()}"
                    raise corrupt(f"truncated: {name} chunk at byte {pos} claims {length} bytes, the file has {size}")
                if ihdr is None:
                    ihdr = _check_ihdr(kind, handle.read(length + 4), corrupt)
                    if not walk:
                        return ihdr
                else:
                    handle.seek(length + 4, 1)
                if kind == b"IEND":
                    return ihdr
                pos += 12 + length
    except OSError as err:
        raise located(path, f"cannot read: {err.strerror or err}") from None


def _check_ihdr(kind: bytes, body: bytes, corrupt) -> tuple[int, int, int, int]:
    """The first chunk must be a 13-byte IHDR with a matching CRC and values the format allows."""
    if kind != b"IHDR" or len(body) != 17:
        raise corrupt("the first chunk is not a 13-byte IHDR")
    if zlib.crc32(kind + body[:13]) != struct.unpack(">I", body[13:])[0]:
        raise corrupt("IHDR checksum mismatch")
    width, height, depth, colour, compression, filtering, interlace = struct.unpack(">IIBBBBB", body[:13])
    if (
        not (0 < width < 2**31 and 0 < height < 2**31)
        or depth not in _PNG_DEPTHS.get(colour, ())
        or (compression or filtering or interlace > 1)
    ):
        raise corrupt(f"impossible IHDR: {width}x{height}, depth {depth}, colour type {colour}")
    return width, height, depth, colour


def _imread_unchanged(path: Path) -> np.ndarray:
    if path.suffix.lower() == ".png":
        _png_ihdr(path)
    cv2 = opencv()
    failure = ""
    with captured_stderr() as noise:  # libpng prints its errors on fd 2: they go into our message instead
        try:
            array = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        except cv2.error as err:
            array, failure = None, str(err).strip().splitlines()[-1]
    if array is None:
        detail = failure or (noise[-1] if noise else "")
        raise located(path, "cannot decode image: corrupt or unsupported file" + (f" ({detail})" if detail else ""))
    return array


def _read_pgm(path: Path) -> Image:
    header = read_pgm_header(path)
    array = _imread_unchanged(path)
    if array.shape != (header.height, header.width):
        raise located(path, f"decoded shape {array.shape} does not match header {header.height}x{header.width}")
    # OpenCV returns values as stored (maxval 4095 stays 0..4095): normalise by the header's maxval.
    pixels = array.astype(np.float32) / np.float32(header.maxval)
    return Image(np.clip(pixels, 0.0, 1.0), header.bit_depth)


def _read_raster(path: Path) -> Image:
    array = _imread_unchanged(path)
    if array.ndim == 3:
        if array.shape[2] == 4:
            array = array[..., :3]
        if not (np.array_equal(array[..., 0], array[..., 1]) and np.array_equal(array[..., 0], array[..., 2])):
            raise located(path, "colour image: mammograms must be greyscale")
        array = array[..., 0]
    if array.dtype == np.uint8:
        return Image(array.astype(np.float32) / 255.0, 8)
    if array.dtype == np.uint16:
        return Image(array.astype(np.float32) / 65535.0, 16)
    if array.dtype in (np.float32, np.float64):
        if not np.isfinite(array).all() or array.min() < 0.0 or array.max() > 1.0:
            raise located(path, "floating-point image must hold finite values in [0, 1]")
        return Image(array.astype(np.float32), 32)
    raise located(path, f"unsupported pixel type {array.dtype}")


def read_image(path: str | Path) -> Image:
    """Read a PGM, PNG, TIFF or DICOM file (or a shard's record) as float32 [H, W] in [0, 1] with its bit depth."""
    if parse_record_path(path) is not None:
        return read_shard_image(path)
    path = Path(path)
    if not path.is_file():
        raise located(path, "not a regular file" if path.exists() else "file not found")
    suffix = path.suffix.lower()
    if suffix in PGM_SUFFIXES:
        return _read_pgm(path)
    if suffix in RASTER_SUFFIXES:
        return _read_raster(path)
    if suffix in DICOM_SUFFIXES:
        from mammo_tf.io.dicom import read_dicom

        return read_dicom(path)
    raise located(path, f"unsupported image type '{suffix}' (use one of {sorted(SUPPORTED_SUFFIXES)})")


def _png_grey_header(path: Path) -> tuple[int, int, int] | None:
    """(height, width, bit_depth) of a greyscale PNG from its IHDR chunk, or None to decode instead."""
    ihdr = _png_ihdr(path, walk=False)
    if ihdr is None:
        return None
    width, height, depth, colour_type = ihdr
    if colour_type != 0:
        return None  # colour or palette: read_image decides whether the channels are grey
    # OpenCV expands 1/2/4-bit grey to uint8, so such files read as 8-bit.
    return height, width, 16 if depth == 16 else 8


def probe_image(path: str | Path) -> tuple[int, int, int]:
    """(height, width, bit_depth) of an image file, from the header where the format allows."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in DICOM_SUFFIXES:
        from mammo_tf.io.dicom import probe_dicom

        return probe_dicom(path)
    if suffix in PGM_SUFFIXES:
        header = read_pgm_header(path)
        return header.height, header.width, header.bit_depth
    if suffix == ".png":
        fast = _png_grey_header(path)
        if fast is not None:
            return fast
    image = read_image(path)
    height, width = image.pixels.shape
    return height, width, image.bit_depth


def probe_header(path: str | Path) -> ImageHeader:
    """Size, bit depth and stated pixel spacing (mm per pixel) of an image file, from the header where possible.

    Only DICOM states a spacing (io.dicom.pixel_spacing); other formats give spacing None. A shard's
    record gives the spacing recorded when it was written.
    """
    if parse_record_path(path) is not None:
        return probe_shard_header(path)
    path = Path(path)
    if path.suffix.lower() in DICOM_SUFFIXES:
        from mammo_tf.io.dicom import probe_dicom_header

        return probe_dicom_header(path)
    return ImageHeader(*probe_image(path))


def quantize(pixels: np.ndarray, bit_depth: int | None, *, as_float: bool = False) -> np.ndarray:
    """[0, 1] floats rounded (half to even) to the 2^bit_depth grey levels a `bit_depth`-bit file holds.

    as_float False: the unsigned integers a file stores (uint8 up to 8 bits, else uint16; 1..16 bits).
    as_float True: those levels as float32 in [0, 1], level / (2^bit_depth - 1), any bit depth (a 32-bit float
    TIFF's too), as SR's LR inputs are rounded; bit_depth None: float32, unrounded.
    """
    if as_float and bit_depth is None:
        return np.asarray(pixels, np.float32)
    if not as_float and (bit_depth is None or not 1 <= bit_depth <= 16):
        raise MammoError(f"cannot store {bit_depth}-bit integers (1..16 supported)")
    maxval = (1 << int(bit_depth)) - 1
    levels = np.round(np.clip(pixels, 0.0, 1.0) * maxval)
    if as_float:
        return (levels / maxval).astype(np.float32)
    return levels.astype(np.uint8 if bit_depth <= 8 else np.uint16)


def encode_pgm(pixels: np.ndarray, bit_depth: int = 8) -> bytes:
    """Binary PGM bytes (big-endian for > 8 bits, as the format requires)."""
    values = quantize(pixels, bit_depth)
    height, width = values.shape
    header = f"P5\n{width} {height}\n{(1 << bit_depth) - 1}\n".encode("ascii")
    body = values.astype(">u2").tobytes() if bit_depth > 8 else values.tobytes()
    return header + body


def write_image(path: str | Path, pixels: np.ndarray, bit_depth: int) -> None:
    """Write float32 [H, W] in [0, 1] at `bit_depth` bits as PGM, PNG or TIFF, atomically."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in PGM_SUFFIXES:
        write_bytes_atomic(path, encode_pgm(pixels, bit_depth))
        return
    if suffix not in RASTER_SUFFIXES:
        raise located(path, f"cannot write '{suffix}' images (use .pgm, .png or .tif)")
    cv2 = opencv()
    # PNG/TIFF store 8 or 16 bits; a 12-bit source is written in 16-bit containers, scaled to full range.
    container = 8 if bit_depth <= 8 else 16
    ok, encoded = cv2.imencode(suffix, quantize(pixels, container))
    if not ok:
        raise located(path, "OpenCV could not encode the image")
    write_bytes_atomic(path, encoded.tobytes())
