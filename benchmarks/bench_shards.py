"""Benchmark: reading a dataset's images from shards (`mammo-tf data shard`) against from its source files.

Two datasets, each read whole with `read_image` (what every sampler calls), in one process:
- MIAS-like 8-bit PGMs: data/mias when it is there, else the cached 1024² phantom;
- 16-bit RLE-compressed DICOMs written here into a temporary folder (a phantom film resized to
  2048×1664, 16-bit with noise; RLE Lossless, decoded by pydicom), with a manifest.csv: the
  decompression is the cost shards remove.

Each dataset is sharded once (time reported), then read in interleaved rounds: source, shards,
source, shards, ... The first shard pass of the process also checks every shard file's SHA-256
against the manifest (once per file and process) and is reported apart; the speed-up is the median
over the later rounds of source time ÷ shard time, both with the files in the page cache. Pixels
read from shards are checked equal to the source's before timing. Results replace only this
script's section of the output Markdown file.

    .venv/bin/python benchmarks/bench_shards.py --out BENCHMARKS.md [--pgm DIR] [--dicoms 12] [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_pipeline import machine_info, write_section  # noqa: E402

START, END = "<!-- bench_shards:start -->", "<!-- bench_shards:end -->"
HEADER = (
    "| data | images | source / shards on disk | `data shard` | source ms/image | shards ms/image "
    "| first shard pass ms/image | speed-up |\n| --- | --- | --- | --- | --- | --- | --- | --- |"
)
DICOM_SHAPE = (2048, 1664)  # rows, columns: a 0.1 mm film of 205 x 166 mm


def write_rle_dicoms(folder: Path, n: int) -> Path:
    """n 16-bit RLE Lossless DICOMs of DICOM_SHAPE and a manifest.csv naming them; returns the folder."""
    import cv2
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import DigitalMammographyXRayImageStorageForPresentation, ExplicitVRLittleEndian, RLELossless

    from mammo_tf.data.phantom import render_phantom_image

    rng = np.random.default_rng(0)
    rows = ["path,patient_id"]
    for index in range(1, n + 1):
        film, _ = render_phantom_image(index, 0, 1024)
        big = cv2.resize(film, DICOM_SHAPE[::-1], interpolation=cv2.INTER_CUBIC)
        stored = np.clip(np.round(big * 60000 + rng.normal(0, 200, big.shape)), 0, 65535).astype(np.uint16)
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = DigitalMammographyXRayImageStorageForPresentation
        ds.Modality, ds.PixelSpacing = "MG", [0.1, 0.1]
        ds.set_pixel_data(stored, "MONOCHROME2", 16)
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.compress(RLELossless)
        ds.save_as(folder / f"film{index:03d}.dcm", enforce_file_format=True)
        rows.append(f"film{index:03d}.dcm,P{(index + 1) // 2:03d}")
    (folder / "manifest.csv").write_text("\n".join(rows) + "\n")
    return folder


def read_all(paths: list[str]) -> float:
    """Seconds to read every image (float32 [H, W] in [0, 1])."""
    from mammo_tf.io.images import read_image

    start = time.perf_counter()
    for path in paths:
        read_image(path)
    return time.perf_counter() - start


def measure(name: str, data: Path, work: Path, rounds: int) -> dict:
    """Shard `data` into `work`, check the pixels agree, then time interleaved passes over both."""
    import mammo_tf.io.shard_images as shard_images
    from mammo_tf.data.catalog import load_catalog
    from mammo_tf.data.shards import write_shards
    from mammo_tf.io.images import read_image

    source = load_catalog(data)
    start = time.perf_counter()
    manifest = write_shards(source, work / f"{name}-shards", progress=False)
    write_s = time.perf_counter() - start
    shards = load_catalog(work / f"{name}-shards")
    src_paths, shard_paths = list(source.images["path"]), list(shards.images["path"])
    for a, b in zip(src_paths, shard_paths, strict=True):
        assert np.array_equal(read_image(a).pixels, read_image(b).pixels), b
    shard_images._verified.clear()  # private: so the first timed pass checks every file's SHA-256 again
    times: dict[str, list[float]] = {"source": [], "shards": []}
    first_shards = 0.0
    for index in range(rounds + 1):
        src = read_all(src_paths)
        sh = read_all(shard_paths)
        if index == 0:
            first_shards = sh
            continue
        times["source"].append(src)
        times["shards"].append(sh)
    n = len(src_paths)
    ratios = [s / t for s, t in zip(times["source"], times["shards"], strict=True)]
    return {
        "name": name,
        "images": n,
        "shape": f"{int(source.images['height'].iloc[0])}×{int(source.images['width'].iloc[0])}",
        "bits": int(source.images["bit_depth"].iloc[0]),
        "source_mib": sum(Path(p).stat().st_size for p in src_paths) / 2**20,
        "shard_mib": sum(f["bytes"] for f in manifest["files"]) / 2**20,
        "files": len(manifest["files"]),
        "write_s": write_s,
        "source_ms": 1000 * statistics.median(times["source"]) / n,
        "shards_ms": 1000 * statistics.median(times["shards"]) / n,
        "first_ms": 1000 * first_shards / n,
        "speedup": statistics.median(ratios),
        "speedup_range": (min(ratios), max(ratios)),
    }


def render(results: list[dict], command: str, machine: dict, rounds: int, total_s: float, pgm_note: str) -> str:
    rows = []
    for r in results:
        rows.append(
            f"| {r['name']} | {r['images']} × {r['shape']}, {r['bits']}-bit | {r['source_mib']:.1f} / "
            f"{r['shard_mib']:.1f} MiB ({r['files']} file{'s' if r['files'] != 1 else ''}) | {r['write_s']:.1f} s | "
            f"{r['source_ms']:.2f} | "
            f"{r['shards_ms']:.2f} | {r['first_ms']:.2f} | **{r['speedup']:.2f}×** "
            f"({r['speedup_range'][0]:.2f}–{r['speedup_range'][1]:.2f}) |"
        )
    goals = {"PGM": 1.0, "RLE DICOM": 3.0}
    verdicts = "; ".join(
        f"{r['name']} {r['speedup']:.2f}× ({'met' if r['speedup'] >= goals[r['name']] else 'NOT met'})" for r in results
    )
    machine_text = (
        f"`nproc` {machine['nproc']}, {machine['cpu']}, {machine['ram']} RAM; Python {machine['python']}, "
        f"NumPy {machine['numpy']}; {machine['date']}; total {total_s:.0f} s"
    )
    return f"""{START}
