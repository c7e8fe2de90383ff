"""Benchmark: do the tf.data pipelines keep up with a training step on this machine?

Measures, in one process:
- the samplers (pairs/s of ``sample_sr_pairs``, patches/s of ``sample_patches``), NumPy only;
- the pipelines (SR pairs/s and patches/s delivered by ``sr_dataset`` / ``patch_dataset``, after a warm-up);
- one training step of representative models built here (a compact SR generator with an L1 loss, LR 48^2 ->
  HR 96^2, batch 16; a small patch classifier on 64^2 patches, batch 32), median after warm-up;
- ``fit`` on the real pipeline against ``fit`` on one batch held in memory (what the pipeline costs when it
  shares the cores with the model);
- peak RSS and the in-memory size of the sampled arrays.

Rounds are interleaved (pipeline, model, pipeline, model, ...) so each ratio compares numbers taken under the
same load; the report gives medians over rounds. Results replace only this script's section of the output
Markdown file (between ``<!-- bench_pipeline:start -->`` and ``<!-- bench_pipeline:end -->``).

    .venv/bin/python benchmarks/bench_pipeline.py --out BENCHMARKS.md [--data DIR] [--steps 40] [--batch 16]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import re
import resource
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np

# TensorFlow is imported only inside functions, so this still runs before its first import.
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"

START, END = "<!-- bench_pipeline:start -->", "<!-- bench_pipeline:end -->"
HEADING = "# Benchmarks\n\nMeasured on the machine named in each section; regenerate with `make bench`.\n"
HR_SIZE, SCALE, PATCH_SIZE = 96, 2, 64


@dataclass
class Results:
    """Everything the report prints; times in seconds, rates in samples per second."""

    command: str
    machine: dict[str, str]
    data: str = ""
    bf16: bool = False
    bf16_note: str = ""
    timings: dict[str, float] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    rounds: dict[str, list[float]] = field(default_factory=dict)

    def add(self, key: str, value: float) -> None:
        self.rounds.setdefault(key, []).append(value)

    def median(self, key: str) -> float:
        return statistics.median(self.rounds[key])


# --------------------------------------------------------------------------------------------------- machine


def _cpu_model() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or "unknown"
    match = re.search(r"^model name\s*:\s*(.+)$", text, flags=re.M)
    return match.group(1).strip() if match else "unknown"


def _ram_gib() -> str:
    try:
        text = Path("/proc/meminfo").read_text()
    except OSError:
        return "unknown"
    match = re.search(r"^MemTotal:\s*(\d+) kB", text, flags=re.M)
    return f"{int(match.group(1)) / 2**20:.1f} GiB" if match else "unknown"


def machine_info() -> dict[str, str]:
    """nproc, CPU model, RAM, Python/TF/Keras/NumPy versions and the date (UTC)."""
    return {
        "nproc": str(len(os.sched_getaffinity(0))),
        "cpu": _cpu_model(),
        "ram": _ram_gib(),
        "python": platform.python_version(),
        "tensorflow": version("tensorflow"),
        "keras": version("keras"),
        "numpy": np.__version__,
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


def peak_rss_mib() -> float:
    """Peak resident set size of this process (ru_maxrss is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --------------------------------------------------------------------------------------------------- models


def build_sr_model(filters: int = 32, blocks: int = 4) -> Any:
    """A compact SR generator: float32 [B, h, w, 1] -> [B, 2h, 2w, 1].

    conv 3x3 -> residual blocks without BatchNorm -> conv + long skip -> sub-pixel x2 (depth_to_space) -> conv,
    plus a bilinear global skip so the network learns the residual over interpolation.
    """
    import keras
    from keras import layers, ops

    lr = keras.Input((None, None, 1), name="lr")
    head = layers.Conv2D(filters, 3, padding="same")(lr)
    x = head
    for _ in range(blocks):
        y = layers.Conv2D(filters, 3, padding="same", activation="relu")(x)
        y = layers.Conv2D(filters, 3, padding="same")(y)
        x = layers.Add()([x, y])
    x = layers.Add()([layers.Conv2D(filters, 3, padding="same")(x), head])
    x = layers.Conv2D(filters * SCALE**2, 3, padding="same")(x)
    x = ops.depth_to_space(x, SCALE)  # raw keras.ops in a functional graph serialise fine
    x = layers.Conv2D(1, 3, padding="same")(x)
    base = layers.UpSampling2D(SCALE, interpolation="bilinear")(lr)
    sr = layers.Activation("linear", dtype="float32")(layers.Add()([x, base]))  # float32 out under bf16
    model = keras.Model(lr, sr, name="bench_sr")
    model.compile(optimizer=keras.optimizers.Adam(1e-4), loss="mae")
    return model


def build_classifier(n_classes: int = 3) -> Any:
    """A small patch CNN: float32 [B, 64, 64, 1] -> logits [B, n_classes]."""
    import keras
    from keras import layers

    x = inputs = keras.Input((PATCH_SIZE, PATCH_SIZE, 1), name="patch")
    for filters in (16, 32, 64):
        x = layers.Conv2D(filters, 3, padding="same", activation="relu")(x)
        x = layers.MaxPooling2D()(x)
    x = layers.GlobalAveragePooling2D()(x)
    logits = layers.Dense(n_classes, dtype="float32")(x)
    model = keras.Model(inputs, logits, name="bench_classifier")
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=loss)
    return model


