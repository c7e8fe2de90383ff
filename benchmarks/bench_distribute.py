"""Benchmark every trainer's training steps/s: --strategy default against mirrored on 2 logical CPU devices,
and float32 against mixed_bfloat16 on one device where the CPU has native bfloat16.

On a CPU the two logical devices share the same cores, so mirrored is expected to be no faster than one device
(each step runs two half batches and all-reduces the gradients): it is the path the tests check for
correctness (tests/test_distribute.py), not a speed-up. On a machine with several GPUs each replica has its own.

bfloat16: `--precision auto` picks mixed_bfloat16 only where the CPU has avx512_bf16 or amx_bf16; elsewhere it
is emulated and slower, so `--bf16 auto` times it only there (`--bf16 on` forces it, `off` skips it).

Each trainer is built as its run would be (the trainer's own dataset and model at --preset, on the default
phantom unless --data), inside the strategy's scope; after a warm-up fit (tracing), `fit` of --steps steps is
timed. Rounds are interleaved over the variants (strategy, precision), so a ratio compares numbers taken under
the same load; the report gives medians over rounds. Prints a Markdown section; with --out it also replaces the section
between ``<!-- bench_distribute:start -->`` and ``<!-- bench_distribute:end -->`` of that file.

    .venv/bin/python benchmarks/bench_distribute.py [--preset quick] [--steps 10] [--rounds 2] [--bf16 auto]
        [--out FILE]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_pipeline import _bf16_choice, cpu_has_bf16, machine_info, write_section  # noqa: E402

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow is imported inside functions, after this

START, END = "<!-- bench_distribute:start -->", "<!-- bench_distribute:end -->"
FLOAT32, BF16 = ("default", "float32"), ("default", "mixed_bfloat16")  # (strategy, precision) variants
MIRRORED = ("mirrored", "float32")
DEVICES = 2
WARMUP_STEPS = 2
# kind -> (train function in mammo_tf.training, the phases timed: SR's two phases train different steps)
TRAINERS = {
    "sr": ("sr_trainer.train_sr", ("pretrain", "gan")),
    "gan": ("gan_trainer.train_gan", ("gan",)),
    "classifier": ("classifier_trainer.train_classifier", ("train",)),
    "insert": ("insert_trainer.train_insert", ("refine",)),
}
# The default phantom's 16 films hold too little normal tissue for the insert presets' renderings; how many
# there are changes the data, not the cost of a step.
OVERRIDES = {"insert": {"n_rendered": 128}}


def configure_devices(n: int) -> None:
    """n logical CPU devices (before TensorFlow initialises): what mirrored spreads over without a GPU."""
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * n)


def make_trainer(kind: str, data: str | None, preset: str, strategy: str, precision: str):
    """The Trainer a `kind` run would train (its data sampled, its config resolved), without running it: the
    lifecycle's `train` is replaced by one that hands the trainer back."""
    import importlib

    module, function = TRAINERS[kind][0].split(".")
    train = getattr(importlib.import_module(f"mammo_tf.training.{module}"), function)
    with tempfile.TemporaryDirectory() as folder, mock.patch("mammo_tf.training.loop.train", lambda t, *a, **k: t):
        run = Path(folder) / "run"
        overrides = OVERRIDES.get(kind, {})
        return train(data, run, preset=preset, strategy=strategy, precision=precision, verbose=0, **overrides)


def build(kind: str, data: str | None, preset: str, variant: tuple[str, str]) -> tuple:
    """(model, dataset, phases) of one trainer under one (strategy, precision), built as training/loop.py does."""
    from mammo_tf.training.distribute import distribute_rows, precision_and_seed, resolve_strategy
    from mammo_tf.training.loop import _build_optimizers

    strategy, precision = variant
    trainer = make_trainer(kind, data, preset, strategy, precision)
    scope = resolve_strategy(strategy)
    dataset = distribute_rows(trainer.dataset(), scope)
    with precision_and_seed(precision, trainer.seed), scope.scope():
        model = trainer.build()
        _build_optimizers(model)
    phases = {phase.name: phase for phase in trainer.phases(0)}
    return trainer, model, dataset, [phases[name] for name in TRAINERS[kind][1]]


def seconds_per_step(trainer, model, dataset, phase, steps: int, retrace: bool, precision: str) -> float:
    """Wall seconds per step of `fit` over `steps` steps of `phase`, after a warm-up fit (which traces the step
    when `retrace`: a model that switches phases between calls), under the global policy `precision`."""
    from mammo_tf.training.distribute import distributed_fit, precision_and_seed

    trainer.enter_phase(model, phase)
    if retrace:
        model.train_function = None
    with precision_and_seed(precision, trainer.seed), distributed_fit(model):  # fit_in_run's: one iterator a fit
        model.fit(dataset, steps_per_epoch=WARMUP_STEPS, epochs=1, verbose=0, shuffle=False)
        start = time.perf_counter()
        model.fit(dataset, steps_per_epoch=steps, epochs=1, verbose=0, shuffle=False)
    return (time.perf_counter() - start) / steps


