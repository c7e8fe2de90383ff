"""detect: a calcification heatmap over whole films from the patch classifier, and its top regions.

Patches of the classifier's size are scored on a grid (stride px) of centres inside the breast mask, in
batches (the film stays on the host); the grid of probabilities is the heatmap, resized to the film and
set to 0 outside the breast. Top regions: grid maxima kept by non-maximum suppression (no two closer
than one patch size), with their centres in original array coordinates (row 0 = top).

The film score used by the study is the heatmap's maximum logit inside the breast (Heatmap.logit): the
maximum probability (Heatmap.score) is 1.0 in float64 too above a logit of about 37, which tied MIAS films.

Speed: the batches go through the classifier's calcification head compiled with XLA, in float32 (one shape:
the last batch is padded): about 2x the eager call on a 2-core AMD EPYC (BENCHMARKS.md, bench_detect), with
probabilities within 1e-4 of a float32 eager call. A bfloat16 model is copied to float32 for this where the
CPU has no native bfloat16; where it has, the model runs as it is in graph mode (oneDNN's bf16 kernels, as
upscale's keras engine). Patches are ranked by their float64 logits (calc_scorer); probabilities are their
sigmoid.

Pixel spacing: a classifier learns calcifications at its training films' spacing (calc-classifier: MIAS,
0.2 mm). A film whose spacing is known (its DICOM header, or --input-spacing) and differs from it by more
than SPACING_MATCH is resampled to it first (data/resample.py: area averaging to larger pixels, bicubic to
smaller), scored there, and the heatmap and region centres are mapped back to the film's own pixels. A film
of unknown spacing (PGM/PNG/TIFF without --input-spacing) is scored as it is; detections.csv says which.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from mammo_tf.errors import MammoError, located

DEFAULT_STRIDE = 16
DEFAULT_TOP = 5
SPACING_MATCH = 0.01  # a film within 1 % of the classifier's training spacing is scored as it is


@dataclass(frozen=True)
class Heatmap:
    """probability float32 [H, W] in [0, 1] (0 outside the breast); regions (rank, row, col, score: float64
    probability, logit), ranked by logit; the film's maximum probability (score) and maximum logit (logit)."""

    probability: np.ndarray
    regions: pd.DataFrame
    score: float
    logit: float


def load_classifier(spec: str | Path | None = None, *, command: str = "detect"):
    """(model, model id, patch size) for a shipped name, a .keras file or a classifier run directory.

    A file of another kind is refused before it is loaded (MammoError: what it is, what ``command`` needs).
    """
    from mammo_tf.inference.registry import load_model, model_id
    from mammo_tf.models.classifier import CLASSIFIER_NAME, CalcificationClassifier  # noqa: F401 (registers)

    model, path, _ = load_model(spec, ("classifier",), command)
    if not model.name.startswith(CLASSIFIER_NAME):
        raise located(path, f"not a mammo-tf calcification classifier (model {model.name!r})")
    return model, model_id(path), int(model.network.input_shape[1])


@functools.lru_cache(maxsize=4)
def calc_scorer(model) -> Callable[[np.ndarray], np.ndarray]:
    """float32 [B, p, p, 1] patches -> float64 [B] calcification logits from a classifier, compiled (module
    docstring). Kept for the last few models, so that the films of one run share one compilation.

    A bfloat16 model on a CPU with native bfloat16 runs as it is, in graph mode; elsewhere a float32 copy of its
    network runs under XLA (bfloat16 without native support is emulated: slower and no more precise). Logits,
    not probabilities: in float32 every logit above about 17 has probability 1.0, in float64 above about 37,
    and such ties decided much of a MIAS fold's film AUC (measured). A model without a ``network`` (a stand-in
    returning {"calc": probability}) is compiled as it is, its probabilities turned into logits.
    """
    import tensorflow as tf
    from scipy.special import logit as to_logit

    from mammo_tf.inference.sr_engine import resolve_engine

    network = getattr(model, "network", None)
    if network is None:
        calc = tf.function(lambda x: model(x, training=False)["calc"], jit_compile=True)
        return lambda tiles: to_logit(np.asarray(calc(tiles), np.float64).reshape(-1))
    if resolve_engine("auto", network) == "keras":  # upscale's rule: bf16 model, native bf16
        logit = tf.function(lambda x: network(x, training=False)["calc"])
    else:
        from mammo_tf.models.precision import float32_copy

        copy = float32_copy(network)
        logit = tf.function(lambda x: copy(x, training=False)["calc"], jit_compile=True)
    return lambda tiles: np.asarray(logit(tiles), np.float64).reshape(-1)


