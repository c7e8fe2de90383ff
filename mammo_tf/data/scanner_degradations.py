"""The axes on which scanners differ, as ways of making SR's LR input from an HR film (NumPy/OpenCV only).

No other scanner's films are in the project, so evaluate-sr's grid (`--grid`) builds the differences and
measures SR along them. Design: HR stays the reference film, and each grid cell changes only how the LR
input is produced from it, in this order:

    HR -> PSF blur (psf_blur) -> downscaling kernel (downscale) -> detector noise (poisson_gaussian)
       -> quantisation to `bits` (or an 8-bit JPEG round trip, jpeg_roundtrip) -> LR

The default cell (no blur, the exact box average, no added noise, 8 bits) is the project's usual
degradation, `degrade(hr, s, 8)`, bit for bit. Every other cell changes one factor from it
("one factor at a time": GRID_CELLS, 13 cells), so each cell's change against the default is due to one
axis; interactions (a blurred and noisy scanner) are not covered.

The axes, what each stands for, and the cells (parameters):
- noise: a detector with more quantum and electronic noise than the digitised film. Poisson-Gaussian on
  LR, photon std 1, 2 and 4 grey levels of 8 bits at full scale, read noise a quarter of it (noise-1/2/4).
  Digital detectors' noise is also spatially correlated (their MTF and the vendor's processing smooth it
  into grains a few pixels wide): the same noise smoothed by a Gaussian of NOISE_CORRELATION_PX LR px and
  scaled back to its std (noise-corr-1/2).
- blur: a softer focal spot or detector MTF. A Gaussian PSF on HR before the box average, sigma 0.7 and
  1.4 HR px (blur-0.7, blur-1.4).
- kernel: a scanner or archive that resampled differently. OpenCV bicubic without antialiasing
  (kernel-bicubic); a Gaussian of sigma s/2 HR px centred on each block, then decimation (kernel-gaussian).
- bits: a 12/16-bit detector instead of the 8-bit window SR was trained on. LR rounded to 12 and to 16
  bits (bits-12, bits-16).
- jpeg: lossy archive compression. The 8-bit LR through JPEG at quality 75 (jpeg-75).

All functions take and return float32 images in [0, 1] (values are full-scale units) and are
deterministic: the only randomness (noise) comes from a NumPy Generator seeded by the caller.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from mammo_tf.data.degrade import area_downsample
from mammo_tf.errors import MammoError
from mammo_tf.io.images import quantize

KERNELS = ("area", "bicubic", "gaussian")
GREY_8BIT = 1.0 / 255.0
READ_NOISE_SHARE = 0.25  # read (Gaussian) noise std as a share of the photon std at full scale
NOISE_CORRELATION_PX = 1.0  # Gaussian sigma (LR px) of the correlated-noise cells' grain


@dataclass(frozen=True)
class ScannerCell:
    """One cell of the grid: how the LR input is made from the HR film.

    psf_sigma: Gaussian PSF applied to HR, in HR pixels (0 = none), 0..3 sensible.
    kernel: 'area' (the exact s x s box mean, the project's default), 'bicubic' or 'gaussian'.
    photon_std: Poisson noise std at full scale (value 1.0), in full-scale units (0 = none); read noise
        of READ_NOISE_SHARE x that is added (Gaussian, signal-independent). 0..0.05 sensible.
    noise_correlation: Gaussian sigma (LR px) smoothing the added noise, which is then scaled back to its
        std (0 = white noise, as before).
    bits: the LR's bit depth (8, 12, 16), also what SR is told (its consistency projection's step).
    jpeg_quality: JPEG round trip of the 8-bit LR at this quality (1..100), None = none; needs bits == 8.
    """

    name: str
    axis: str
    psf_sigma: float = 0.0
    kernel: str = "area"
    photon_std: float = 0.0
    noise_correlation: float = 0.0
    bits: int = 8
    jpeg_quality: int | None = None

    def describe(self) -> str:
        """How the cell's LR is made, in words for reports: 'PSF 0.7 px, area, noise 1.0 grey, 8 bits'."""
        parts = [f"PSF {self.psf_sigma:g} px"] if self.psf_sigma else []
        parts.append(self.kernel)
        if self.photon_std:
            parts.append(f"Poisson-Gaussian {self.photon_std / GREY_8BIT:g} grey (8-bit) at full scale")
            if self.noise_correlation:
                parts.append(f"correlated over {self.noise_correlation:g} px")
        parts.append(f"{self.bits} bits")
        if self.jpeg_quality is not None:
            parts.append(f"JPEG q{self.jpeg_quality}")
        return ", ".join(parts)


