"""`mammo-tf upscale ...`: using trained models on images. Parse, call one library function, print."""

from __future__ import annotations

from pathlib import Path

import click

from mammo_tf_cli.options import INPUT_SPACING_OPTION, NOISE_GATE_OPTION, model_option
from mammo_tf_cli.paths import OutputFolder


def _resample_target(value: str | None) -> str | float | None:
    """--resample-to: None, "model" or a positive size in mm (a bad value: a usage error, exit 2)."""
    if value is None or value == "model":
        return value
    try:
        mm = float(value)
    except ValueError:
        mm = -1.0
    if not mm > 0:
        raise click.BadParameter(f"'model' or a pixel size in mm > 0, got {value!r}", param_hint="--resample-to")
    return mm


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
@click.option(
    "--tile",
    type=click.IntRange(min=0),
    default=768,
    help="Tiles of at most NxN input pixels, of any shape (0 = whole image).",
)
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
@INPUT_SPACING_OPTION
@click.option(
    "--spacing-check",
    type=click.Choice(["warn", "refuse", "off"]),
    default="warn",
    help="When an input's pixels are more than 2x larger or smaller than the model's training inputs "
    "(sr-x2: 0.4 mm, MIAS films box-averaged x2): warn, refuse that input, or say nothing.",
)
@click.option(
    "--resample-to",
    default=None,
    callback=lambda ctx, param, value: _resample_target(value),
    help="Resample each input first: 'model' (the model's training input spacing) or a size in mm "
    "(area averaging to larger pixels, bicubic to smaller); needs a known input spacing.",
)
@NOISE_GATE_OPTION
def upscale(
    inputs, out, model, scale, tile, overlap, risk_map, fmt, bits, engine, scanner_lines, input_spacing,
    spacing_check, resample_to, noise_gate,
) -> None:  # fmt: skip
    """Super-resolve whole mammograms, keeping their bit depth.

    PGM/PNG/TIFF/DICOM in; the same format out (a DICOM in gives a derived DICOM). A failed image prints
    one line and the others are still written; the exit code is then 2.
    """
    from mammo_tf.inference.upscale import upscale_files

    def report(result) -> None:
        if result.error:
            click.echo(f"mammo-tf: error: {result.error}", err=True)
            return
        plan = result.spacing
        if plan is not None and plan.warning:
            click.echo(f"mammo-tf: warning: {plan.warning}", err=True)
        if result.gate is not None and result.gate.bicubic:
            click.echo(f"mammo-tf: warning: {result.source}: {result.gate.describe()}", err=True)
        spacing = ""
        if plan is not None and plan.output_mm is not None:
            resampled = f", resampled to {plan.resample_mm[0]:.3g}" if plan.resample_mm else ""
            spacing = f" (pixels {plan.input_mm[0]:.3g} mm{resampled}, out {plan.output_mm[0]:.3g} mm)"
        click.echo(f"wrote {result.output}" + (f" and {result.risk}" if result.risk else "") + spacing)

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
        input_spacing=input_spacing,
        spacing_check=spacing_check,
        resample_to=resample_to,
        noise_gate=noise_gate,
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
@INPUT_SPACING_OPTION
@click.option(
    "--resample/--no-resample",
    default=True,
    help="Score films of known spacing at the classifier's training spacing (calc-classifier: 0.2 mm), "
    "mapping the heatmap and regions back to the film's pixels.",
)
def detect(inputs, out, model, stride, top, input_spacing, resample) -> None:
    """Calcification heatmaps over whole films, and the top-scoring regions.

    Writes <name>_heatmap.png (255 = probability 1, 0 outside the breast) and detections.csv (rank, row, col
    in array coordinates, score, film score, the film's spacing and the spacing it was scored at). A failed
    film prints one line; the exit code is then 2.
    """
    from mammo_tf.inference.detect import detect_files

    failed = []

    def report(source, output, error) -> None:
        if error:
            failed.append(source)
            click.echo(f"mammo-tf: error: {error}", err=True)
        else:
            click.echo(f"wrote {output}")

    detect_files(
        list(inputs),
        out,
        model=model,
        stride=stride,
        top=top,
        input_spacing=input_spacing,
        resample=resample,
        on_result=report,
    )
    click.echo(f"wrote {out}/detections.csv")
    if failed:
        raise SystemExit(2)
