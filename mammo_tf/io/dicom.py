"""Read a single-frame greyscale DICOM as float32 [H, W] in [0, 1] (1 = dense).

The grayscale pipeline of the standard, each step a small pure function:

    stored values -> modality LUT (Rescale Slope/Intercept or Modality LUT Sequence)
                  -> VOI (VOI LUT Sequence, else Window Center/Width: the precedence of
                     pydicom's apply_voi_lut(prefer_lut=True))
                  -> divide by the output range of the last stage applied
                  -> MONOCHROME1 inverted, so bright = dense whatever the vendor wrote.

The divisor is the range the stage *can* output (from BitsStored, Pixel
Representation, the rescale, the LUT descriptor), never the image's own
min/max: two films from one device keep comparable intensities, and a dark
film stays dark. pydicom's output ranges are:

- no VOI, no modality stage: the stored range, 0..2^BitsStored-1, or
  -2^(BitsStored-1)..2^(BitsStored-1)-1 when Pixel Representation is 1;
- rescale only: that stored range through slope and intercept;
- Modality LUT Sequence: 0..2^LUTDescriptor[2]-1;
- windowing: the rescaled stored range (or the Modality LUT's depth);
- VOI LUT Sequence: 0..2^LUTDescriptor[2]-1.

Presentation LUT Shape is not applied: in DX/MG objects it only restates the
MONOCHROME1/2 polarity, so applying it as well would invert twice.
Compressed transfer syntaxes decode through pydicom's plugins (numpy covers
RLE; pylibjpeg + libjpeg/openjpeg cover JPEG, JPEG-LS and JPEG 2000).

Pixel spacing (mm per pixel, rows then columns) comes from the header alone
(`probe_dicom_header`): PixelSpacing (at the patient) if present, else
ImagerPixelSpacing (at the detector) divided by EstimatedRadiographicMagnificationFactor
when that is a positive number, else ImagerPixelSpacing as is; none of them: unknown.

Files are untrusted bytes: whatever pydicom raises while reading, parsing an
element or decoding pixels means a bad file, and becomes one MammoError naming
it; pydicom's warnings about malformed elements are silenced while reading.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mammo_tf.errors import MammoError, located
from mammo_tf.io.base import Image, ImageHeader, Spacing

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

ValueRange = tuple[float, float]
GREYSCALE = ("MONOCHROME1", "MONOCHROME2")
# Where a DICOM's spacing came from (the catalog's spacing_source).
SPACING_PIXEL = "dicom PixelSpacing"
SPACING_IMAGER_MAGNIFIED = "dicom ImagerPixelSpacing / magnification"
SPACING_IMAGER = "dicom ImagerPixelSpacing"
MAGNIFICATION = "EstimatedRadiographicMagnificationFactor"


def stored_range(ds: Dataset) -> ValueRange:
    """The values BitsStored can hold: unsigned, or two's complement when Pixel Representation is 1."""
    bits = int(ds.BitsStored)
    if int(ds.get("PixelRepresentation", 0)) == 1:
        return -float(2 ** (bits - 1)), float(2 ** (bits - 1) - 1)
    return 0.0, float(2**bits - 1)


def _lut_range(item: Dataset) -> ValueRange:
    """A LUT's output range from the third value of its LUT Descriptor (bits per entry)."""
    return 0.0, float(2 ** int(item.LUTDescriptor[2]) - 1)


def _has_rescale(ds: Dataset) -> bool:
    return ds.get("RescaleSlope") is not None and ds.get("RescaleIntercept") is not None


def _rescaled(value_range: ValueRange, ds: Dataset) -> ValueRange:
    slope, intercept = float(ds.RescaleSlope), float(ds.RescaleIntercept)
    return value_range[0] * slope + intercept, value_range[1] * slope + intercept


def modality_range(ds: Dataset) -> ValueRange:
    """(low, high) output range of `apply_modality_lut` on this dataset (low < high)."""
    if ds.get("ModalityLUTSequence"):
        return _lut_range(ds.ModalityLUTSequence[0])
    if _has_rescale(ds):
        low, high = _rescaled(stored_range(ds), ds)
        return min(low, high), max(low, high)
    return stored_range(ds)


