"""Whole-image SR: any size, tiled on the host, the input's bit depth (and DICOM-ness) kept.

    upscale_array(model, pixels, bit_depth)  float32 [h, w] -> float32 [h*s, w*s], both in [0, 1]
    gated_upscale(model, pixels, bit_depth, noise_gate)  that, or bicubic for a film noisier than the model
                                              was trained on (noise_gate.py): what upscale writes
    upscale_files(inputs, out_dir, ...)       one output per input; a failed image does not stop the others

The quantisation step of the input (1 / (2^bits - 1)) goes to the generator's consistency projection, so the
output box-averages back to the input within half a grey level.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mammo_tf.data.degrade import quant_step_for
from mammo_tf.errors import MammoError, located
from mammo_tf.inference.noise_gate import GateDecision, gate, model_noise_ceiling, resolve_gate
from mammo_tf.inference.spacing import SpacingPlan, plan_spacing, training_spacing
from mammo_tf.inference.tiling import tiled_apply

DEFAULT_TILE = 768
FORMATS = ("auto", "png", "tiff", "dicom")
RISK_FULL_SCALE = 0.05  # a risk-map pixel of 255 means the SR departs from bicubic by >= 5 % of full scale


@dataclass(frozen=True)
class SRModel:
    """A loaded SR generator with what inference needs to know about it.

    engine: 'keras' (the generator as trained, graph mode) or 'xla' (float32, XLA, folded tail); see sr_engine.
    hr_spacing_mm: mm per pixel of the HR images it trained on (spacing.training_spacing); None: unknown.
    noise_ceiling_greys: the noisiest input it was trained on (noise_gate.model_noise_ceiling); None: unknown.
    """

    generator: object
    scale: int
    margin: int  # receptive radius in LR pixels (tiles blend outside it)
    model_id: str
    path: Path | None
    engine: str = "keras"
    hr_spacing_mm: float | None = None
    noise_ceiling_greys: float | None = None

    def __call__(self, tiles: np.ndarray, quant_step: float) -> np.ndarray:
        """float32 [B, t, t, 1] -> float32 [B, t*s, t*s, 1] through the compiled engine."""
        steps = np.full([len(tiles)], quant_step, np.float32)
        return np.asarray(_runner(self.generator, self.engine)(tiles, steps))


_RUNNERS: dict[tuple[int, str], object] = {}


def _runner(generator, engine: str):
    """One compiled callable per (generator, engine): graph mode fuses conv + bias + ReLU (~2x eager on CPU)."""
    import tensorflow as tf

    key = (id(generator), engine)
    if key not in _RUNNERS:
        _RUNNERS.clear()  # one model at a time is all inference needs
        if engine == "xla":
            from mammo_tf.inference.sr_engine import XLAGenerator

            _RUNNERS[key] = XLAGenerator(generator)
        else:
            _RUNNERS[key] = tf.function(lambda x, q: generator([x, q], training=False), reduce_retracing=True)
    return _RUNNERS[key]


BICUBIC_RADIUS = 2  # LR pixels a bicubic (4-tap) interpolation reaches


def receptive_margin(generator) -> int:
    """The generator's receptive radius in LR pixels: how far from an LR pixel an output pixel of its block
    can see (the tile margin for exact tiling, inference/tiling.py).

    Walked back from the output: a conv adds its radius at its own resolution; a pixel shuffle by r maps an
    offset d to ceil(d / r) at the coarser resolution (the worst position inside a block). The bicubic skip
    from the input runs beside the network, so it counts as max(network, BICUBIC_RADIUS); a bicubic layer
    anywhere else is added. The consistency projection works within blocks and adds nothing. For the
    compact generator (19 LR convs, one HR conv): 20, where counting every conv at LR plus bicubic gave 23.
    """
    import keras

    from mammo_tf.models.blocks import Interpolate, PixelShuffle

    offset, beside = 0, 0
    for layer in reversed(generator.layers):
        if isinstance(layer, keras.layers.Conv2D):
            offset += (int(layer.kernel_size[0]) // 2) * int(layer.dilation_rate[0])
        elif isinstance(layer, PixelShuffle):
            offset = -(-offset // layer.factor)
        elif isinstance(layer, Interpolate):
            if layer.input is generator.inputs[0]:
                beside = BICUBIC_RADIUS
            else:
                offset += BICUBIC_RADIUS
    return max(offset, beside)


def load_sr_model(
    spec: str | Path | None = None, *, scale: int | None = None, command: str = "upscale", engine: str = "auto"
) -> SRModel:
    """The SR generator named by `spec` (shipped name, .keras file or run directory; None = shipped default).

    scale: the factor asked for; command: what needs the model. A file of another kind or scale is refused
    before it is loaded (MammoError: what the file is, what `command` needs). engine: see sr_engine.ENGINES.
    """
    from mammo_tf.inference.registry import load_model, model_id
    from mammo_tf.inference.sr_engine import check_engine, resolve_engine
    from mammo_tf.models.sr import generator_scale

    check_engine(engine)

    generator, path, _ = load_model(spec, ("sr",), command, scale=scale)
    scale = generator_scale(generator)
    if scale is None:
        raise located(path, f"not a mammo-tf SR generator (model {generator.name!r})")
    engine = resolve_engine(engine, generator)
    spacing, ceiling = training_spacing(path), model_noise_ceiling(path)
    return SRModel(generator, scale, receptive_margin(generator), model_id(path), path, engine, spacing, ceiling)


def default_overlap(model: SRModel) -> int:
    """The default overlap (LR pixels): the model's receptive margin on both sides of a seam, plus a 2-pixel
    blending ramp (tiling.check_tiling accepts down to 2 x margin + 1, a 1-pixel ramp)."""
    return 2 * model.margin + 2


def upscale_array(
    model: SRModel,
    pixels: np.ndarray,
    bit_depth: int | None,
    *,
    tile: int | None = DEFAULT_TILE,
    overlap: int | None = None,
    batch: int = 1,
    scanner_lines: str = "average",
) -> np.ndarray:
    """Super-resolve float32 [h, w] in [0, 1]; tile=None runs the whole image in one call.

    scanner_lines: "average" replaces the model's output at 1-px dark scanner lines by its mean across the
    line (scanner_lines.py: the LR cannot say which HR row held the line); "keep" returns the network's
    output as it is (what training validation scores).
    """
    from mammo_tf.inference.scanner_lines import SCANNER_LINES, average_lines

    if scanner_lines not in SCANNER_LINES:
        raise MammoError(f"scanner_lines must be one of {', '.join(SCANNER_LINES)}, got {scanner_lines!r}")
    pixels = np.asarray(pixels, np.float32)
    q = quant_step_for(bit_depth)

    def apply(tiles: np.ndarray) -> np.ndarray:
        return model(tiles, q)

    if tile is None:
        sr = apply(pixels[None, ..., None])[0, ..., 0]
    else:
        overlap = default_overlap(model) if overlap is None else overlap
        sr = tiled_apply(apply, pixels, scale=model.scale, tile=tile, overlap=overlap, margin=model.margin, batch=batch)
    return average_lines(sr, pixels, model.scale)[0] if scanner_lines == "average" else sr


def gated_upscale(
    model: SRModel, pixels: np.ndarray, bit_depth: int | None, noise_gate: str | float | None = "auto", **kwargs
) -> tuple[np.ndarray, GateDecision]:
    """What `upscale` writes: upscale_array's output, or bicubic for an input noisier than the model's noise
    ceiling (noise_gate.py). noise_gate: 'auto' (the model's ceiling; none known: never bicubic), 'off' or
    None (never), or a ceiling in 8-bit grey levels. kwargs: upscale_array's."""
    from mammo_tf.data.degrade import interpolate

    decision = gate(pixels, resolve_gate(noise_gate, model.noise_ceiling_greys))
    if decision.bicubic:
        return interpolate(np.asarray(pixels, np.float32), model.scale, "bicubic"), decision
    return upscale_array(model, pixels, bit_depth, **kwargs), decision


def risk_map(sr: np.ndarray, lr: np.ndarray, scale: int) -> np.ndarray:
    """|SR - bicubic(LR)| / RISK_FULL_SCALE clipped to [0, 1]: where, and how much, the model added detail."""
    from mammo_tf.data.degrade import interpolate

    return np.clip(np.abs(sr - interpolate(lr, scale, "bicubic")) / RISK_FULL_SCALE, 0.0, 1.0)


def output_suffix(path: Path, fmt: str) -> str:
    """Output extension for `path` under --format (auto keeps the input's format)."""
    suffix = path.suffix.lower()
    if fmt == "auto":
        return ".tif" if suffix == ".tiff" else suffix
    if fmt == "dicom":
        if suffix not in (".dcm", ".dicom"):
            raise located(path, "--format dicom needs a DICOM input (a DICOM out is derived from the DICOM in)")
        return ".dcm"
    return {"png": ".png", "tiff": ".tif"}[fmt]


@dataclass(frozen=True)
class UpscaleResult:
    """One input's outcome: its output (None on error) and risk map, its one-line error, the spacing plan
    (mm per pixel in and out, the resampling, a spacing warning) and the noise gate's decision."""

    source: Path
    output: Path | None
    error: str | None = None
    risk: Path | None = None
    spacing: SpacingPlan | None = None
    gate: GateDecision | None = None


def upscale_file(
    model: SRModel,
    source: Path,
    out_dir: Path,
    *,
    fmt: str = "auto",
    tile=DEFAULT_TILE,
    overlap: int | None = None,
    with_risk: bool = False,
    bits: int | None = None,
    scanner_lines: str = "average",
    input_spacing: float | None = None,
    spacing_check: str = "warn",
    resample_to: str | float | None = None,
    noise_gate: str | float | None = "auto",
) -> UpscaleResult:
    """Read one image, super-resolve it, write it (DICOM derived from DICOM, its pixel spacing updated).

    bits: the output's bit depth; None keeps the input's. Rounding to an 8-bit input's 255 levels discards
    part of what the model adds (docs/results-sr.md); 16 keeps it. input_spacing, spacing_check and
    resample_to: see spacing.plan_spacing (the input is resampled before SR when resample_to is set).
    noise_gate: see gated_upscale (a DICOM out then says it is bicubic).
    """
    from mammo_tf.data.resample import resample_to_spacing
    from mammo_tf.io.images import probe_header, read_image, write_image

    suffix = output_suffix(source, fmt)
    image = read_image(source)
    stated = probe_header(source).spacing
    plan = plan_spacing(
        source,
        None if stated is None else (stated.row_mm, stated.col_mm),
        model.hr_spacing_mm,
        model.scale,
        input_mm=input_spacing,
        check=spacing_check,
        resample_to=resample_to,
    )
    pixels = image.pixels
    if plan.resample_mm is not None:
        pixels = resample_to_spacing(pixels, plan.input_mm, plan.resample_mm)
    sr, decision = gated_upscale(
        model, pixels, image.bit_depth, noise_gate, tile=tile, overlap=overlap, scanner_lines=scanner_lines
    )
    out_bits = image.bit_depth if bits is None else bits
    out = out_dir / f"{source.stem}_x{model.scale}{suffix}"
    if suffix == ".dcm":
        from mammo_tf.io.dicom_write import write_derived_dicom

        write_derived_dicom(
            source,
            out,
            sr,
            zoom=(sr.shape[0] / image.pixels.shape[0], sr.shape[1] / image.pixels.shape[1]),
            description=f"mammo-tf x{model.scale} {'bicubic (noise gate)' if decision.bicubic else 'SR'} "
            f"({model.model_id})",
            bits=out_bits,
        )
    else:
        write_image(out, sr, out_bits)
    risk = None
    if with_risk:
        risk = out_dir / f"{source.stem}_x{model.scale}_risk.png"
        write_image(risk, risk_map(sr, pixels, model.scale), 8)
    return UpscaleResult(source, out, risk=risk, spacing=plan, gate=decision)


def upscale_files(
    inputs: list[Path],
    out_dir: str | Path,
    *,
    model: str | Path | None = None,
    scale: int | None = None,
    tile: int | None = DEFAULT_TILE,
    overlap: int | None = None,
    with_risk: bool = False,
    fmt: str = "auto",
    bits: int | None = None,
    engine: str = "auto",
    scanner_lines: str = "average",
    input_spacing: float | None = None,
    spacing_check: str = "warn",
    resample_to: str | float | None = None,
    noise_gate: str | float | None = "auto",
    on_result=None,
) -> list[UpscaleResult]:
    """Upscale every input into out_dir; a failing image yields a result with its one-line error.

    scale: the factor asked for; MammoError if the model was trained for another one.
    bits: output bit depth (None = each input's own, 8 or 16 otherwise); engine: see sr_engine.ENGINES;
    scanner_lines: see upscale_array; input_spacing, spacing_check, resample_to: see spacing.plan_spacing;
    noise_gate: see gated_upscale.
    on_result: called with each UpscaleResult as soon as it is known (for progress output).
    """
    if fmt not in FORMATS:
        raise MammoError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if bits not in (None, 8, 16):
        raise MammoError(f"output bits must be 8 or 16 (or None for the input's), got {bits!r}")
    from mammo_tf.inference.scanner_lines import SCANNER_LINES

    if scanner_lines not in SCANNER_LINES:
        raise MammoError(f"scanner_lines must be one of {', '.join(SCANNER_LINES)}, got {scanner_lines!r}")
    sr_model = load_sr_model(model, scale=scale, engine=engine)
    if tile is not None:
        from mammo_tf.inference.tiling import check_tiling

        check_tiling(tile, default_overlap(sr_model) if overlap is None else overlap, sr_model.margin)
    out_dir = Path(out_dir)
    results = []
    for source in inputs:
        try:
            result = upscale_file(
                sr_model,
                Path(source),
                out_dir,
                fmt=fmt,
                tile=tile,
                overlap=overlap,
                with_risk=with_risk,
                bits=bits,
                scanner_lines=scanner_lines,
                input_spacing=input_spacing,
                spacing_check=spacing_check,
                resample_to=resample_to,
                noise_gate=noise_gate,
            )
        except MammoError as err:
            result = UpscaleResult(Path(source), None, str(err))
        results.append(result)
        if on_result:
            on_result(result)
    return results