# --------------------------------------------------------------------------------------------------- timing


def _timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def pipeline_rate(iterator: Iterator, batches: int, batch_size: int, warmup: int = 8) -> float:
    """Samples per second pulled from a running iterator.

    The warm-up pulls drain batches that the prefetch buffer filled while the model was being timed, so they
    are not counted as free.
    """
    for _ in range(warmup):
        next(iterator)
    start = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    return batches * batch_size / (time.perf_counter() - start)


def step_time(model: Any, batch: tuple, steps: int) -> float:
    """Median seconds of ``train_on_batch`` on one batch already in memory (no input pipeline involved)."""
    times = []
    for _ in range(steps):
        _, seconds = _timed(lambda: model.train_on_batch(*batch))
        times.append(seconds)
    return statistics.median(times)


def fit_step_time(model: Any, dataset: Any, steps: int, skip: int = 1) -> tuple[float, float]:
    """One ``fit`` epoch of ``steps`` steps on ``dataset``.

    Returns (median wall seconds between consecutive batch ends, the first ``skip`` gaps left out;
    process CPU seconds per step over the whole epoch, which counts the pipeline's threads too and is less
    sensitive than wall time to other jobs on a shared box).
    """
    import keras

    ends: list[float] = []
    clock = keras.callbacks.LambdaCallback(on_train_batch_end=lambda batch, logs: ends.append(time.perf_counter()))
    cpu = time.process_time()
    model.fit(dataset, steps_per_epoch=steps, epochs=1, verbose=0, shuffle=False, callbacks=[clock])
    cpu = (time.process_time() - cpu) / steps
    return float(np.median(np.diff(ends)[skip:])), cpu


# --------------------------------------------------------------------------------------------------- stages


