"""Benchmark every trainer's training steps/s under --strategy default and mirrored on 2 logical CPU devices.

On a CPU the two logical devices share the same cores, so mirrored is expected to be no faster than one device
(each step runs two half batches and all-reduces the gradients): it is the path the tests check for
correctness (tests/test_distribute.py), not a speed-up. On a machine with several GPUs each replica has its own.

Each trainer is built as its run would be (the trainer's own dataset and model at --preset, on the default
phantom unless --data, float32), inside the strategy's scope; after a warm-up fit (tracing), `fit` of --steps
steps is timed. Rounds are interleaved over the strategies, so a ratio compares numbers taken under the same
load; the report gives medians over rounds. Prints a Markdown section; with --out it also replaces the section
between ``<!-- bench_distribute:start -->`` and ``<!-- bench_distribute:end -->`` of that file.

    .venv/bin/python benchmarks/bench_distribute.py [--preset quick] [--steps 10] [--rounds 2] [--out FILE]
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
from bench_pipeline import machine_info, write_section  # noqa: E402

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow is imported inside functions, after this

START, END = "<!-- bench_distribute:start -->", "<!-- bench_distribute:end -->"
STRATEGIES = ("default", "mirrored")
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


def make_trainer(kind: str, data: str | None, preset: str, strategy: str):
    """The Trainer a `kind` run would train (its data sampled, its config resolved), without running it: the
    lifecycle's `train` is replaced by one that hands the trainer back."""
    import importlib

    module, function = TRAINERS[kind][0].split(".")
    train = getattr(importlib.import_module(f"mammo_tf.training.{module}"), function)
    with tempfile.TemporaryDirectory() as folder, mock.patch("mammo_tf.training.loop.train", lambda t, *a, **k: t):
        run = Path(folder) / "run"
        overrides = OVERRIDES.get(kind, {})
        return train(data, run, preset=preset, strategy=strategy, precision="float32", verbose=0, **overrides)


def build(kind: str, data: str | None, preset: str, strategy: str) -> tuple:
    """(model, dataset, phases) of one trainer under one strategy, built the way training/loop.py builds them."""
    from mammo_tf.training.distribute import distribute_rows, precision_and_seed, resolve_strategy
    from mammo_tf.training.loop import _build_optimizers

    trainer = make_trainer(kind, data, preset, strategy)
    scope = resolve_strategy(strategy)
    dataset = distribute_rows(trainer.dataset(), scope)
    with precision_and_seed("float32", trainer.seed), scope.scope():
        model = trainer.build()
        _build_optimizers(model)
    phases = {phase.name: phase for phase in trainer.phases(0)}
    return trainer, model, dataset, [phases[name] for name in TRAINERS[kind][1]]


def seconds_per_step(trainer, model, dataset, phase, steps: int, retrace: bool) -> float:
    """Wall seconds per step of `fit` over `steps` steps of `phase`, after a warm-up fit (which traces the step
    when `retrace`: a model that switches phases between calls)."""
    from mammo_tf.training.distribute import distributed_fit

    trainer.enter_phase(model, phase)
    if retrace:
        model.train_function = None
    with distributed_fit(model):  # what fit_in_run does: one iterator per fit, as in a run
        model.fit(dataset, steps_per_epoch=WARMUP_STEPS, epochs=1, verbose=0, shuffle=False)
        start = time.perf_counter()
        model.fit(dataset, steps_per_epoch=steps, epochs=1, verbose=0, shuffle=False)
    return (time.perf_counter() - start) / steps


def measure(data: str | None, preset: str, steps: int, rounds: int) -> dict[str, list[float]]:
    """'kind|phase|strategy' -> seconds per step, one entry per round (rounds interleaved over strategies)."""
    built = {(kind, s): build(kind, data, preset, s) for kind in TRAINERS for s in STRATEGIES}
    times: dict[str, list[float]] = {}
    for _ in range(rounds):
        for kind in TRAINERS:
            for strategy in STRATEGIES:
                trainer, model, dataset, phases = built[(kind, strategy)]
                for phase in phases:
                    seconds = seconds_per_step(trainer, model, dataset, phase, steps, retrace=len(phases) > 1)
                    times.setdefault(f"{kind}|{phase.name}|{strategy}", []).append(seconds)
    return times


def render(machine: dict, command: str, preset: str, times: dict[str, list[float]], total: float) -> str:
    """The Markdown section: steps/s per trainer and phase, default and mirrored, and their ratio."""
    lines = [
        START,
        "## tf.distribute: steps/s per trainer, one device against mirrored on 2 logical CPUs "
        "(`benchmarks/bench_distribute.py`)",
        "",
        f"Command: `{command}`",
        "",
        f"Machine: `nproc` {machine['nproc']}, {machine['cpu']}, {machine['ram']} RAM; Python {machine['python']}, "
        f"TensorFlow {machine['tensorflow']}, Keras {machine['keras']}; {machine['date']}; total {total:.0f} s.",
        "",
        f"Preset `{preset}`, float32, the same global batch under both strategies; median of interleaved rounds. "
        "The 2 logical devices share the same cores: mirrored is the correctness path, not a speed-up.",
        "",
        "| trainer | phase | default steps/s | mirrored steps/s | mirrored ÷ default |",
        "| --- | --- | --- | --- | --- |",
    ]
    for kind, (_, phases) in TRAINERS.items():
        for phase in phases:
            default, mirrored = (times[f"{kind}|{phase}|{s}"] for s in STRATEGIES)
            ratio = statistics.median(d / m for d, m in zip(default, mirrored, strict=True))
            lines.append(
                f"| {kind} | {phase} | {1 / statistics.median(default):.2f} | "
                f"{1 / statistics.median(mirrored):.2f} | {ratio:.2f} |"
            )
    lines.append(END)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=None, help="a dataset folder (default: the cached phantom)")
    parser.add_argument("--preset", default="quick")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None, help="also write the section into this Markdown file")
    args = parser.parse_args(argv)
    command = " ".join(
        [".venv/bin/python", "benchmarks/bench_distribute.py", *(sys.argv[1:] if argv is None else argv)]
    )
    configure_devices(DEVICES)
    start = time.perf_counter()
    with contextlib.redirect_stdout(sys.stderr):  # Keras' and TensorFlow's chatter stays off the report
        times = measure(args.data, args.preset, args.steps, args.rounds)
    section = render(machine_info(), command, args.preset, times, time.perf_counter() - start)
    if args.out is not None:
        write_section(args.out, section, START, END)
    print(section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
