"""What the readers return (pixels, header facts): the bottom of the io layer (no other mammo_tf import).

`images.py` dispatches to `dicom.py`; both build `Image` and `ImageHeader` from here, so neither
imports the other back.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Image:
    """A greyscale image.

    pixels: float32 [H, W] in [0, 1] (1 = brightest = most attenuating tissue).
    bit_depth: bits per pixel of the source (8, 12, 16, ...).
    """

    pixels: np.ndarray
    bit_depth: int


@dataclass(frozen=True)
class Spacing:
    """The physical size of a pixel, in mm per pixel.

    row_mm: distance between the centres of adjacent rows (vertical); col_mm: of adjacent columns
    (horizontal) -- DICOM's PixelSpacing order. source: where the numbers came from ("dicom PixelSpacing", ...).
    """

    row_mm: float
    col_mm: float
    source: str


@dataclass(frozen=True)
class ImageHeader:
    """What a file's header says without decoding pixels: size, bit depth and, where stated, pixel spacing.

    spacing: None when the file states none (PGM, PNG, TIFF, and DICOM without a spacing tag).
    """

    height: int
    width: int
    bit_depth: int
    spacing: Spacing | None = None
