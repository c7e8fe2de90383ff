"""Tiny DICOM datasets built in memory, shared by the DICOM and manifest tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import DigitalMammographyXRayImageStorageForPresentation, ExplicitVRLittleEndian


def make_dataset(
    pixels: np.ndarray, bits_stored: int = 12, photometric: str = "MONOCHROME2", **attributes: object
) -> Dataset:
    """A minimal MG dataset: set_pixel_data fills Rows, Columns, Bits*, Pixel Representation."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = DigitalMammographyXRayImageStorageForPresentation
    ds.SOPClassUID = DigitalMammographyXRayImageStorageForPresentation
    ds.Modality = "MG"
    ds.set_pixel_data(pixels, photometric, bits_stored)
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    return ds


def save(ds: Dataset, path: Path) -> Path:
    """Write `ds` as a conformant DICOM file (parents created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path
