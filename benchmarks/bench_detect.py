"""Benchmark: `detect`'s whole-film heatmap, the classifier compiled with XLA against its eager Keras call.

One film (data/mias/mdb001.pgm when it is there, else the cached phantom's; both 1024²) and the shipped
`calc-classifier`, scored at the default stride of 16 px in batches of 256 (`inference.detect.heatmap`):
- compiled: `detect.calc_scorer`, the path `detect` and the study's film task take;
- eager: the same heatmap with the classifier called eagerly per batch, as before the compiled scorer.
Interleaved rounds (eager, compiled, eager, ...) after one warm-up each (XLA compiles in it); the speed-up is the
median of the per-round ratios eager ÷ compiled. Each map's largest |difference| from a float32 eager reference
(the network copied to float32, called eagerly) is reported: for a bfloat16 model the eager map differs from it
by bfloat16's own rounding. Results replace only this script's section of the output Markdown file.

    .venv/bin/python benchmarks/bench_detect.py --out BENCHMARKS.md [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_pipeline import machine_info, write_section  # noqa: E402

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

START, END = "<!-- bench_detect:start -->", "<!-- bench_detect:end -->"
MODEL = "calc-classifier"


def _film() -> Path:
    mias = Path("data/mias/mdb001.pgm")
    if mias.is_file():
        return mias
    from mammo_tf.data.phantom import cached_phantom_dir

    return cached_phantom_dir() / "mdb001.pgm"


def _eager_scorer(model):
    """Logits, as calc_scorer's, from the classifier's network called eagerly."""
    return lambda tiles: np.asarray(model.network(tiles, training=False)["calc"], np.float64).reshape(-1)


def _float32_scorer(model):
    from mammo_tf.models.precision import float32_copy

    network = float32_copy(model.network)
    return lambda tiles: np.asarray(network(tiles, training=False)["calc"], np.float64).reshape(-1)


def measure(rounds: int) -> dict:
    import mammo_tf.inference.detect as detect
    from mammo_tf.data.preprocess import prepare
    from mammo_tf.inference.sr_engine import computes_in_bfloat16
    from mammo_tf.io.images import read_image

    film = _film()
    model, model_id, patch = detect.load_classifier(MODEL)
    pixels, prepared = read_image(film).pixels, prepare(film)
    mask = prepared.mask[:, ::-1] if prepared.flipped else prepared.mask
    compiled_scorer = detect.calc_scorer

    def run(scorer) -> tuple[float, np.ndarray]:
        detect.calc_scorer = scorer  # heatmap looks its scorer up here
        try:
            start = time.perf_counter()
            result = detect.heatmap(model, pixels, mask, patch)
            return time.perf_counter() - start, result.probability
        finally:
            detect.calc_scorer = compiled_scorer

    first_eager, eager_map = run(_eager_scorer)
    first_compiled, compiled_map = run(compiled_scorer)
    reference = run(_float32_scorer)[1]
    times: dict[str, list[float]] = {"eager": [], "compiled": []}
    for _ in range(rounds):
        times["eager"].append(run(_eager_scorer)[0])
        times["compiled"].append(run(compiled_scorer)[0])
    ratios = [e / c for e, c in zip(times["eager"], times["compiled"], strict=True)]
    half = patch // 2
    centres = int(mask[half : mask.shape[0] - half + 1 : 16, half : mask.shape[1] - half + 1 : 16].sum())
    return {
        "film": film.as_posix(),
        "shape": "×".join(map(str, pixels.shape)),
        "model": model_id,
        "patches": centres,
        "first": (first_eager, first_compiled),
        "eager": statistics.median(times["eager"]),
        "compiled": statistics.median(times["compiled"]),
        "speedup": statistics.median(ratios),
        "range": (min(ratios), max(ratios)),
        "precision": "bfloat16" if computes_in_bfloat16(model.network) else "float32",
        "compiled_error": float(np.abs(compiled_map - reference).max()),
        "eager_error": float(np.abs(eager_map - reference).max()),
    }


def render(result: dict, info: dict, rounds: int, command: str) -> str:
    return "\n".join(
        [
            START,
            "## Whole-film heatmap: XLA against the eager call (`benchmarks/bench_detect.py`)",
            "",
            f"Command: `{command}`",
            "",
            f"Machine: `nproc` {info['nproc']}, {info['cpu']}, {info['ram']} RAM; Python {info['python']}, "
            f"TensorFlow {info['tensorflow']}, Keras {info['keras']}; {info['date']}.",
            "",
            f"Film `{result['film']}` ({result['shape']}), `{MODEL}` (`{result['model']}`, computes in "
            f"{result['precision']}), stride 16, batches of 256: {result['patches']} patches inside the breast. "
            f"Median of {rounds} interleaved rounds after one warm-up each.",
            "",
            "| path | s per film | first call (s) | max \\|map - float32 eager map\\| |",
            "| --- | --- | --- | --- |",
            f"| eager Keras call per batch | {result['eager']:.2f} | {result['first'][0]:.2f} | "
            f"{result['eager_error']:.1e} |",
            f"| compiled (`detect.calc_scorer`) | {result['compiled']:.2f} | {result['first'][1]:.2f} (XLA compiles) | "
            f"{result['compiled_error']:.1e} |",
            f"| **eager ÷ compiled** | **{result['speedup']:.2f}** | rounds {result['range'][0]:.2f}-"
            f"{result['range'][1]:.2f} | |",
            END,
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("BENCHMARKS.md"), help="Markdown file to update")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved timed rounds")
    args = parser.parse_args(argv)
    result = measure(args.rounds)
    command = f".venv/bin/python benchmarks/bench_detect.py --out {args.out} --rounds {args.rounds}"
    section = render(result, machine_info(), args.rounds, command)
    write_section(args.out, section, START, END)
    print(section)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