GRID_CELLS: tuple[ScannerCell, ...] = (
    ScannerCell("default", "default"),
    ScannerCell("noise-1", "noise", photon_std=1 * GREY_8BIT),
    ScannerCell("noise-2", "noise", photon_std=2 * GREY_8BIT),
    ScannerCell("noise-4", "noise", photon_std=4 * GREY_8BIT),
    ScannerCell("noise-corr-1", "noise", photon_std=1 * GREY_8BIT, noise_correlation=NOISE_CORRELATION_PX),
    ScannerCell("noise-corr-2", "noise", photon_std=2 * GREY_8BIT, noise_correlation=NOISE_CORRELATION_PX),
    ScannerCell("blur-0.7", "blur", psf_sigma=0.7),
    ScannerCell("blur-1.4", "blur", psf_sigma=1.4),
    ScannerCell("kernel-bicubic", "kernel", kernel="bicubic"),
    ScannerCell("kernel-gaussian", "kernel", kernel="gaussian"),
    ScannerCell("bits-12", "bits", bits=12),
    ScannerCell("bits-16", "bits", bits=16),
    ScannerCell("jpeg-75", "jpeg", jpeg_quality=75),
)
CELL_NAMES = tuple(cell.name for cell in GRID_CELLS)


def resolve_cells(names: Sequence[str] | None) -> tuple[ScannerCell, ...]:
    """The cells named (in grid order, 'default' always included), or all of GRID_CELLS for None.

    MammoError naming the unknown name and the known ones. The default cell is kept because every other
    cell is read against it.
    """
    if names is None:
        return GRID_CELLS
    unknown = [n for n in names if n not in CELL_NAMES]
    if unknown:
        raise MammoError(f"unknown grid cell {unknown[0]!r}: choose from {', '.join(CELL_NAMES)}")
    wanted = {"default", *names}
    return tuple(cell for cell in GRID_CELLS if cell.name in wanted)


def psf_blur(hr: np.ndarray, sigma: float) -> np.ndarray:
    """float [H, W] -> float32 [H, W]: a Gaussian point-spread function of `sigma` HR px (0 = unchanged).

    Stands for a softer focal spot or detector: the film as a blurrier scanner would have recorded it.
    Borders are reflected (OpenCV's BORDER_REFLECT_101), the kernel spans +-4 sigma.
    """
    hr = np.asarray(hr, np.float32)
    if sigma <= 0:
        return hr
    size = 2 * int(np.ceil(4 * sigma)) + 1
    return cv2.GaussianBlur(hr, (size, size), sigmaX=sigma, sigmaY=sigma)


def _centred_gaussian_decimate(hr: np.ndarray, scale: int, sigma: float) -> np.ndarray:
    """float32 [H, W] -> [H/s, W/s]: Gaussian weights around each s x s block's centre, separable.

    The samples sit where the box average's do (block centres, between pixels for even s), so the cell
    differs from 'area' in the kernel's shape only, not by a shift.
    """
    reach = int(np.ceil(3 * sigma))
    offsets = np.arange(-reach, reach + scale)  # pixel offsets from the block's first pixel
    weights = np.exp(-0.5 * ((offsets - (scale - 1) / 2) / sigma) ** 2)
    weights /= weights.sum()

    def along_rows(image: np.ndarray) -> np.ndarray:
        padded = np.pad(image, ((reach, reach + scale), (0, 0)), mode="reflect")
        n = image.shape[0] // scale
        return sum(w * padded[reach + o : reach + o + n * scale : scale] for o, w in zip(offsets, weights, strict=True))

    return along_rows(along_rows(np.asarray(hr, np.float64)).T).T.astype(np.float32)


