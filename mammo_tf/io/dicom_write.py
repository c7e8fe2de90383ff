"""Write a DICOM derived from a source DICOM: new pixels (e.g. super-resolved), the rest kept.

The pixels written are the display-normalised values mammo-tf works with (modality LUT and VOI applied,
bright = dense), stored as MONOCHROME2 integers of the source's BitsStored (or a depth asked for); the
rescale, window and LUT elements are removed because they no longer apply. Rows/Columns and the pixel
spacings follow the new size; the object gets a new SOP Instance UID and Series Instance UID, ImageType
DERIVED\\SECONDARY, a Derivation Description and a Source Image Sequence pointing at the source.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from mammo_tf.io.atomic import write_bytes_atomic
from mammo_tf.io.dicom import bad_file_errors

_REMOVED = (
    "RescaleSlope",
    "RescaleIntercept",
    "RescaleType",
    "ModalityLUTSequence",
    "VOILUTSequence",
    "WindowCenter",
    "WindowWidth",
    "WindowCenterWidthExplanation",
    "VOILUTFunction",
    "PixelPaddingValue",
    "PixelPaddingRangeLimit",
    "SmallestImagePixelValue",
    "LargestImagePixelValue",
    "PresentationLUTShape",
)
_SPACINGS = ("PixelSpacing", "ImagerPixelSpacing", "NominalScannedPixelSpacing")


def write_derived_dicom(
    source: str | Path,
    out: str | Path,
    pixels: np.ndarray,
    *,
    zoom: float | tuple[float, float],
    description: str,
    bits: int | None = None,
) -> None:
    """Write float32 [H, W] in [0, 1] as a DICOM derived from `source`; spacings divided by `zoom`.

    zoom: output pixels per source pixel, one factor or (rows, columns) (an SR scale, or with resampling
    before SR, the product). bits: BitsStored of the output (None = the source's).
    """
    import pydicom
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    source = Path(source)
    with bad_file_errors(source):
        ds = pydicom.dcmread(source, stop_before_pixels=True)
        bits = int(ds.BitsStored) if bits is None else int(bits)
        source_sop = (str(ds.get("SOPClassUID", "")), str(ds.get("SOPInstanceUID", "")))
    levels = (1 << bits) - 1
    stored = np.round(np.clip(pixels, 0.0, 1.0) * levels).astype(np.uint16 if bits > 8 else np.uint8)
    for keyword in _REMOVED:
        if keyword in ds:
            delattr(ds, keyword)
    for keyword in _SPACINGS:
        if keyword in ds:
            zooms = (zoom, zoom) if isinstance(zoom, int | float) else zoom
            setattr(ds, keyword, [f"{float(v) / z:.6g}" for v, z in zip(ds.get(keyword), zooms, strict=True)])
    ds.Rows, ds.Columns = (int(v) for v in stored.shape)
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16 if bits > 8 else 8
    ds.BitsStored, ds.HighBit, ds.PixelRepresentation = bits, bits - 1, 0
    ds.ImageType = ["DERIVED", "SECONDARY"]
    ds.DerivationDescription = description[:1024]
    if all(source_sop):
        item = pydicom.Dataset()
        item.ReferencedSOPClassUID, item.ReferencedSOPInstanceUID = source_sop
        ds.SourceImageSequence = pydicom.Sequence([item])
    ds.SOPInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    if not hasattr(ds, "file_meta") or ds.file_meta is None:
        ds.file_meta = pydicom.dataset.FileMetaDataset()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    if "SOPClassUID" in ds:
        ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.PixelData = stored.tobytes()
    ds["PixelData"].VR = "OW" if bits > 8 else "OB"
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    write_bytes_atomic(out, buffer.getvalue())
