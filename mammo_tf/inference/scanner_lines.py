"""1-px dark scanner lines: found in the LR input, and handled where the SR model cannot know the answer.

Film digitisers leave straight 1-px lines (MIAS: HR 0 along a row or column, often hundreds of pixels
long). Box-averaged by the SR scale s, such a line darkens one LR row (or column) to about 1 - 1/s of its
neighbours, and the LR cannot say which of the s HR rows of that LR row held it. A model that draws the line
sharp in one row is wrong s - 1 times out of s; bicubic and the row-mean are not. The least-squares answer
that keeps the consistency projection exact is the mean over the s HR rows of each block: `average_lines`
replaces the SR output by it there, and nowhere else.

Detection (`line_mask`): an LR pixel whose value is LINE_RATIO of the mean of its two neighbours across the
line, with both neighbours above LINE_FLOOR (tissue or film, not background), in a straight run of at
least LINE_MIN_RUN pixels along the line. On the 48 MIAS test films with sr-x2 (docs/results-sr.md), runs
of 64 LR pixels or more were scanner lines, while runs of 12 also caught strokes of the film labels, where
averaging cost up to 0.8 dB in the film foreground.

The ratio's upper bound, 0.92, also takes faint lines (an HR row 16 % darker or more), chosen on the MIAS
*validation* films (reports/sr-faint-lines/run.py): on synthetic lines of every depth sr-x2 picks the right
HR row at chance (44-61 %) and falls below bicubic on 39-56 % of them, the block mean on 0-42 % from a
20 % darker row on; and on the films as they are, what 0.92 adds over 0.75 (536 HR pixels, mostly one faint
line) is averaged 0.65 dB closer to HR.
"""

from __future__ import annotations

import numpy as np

SCANNER_LINES = ("average", "keep")  # what upscale does at detected lines: average (default) or keep the model's
LINE_RATIO = (0.25, 0.92)  # an LR pixel on a line, over the mean of its two neighbours across it
LINE_FLOOR = 0.04  # both neighbours at least this bright (float [0, 1])
LINE_MIN_RUN = 64  # LR pixels in a straight run along the line


def line_mask(
    lr: np.ndarray, axis: int, min_run: int = LINE_MIN_RUN, ratio: tuple[float, float] = LINE_RATIO
) -> np.ndarray:
    """bool [h, w]: LR pixels on a dark 1-px line along `axis` (0: a horizontal line, a row; 1: a column).

    lr: float [h, w] in [0, 1]; ratio: the (lower, upper) bounds of LINE_RATIO. Edge rows (columns) have one
    neighbour and are never flagged.
    """
    from scipy import ndimage

    lines = np.asarray(lr, np.float32) if axis == 0 else np.asarray(lr, np.float32).T
    found = np.zeros(lines.shape, bool)
    if lines.shape[0] >= 3:
        above, below, middle = lines[:-2], lines[2:], lines[1:-1]
        across = middle / np.maximum(0.5 * (above + below), 1e-6)
        found[1:-1] = (across > ratio[0]) & (across < ratio[1]) & (np.minimum(above, below) > LINE_FLOOR)
    runs, n = ndimage.label(found, structure=[[0, 0, 0], [1, 1, 1], [0, 0, 0]])  # runs along the line only
    if n:
        long = np.concatenate([[False], np.bincount(runs.ravel(), minlength=n + 1)[1:] >= min_run])
        found = long[runs]
    return found if axis == 0 else found.T


def average_lines(
    sr: np.ndarray, lr: np.ndarray, scale: int, ratio: tuple[float, float] = LINE_RATIO
) -> tuple[np.ndarray, int]:
    """(SR with the s x s blocks under line pixels averaged across the line, number of LR line pixels).

    sr: float [h*s, w*s]; lr: float [h, w]. A block on a horizontal line gets, in each column, the mean of its
    s rows (a vertical line: of its s columns), so its block mean, and with it the consistency with `lr`, is
    unchanged. Without line pixels `sr` itself comes back (no copy: a whole film's output is large).
    """
    rows, cols = line_mask(lr, 0, ratio=ratio), line_mask(lr, 1, ratio=ratio)
    flagged = int(rows.sum() + cols.sum())
    if not flagged:
        return sr, 0
    out = np.array(sr, np.float32, copy=True)
    offsets = np.arange(scale)
    for k in np.flatnonzero(rows.any(axis=1)):  # a horizontal line in LR row k: HR rows k*s .. k*s + s - 1
        band = out[k * scale : (k + 1) * scale]
        hr = (np.flatnonzero(rows[k])[:, None] * scale + offsets).ravel()
        band[:, hr] = band[:, hr].mean(axis=0, keepdims=True)
    for k in np.flatnonzero(cols.any(axis=0)):  # a vertical line in LR column k
        band = out[:, k * scale : (k + 1) * scale]
        hr = (np.flatnonzero(cols[:, k])[:, None] * scale + offsets).ravel()
        band[hr, :] = band[hr, :].mean(axis=1, keepdims=True)
    return out, flagged
