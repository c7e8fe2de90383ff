"""Click options that several commands share, declared once so their names, types and checks agree."""

from __future__ import annotations

import click

from mammo_tf.config import preset_names
from mammo_tf_cli.paths import OutputFolder

PRECISION_OPTION = click.option(
    "--precision",
    type=click.Choice(["auto", "float32", "mixed_bfloat16"]),
    default="auto",
    help="auto: bf16 only on a GPU or a CPU with avx512_bf16/AMX, else float32 (recorded in config.json).",
)
STRATEGY_OPTION = click.option(
    "--strategy",
    type=click.Choice(["auto", "default", "mirrored", "multiworker"]),
    default="auto",
    help="tf.distribute strategy. auto: mirrored when several GPUs are visible, else default (one device); "
    "mirrored: all local GPUs, or the logical CPU devices when several are configured (2 logical CPUs on the "
    "same cores are a correctness path, slower than one device, not a speed-up); multiworker: the processes "
    "TF_CONFIG lists, each started with the same command (docs/training.md), the chief writing the run "
    "directory. Recorded in config.json; --resume may change it.",
)
INPUT_SPACING_OPTION = click.option(
    "--input-spacing",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="The inputs' pixel size in mm, for files that state none (PGM/PNG/TIFF), or to override a DICOM's "
    "[default: the DICOM header's, else unknown].",
)
SPACING_MM_OPTION = click.option(
    "--spacing-mm",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Train at this pixel size (mm): images at another spacing are resampled first, and the model records "
    "it; needs every image's spacing (DICOM header, MIAS 0.2, or a manifest spacing_mm column) [default: the "
    "images as they are].",
)


class NoiseGate(click.ParamType):
    """--noise-gate: 'auto', 'off' (None) or a noise ceiling in 8-bit grey levels (> 0)."""

    name = "auto|off|GREYS"

    def convert(self, value, param, ctx):
        if value is None or isinstance(value, float) or value == "auto":
            return value
        if str(value).lower() == "off":
            return None
        try:
            number = float(value)
        except ValueError:
            number = float("nan")
        if not number > 0:
            self.fail(f"{value!r} is neither auto, off nor a positive number of grey levels", param, ctx)
        return number


NOISE_GATE_OPTION = click.option(
    "--noise-gate",
    type=NoiseGate(),
    default="auto",
    help="A film noisier than the model's training films (noise estimated on the input, in 8-bit grey levels; "
    "sr-x2: above 1.19, MIAS films are 0.7-1.2) is written as bicubic: the model would sharpen noise it never "
    "saw into calcification-like specks. So is a JPEG-coded film (its 8x8 block grid), whenever the gate is on. "
    "auto: the model's recorded ceiling (none recorded: off); off: super-resolve every film; a number: that "
    "ceiling.",
)
SEED_OPTION = click.option(
    "--seed", type=int, default=0, help="Drives sampling, shuffling, augmentation and initialisation."
)


def preset_option(kind: str, default: str, help: str):
    """--preset NAME: the presets mammo_tf.config offers for `kind` ('sr', 'classifier', 'synthesis', 'study')."""
    return click.option("--preset", type=click.Choice(list(preset_names(kind))), default=default, help=help)


def steps_option(help: str = "Training steps [default: the preset's]."):
    """--steps N, N >= 1."""
    return click.option("--steps", type=click.IntRange(min=1), default=None, help=help)


def model_option(default_name: str, what: str = "model"):
    """--model NAME|PATH, resolved by mammo_tf.inference.registry (a shipped name, a .keras file, a run)."""
    return click.option(
        "--model",
        default=None,
        help=f"Shipped {what} name, a .keras file or a run directory [default: {default_name}].",
    )


def resumable_run(function):
    """--run-dir (new or empty, or an existing run) and --resume, for trainers that checkpoint."""
    function = click.option("--resume", is_flag=True, help="Continue the run in --run-dir from its last checkpoint.")(
        function
    )
    return click.option(
        "--run-dir",
        type=OutputFolder(must_be_new_or_empty=False),
        required=True,
        help="Run directory (new or empty, or an existing run with --resume).",
    )(function)