def heatmap(
    model,
    pixels: np.ndarray,
    mask: np.ndarray,
    patch_size: int,
    *,
    stride: int = DEFAULT_STRIDE,
    top: int = DEFAULT_TOP,
    batch: int = 256,
) -> Heatmap:
    """Score float32 [H, W] film pixels (original orientation) with its bool breast mask."""
    import cv2
    from scipy.special import expit

    half = patch_size // 2
    height, width = pixels.shape
    rows = np.arange(half, height - half + 1, stride)
    cols = np.arange(half, width - half + 1, stride)
    if rows.size == 0 or cols.size == 0:
        raise MammoError(f"film {height}x{width} is smaller than one {patch_size}-px patch")
    grid = np.full((rows.size, cols.size), -np.inf)  # calc_scorer's float64 logits; -inf: outside the breast
    centres = [(i, j) for i, r in enumerate(rows) for j, c in enumerate(cols) if mask[r, c]]
    score = calc_scorer(model)
    tiles = np.zeros((batch, patch_size, patch_size, 1), np.float32)  # the last batch is padded: one shape
    for first in range(0, len(centres), batch):
        chunk = centres[first : first + batch]
        for k, (i, j) in enumerate(chunk):
            tiles[k, ..., 0] = pixels[rows[i] - half : rows[i] + half, cols[j] - half : cols[j] + half]
        logits = score(tiles)[: len(chunk)]
        for (i, j), value in zip(chunk, logits, strict=True):
            grid[i, j] = value
    probs = expit(grid)
    size = (int(cols[-1] - cols[0] + stride), int(rows[-1] - rows[0] + stride))
    full = cv2.resize(probs.astype(np.float32), size, interpolation=cv2.INTER_LINEAR)
    probability = np.zeros((height, width), np.float32)
    r0, c0 = int(rows[0] - stride // 2), int(cols[0] - stride // 2)
    r_lo, c_lo = max(r0, 0), max(c0, 0)
    r_hi, c_hi = min(r0 + full.shape[0], height), min(c0 + full.shape[1], width)
    probability[r_lo:r_hi, c_lo:c_hi] = full[r_lo - r0 : r_hi - r0, c_lo - c0 : c_hi - c0]
    probability *= mask
    regions = []
    order = np.argsort(grid, axis=None)[::-1]
    for flat in order:
        i, j = np.unravel_index(flat, grid.shape)
        if grid[i, j] == -np.inf or len(regions) >= top:
            break
        r, c = int(rows[i]), int(cols[j])
        if all(np.hypot(r - q["row"], c - q["col"]) >= patch_size for q in regions):
            regions.append(
                {"rank": len(regions) + 1, "row": r, "col": c, "score": float(probs[i, j]), "logit": float(grid[i, j])}
            )
    table = pd.DataFrame(regions, columns=["rank", "row", "col", "score", "logit"])
    return Heatmap(probability, table, float(probs.max()), float(grid.max()))


def heatmap_at_spacing(
    model, pixels: np.ndarray, mask: np.ndarray, patch_size: int, factors: tuple[float, float] | None, **kwargs
) -> Heatmap:
    """`heatmap` on the film resampled by `factors` (new pixels per old, rows and columns; None: as it is),
    with the probability map and region centres mapped back to the film's own pixels."""
    import cv2

    if factors is None:
        return heatmap(model, pixels, mask, patch_size, **kwargs)
    from mammo_tf.data.resample import resample_to_spacing

    shape = pixels.shape
    scored = resample_to_spacing(pixels, (1.0, 1.0), (1 / factors[0], 1 / factors[1]))
    small = cv2.resize(mask.astype(np.uint8), scored.shape[::-1], interpolation=cv2.INTER_NEAREST).astype(bool)
    result = heatmap(model, scored, small, patch_size, **kwargs)
    probability = cv2.resize(result.probability, shape[::-1], interpolation=cv2.INTER_LINEAR) * mask
    regions = result.regions.assign(
        row=np.clip(np.round(result.regions["row"] / factors[0]), 0, shape[0] - 1).astype(int),
        col=np.clip(np.round(result.regions["col"] / factors[1]), 0, shape[1] - 1).astype(int),
    )
    return Heatmap(probability.astype(np.float32), regions, result.score, result.logit)


def scoring_factors(
    film_mm: tuple[float, float] | None, model_mm: float | None, resample: bool = True
) -> tuple[float, float] | None:
    """(row, col) resampling factors that bring a film at `film_mm` to the classifier's `model_mm`; None when
    either is unknown, resampling is off, or they agree within SPACING_MATCH."""
    if not resample or film_mm is None or model_mm is None:
        return None
    factors = (film_mm[0] / model_mm, film_mm[1] / model_mm)
    return None if all(abs(f - 1) <= SPACING_MATCH for f in factors) else factors


def detect_files(
    inputs: list[Path],
    out_dir: str | Path,
    *,
    model: str | Path | None = None,
    stride: int = DEFAULT_STRIDE,
    top: int = DEFAULT_TOP,
    input_spacing: float | None = None,
    resample: bool = True,
    on_result=None,
) -> pd.DataFrame:
    """Heatmap PNGs (<stem>_heatmap.png, 255 = probability 1) and detections.csv for every input film.

    A film that fails gives its one-line error through on_result(path, None, error) and is left out; errors are
    held back until a film succeeds, and if none does nothing is written and a MammoError (one line: no input
    could be processed, and why) is raised instead. Everything is written under a temporary name and put in
    place at the end (a new out_dir appears whole), so an interrupted run leaves nothing behind.
    Films of known spacing (header or input_spacing, mm) are scored at the classifier's training spacing
    unless resample is False (module docstring). Returns the detections table (image, rank, row, col, score,
    film_score, model, spacing_mm: the film's or "" when unknown, scored_at_mm: the spacing it was scored at).
    """
    from mammo_tf.data.preprocess import prepare
    from mammo_tf.inference.registry import resolve_model_path
    from mammo_tf.inference.spacing import training_spacing
    from mammo_tf.io.images import probe_header, read_image, write_image

    net, ident, patch_size = load_classifier(model)
    model_mm = training_spacing(resolve_model_path(model, "classifier"))
    out_dir = Path(out_dir)
    columns = ["image", "rank", "row", "col", "score", "film_score", "model", "spacing_mm", "scored_at_mm"]
    tables, held, failures = [], [], []
    with _staging(out_dir) as stage:
        for source in map(Path, inputs):
            try:
                pixels = read_image(source).pixels
                stated = probe_header(source).spacing
                film_mm = (input_spacing,) * 2 if input_spacing else stated and (stated.row_mm, stated.col_mm)
                prepared = prepare(source)
                mask = prepared.mask[:, ::-1] if prepared.flipped else prepared.mask
                factors = scoring_factors(film_mm, model_mm, resample)
                result = heatmap_at_spacing(net, pixels, mask, patch_size, factors, stride=stride, top=top)
                name = f"{source.stem}_heatmap.png"
                write_image(stage / name, result.probability, 8)
            except MammoError as err:
                failures.append(str(err))
                if tables:
                    _report(on_result, source, None, str(err))
                else:  # not yet: if no film succeeds, the one error line is the summary below
                    held.append((source, str(err)))
                continue
            scored_at = model_mm if factors else (film_mm[0] if film_mm else "")
            table = result.regions.assign(
                image=source.name,
                film_score=result.score,
                model=ident,
                spacing_mm=film_mm[0] if film_mm else "",
                scored_at_mm=scored_at,
            )
            tables.append(table[columns])
            for early in held:
                _report(on_result, early[0], None, early[1])
            held.clear()
            _report(on_result, source, out_dir / name, None)
        if not tables:
            raise MammoError(_nothing_done(failures))
        detections = pd.concat(tables, ignore_index=True)
        (stage / "detections.csv").write_bytes(detections.to_csv(index=False).encode())
    return detections


def _report(on_result, source: Path, output: Path | None, error: str | None) -> None:
    if on_result:
        on_result(source, output, error)


def _nothing_done(failures: list[str], shown: int = 3) -> str:
    """'no input could be processed: <error>; <error>; ... (and N more)' on one line."""
    if not failures:
        return "no input could be processed (no inputs given)"
    more = f" (and {len(failures) - shown} more)" if len(failures) > shown else ""
    return f"no input could be processed: {'; '.join(failures[:shown])}{more}"


@contextlib.contextmanager
def _staging(out_dir: Path) -> Iterator[Path]:
    """A temporary folder whose files become out_dir's when the block ends without an error.

    A new out_dir is the temporary folder (built beside it) renamed into place; an existing one gets a temporary
    folder inside it whose files are then moved in (detections.csv last). On an error nothing reaches out_dir.
    """
    from mammo_tf.io.atomic import atomic_dir, scratch_dir

    if not out_dir.is_dir():
        with atomic_dir(out_dir) as tmp:
            yield tmp
        return
    with scratch_dir(out_dir / ".detect") as stage:
        yield stage
        names = sorted(p.name for p in stage.iterdir())
        for name in sorted(names, key=lambda n: n == "detections.csv"):
            try:
                os.replace(stage / name, out_dir / name)
            except OSError as err:
                raise located(out_dir / name, f"cannot move the finished output into place ({err.strerror})") from None
