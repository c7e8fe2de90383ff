"""Samplers: SR training pairs and labelled patches, drawn from preprocessed images.

Plain NumPy (no TensorFlow): the tf.data pipelines in pipelines.py wrap these arrays.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Patch classes. Kept as integers so tf.data and Keras can use them directly.
NORMAL, BENIGN, MALIGNANT = 0, 1, 2
CLASS_NAMES = ("normal", "benign", "malignant")


@dataclass(frozen=True)
class SRPairs:
    """Super-resolution training pairs.

    lr: float32 [N, h, w, 1] in [0, 1], never rounded to 8 bits.
    hr: float32 [N, h*scale, w*scale, 1] in [0, 1].
    image_id, patient_id: str [N], where each pair came from (for leakage checks).
    scale: the integer downsampling factor.
    """

    lr: np.ndarray
    hr: np.ndarray
    image_id: np.ndarray
    patient_id: np.ndarray
    scale: int


@dataclass(frozen=True)
class Patches:
    """Labelled patches.

    images: float32 [N, P, P, 1] in [0, 1].
    labels: int32 [N] in {NORMAL, BENIGN, MALIGNANT}.
    image_id, patient_id: str [N].
    centre_row, centre_col: int [N] patch centre in the original image's array coordinates.
    """

    images: np.ndarray
    labels: np.ndarray
    image_id: np.ndarray
    patient_id: np.ndarray
    centre_row: np.ndarray
    centre_col: np.ndarray
