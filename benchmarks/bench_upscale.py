"""Benchmark whole-film upscaling with the shipped SR model, per engine, on this CPU kind.

Each engine runs in a fresh process (the shipped `sr-x2`, loaded as `upscale` loads it), the 1024² input
tiled and untiled in turns in one process, the film in another: seconds (median of the repeats after a
first call that also compiles), model GFLOP/s (the generator's FLOPs counted from its
layers, sr_engine.generator_flops, divided by the median time), that rate as a fraction of the CPU's
estimated fp32 peak, and the peak memory added (largest resident set sampled every 20 ms while upscaling,
minus the resident set just before, with the model and the input in memory). Engines are compared on the
same inputs in the same run; the section is written per CPU kind (vendor, and whether it has native bfloat16),
so one machine of each kind fills the file.

    .venv/bin/python benchmarks/bench_upscale.py --out BENCHMARKS.md [--repeat 3] [--film 2864x4432]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_pipeline import machine_info, write_section  # noqa: E402

WORKER = r"""
import json, sys, threading, time, os
import numpy as np
from mammo_tf.inference.upscale import load_sr_model, upscale_array
from mammo_tf.inference.sr_engine import generator_flops

def rss_mib():
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

h, w, bits, repeat = (int(v) for v in sys.argv[1:5])
tiles, engine, save = [int(v) for v in sys.argv[5].split(",")], sys.argv[6], sys.argv[7]
model = load_sr_model("sr-x2", engine=engine)
image = np.random.default_rng(0).random((h, w)).astype(np.float32)
base, peak, done = rss_mib(), [0.0], threading.Event()

def sample():
    while not done.is_set():
        peak[0] = max(peak[0], rss_mib())
        time.sleep(0.02)

threading.Thread(target=sample, daemon=True).start()
runs = {tile: {"seconds": [], "peak_mib": 0.0} for tile in tiles}
# the first round traces and, for xla, compiles each tile shape; later rounds alternate the tile settings,
# so a host that slows down or speeds up during the run affects each setting alike (put the smallest-memory
# setting first: its first-round peak is then its own)
for round_ in range(repeat + 1):
    for tile in tiles:
        peak[0] = rss_mib()
        start = time.perf_counter()
        out = upscale_array(model, image, bits, tile=tile or None)
        runs[tile]["seconds"].append(time.perf_counter() - start)
        if round_ == 0:  # memory from the first round only: RSS freed by one setting stays resident for the next
            runs[tile]["peak_mib"] = max(peak[0], rss_mib())
        if save != "-":
            np.save(f"{save}-{tile}.npy", out)
done.set()
print(json.dumps({str(tile): {"first": run["seconds"][0], "seconds": run["seconds"][1:] or run["seconds"],
                              "peak_mib": run["peak_mib"], "base_mib": base, "engine": model.engine,
                              "flops": generator_flops(model.generator, h, w)} for tile, run in runs.items()}))