## Reading images: shards against source files (`benchmarks/bench_shards.py`)

Command: `{command}`

Machine: {machine_text}.

Every image read once per pass with `read_image` (float32 [H, W] in [0, 1], what the samplers call),
files in the page cache; ms per image are medians of {rounds} interleaved rounds (source, shards, ...);
"first shard pass" is the process's first pass, which also checks each shard file's SHA-256 against
`shards.json`; the speed-up is the median of the per-round ratios source ÷ shards (range in brackets).
PGMs: {pgm_note}. DICOMs: written by the benchmark, RLE Lossless, decoded by pydicom's RLE decoder.

{HEADER}
{chr(10).join(rows)}

Goal (issue 30): shards at least as fast as the source for PGM (speed-up ≥ 1) and at least 3× for
compressed DICOM: {verdicts}. The project installs no faster RLE plugin (pylibjpeg-rle), so pydicom's own
decoder is the source's cost here; a shard read is one seek, one read, two CRCs and the conversion to float32.
{END}"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("BENCHMARKS.md"), help="Markdown file to update.")
    parser.add_argument("--pgm", type=Path, default=None, help="PGM dataset [default: data/mias, else the phantom].")
    parser.add_argument("--dicoms", type=int, default=12, help="RLE DICOMs to write and read.")
    parser.add_argument("--rounds", type=int, default=5, help="Timed rounds after the first pass.")
    args = parser.parse_args(argv)
    shown = sys.argv[1:] if argv is None else argv
    command = " ".join([".venv/bin/python", "benchmarks/bench_shards.py", *shown])
    start = time.perf_counter()
    pgm = args.pgm
    if pgm is None:
        from mammo_tf.data.phantom import cached_phantom_dir

        pgm = Path("data/mias") if Path("data/mias/Info.txt").is_file() else cached_phantom_dir()
    pgm_note = "mini-MIAS (data/mias)" if pgm == Path("data/mias") else f"{pgm}"
    with tempfile.TemporaryDirectory(prefix="bench-shards-") as tmp:
        work = Path(tmp)
        (work / "dicom").mkdir()
        dicoms = write_rle_dicoms(work / "dicom", args.dicoms)
        results = [
            measure("PGM", pgm, work, args.rounds),
            measure("RLE DICOM", dicoms, work, args.rounds),
        ]
    section = render(results, command, machine_info(), args.rounds, time.perf_counter() - start, pgm_note)
    write_section(args.out, section, START, END)
    print(section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