def sample(args: argparse.Namespace, results: Results) -> tuple[Any, Any]:
    """Load the catalog and run both samplers, timing each; returns (SRPairs, Patches)."""
    from mammo_tf.data.catalog import load_catalog
    from mammo_tf.data.samplers import sample_patches, sample_sr_pairs

    catalog, results.timings["catalog_s"] = _timed(lambda: load_catalog(args.data))
    if args.data is not None:
        kind = f"`{args.data}`"
    else:
        kind = "MAMMO_DATA" if os.environ.get("MAMMO_DATA") else "cached phantom"
    results.data = (
        f"{kind}: {catalog.source} ({catalog.n_images} images, {catalog.n_patients} patients) at {catalog.root}"
    )
    # Two calls each: the first may also fill the per-image preprocessing cache (breast masks).
    for call in ("first", "second"):
        pairs, seconds = _timed(
            lambda: sample_sr_pairs(catalog, args.pairs, hr_size=HR_SIZE, scale=SCALE, split="train", seed=args.seed)
        )
        results.timings[f"sr_sampler_{call}_s"] = seconds
        patches, seconds = _timed(lambda: sample_patches(catalog, patch_size=PATCH_SIZE, seed=args.seed))
        results.timings[f"patch_sampler_{call}_s"] = seconds
    results.counts.update(
        pairs=len(pairs.lr),
        patches=len(patches.images),
        pairs_bytes=int(pairs.lr.nbytes + pairs.hr.nbytes),
        patches_bytes=int(patches.images.nbytes + patches.labels.nbytes),
        **{f"class_{int(c)}": int(n) for c, n in zip(*np.unique(patches.labels, return_counts=True), strict=True)},
    )
    return pairs, patches


def keras_seed(seed: int) -> None:
    import keras

    keras.utils.set_random_seed(seed)


def _set_precision(policy: str) -> None:
    import keras

    keras.mixed_precision.set_dtype_policy(policy)


