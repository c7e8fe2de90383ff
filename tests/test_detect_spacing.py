"""detect at the classifier's training spacing: when to resample, and the map back to the film's pixels."""

from __future__ import annotations

import numpy as np
import pytest

from mammo_tf.inference.detect import heatmap_at_spacing, scoring_factors


class _Brightness:
    """A stand-in classifier: a patch's 'calcification probability' is the brightness at its centre."""

    def __call__(self, tiles, training=False):
        half = tiles.shape[1] // 2
        return {"calc": tiles[:, half, half, 0]}


def test_scoring_factors() -> None:
    assert scoring_factors((0.05, 0.05), 0.2) == (0.25, 0.25)  # 4 film pixels per classifier pixel
    assert scoring_factors((0.2, 0.201), 0.2) is None  # within 1 %: scored as it is
    assert scoring_factors(None, 0.2) is None and scoring_factors((0.05, 0.05), None) is None
    assert scoring_factors((0.05, 0.05), 0.2, resample=False) is None


def test_regions_and_the_heatmap_come_back_in_the_films_pixels() -> None:
    film = np.full((256, 320), 0.3, np.float32)
    film[96:104, 200:208] = 0.9  # a bright spot centred at (100, 204) in the film's 0.05 mm pixels
    mask = np.ones(film.shape, bool)
    mask[:, :8] = False
    result = heatmap_at_spacing(_Brightness(), film, mask, 16, (0.25, 0.25), stride=2, top=1)
    assert result.probability.shape == film.shape and not result.probability[:, :8].any()
    top = result.regions.iloc[0]
    assert abs(top["row"] - 100) <= 8 and abs(top["col"] - 204) <= 8  # one scored pixel is 4 film pixels
    assert result.score == pytest.approx(0.9, abs=0.01)  # the spot covers whole scored pixels: area keeps it
    same = heatmap_at_spacing(_Brightness(), film, mask, 16, None, stride=4, top=1)
    assert same.score == pytest.approx(0.9)  # not resampled: the spot as it is