def windowing_range(ds: Dataset) -> ValueRange:
    """pydicom's windowing output range: values below the window map to the first, above to the second.

    Mirrors `pydicom.pixels.apply_windowing` (Modality LUT depth, else the stored
    range, then rescaled when Rescale Slope/Intercept are present). The pair is not
    sorted: with a negative slope pydicom's "low" is the larger number, and
    normalising by the pair as given still sends below-window to 0.
    """
    lut = ds.get("ModalityLUTSequence")
    value_range = _lut_range(lut[0]) if lut else stored_range(ds)
    return _rescaled(value_range, ds) if _has_rescale(ds) else value_range


def voi_kind(ds: Dataset) -> str | None:
    """Which VOI stage apply_voi_lut(prefer_lut=True) would apply: "lut", "window" or None."""
    sequence = ds.get("VOILUTSequence")
    if sequence and None not in (sequence[0].get("LUTDescriptor"), sequence[0].get("LUTData")):
        return "lut"
    if ds.get("WindowCenter") is not None and ds.get("WindowWidth") is not None:
        return "window"
    return None


def apply_modality(arr: np.ndarray, ds: Dataset) -> tuple[np.ndarray, ValueRange]:
    """Stored values -> modality values (e.g. rescaled units), with the range they can take."""
    from pydicom.pixels import apply_modality_lut

    return apply_modality_lut(arr, ds), modality_range(ds)


def apply_voi(arr: np.ndarray, ds: Dataset, value_range: ValueRange) -> tuple[np.ndarray, ValueRange]:
    """Modality values -> VOI values and their range; without a VOI both pass through unchanged."""
    from pydicom.pixels import apply_voi as apply_voi_sequence
    from pydicom.pixels import apply_windowing

    kind = voi_kind(ds)
    if kind == "lut":
        if not np.issubdtype(arr.dtype, np.integer):
            # A LUT is indexed by integers; pydicom truncates floats anyway (and warns).
            arr = np.floor(arr).astype(np.int64)
        return apply_voi_sequence(arr, ds), _lut_range(ds.VOILUTSequence[0])
    if kind == "window":
        return apply_windowing(arr, ds), windowing_range(ds)
    return arr, value_range


def normalise(arr: np.ndarray, value_range: ValueRange) -> np.ndarray:
    """Map `value_range` linearly onto [0, 1] (first value -> 0), clipped, as float32."""
    low, high = value_range
    if high == low:
        raise ValueError(f"empty output range {value_range}")
    unit = (np.asarray(arr, np.float64) - low) / (high - low)
    return np.clip(unit, 0.0, 1.0).astype(np.float32)


def bright_is_dense(unit: np.ndarray, photometric: str) -> np.ndarray:
    """MONOCHROME1 stores dense tissue as low values: invert it so 1 is always dense."""
    return (1.0 - unit).astype(np.float32) if photometric == "MONOCHROME1" else unit


def to_unit_pixels(arr: np.ndarray, ds: Dataset) -> np.ndarray:
    """The whole pipeline on a stored-value array: float32 [H, W] in [0, 1], 1 = dense."""
    values, value_range = apply_modality(arr, ds)
    values, value_range = apply_voi(values, ds, value_range)
    return bright_is_dense(normalise(values, value_range), str(ds.PhotometricInterpretation))


