"""1-px dark scanner lines: found in the LR, averaged across in the SR output, nothing else touched."""

from __future__ import annotations

import numpy as np
import pytest

from mammo_tf.data.degrade import degrade
from mammo_tf.errors import MammoError
from mammo_tf.inference.scanner_lines import LINE_MIN_RUN, average_lines, line_mask
from mammo_tf.inference.upscale import upscale_array

S = 2


def _film(seed: int = 0) -> np.ndarray:
    """float32 [256, 256]: smooth tissue (0.3-0.7) with mild texture; scanner lines added by the tests."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[0:256, 0:256] / 255.0
    return (0.3 + 0.4 * rows * cols + 0.01 * rng.standard_normal((256, 256))).astype(np.float32)


def _with_lines(hr: np.ndarray) -> np.ndarray:
    """HR 0 along row 101 (cols 20-219: 100 LR px), column 181 (rows 10-249) and a short stroke on row 151
    (cols 20-59: 20 LR px, shorter than LINE_MIN_RUN)."""
    out = hr.copy()
    out[101, 20:220] = 0.0
    out[10:250, 181] = 0.0
    out[151, 20:60] = 0.0
    return out


def test_long_lines_are_found_in_the_lr_and_short_strokes_are_not() -> None:
    lr = degrade(_with_lines(_film()), S, None)
    rows, cols = line_mask(lr, 0), line_mask(lr, 1)
    assert set(np.flatnonzero(rows.any(axis=1))) == {50}  # HR row 101 lies in LR row 50; the stroke is too short
    assert rows[50].sum() >= LINE_MIN_RUN and not rows[75].any()
    assert set(np.flatnonzero(cols.any(axis=0))) == {90}
    assert not line_mask(degrade(_film(), S, None), 0).any() and not line_mask(degrade(_film(), S, None), 1).any()


def test_a_faint_line_is_found_and_a_darker_texture_row_is_not() -> None:
    """An HR column 25 % darker over 240 rows (LR ratio about 0.87) is a line; tissue is not."""
    hr = _film()
    faint = hr.copy()
    faint[10:250, 181] *= 0.75
    cols = line_mask(degrade(faint, S, None), 1)
    assert set(np.flatnonzero(cols.any(axis=0))) == {90} and cols[:, 90].sum() >= LINE_MIN_RUN
    lighter = hr.copy()
    lighter[10:250, 181] *= 0.9  # LR ratio about 0.95: above the bound
    assert not line_mask(degrade(lighter, S, None), 1).any()
    assert not line_mask(degrade(faint, S, None), 1, ratio=(0.25, 0.75)).any()  # the bound before faint lines


def test_averaging_keeps_consistency_lowers_the_error_and_touches_nothing_else() -> None:
    hr = _with_lines(_film())
    lr = degrade(hr, S, None)
    # A model that draws the line sharp, in the wrong HR row of each block: consistent with the LR, and wrong.
    wrong = hr.copy()
    wrong[100, 20:220], wrong[101, 20:220] = 0.0, hr[100, 20:220] + hr[101, 20:220]
    wrong[10:250, 180], wrong[10:250, 181] = 0.0, hr[10:250, 180] + hr[10:250, 181]
    fixed, flagged = average_lines(wrong, lr, S)
    assert flagged == int(line_mask(lr, 0).sum() + line_mask(lr, 1).sum()) > 0
    np.testing.assert_allclose(degrade(fixed, S, None), degrade(wrong, S, None), atol=1e-6)  # block means kept
    blocks = np.kron(line_mask(lr, 0) | line_mask(lr, 1), np.ones((S, S), bool))
    np.testing.assert_array_equal(fixed[~blocks], wrong[~blocks])
    error = lambda x: float(np.mean((x[blocks] - hr[blocks]) ** 2))  # noqa: E731
    assert error(fixed) < 0.5 * error(wrong)  # the mean across the line: about a quarter of the wrong row's


class _Nearest:
    """A stand-in SR model (float32 [B, t, t, 1] -> [B, 2t, 2t, 1]) that draws every dark line in the first
    HR row of its block: what a sharp model does half of the time."""

    scale, margin = S, 0

    def __call__(self, tiles: np.ndarray, quant_step: float) -> np.ndarray:
        up = np.repeat(np.repeat(tiles, S, axis=1), S, axis=2)
        return up + np.where(np.arange(up.shape[1])[None, :, None, None] % 2 == 0, -0.05, 0.05)


def test_upscale_array_averages_at_lines_unless_asked_to_keep() -> None:
    lr = degrade(_with_lines(_film()), S, None)
    model = _Nearest()
    kept = upscale_array(model, lr, None, tile=None, scanner_lines="keep")
    np.testing.assert_array_equal(kept, model(lr[None, ..., None], 0.0)[0, ..., 0])
    averaged = upscale_array(model, lr, None, tile=None)
    np.testing.assert_allclose(averaged, average_lines(kept, lr, S)[0])
    assert not np.array_equal(averaged, kept)
    with pytest.raises(MammoError, match="scanner_lines must be one of average, keep"):
        upscale_array(model, lr, None, tile=None, scanner_lines="fix")