def cpu_has_bf16() -> bool:
    """True if the CPU has native bfloat16 instructions (without them bf16 is emulated and much slower)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return bool(re.search(r"\b(avx512_bf16|amx_bf16)\b", flags))


def measure(args: argparse.Namespace, pairs: Any, patches: Any, results: Results) -> None:
    """Interleaved rounds of pipeline throughput and model step time; then fit with and without the pipeline."""
    import tensorflow as tf

    from mammo_tf.data.pipelines import patch_dataset, sr_dataset

    keras_seed(args.seed)
    sr_ds = sr_dataset(pairs, args.batch, seed=args.seed)
    patch_ds = patch_dataset(patches, args.patch_batch, balanced=True, seed=args.seed)
    iterators = {
        "sr": (iter(sr_ds), args.batch),
        "sr_noaug": (iter(sr_dataset(pairs, args.batch, seed=args.seed, augment=False)), args.batch),
        "patch": (iter(patch_ds), args.patch_batch),
    }
    sr_batch, patch_batch = next(iterators["sr"][0]), next(iterators["patch"][0])
    sr_model, classifier = build_sr_model(), build_classifier()
    models = {"sr_step": (sr_model, sr_batch), "cls_step": (classifier, patch_batch)}
    if results.bf16:
        # A faster consumer is the harder test for the pipeline (bf16 ~1.5-2x faster with
        # avx512_bf16). The policy is global: build under it, then restore float32.
        _set_precision("mixed_bfloat16")
        try:
            models["sr_bf16_step"] = (build_sr_model(), sr_batch)
        finally:
            _set_precision("float32")
    for model, batch in models.values():  # trace and build the optimizer outside the timed rounds
        step_time(model, batch, 2)

    for _ in range(args.rounds):
        for name, (iterator, batch_size) in iterators.items():
            results.add(f"{name}_rate", pipeline_rate(iterator, args.steps, batch_size))
        for name, (model, batch) in models.items():
            results.add(name, step_time(model, batch, args.model_steps))

    # fit() on the real pipeline vs on one batch repeated from memory: the pipeline's cost while it shares the
    # cores with the model. One short warm-up epoch each so tracing is not timed; then interleaved epochs.
    in_memory = {
        name: tf.data.Dataset.from_tensors(batch).repeat() for name, batch in (("sr", sr_batch), ("patch", patch_batch))
    }
    for name, model, dataset in (("sr", sr_model, sr_ds), ("patch", classifier, patch_ds)):
        fit_step_time(model, dataset, 3)
        fit_step_time(model, in_memory[name], 3)
        for _ in range(args.fit_rounds):  # short epochs, alternated, compared pairwise
            for source, data in (("pipeline", dataset), ("memory", in_memory[name])):
                wall, cpu = fit_step_time(model, data, args.fit_steps)
                results.add(f"fit_{name}_{source}", wall)
                results.add(f"fit_{name}_{source}_cpu", cpu)


# --------------------------------------------------------------------------------------------------- report


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.1f} ms"


def _mib(n_bytes: float) -> str:
    return f"{n_bytes / 2**20:.1f} MiB"


def headroom(results: Results, rate_key: str, step_key: str, batch_size: int) -> float:
    """Median over rounds of (samples/s delivered by the pipeline) / (samples/s consumed by the model step)."""
    pairs = zip(results.rounds[rate_key], results.rounds[step_key], strict=True)
    return statistics.median(rate * step / batch_size for rate, step in pairs)


def _sampler_rows(r: Results) -> list[tuple[str, str, str]]:
    t, c = r.timings, r.counts
    classes = "/".join(str(c.get(f"class_{k}", 0)) for k in range(3))
    return [
        ("Catalog load", f"{t['catalog_s']:.2f} s", r.data),
        (
            "`sample_sr_pairs` (NumPy)",
            f"{c['pairs'] / t['sr_sampler_second_s']:.0f} pairs/s",
            f"{c['pairs']} pairs, HR {HR_SIZE}² ×{SCALE}; first call {t['sr_sampler_first_s']:.2f} s, "
            f"second {t['sr_sampler_second_s']:.2f} s",
        ),
        (
            "`sample_patches` (NumPy)",
            f"{c['patches'] / t['patch_sampler_second_s']:.0f} patches/s",
            f"{c['patches']} patches {PATCH_SIZE}² (normal/benign/malignant {classes}); first call "
            f"{t['patch_sampler_first_s']:.2f} s, second {t['patch_sampler_second_s']:.2f} s",
        ),
    ]


def _pipeline_rows(r: Results, args: argparse.Namespace) -> list[tuple[str, str, str]]:
    sr, noaug, patch = r.median("sr_rate"), r.median("sr_noaug_rate"), r.median("patch_rate")
    rounds = f"median of {args.rounds} interleaved rounds of {args.steps} batches"
    return [
        ("`sr_dataset` (augment)", f"{sr:.0f} pairs/s", f"= {sr / args.batch:.0f} batches/s of {args.batch}; {rounds}"),
        ("`sr_dataset` (augment=False)", f"{noaug:.0f} pairs/s", "the gap to the row above is the augmentation"),
        (
            "`patch_dataset` (balanced, augment)",
            f"{patch:.0f} patches/s",
            f"= {patch / args.patch_batch:.0f} batches/s of {args.patch_batch}",
        ),
    ]


def _model_rows(r: Results, args: argparse.Namespace) -> tuple[list[tuple[str, str, str]], dict[str, float]]:
    steps = f"median of {args.rounds} rounds × {args.model_steps} `train_on_batch` calls"
    rows = [
        (
            "SR train step, float32",
            _ms(r.median("sr_step")),
            f"consumes {args.batch / r.median('sr_step'):.0f} pairs/s; {steps}",
        )
    ]
    room = {"SR (float32)": headroom(r, "sr_rate", "sr_step", args.batch)}
    if "sr_bf16_step" in r.rounds:
        bf16 = r.median("sr_bf16_step")
        rows.append(("SR train step, mixed_bfloat16", _ms(bf16), f"consumes {args.batch / bf16:.0f} pairs/s"))
        paired = zip(r.rounds["sr_bf16_step"], r.rounds["sr_step"], strict=True)
        ratio = statistics.median(b / f for b, f in paired)
        note = "median of per-round ratios; < 1 means bf16 is faster"
        rows.append(("**SR step bf16 ÷ float32**", f"**{ratio:.2f}**", note))
        room["SR (bf16)"] = headroom(r, "sr_rate", "sr_bf16_step", args.batch)
    else:
        rows.append(("SR train step, mixed_bfloat16", "skipped", r.bf16_note))
    cls = r.median("cls_step")
    rows.append(("Classifier train step, float32", _ms(cls), f"consumes {args.patch_batch / cls:.0f} patches/s"))
    room["classifier"] = headroom(r, "patch_rate", "cls_step", args.patch_batch)
    rows += [
        (f"**Headroom {name}**", f"**{value:.0f}×**", "pipeline rate ÷ model consumption (median of per-round ratios)")
        for name, value in room.items()
    ]
    return rows, room


def _paired(r: Results, key: str, base: str) -> float:
    return statistics.median(a / b for a, b in zip(r.rounds[key], r.rounds[base], strict=True))


def _fit_rows(r: Results, args: argparse.Namespace) -> tuple[list[tuple[str, str, str]], dict[str, float]]:
    rows, slowdown = [], {}
    for name, label in (("sr", "SR"), ("patch", "classifier")):
        wall = _paired(r, f"fit_{name}_pipeline", f"fit_{name}_memory")
        cpu = _paired(r, f"fit_{name}_pipeline_cpu", f"fit_{name}_memory_cpu")
        slowdown[label] = wall
        pipe, mem = r.median(f"fit_{name}_pipeline"), r.median(f"fit_{name}_memory")
        rows.append(
            (
                f"`fit` {label} step: pipeline ÷ in-memory batch",
                f"{wall:.2f} (CPU {cpu:.2f})",
                f"{_ms(pipe)} vs {_ms(mem)} median wall step; median of {args.fit_rounds} paired epochs of "
                f"{args.fit_steps} steps; in brackets the process-CPU-time ratio",
            )
        )
    return rows, slowdown


def render(results: Results, args: argparse.Namespace) -> str:
    """The Markdown section: command, machine, results table, interpretation."""
    r, c, m = results, results.counts, results.machine
    model_rows, room = _model_rows(r, args)
    fit_rows, slowdown = _fit_rows(r, args)
    memory_rows = [
        (
            "Sampled arrays in memory",
            _mib(c["pairs_bytes"] + c["patches_bytes"]),
            f"SR pairs {_mib(c['pairs_bytes'])}, patches {_mib(c['patches_bytes'])}",
        ),
        ("Peak RSS", f"{peak_rss_mib():.0f} MiB", "whole process: TF runtime, models, datasets, shuffle buffers"),
    ]
    rows = _sampler_rows(r) + _pipeline_rows(r, args) + model_rows + fit_rows + memory_rows
    table = "\n".join(f"| {a} | {b} | {note} |" for a, b, note in rows)
    machine = (
        f"`nproc` {m['nproc']}, {m['cpu']}, {m['ram']} RAM; Python {m['python']}, TensorFlow {m['tensorflow']}, "
        f"Keras {m['keras']}, NumPy {m['numpy']}; {m['date']}; total benchmark time {r.timings['total_s']:.0f} s"
    )
    return f"""{START}
