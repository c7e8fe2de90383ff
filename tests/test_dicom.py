"""DICOM reading: the modality -> VOI -> normalise -> polarity pipeline on tiny datasets built in memory."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from dicom_builders import make_dataset, save
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import (
    JPEG2000Lossless,
    RLELossless,
)

from mammo_tf.errors import MammoError
from mammo_tf.io.dicom import (
    modality_range,
    normalise,
    probe_dicom,
    read_dicom,
    stored_range,
    to_unit_pixels,
    voi_kind,
    windowing_range,
)
from mammo_tf.io.images import read_image

STORED_12 = np.array([[0, 100, 1000], [2000, 2048, 4095]], np.uint16)


def lut_item(descriptor: list[int], data: list[int]) -> Dataset:
    """A Modality/VOI LUT Sequence item with US descriptor and data (the ambiguous VRs made explicit)."""
    item = Dataset()
    item.add_new("LUTDescriptor", "US", descriptor)
    item.add_new("LUTData", "US", data)
    return item


# --- the pipeline, through files ------------------------------------------------------------


def test_12_bit_in_16_bit_container_normalised_by_bits_stored(tmp_path: Path) -> None:
    image = read_dicom(save(make_dataset(STORED_12), tmp_path / "a.dcm"))
    assert image.bit_depth == 12 and image.pixels.dtype == np.float32 and image.pixels.shape == (2, 3)
    np.testing.assert_allclose(image.pixels, STORED_12 / 4095, atol=1e-6)


def test_dark_image_is_not_stretched_to_its_max(tmp_path: Path) -> None:
    dark = np.full((4, 4), 300, np.uint16)
    dark[0, 0] = 500
    image = read_dicom(save(make_dataset(dark), tmp_path / "dark.dcm"))
    assert image.pixels.max() == pytest.approx(500 / 4095)


def test_15_bit_depth_is_bits_stored(tmp_path: Path) -> None:
    values = np.array([[0, 32767]], np.uint16)
    image = read_dicom(save(make_dataset(values, bits_stored=15), tmp_path / "b.dcm"))
    assert image.bit_depth == 15
    np.testing.assert_allclose(image.pixels, [[0.0, 1.0]])


def test_monochrome1_is_inverted(tmp_path: Path) -> None:
    image = read_dicom(save(make_dataset(STORED_12, photometric="MONOCHROME1"), tmp_path / "m1.dcm"))
    np.testing.assert_allclose(image.pixels, 1.0 - STORED_12 / 4095, atol=1e-6)


def test_monochrome1_window_is_inverted_after_windowing(tmp_path: Path) -> None:
    ds = make_dataset(STORED_12, photometric="MONOCHROME1", WindowCenter=1000.5, WindowWidth=2001)
    image = read_dicom(save(ds, tmp_path / "m1w.dcm"))
    np.testing.assert_allclose(image.pixels, 1.0 - np.clip(STORED_12 / 2000, 0, 1), atol=1e-6)


def test_window_centre_width_applied_and_normalised_by_output_range(tmp_path: Path) -> None:
    # LINEAR window 1000.5/2001 maps x to (x - 1000) / 2000 + 0.5 = x / 2000 inside the window.
    ds = make_dataset(STORED_12, WindowCenter=1000.5, WindowWidth=2001)
    image = read_dicom(save(ds, tmp_path / "w.dcm"))
    np.testing.assert_allclose(image.pixels, np.clip(STORED_12 / 2000, 0, 1), atol=1e-6)


def test_rescale_alone_keeps_the_stored_scale(tmp_path: Path) -> None:
    # A positive linear rescale with no VOI cannot change the normalised picture.
    ds = make_dataset(STORED_12, RescaleSlope=2, RescaleIntercept=-100)
    assert modality_range(ds) == (-100.0, 8090.0)
    image = read_dicom(save(ds, tmp_path / "r.dcm"))
    np.testing.assert_allclose(image.pixels, STORED_12 / 4095, atol=1e-6)


def test_rescale_is_applied_before_the_window(tmp_path: Path) -> None:
    # Modality values 2v - 1000, then the x / 2000 window: 500 -> 0, 750 -> 0.25, 1000 -> 0.5, 1500 -> 1.
    stored = np.array([[0, 500, 750], [1000, 1500, 4095]], np.uint16)
    ds = make_dataset(stored, RescaleSlope=2, RescaleIntercept=-1000, WindowCenter=1000.5, WindowWidth=2001)
    assert windowing_range(ds) == (-1000.0, 7190.0)
    image = read_dicom(save(ds, tmp_path / "rw.dcm"))
    np.testing.assert_allclose(image.pixels, [[0, 0, 0.25], [0.5, 1, 1]], atol=1e-6)


def test_voi_lut_sequence_preferred_and_normalised_by_its_depth(tmp_path: Path) -> None:
    # 4 entries from stored value 100, 10 bits per entry: below 100 -> first entry, above 103 -> last.
    stored = np.array([[50, 100, 101], [102, 103, 200]], np.uint16)
    ds = make_dataset(stored, WindowCenter=2048, WindowWidth=4096)
    ds.VOILUTSequence = Sequence([lut_item([4, 100, 10], [0, 100, 500, 1023])])
    assert voi_kind(ds) == "lut"
    image = read_dicom(save(ds, tmp_path / "voi.dcm"))
    np.testing.assert_allclose(image.pixels, np.array([[0, 0, 100], [500, 1023, 1023]]) / 1023, atol=1e-6)


def test_voi_lut_after_rescale_takes_integers(tmp_path: Path) -> None:
    stored = np.array([[0, 1, 2, 3]], np.uint16)
    ds = make_dataset(stored, RescaleSlope=1, RescaleIntercept=100)
    ds.VOILUTSequence = Sequence([lut_item([4, 100, 8], [0, 85, 170, 255])])
    path = save(ds, tmp_path / "rvoi.dcm")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # pydicom warns when a VOI LUT is indexed by floats
        image = read_dicom(path)
    np.testing.assert_allclose(image.pixels, [[0, 1 / 3, 2 / 3, 1]], atol=1e-6)


def test_modality_lut_sequence_normalised_by_its_depth(tmp_path: Path) -> None:
    stored = np.array([[0, 1, 2, 3]], np.uint16)
    ds = make_dataset(stored)
    ds.ModalityLUTSequence = Sequence([lut_item([4, 0, 16], [0, 1000, 30000, 65535])])
    assert modality_range(ds) == (0.0, 65535.0)
    image = read_dicom(save(ds, tmp_path / "mlut.dcm"))
    np.testing.assert_allclose(image.pixels, [[0, 1000 / 65535, 30000 / 65535, 1]], atol=1e-6)


def test_signed_pixels_normalised_by_the_signed_range(tmp_path: Path) -> None:
    stored = np.array([[-2048, 0, 2047]], np.int16)
    ds = make_dataset(stored)
    assert ds.PixelRepresentation == 1 and stored_range(ds) == (-2048.0, 2047.0)
    image = read_dicom(save(ds, tmp_path / "s.dcm"))
    np.testing.assert_allclose(image.pixels, (stored + 2048) / 4095, atol=1e-6)


def test_pure_pipeline_without_a_file() -> None:
    ds = make_dataset(STORED_12, photometric="MONOCHROME1", WindowCenter=1000.5, WindowWidth=2001)
    np.testing.assert_allclose(to_unit_pixels(STORED_12, ds), 1.0 - np.clip(STORED_12 / 2000, 0, 1), atol=1e-6)
    np.testing.assert_allclose(normalise(np.array([5.0, 10.0, 20.0]), (10.0, 0.0)), [0.5, 0.0, 0.0])


@pytest.mark.parametrize("suffix", [".dcm", ".dicom", ".DCM"])
def test_read_image_dispatches_to_dicom(tmp_path: Path, suffix: str) -> None:
    image = read_image(save(make_dataset(STORED_12), tmp_path / f"x{suffix}"))
    assert image.bit_depth == 12
    np.testing.assert_allclose(image.pixels, STORED_12 / 4095, atol=1e-6)


def test_probe_reads_the_header_only(tmp_path: Path) -> None:
    path = save(make_dataset(np.zeros((5, 7), np.uint16), bits_stored=14), tmp_path / "p.dcm")
    assert probe_dicom(path) == (5, 7, 14)


@pytest.mark.parametrize("syntax", [RLELossless, JPEG2000Lossless])
def test_compressed_pixels_decode(tmp_path: Path, syntax: str) -> None:
    rng = np.random.default_rng(0)
    stored = rng.integers(0, 4096, size=(32, 32), dtype=np.uint16)  # openjpeg refuses 16x16
    ds = make_dataset(stored)
    try:
        ds.compress(syntax)
    except RuntimeError as err:  # encoder plugin missing in this environment
        pytest.skip(f"cannot encode {syntax}: {err}")
    path = save(ds, tmp_path / "c.dcm")
    image = read_dicom(path)
    assert image.bit_depth == 12
    np.testing.assert_allclose(image.pixels, stored / 4095, atol=1e-6)


# --- refusals: one MammoError naming the file, never a traceback ------------------------------


def _truncated(tmp_path: Path) -> Path:
    path = save(make_dataset(np.zeros((32, 32), np.uint16)), tmp_path / "full.dcm")
    data = path.read_bytes()
    bad = tmp_path / "truncated.dcm"
    bad.write_bytes(data[: len(data) - 700])
    return bad


def _random(tmp_path: Path) -> Path:
    bad = tmp_path / "random.dcm"
    bad.write_bytes(np.random.default_rng(1).integers(0, 256, 600, dtype=np.uint8).tobytes())
    return bad


def _header_only(tmp_path: Path) -> Path:
    ds = make_dataset(np.zeros((4, 4), np.uint16))
    del ds.PixelData
    return save(ds, tmp_path / "nopixels.dcm")


def _colour(tmp_path: Path) -> Path:
    return save(make_dataset(np.zeros((4, 4, 3), np.uint8), bits_stored=8, photometric="RGB"), tmp_path / "rgb.dcm")


def _multi_frame(tmp_path: Path) -> Path:
    ds = make_dataset(np.zeros((3, 4, 4), np.uint16))
    return save(ds, tmp_path / "frames.dcm")


def _undecodable(tmp_path: Path) -> Path:
    """RLE data labelled as a syntax no plugin decodes (MPEG2), as with a missing decoder."""
    ds = make_dataset(np.zeros((4, 4), np.uint16))
    ds.compress(RLELossless)
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.100"
    return save(ds, tmp_path / "mpeg.dcm")


def _bad_window(tmp_path: Path) -> Path:
    return save(make_dataset(STORED_12, WindowCenter=100, WindowWidth=0), tmp_path / "window.dcm")


@pytest.mark.parametrize(
    ("build", "reason"),
    [
        (_random, "not a DICOM file"),
        (_truncated, "cannot decode"),
        (_header_only, "no Pixel Data"),
        (_colour, "colour"),
        (_multi_frame, "multi-frame"),
        (_undecodable, "cannot decode"),
        (_bad_window, "VOI"),
    ],
)
def test_bad_files_raise_one_clear_error(tmp_path: Path, build, reason: str) -> None:
    path = build(tmp_path)
    with pytest.raises(MammoError) as info:
        read_image(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ") and reason in message and "\n" not in message


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(MammoError, match="not found"):
        read_dicom(tmp_path / "nope.dcm")


def test_probe_refuses_colour(tmp_path: Path) -> None:
    with pytest.raises(MammoError, match="colour"):
        probe_dicom(_colour(tmp_path))
