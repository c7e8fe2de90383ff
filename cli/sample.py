"""`mammo-tf upscale ...`: using trained models on images. Parse, call one library function, print."""

from __future__ import annotations

from pathlib import Path

import click

from mammo_tf_cli.options import model_option
from mammo_tf_cli.paths import OutputFolder


@click.command(name="upscale", context_settings={"show_default": True})
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--out",
    type=OutputFolder(must_be_new_or_empty=False),
    required=True,
    help="Folder for <name>_x<scale>.<ext> (created if missing).",
)
@model_option("sr-x2", "SR model")
@click.option("--scale", type=click.Choice(["2", "4"]), default=None, help="Refuse a model of another scale.")
@click.option("--tile", type=click.IntRange(min=0), default=768, help="Tile side in input pixels (0 = whole image).")
@click.option(
    "--overlap",
    type=click.IntRange(min=0),
    default=None,
    help="Tile overlap in input pixels [default: 2 x the model's receptive radius + 2: seam-free].",
)
@click.option(
    "--risk-map", is_flag=True, help="Also write <name>_x<scale>_risk.png: |SR - bicubic|, 255 = 5 % of full scale."
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["auto", "png", "tiff", "dicom"]),
    default="auto",
    help="auto: the input's format (DICOM in, derived DICOM out); png/tiff: 16-bit for > 8-bit inputs.",
)
@click.option(
    "--bits",
    type=click.Choice(["input", "16"]),
    default="input",
    help="Output depth. input: the input's (an 8-bit film rounds what the model adds to 255 levels); "
    "16: 16-bit PNG/TIFF/PGM/DICOM, which keeps it.",
)
@click.option(
    "--engine",
    type=click.Choice(["auto", "keras", "xla"]),
    default="auto",
    help="keras: the model in its own precision; xla: float32, XLA-compiled (faster on CPUs without native "
    "bfloat16); auto: keras for a bf16 model on a bf16 CPU or a GPU, else xla. Outputs agree within 1e-4 "
    "for a float32 model.",
)
@click.option(
    "--scanner-lines",
    type=click.Choice(["average", "keep"]),
    default="average",
    help="At 1-px dark scanner lines (long straight lines half as bright as their neighbours in the input), "
    "average: the output's mean across the line, since the input cannot say which output row held it; "
    "keep: the model's output as it is.",
)
def upscale(inputs, out, model, scale, tile, overlap, risk_map, fmt, bits, engine, scanner_lines) -> None:
    """Super-resolve whole mammograms, keeping their bit depth.

    PGM/PNG/TIFF/DICOM in; the same format out (a DICOM in gives a derived DICOM). A failed image prints
    one line and the others are still written; the exit code is then 2.
    """
    from mammo_tf.inference.upscale import upscale_files

    def report(result) -> None:
        if result.error:
            click.echo(f"mammo-tf: error: {result.error}", err=True)
        else:
            click.echo(f"wrote {result.output}" + (f" and {result.risk}" if result.risk else ""))

    results = upscale_files(
        list(inputs),
        out,
        model=model,
        scale=int(scale) if scale else None,
        tile=tile or None,
        overlap=overlap,
        with_risk=risk_map,
        fmt=fmt,
        bits=None if bits == "input" else int(bits),
        engine=engine,
        scanner_lines=scanner_lines,
        on_result=report,
    )
    if any(r.error for r in results):
        raise SystemExit(2)


@click.command(name="detect", context_settings={"show_default": True})
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--out",
    type=OutputFolder(must_be_new_or_empty=False),
    required=True,
    help="Folder for <name>_heatmap.png and detections.csv.",
)
@model_option("calc-classifier", "classifier")
@click.option("--stride", type=click.IntRange(min=1), default=16, help="Grid step between scored patches (px).")
@click.option("--top", type=click.IntRange(min=1), default=5, help="Regions listed per film.")
def detect(inputs, out, model, stride, top) -> None:
    """Calcification heatmaps over whole films, and the top-scoring regions.

    Writes <name>_heatmap.png (255 = probability 1, 0 outside the breast) and detections.csv (rank, row, col
    in array coordinates, score, film score). A failed film prints one line; the exit code is then 2.
    """
    from mammo_tf.inference.detect import detect_files

    failed = []

    def report(source, output, error) -> None:
        if error:
            failed.append(source)
            click.echo(f"mammo-tf: error: {error}", err=True)
        else:
            click.echo(f"wrote {output}")

    detect_files(list(inputs), out, model=model, stride=stride, top=top, on_result=report)
    click.echo(f"wrote {out}/detections.csv")
    if failed:
        raise SystemExit(2)