def measure(
    data: str | None, preset: str, steps: int, rounds: int, variants: tuple[tuple[str, str], ...]
) -> dict[tuple[str, str, tuple[str, str]], list[float]]:
    """(kind, phase, variant) -> seconds per step, one entry per round (rounds interleaved over the variants)."""
    built = {(kind, v): build(kind, data, preset, v) for kind in TRAINERS for v in variants}
    times: dict = {}
    for _ in range(rounds):
        for kind in TRAINERS:
            for variant in variants:
                trainer, model, dataset, phases = built[(kind, variant)]
                for phase in phases:
                    retrace = len(phases) > 1
                    seconds = seconds_per_step(trainer, model, dataset, phase, steps, retrace, variant[1])
                    times.setdefault((kind, phase.name, variant), []).append(seconds)
    return times


def _rate_and_ratio(times: dict, kind: str, phase: str, variant: tuple[str, str]) -> tuple[str, str]:
    """(steps/s of `variant`, its speed ÷ float32 on one device: median of per-round ratios), '-' if not timed."""
    if (kind, phase, variant) not in times:
        return "-", "-"
    mine, base = times[(kind, phase, variant)], times[(kind, phase, FLOAT32)]
    ratio = statistics.median(b / m for b, m in zip(base, mine, strict=True))
    return f"{1 / statistics.median(mine):.2f}", f"{ratio:.2f}"


def _bf16_kind() -> str:
    if cpu_has_bf16():
        return ", native on this CPU (avx512_bf16/amx_bf16)."
    return ", emulated on this CPU (no avx512_bf16/amx_bf16): what `--precision auto` avoids by choosing float32 here."


def render(
    machine: dict, command: str, preset: str, times: dict, total: float, bf16_note: str, load: tuple[float, float]
) -> str:
    """The Markdown section: steps/s per trainer and phase on one device in float32, mirrored and bf16, and
    their speed ratios to the first (> 1: faster)."""
    lines = [
        START,
        "## tf.distribute and bfloat16: steps/s per trainer (`benchmarks/bench_distribute.py`)",
        "",
        f"Command: `{command}`",
        "",
        f"Machine: `nproc` {machine['nproc']}, {machine['cpu']}, {machine['ram']} RAM; Python {machine['python']}, "
        f"TensorFlow {machine['tensorflow']}, Keras {machine['keras']}; {machine['date']}; total {total:.0f} s; "
        f"1-minute load average {load[0]:.1f} at the start, {load[1]:.1f} at the end (other processes slow every "
        "variant alike; the ratios come from interleaved rounds).",
        "",
        f"Preset `{preset}`, the same global batch in every variant; median of interleaved rounds; ratios are "
        "speeds against one device in float32 (> 1: faster). Mirrored runs on 2 logical devices sharing the "
        "same cores: it is the correctness path, not a speed-up. bfloat16: mixed_bfloat16 on one device"
        + (f" (not timed: {bf16_note})." if bf16_note else _bf16_kind()),
        "",
        "| trainer | phase | float32 steps/s | mirrored steps/s | mirrored ÷ float32 | bf16 steps/s | bf16 ÷ float32 |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for kind, (_, phases) in TRAINERS.items():
        for phase in phases:
            base = 1 / statistics.median(times[(kind, phase, FLOAT32)])
            mirrored, bf16 = (_rate_and_ratio(times, kind, phase, v) for v in (MIRRORED, BF16))
            lines.append(f"| {kind} | {phase} | {base:.2f} | {' | '.join(mirrored)} | {' | '.join(bf16)} |")
    lines.append(END)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=None, help="a dataset folder (default: the cached phantom)")
    parser.add_argument("--preset", default="quick")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--bf16", choices=("auto", "on", "off"), default="auto", help="also time mixed_bfloat16; auto: where native"
    )
    parser.add_argument("--out", type=Path, default=None, help="also write the section into this Markdown file")
    args = parser.parse_args(argv)
    bf16, bf16_note = _bf16_choice(args.bf16)
    variants = (FLOAT32, MIRRORED, *((BF16,) if bf16 else ()))
    command = " ".join(
        [".venv/bin/python", "benchmarks/bench_distribute.py", *(sys.argv[1:] if argv is None else argv)]
    )
    configure_devices(DEVICES)
    start, load = time.perf_counter(), os.getloadavg()[0]
    with contextlib.redirect_stdout(sys.stderr):  # Keras' and TensorFlow's chatter stays off the report
        times = measure(args.data, args.preset, args.steps, args.rounds, variants)
    total, load = time.perf_counter() - start, (load, os.getloadavg()[0])
    section = render(machine_info(), command, args.preset, times, total, bf16_note, load)
    if args.out is not None:
        write_section(args.out, section, START, END)
    print(section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