def downscale(hr: np.ndarray, scale: int, kernel: str) -> np.ndarray:
    """float [H, W] (sides multiples of s) -> float32 [H/s, W/s], unrounded, by `kernel`.

    area: the exact s x s box mean (data/degrade.area_downsample, what SR is trained on).
    bicubic: OpenCV INTER_CUBIC without antialiasing (at s = 2 the 4-tap kernel -1/16, 9/16, 9/16, -1/16
        per axis): sharper than the box, with overshoot and aliasing, as many resampling tools do.
    gaussian: a Gaussian of sigma s/2 HR px centred on each block, then decimation: smoother than the box.
    """
    if kernel == "area":
        return area_downsample(hr, scale).astype(np.float32)
    h, w = hr.shape[:2]
    if kernel == "bicubic":
        small = cv2.resize(np.asarray(hr, np.float32), (w // scale, h // scale), interpolation=cv2.INTER_CUBIC)
        return np.clip(small, 0.0, 1.0)
    if kernel == "gaussian":
        return _centred_gaussian_decimate(hr, scale, scale / 2)
    raise MammoError(f"unknown downscaling kernel {kernel!r}: choose from {', '.join(KERNELS)}")


def poisson_gaussian(lr: np.ndarray, photon_std: float, rng: np.random.Generator) -> np.ndarray:
    """float [h, w] in [0, 1] -> float32 [h, w] in [0, 1] with Poisson-Gaussian noise (0 = unchanged).

    Stands for a noisier detector, in the stored film's intensity domain: Poisson with variance
    photon_std^2 x value (counts = value / photon_std^2, so the std is photon_std at full scale and
    photon_std x sqrt(v) at value v), plus Gaussian read noise of std READ_NOISE_SHARE x photon_std;
    clipped to [0, 1]. The stored values of a film digitiser are not linear in exposure, so this is a
    proxy for "more noise, larger where brighter", not a physical detector model.
    """
    lr = np.asarray(lr, np.float64)
    if photon_std <= 0:
        return lr.astype(np.float32)
    gain = photon_std**2
    noisy = rng.poisson(np.clip(lr, 0.0, 1.0) / gain) * gain
    noisy = noisy + rng.normal(0.0, READ_NOISE_SHARE * photon_std, lr.shape)
    return np.clip(noisy, 0.0, 1.0).astype(np.float32)


def correlate_noise(clean: np.ndarray, noisy: np.ndarray, sigma: float) -> np.ndarray:
    """float32 [h, w] in [0, 1]: `noisy`'s noise (noisy - clean) smoothed by a Gaussian of `sigma` px and
    scaled back to its own std, added to `clean` (sigma 0: `noisy` unchanged).

    Stands for a digital detector's grainy noise: the same noise power, spread over neighbouring pixels.
    """
    noisy = np.asarray(noisy, np.float32)
    if sigma <= 0:
        return noisy
    noise = noisy.astype(np.float64) - clean
    size = 2 * int(np.ceil(4 * sigma)) + 1
    grain = cv2.GaussianBlur(noise, (size, size), sigmaX=sigma, sigmaY=sigma)
    grain *= noise.std() / max(grain.std(), 1e-12)
    return np.clip(clean + grain, 0.0, 1.0).astype(np.float32)


def jpeg_roundtrip(lr: np.ndarray, quality: int) -> np.ndarray:
    """float [h, w] in [0, 1] -> float32 [h, w] on the 8-bit grid: encoded and decoded as JPEG (OpenCV).

    Stands for lossy archive compression; the error exceeds the half grey level SR's consistency
    projection assumes for an 8-bit input, which is the point of the cell.
    """
    if not 1 <= int(quality) <= 100:
        raise MammoError(f"JPEG quality must be 1..100, got {quality}")
    ok, encoded = cv2.imencode(".jpg", quantize(lr, 8), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise MammoError("OpenCV could not encode the LR image as JPEG")
    return cv2.imdecode(encoded, cv2.IMREAD_UNCHANGED).astype(np.float32) / 255.0


def degrade_cell(hr: np.ndarray, scale: int, cell: ScannerCell, seed: int | Sequence[int] = 0) -> np.ndarray:
    """The LR input of `cell`: float32 [H/s, W/s] in [0, 1], on the `cell.bits` grid (JPEG: the 8-bit one).

    hr: float [H, W] in [0, 1], sides multiples of `scale` (data/degrade.crop_to_scale). seed: an int or a
    sequence of ints (e.g. (seed, film number)) for the noise; the same seed gives the same LR.
    The default cell equals data/degrade.degrade(hr, scale, 8) exactly.
    """
    if cell.jpeg_quality is not None and cell.bits != 8:
        raise MammoError(f"grid cell {cell.name}: JPEG needs 8-bit LR, got {cell.bits} bits")
    clean = downscale(psf_blur(hr, cell.psf_sigma), scale, cell.kernel)
    lr = poisson_gaussian(clean, cell.photon_std, np.random.default_rng(seed))
    lr = correlate_noise(clean, lr, cell.noise_correlation)
    if cell.jpeg_quality is not None:
        return jpeg_roundtrip(lr, cell.jpeg_quality)
    return quantize(lr, cell.bits, as_float=True)


@dataclass(frozen=True)
class DegradationMix:
    """How random_degradation draws a training scanner: the share kept clean (the box average), PSF widths
    (a choice, times U(0, 1)), kernels (a choice), the share with noise and its photon std (U(0, max) grey
    levels of 8 bits at full scale), the share of that noise made grainy (smoothed by a Gaussian of
    U(grain_px) LR px), and the share of 8-bit draws JPEG-coded at a quality in jpeg_quality."""

    clean_share: float
    psf_sigmas: tuple[float, ...]
    kernels: tuple[str, ...]
    noise_share: float
    max_photon_greys: float
    grain_share: float
    grain_px: tuple[float, float] = (0.5, 1.5)
    jpeg_share: float = 0.0
    jpeg_quality: tuple[int, int] = (60, 95)


# SRConfig.lr_degradations -> its mix. "diverse": the grid's axes, every scanner; a third stays clean.
# "gated": only what upscale's noise gate lets through, for a model that stands behind it: no white noise,
# no bicubic kernel, no JPEG (the gate hands such films to bicubic), but grainy noise, which the gate cannot
# see (docs/results-sr.md), up to 3 grey levels, and blur; half stays clean. "gated-noisy": the same, with
# noise up to 5 grey levels, half of it white: the gate stops such films, but meeting them in training may
# teach calm on the grain that gets past it (the diverse fine-tune, which saw them, was the calm one).
DEGRADATION_MIXES = {
    "diverse": DegradationMix(
        clean_share=0.35,
        psf_sigmas=(0.0, 0.0, 0.7, 1.4),  # half the pairs stay sharp
        kernels=("area", "area", "bicubic", "gaussian"),
        noise_share=0.6,
        max_photon_greys=5.0,
        grain_share=0.5,
        jpeg_share=0.15,
    ),
    "gated": DegradationMix(
        clean_share=0.5,
        psf_sigmas=(0.0, 0.0, 0.7, 1.4),
        kernels=("area", "area", "gaussian"),
        noise_share=0.8,
        max_photon_greys=3.0,
        grain_share=1.0,
    ),
    "gated-noisy": DegradationMix(
        clean_share=0.5,
        psf_sigmas=(0.0, 0.0, 0.7, 1.4),
        kernels=("area", "area", "gaussian"),
        noise_share=0.8,
        max_photon_greys=5.0,
        grain_share=0.5,
    ),
}


def random_degradation(
    hr: np.ndarray, scale: int, bits: int, rng: np.random.Generator, mix: str | DegradationMix = "diverse"
) -> np.ndarray:
    """One training LR from HR by a randomly drawn scanner (the grid's axes with random parameters).

    Why: a model trained on the box average of one digitiser sharpens other scanners' noise into
    calcification-like specks; the idea of Real-ESRGAN's degradation diversity, applied to the LR side only
    (HR stays the film). hr: float [H, W] in [0, 1], sides multiples of `scale`; bits: the LR's bit depth;
    mix: a DEGRADATION_MIXES name or a DegradationMix. Returns float32 [H/s, W/s] in [0, 1] on the `bits`
    grid. The draw: a share stays clean, the rest gets a random PSF, kernel, Poisson-Gaussian noise (a share
    of it grainy: correlate_noise, the grid's noise-corr cells) and, for 8 bits, sometimes JPEG.
    """
    mix = DEGRADATION_MIXES[mix] if isinstance(mix, str) else mix
    if rng.random() < mix.clean_share:
        return quantize(downscale(hr, scale, "area"), bits, as_float=True)
    sigma = float(rng.choice(mix.psf_sigmas)) * rng.random()
    kernel = str(rng.choice(mix.kernels))
    photon = rng.uniform(0.0, mix.max_photon_greys) * GREY_8BIT if rng.random() < mix.noise_share else 0.0
    clean = downscale(psf_blur(hr, sigma), scale, kernel)
    lr = poisson_gaussian(clean, photon, rng)
    if photon and rng.random() < mix.grain_share:
        lr = correlate_noise(clean, lr, rng.uniform(*mix.grain_px))
    if bits == 8 and rng.random() < mix.jpeg_share:
        return jpeg_roundtrip(lr, int(rng.integers(mix.jpeg_quality[0], mix.jpeg_quality[1] + 1)))
    return quantize(lr, bits, as_float=True)