## Input pipeline vs model step (`benchmarks/bench_pipeline.py`)

Command: `{r.command}`

Machine: {machine}.

Data: {r.data}.

| measure | result | note |
| --- | --- | --- |
{table}

The SR model is a compact generator built inside the benchmark (conv 3×3 → 4 residual blocks of 32 filters, no
BatchNorm → sub-pixel ×2 with `depth_to_space` → conv, plus a bilinear global skip; L1 loss, Adam), trained on
batches of {args.batch} LR 48² → HR 96² pairs. The classifier is 3 conv/pool stages (16/32/64 filters), global
pooling and a dense layer on {PATCH_SIZE}² patches, batch {args.patch_batch}. Both stand in for the real models,
which arrive later.

{_interpretation(room, slowdown)}
{END}"""


def _interpretation(room: dict[str, float], slowdown: dict[str, float]) -> str:
    worst_name = min(room, key=room.get)
    worst = room[worst_name]
    if worst > 1:
        first = (
            f"Each pipeline alone delivers at least {worst:.0f}× what its model consumes ({worst_name} is the "
            "tightest), so on this machine the input pipeline is not the bottleneck."
        )
    else:
        first = (
            f"The {worst_name} model consumes faster than its pipeline delivers (headroom {worst:.1f}×): input is the "
            "bottleneck there; batching before augmenting, or more cores, would be the first fixes."
        )
    fits = " and ".join(f"{value:.2f}× ({name})" for name, value in slowdown.items())
    return "\n\n".join(
        [
            first,
            f"Inside `fit` the pipeline runs on the same 2 cores as the model: a step fed by the pipeline took {fits} "
            "the time of a step fed from one batch held in memory. Values near 1 mean the prefetching pipeline "
            "hides behind the model step; above 1 is the CPU time it takes from the model. The box is shared, so "
            "wall-time ratios swing by ±20 % between runs; the process-CPU ratio in brackets is steadier.",
            "The samplers (NumPy) run once before training and their arrays are cached by the pipelines, so their "
            "cost is paid once per run, not per step.",
        ]
    )


def write_section(path: Path, section: str, start: str = START, end: str = END) -> None:
    """Replace the section between ``start`` and ``end`` of ``path`` (or append it; create the file), atomically."""
    from mammo_tf.io.atomic import atomic_file

    text = path.read_text() if path.exists() else HEADING
    if start in text and end in text:
        head, rest = text.split(start, 1)
        text = head + section + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    with atomic_file(path, "w") as handle:
        handle.write(text)


# --------------------------------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=Path("BENCHMARKS.md"), help="Markdown file to update")
    parser.add_argument("--data", type=Path, default=None, help="dataset folder (default: the cached phantom)")
    parser.add_argument("--steps", type=int, default=40, help="batches per timed pipeline round")
    parser.add_argument("--batch", type=int, default=16, help="SR batch size (LR 48² -> HR 96²)")
    parser.add_argument("--patch-batch", type=int, default=32, help="classifier batch size (64² patches)")
    parser.add_argument("--pairs", type=int, default=512, help="SR pairs to sample")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds")
    parser.add_argument("--model-steps", type=int, default=5, help="train steps per model per round")
    parser.add_argument("--fit-steps", type=int, default=5, help="steps per timed fit epoch")
    parser.add_argument("--fit-rounds", type=int, default=4, help="paired fit epochs (pipeline, in-memory)")
    parser.add_argument(
        "--bf16",
        choices=("auto", "on", "off"),
        default="auto",
        help="also time a mixed_bfloat16 SR step; auto: only if the CPU has avx512_bf16/amx_bf16",
    )
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def _bf16_choice(mode: str) -> tuple[bool, str]:
    if mode == "on":
        return True, ""
    if mode == "off":
        return False, "`--bf16 off`"
    if cpu_has_bf16():
        return True, ""
    return False, (
        "CPU lacks avx512_bf16/amx_bf16, so bf16 would be emulated and much slower than float32 (`--bf16 on` forces it)"
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    shown = sys.argv[1:] if argv is None else argv
    command = " ".join([".venv/bin/python", "benchmarks/bench_pipeline.py", *shown])
    bf16, note = _bf16_choice(args.bf16)
    results = Results(command=command, machine=machine_info(), bf16=bf16, bf16_note=note)
    start = time.perf_counter()
    pairs, patches = sample(args, results)
    measure(args, pairs, patches, results)
    results.timings["total_s"] = time.perf_counter() - start
    section = render(results, args)
    write_section(args.out, section)
    print(section)
    print(f"\nwrote {args.out} in {results.timings['total_s']:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
