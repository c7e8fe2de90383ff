"""What every pixel reader returns: the bottom of the io layer (no other mammo_tf import).

`images.py` dispatches to `dicom.py`; both build `Image` from here, so neither
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