def _one_line(err: BaseException, limit: int = 300) -> str:
    """An exception's text on one line (pydicom lists every plugin it tried on lines of their own)."""
    text = " ".join(str(err).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


@contextlib.contextmanager
def bad_file_errors(path: Path, what: str = "cannot read DICOM") -> Iterator[None]:
    """Inside: pydicom's warnings are silenced, and any exception but a MammoError means a bad file."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            yield
        except MammoError:
            raise
        except Exception as err:  # untrusted bytes: pydicom raises ValueError, NotImplementedError, struct.error, ...
            raise located(path, f"{what} ({type(err).__name__}: {_one_line(err)})") from None


def _positive_int(ds: Dataset, keyword: str, path: Path, maximum: int) -> int:
    value = ds.get(keyword)
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise located(path, f"DICOM {keyword} is not a number ({value!r})") from None
    if not 1 <= number <= maximum:
        raise located(path, f"DICOM {keyword} {number} is out of range (1..{maximum})")
    return number


def check_single_grey(ds: Dataset, path: Path) -> None:
    """Refuse what is not one greyscale frame, naming the file (before any pixel is decoded)."""
    for keyword in ("Rows", "Columns", "BitsStored", "PhotometricInterpretation"):
        if ds.get(keyword) in (None, ""):
            raise located(path, f"DICOM lacks {keyword}: not an image object")
    _positive_int(ds, "Rows", path, 65535)
    _positive_int(ds, "Columns", path, 65535)
    bits = _positive_int(ds, "BitsStored", path, 32)
    if ds.get("BitsAllocated") is not None and bits > _positive_int(ds, "BitsAllocated", path, 64):
        raise located(path, f"DICOM BitsStored {bits} exceeds BitsAllocated {ds.BitsAllocated}")
    photometric = str(ds.PhotometricInterpretation)
    samples = int(ds.get("SamplesPerPixel") or 1)
    if samples != 1 or photometric not in GREYSCALE:
        raise located(path, f"colour DICOM ({photometric}, {samples} samples per pixel): mammograms must be greyscale")
    frames = int(ds.get("NumberOfFrames") or 1)
    if frames != 1:
        raise located(path, f"multi-frame DICOM ({frames} frames, e.g. tomosynthesis): give one 2D image per file")


def _read_dataset(path: Path, stop_before_pixels: bool) -> Dataset:
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=stop_before_pixels)
    except FileNotFoundError:
        raise located(path, "file not found") from None
    except InvalidDicomError:
        raise located(path, "not a DICOM file (no 'DICM' preamble)") from None
    except Exception as err:  # untrusted bytes: pydicom raises many types (EOFError, struct.error, ...)
        raise located(path, f"cannot read DICOM ({type(err).__name__}: {_one_line(err)})") from None
    # pydicom parses element values lazily, on first access: parse them all now, inside the caller's
    # bad_file_errors block, so an element damaged into an unknown VR or a bad length fails here.
    for dataset in (getattr(ds, "file_meta", None), ds):
        if dataset is not None:
            for _ in dataset.iterall():
                pass
    return ds


def _stored_pixels(ds: Dataset, path: Path) -> np.ndarray:
    if "PixelData" not in ds:
        raise located(path, "DICOM has no Pixel Data (7FE0,0010)")
    try:
        return ds.pixel_array
    except Exception as err:  # missing decoder plugin, truncated or corrupt pixel data
        name, hint = _syntax_and_hint(ds)
        raise located(path, f"cannot decode {name} pixel data{hint}: {_one_line(err)}") from None


def _syntax_and_hint(ds: Dataset) -> tuple[str, str]:
    """The transfer syntax's name, and an install hint when no decoder for it is available."""
    try:
        from pydicom.pixels import get_decoder

        syntax = ds.file_meta.get("TransferSyntaxUID") if hasattr(ds, "file_meta") else None
        name = getattr(syntax, "name", str(syntax))
        if syntax is None or not syntax.is_compressed:
            return name, ""
        try:
            available = get_decoder(syntax).is_available
        except NotImplementedError:  # no decoder exists for this syntax at all
            return name, ""
        return name, "" if available else " (install pylibjpeg, pylibjpeg-libjpeg and pylibjpeg-openjpeg)"
    except Exception:  # the UID itself is damaged ("UID is not a transfer syntax")
        return "(unknown transfer syntax)", ""


def _checked_frame(path: Path) -> tuple[Dataset, np.ndarray]:
    """The dataset and its one 2D frame of stored values; anything else is a MammoError naming `path`."""
    with bad_file_errors(path):
        ds = _read_dataset(path, stop_before_pixels=False)
        check_single_grey(ds, path)
        arr = _stored_pixels(ds, path)
    if arr.ndim != 2:
        raise located(path, f"expected one 2D frame, decoded shape {arr.shape}")
    return ds, arr


def read_dicom_stored(path: str | Path) -> np.ndarray:
    """The stored values of a single-frame greyscale DICOM, [H, W] as decoded: no LUT, no inversion, no scaling.

    For label images such as lesion masks, whose values name classes rather than intensities
    (and skipping the float pipeline reads a large mask far faster).
    """
    return _checked_frame(Path(path))[1]


def read_dicom(path: str | Path) -> Image:
    """Read a single-frame greyscale DICOM: float32 [H, W] in [0, 1] (1 = dense), bit_depth = BitsStored."""
    path = Path(path)
    ds, arr = _checked_frame(path)
    try:
        pixels = to_unit_pixels(arr, ds)
    except (ValueError, TypeError, NotImplementedError, AttributeError, KeyError, IndexError) as err:
        # Bad LUT descriptors, window width < 1, unknown VOI LUT Function, ...: the file is at fault.
        raise located(path, f"cannot apply the modality/VOI LUT ({type(err).__name__}: {_one_line(err)})") from None
    return Image(pixels, int(ds.BitsStored))


def _shown(values: list) -> str:
    """A DS value as the file writes it (backslash-separated), quoted for a message."""
    return "'" + "\\".join(str(v) for v in values) + "'"


def _ds_values(ds: Dataset, keyword: str) -> list:
    """The values of a DS element as a list; [] when absent or empty (DICOM's "unknown")."""
    value = ds.get(keyword)
    if value is None or (isinstance(value, str) and not value.strip()):
        return []
    return list(value) if not isinstance(value, str | bytes | int | float) else [value]


def _spacing_pair(ds: Dataset, keyword: str, path: Path) -> tuple[float, float] | None:
    """(row, col) mm per pixel from PixelSpacing or ImagerPixelSpacing; None when absent; malformed: MammoError."""
    values = _ds_values(ds, keyword)
    if not values:
        return None
    try:
        numbers = [float(v) for v in values]
    except (TypeError, ValueError):
        numbers = []
    if len(numbers) != 2 or not all(math.isfinite(v) and v > 0 for v in numbers):
        raise located(path, f"DICOM {keyword} must be two positive numbers (mm per pixel), got {_shown(values)}")
    return numbers[0], numbers[1]


def _magnification(ds: Dataset, path: Path) -> float | None:
    """EstimatedRadiographicMagnificationFactor when it is a positive number; None when absent or <= 0."""
    values = _ds_values(ds, MAGNIFICATION)
    if not values:
        return None
    try:
        (factor,) = (float(v) for v in values)
    except (TypeError, ValueError):
        raise located(path, f"DICOM {MAGNIFICATION} must be one number, got {_shown(values)}") from None
    return factor if math.isfinite(factor) and factor > 0 else None


def pixel_spacing(ds: Dataset, path: Path) -> Spacing | None:
    """The spacing at the patient a header states (mm per pixel, rows then columns), or None if it states none.

    PixelSpacing if present; else ImagerPixelSpacing (measured at the detector) divided by
    EstimatedRadiographicMagnificationFactor when that is a positive number (the breast sits
    above the detector, so it is magnified); else ImagerPixelSpacing as is. A tag that is present
    but not two positive numbers is a MammoError naming `path` and the tag (no fallback).
    """
    pair = _spacing_pair(ds, "PixelSpacing", path)
    if pair is not None:
        return Spacing(pair[0], pair[1], SPACING_PIXEL)
    pair = _spacing_pair(ds, "ImagerPixelSpacing", path)
    if pair is None:
        return None
    factor = _magnification(ds, path)
    if factor is None:
        return Spacing(pair[0], pair[1], SPACING_IMAGER)
    return Spacing(pair[0] / factor, pair[1] / factor, SPACING_IMAGER_MAGNIFIED)


def _probed(path: Path, spacing: bool) -> tuple[Dataset, Spacing | None]:
    """The checked header (pixel data neither read nor decoded) and, if asked, its pixel spacing."""
    with bad_file_errors(path):
        ds = _read_dataset(path, stop_before_pixels=True)
        check_single_grey(ds, path)
        return ds, pixel_spacing(ds, path) if spacing else None


def read_dicom_header(path: str | Path) -> Dataset:
    """A single-frame greyscale DICOM's checked header, pixels unread (SeriesDescription, ...); bad file: MammoError."""
    ds, _ = _probed(Path(path), spacing=False)
    return ds


def probe_dicom(path: str | Path) -> tuple[int, int, int]:
    """(height, width, bit_depth) from the header alone (pixel data is not read or decoded)."""
    ds, _ = _probed(Path(path), spacing=False)
    return int(ds.Rows), int(ds.Columns), int(ds.BitsStored)


def probe_dicom_header(path: str | Path) -> ImageHeader:
    """Size, bit depth and pixel spacing (see `pixel_spacing`) from the header alone."""
    ds, spacing = _probed(Path(path), spacing=True)
    return ImageHeader(int(ds.Rows), int(ds.Columns), int(ds.BitsStored), spacing)