"""


def run_cases(h: int, w: int, bits: int, tiles: tuple[int, ...], repeat: int, engine: str, save: Path | None) -> dict:
    """{tile: case} from one worker process that alternates the tile settings (0 = untiled)."""
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            WORKER,
            *map(str, (h, w, bits, repeat)),
            ",".join(map(str, tiles)),
            engine,
            str(save or "-"),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    cases = json.loads(out.stdout.strip().splitlines()[-1])
    return {tile: {**cases[str(tile)], "h": h, "w": w, "tile": tile, "bits": bits} for tile in tiles}


def paired_ratio(case: dict, baseline: dict) -> float:
    """Median over rounds of case seconds ÷ baseline seconds, the two timed one after the other (run_cases)."""
    return statistics.median(a / b for a, b in zip(case["seconds"], baseline["seconds"], strict=True))


def cpu_flags() -> set[str]:
    text = Path("/proc/cpuinfo").read_text()
    return set(next(line for line in text.splitlines() if line.startswith("flags")).split(":")[1].split())


def cpu_kind(cpu: str, flags: set[str]) -> tuple[str, str]:
    """(section key, title) per vendor and native bfloat16, on which `upscale`'s auto engine depends: an AMD EPYC
    without it (AVX2) and one with it (AVX-512 + avx512_bf16) are two kinds."""
    vendor = "AMD" if "AMD" in cpu.upper() else "Intel" if "INTEL" in cpu.upper() else "other"
    if "avx512_bf16" in flags or "amx_bf16" in flags:
        return f"{vendor}-bf16", f"{vendor} with native bfloat16"
    return vendor, f"{vendor} without native bfloat16"


def peak_gflops() -> tuple[float, str]:
    """Estimated fp32 peak of the usable cores: cores x clock x FLOPs/cycle (2 FMA units x vector width x 2)."""
    text = Path("/proc/cpuinfo").read_text()
    flags = cpu_flags()
    mhz = float(next(line for line in text.splitlines() if line.startswith("cpu MHz")).split(":")[1])
    width = 16 if "avx512f" in flags else 8 if "avx2" in flags and "fma" in flags else 4
    cores = len(os.sched_getaffinity(0))
    return cores * mhz / 1e3 * 2 * width * 2, f"{cores} cores x {mhz / 1e3:.2f} GHz x {4 * width} FLOP/cycle"


def render(
    machine: dict, command: str, cases: dict, diffs: dict, peak: tuple[float, str], film: str, total: float
) -> tuple[str, str, str]:
    kind, title = cpu_kind(machine["cpu"], cpu_flags())
    start, end = f"<!-- bench_upscale:{kind}:start -->", f"<!-- bench_upscale:{kind}:end -->"
    lines = [
        start,
        f"## Whole-film upscaling on {title} (`benchmarks/bench_upscale.py`)",
        "",
        f"Command: `{command}`",
        "",
        f"Machine: `nproc` {machine['nproc']}, {machine['cpu']}, {machine['ram']} RAM; TensorFlow "
        f"{machine['tensorflow']}, Keras {machine['keras']}; {machine['date']}; total {total:.0f} s. Estimated fp32 "
        f"peak {peak[0]:.0f} GFLOP/s ({peak[1]}; the clock is the one /proc/cpuinfo reports).",
        "",
        "Model: the shipped `sr-x2` (x2; it was trained in mixed_bfloat16). Engines: `keras` runs it as trained, "
        "`xla` as float32 XLA with the linear tail folded (mammo_tf/inference/sr_engine.py); `auto` is what "
        "`upscale` picks here. Random input; first call = trace (+ XLA compile) and run. 1024²: 8-bit, "
        f"{len(cases['1024², xla']['seconds'])} timed repeats, tiled and untiled in turns; film: {film}, 1 timed "
        "repeat. Seconds are `upscale_array`'s whole pass: tiles, model and the search for scanner lines (random "
        "input has none, so nothing is averaged). Memory of the 1024² cases is from their first call.",
        "",
        "| input | engine | tile | first call s | seconds | model GFLOP/s | of peak | peak memory added |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, case in cases.items():
        seconds = statistics.median(case["seconds"])
        rate = case["flops"] / seconds / 1e9
        lines.append(
            f"| {name} | {case['engine']} | {case['tile'] or 'untiled'} | {case['first']:.1f} | {seconds:.2f} | "
            f"{rate:.0f} | {rate / peak[0]:.0%} | {case['peak_mib'] - case['base_mib']:.0f} MiB |"
        )
    median = lambda name: statistics.median(cases[name]["seconds"])  # noqa: E731
    lines += [
        "",
        f"- **xla ÷ keras on the 1024² film (untiled): {median('1024², xla') / median('1024², keras'):.2f}**; "
        f"on the film: {median('film, xla') / median('film, keras'):.2f}.",
        f"- **Tiled ÷ untiled** (1024², tile 768; median of the ratios of calls made one after the other in one "
        f"process): keras {paired_ratio(cases['1024² tiled, keras'], cases['1024², keras']):.2f}, "
        f"xla {paired_ratio(cases['1024² tiled, xla'], cases['1024², xla']):.2f} (goal <= 1.1).",
        f"- Outputs, max |difference| on the 1024² film: xla against keras {diffs['xla-keras']:.1e} "
        f"(the model's bf16 against float32), tiled against untiled (xla) {diffs['tiled-untiled']:.1e}; the test "
        "suite checks xla against the float32 Keras graph within 1e-5.",
        end,
    ]
    return "\n".join(lines), start, end


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("BENCHMARKS.md"))
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--film", default="2864x4432", help="HxW of the 16-bit film case (a CBIS-DDSM size)")
    args = parser.parse_args(argv)
    command = " ".join([".venv/bin/python", "benchmarks/bench_upscale.py", *(sys.argv[1:] if argv is None else argv)])
    film_h, film_w = (int(v) for v in args.film.lower().split("x"))
    started = time.perf_counter()
    cases, saved = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for engine in ("keras", "xla"):
            pair = run_cases(1024, 1024, 8, (768, 0), args.repeat, engine, Path(tmp) / engine)
            for tile, case in pair.items():
                name = f"1024²{' tiled' if tile else ''}, {engine}"
                saved[name], cases[name] = Path(tmp) / f"{engine}-{tile}.npy", case
            cases[f"film, {engine}"] = run_cases(film_h, film_w, 16, (768,), 1, engine, None)[768]
        load = lambda name: np.load(saved[name])  # noqa: E731
        diffs = {
            "xla-keras": float(np.abs(load("1024², xla") - load("1024², keras")).max()),
            "tiled-untiled": float(np.abs(load("1024² tiled, xla") - load("1024², xla")).max()),
        }
    film = f"{film_h}×{film_w} 16-bit random input, tile 768"
    section, start, end = render(
        machine_info(), command, cases, diffs, peak_gflops(), film, time.perf_counter() - started
    )
    write_section(args.out, section, start, end)
    print(section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
