"""Benchmark the SR GAN's training steps/s (compact and large generator, float32 and bf16, both phases) and
`synth --n 500` against a bare TensorFlow import. Whole-film upscaling is bench_upscale.py's.

Training rounds are interleaved across the configurations, so ratios compare numbers taken under the same
load.
Writes the section between ``<!-- bench_sr:start -->`` and ``<!-- bench_sr:end -->`` of the output file.

    .venv/bin/python benchmarks/bench_sr.py --out BENCHMARKS.md [--rounds 3] [--steps 4]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_pipeline import machine_info, write_section  # noqa: E402

START, END = "<!-- bench_sr:start -->", "<!-- bench_sr:end -->"


def train_rounds(rounds: int, steps: int, bf16: bool) -> dict[str, list[float]]:
    """Seconds per step, per configuration (generator x precision x phase), one list entry per round."""
    import numpy as np
    import tensorflow as tf

    from mammo_tf.config import resolve_sr_config
    from mammo_tf.models.sr import compiled_srgan
    from mammo_tf.training.distribute import set_precision

    batch = 16
    lr = tf.constant(np.random.default_rng(0).random((batch, 48, 48, 1)), tf.float32)
    hr = tf.constant(np.random.default_rng(1).random((batch, 96, 96, 1)), tf.float32)
    data = tf.data.Dataset.from_tensors(((lr, tf.fill([batch], 1 / 255)), hr)).repeat()
    models = {}
    for generator in ("compact", "large"):
        for policy in ("float32", "mixed_bfloat16") if bf16 else ("float32",):
            set_precision(policy)
            models[(generator, policy)] = compiled_srgan(resolve_sr_config("standard", generator=generator))
            set_precision("float32")
    times: dict[str, list[float]] = {}
    for _ in range(rounds):
        for (generator, policy), model in models.items():
            for phase in ("pretrain", "gan"):
                model.phase, model.train_function = phase, None
                model.fit(data, steps_per_epoch=1, epochs=1, verbose=0, shuffle=False)  # trace
                start = time.perf_counter()
                model.fit(data, steps_per_epoch=steps, epochs=1, verbose=0, shuffle=False)
                times.setdefault(f"{generator}|{policy}|{phase}", []).append((time.perf_counter() - start) / steps)
    return times


def synth_timing(model: str, rounds: int) -> dict | None:
    """Seconds for `mammo-tf synth --n 500` (TF start-up included) and for a bare `import tensorflow`, interleaved."""
    import shutil
    import tempfile

    if not (Path("saved_models") / model / "model.keras").is_file():
        return None
    cli = [sys.executable, "-c", "from mammo_tf_cli.main import main; main()"]
    synth, bare = [], []
    for _ in range(rounds):
        out = Path(tempfile.mkdtemp()) / "synth"
        start = time.perf_counter()
        subprocess.run(
            [*cli, "synth", "--n", "500", "--model", model, "--out", str(out)], check=True, capture_output=True
        )
        synth.append(time.perf_counter() - start)
        shutil.rmtree(out.parent)
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import tensorflow"], check=True, capture_output=True)
        bare.append(time.perf_counter() - start)
    return {"synth": synth, "bare": bare, "model": model}


def render(machine: dict, command: str, train: dict, total: float, synth: dict | None = None) -> str:
    med = {k: statistics.median(v) for k, v in train.items()}
    lines = [
        START,
        "## SR GAN: training steps and whole-image upscaling (`benchmarks/bench_sr.py`)",
        "",
        f"Command: `{command}`",
        "",
        f"Machine: `nproc` {machine['nproc']}, {machine['cpu']}, {machine['ram']} RAM; Python {machine['python']}, "
        f"TensorFlow {machine['tensorflow']}, Keras {machine['keras']}; {machine['date']}; total {total:.0f} s.",
        "",
        "Training step, batch 16 of LR 48² -> HR 96² (x2), median of interleaved rounds; 'pretrain' is the L1 step, "
        "'gan' adds the discriminator step and the adversarial + feature-matching terms.",
        "",
        "| generator | precision | phase | s/step | steps/s | ÷ compact float32 same phase |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for key, value in med.items():
        generator, policy, phase = key.split("|")
        ratios = [a / b for a, b in zip(train[key], train[f"compact|float32|{phase}"], strict=True)]
        lines.append(
            f"| {generator} | {policy} | {phase} | {value:.3f} | {1 / value:.2f} | {statistics.median(ratios):.2f} |"
        )
    lines += ["", "Whole-film upscaling: `benchmarks/bench_upscale.py` (its own section per CPU kind)."]
    if synth:
        ratios = [a / b for a, b in zip(synth["synth"], synth["bare"], strict=True)]
        lines += [
            "",
            f"`mammo-tf synth --n 500 --model {synth['model']}` (16-bit PNGs + manifest, TensorFlow start-up "
            f"included): median {statistics.median(synth['synth']):.2f} s (goal < 10 s); a bare `import tensorflow` "
            f"{statistics.median(synth['bare']):.2f} s; **ratio {statistics.median(ratios):.2f}** (goal <= 4), "
            f"median of {len(ratios)} interleaved rounds.",
        ]
    lines.append(END)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("BENCHMARKS.md"))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--bf16", choices=("on", "off"), default="on")
    args = parser.parse_args(argv)
    command = " ".join([".venv/bin/python", "benchmarks/bench_sr.py", *(sys.argv[1:] if argv is None else argv)])
    start = time.perf_counter()
    train = train_rounds(args.rounds, args.steps, args.bf16 == "on")
    synth = synth_timing("synth-64", args.rounds)
    section = render(machine_info(), command, train, time.perf_counter() - start, synth)
    write_section(args.out, section, START, END)
    print(section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
