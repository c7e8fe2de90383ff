"""Non-CNN scorers the study reports beside every model (NumPy / scikit-learn / scikit-image).

texture   logistic regression on 26 texture features per patch (intensity statistics, white top-hat,
          gradient and Laplacian energy, grey-level co-occurrence properties at 1 and 2 px)
specks    the speck detector's own score: the patch's maximum top-hat response (no training)
probes    logistic regression on patch intensity only (mean, std) and on position only (row fraction,
          distance from the chest wall): if these score well, the task leaks where or how bright a patch
          is, not what it shows
"""

from __future__ import annotations

import numpy as np

from mammo_tf.data.samplers import Patches
from mammo_tf.data.specks import max_response, speck_response

GLCM_PROPS = ("contrast", "dissimilarity", "homogeneity", "energy", "correlation", "ASM")


def texture_features(images: np.ndarray) -> np.ndarray:
    """float32 [N, P, P, 1] in [0, 1] -> float64 [N, 26]."""
    import cv2
    from scipy.stats import kurtosis, skew
    from skimage.feature import graycomatrix, graycoprops

    rows = []
    for image in np.asarray(images, np.float32)[..., 0]:
        flat = image.ravel()
        tophat = speck_response(image)
        gx, gy = cv2.Sobel(image, cv2.CV_32F, 1, 0), cv2.Sobel(image, cv2.CV_32F, 0, 1)
        grad = np.hypot(gx, gy)
        levels = np.clip((image * 31).round(), 0, 31).astype(np.uint8)
        glcm = graycomatrix(levels, [1, 2], [0, np.pi / 4, np.pi / 2, 3 * np.pi / 4], levels=32, normed=True)
        co = [graycoprops(glcm, p).mean(axis=1) for p in GLCM_PROPS]  # [2 distances] each
        rows.append([
            flat.mean(), flat.std(), skew(flat), kurtosis(flat), *np.percentile(flat, [5, 25, 50, 75, 95]),
            tophat.max(), tophat.mean(), np.percentile(tophat, 99), grad.mean(), grad.std(),
            cv2.Laplacian(image, cv2.CV_32F).var(), *np.concatenate(co),
        ])  # fmt: skip
    return np.nan_to_num(np.asarray(rows, np.float64))


def speck_scores(images: np.ndarray) -> np.ndarray:
    """float [N]: each patch's maximum top-hat response."""
    return np.array([max_response(image[..., 0]) for image in images])


def fit_logistic(features: np.ndarray, labels: np.ndarray, seed: int = 0):
    """A standardised logistic regression (scikit-learn pipeline) fitted on (features, labels)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=1.0, random_state=seed))
    return model.fit(features, labels)


def probe_features(patches: Patches, catalog) -> dict[str, np.ndarray]:
    """{'intensity': [N, 2], 'position': [N, 2]} for the two probes."""
    from mammo_tf.data.tasks import intensity, positions

    return {"intensity": intensity(patches), "position": positions(patches, catalog)}
