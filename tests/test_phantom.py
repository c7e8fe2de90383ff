"""The synthetic phantom: MIAS conventions, determinism, ground truth that points at the specks, plausible pixels."""

from __future__ import annotations

import csv
import importlib.util
import re
from pathlib import Path

import numpy as np
import pytest

from mammo_tf.data import phantom
from mammo_tf.data.phantom import cached_phantom_dir, image_plan, render_phantom_image, write_phantom
from mammo_tf.errors import MammoError
from mammo_tf.io.images import read_image

SIZE = 256
LINE = re.compile(r"^(mdb\d{3}) ([FGD]) (?:NORM |CALC ([BM]) (\d+) (\d+) (\d+))$")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Eight images (four patients) at 256 pixels, seed 0."""
    return write_phantom(tmp_path_factory.mktemp("phantom") / "p", n=8, seed=0, size=SIZE)


def _table(folder: Path) -> list[re.Match]:
    lines = (folder / "Info.txt").read_bytes().decode("ascii").split("\r\n")
    return [m for m in (LINE.match(line) for line in lines) if m]


def _truth(folder: Path) -> list[dict]:
    with open(folder / "phantom_truth.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def _pixels(folder: Path, image_id: str) -> np.ndarray:
    return read_image(folder / f"{image_id}.pgm").pixels


def test_same_seed_same_bytes_other_seed_other_pixels(tmp_path: Path, dataset: Path) -> None:
    again = write_phantom(tmp_path / "again", n=8, seed=0, size=SIZE)
    names = sorted(p.name for p in dataset.iterdir())
    assert names == sorted(p.name for p in again.iterdir())
    assert {"Info.txt", "phantom_truth.csv", "mdb001.pgm", "mdb008.pgm"} <= set(names)
    for name in names:
        assert (dataset / name).read_bytes() == (again / name).read_bytes(), name
    other = write_phantom(tmp_path / "other", n=2, seed=1, size=SIZE)
    assert not np.array_equal(_pixels(dataset, "mdb001"), _pixels(other, "mdb001"))


def test_image_does_not_depend_on_n(tmp_path: Path, dataset: Path) -> None:
    three = write_phantom(tmp_path / "three", n=3, seed=0, size=SIZE)
    for name in ("mdb001.pgm", "mdb002.pgm", "mdb003.pgm"):
        assert (three / name).read_bytes() == (dataset / name).read_bytes()
    assert [m.group(1) for m in _table(three)][-1] == "mdb003"  # odd n: the last patient has one image


def test_info_txt_follows_mias_conventions(dataset: Path) -> None:
    raw = (dataset / "Info.txt").read_bytes()
    assert raw.endswith(b"\r\n") and raw.count(b"\n") == raw.count(b"\r\n")
    lines = raw.decode("ascii").split("\r\n")[:-1]
    first = next(i for i, line in enumerate(lines) if line.startswith("mdb"))
    header = "\n".join(lines[:first])
    assert "synthetic phantom made by mammo-tf" in header.lower() and "seed 0" in header
    assert "bottom-left" in header
    table = [line for line in lines[first:] if line.strip()]
    assert re.fullmatch(r"=+", table[-1])
    rows = table[:-1]
    assert all(LINE.match(line) for line in rows), rows
    assert all(line.endswith("NORM ") for line in rows if "NORM" in line)
    ids = [line.split()[0] for line in rows]
    assert ids == sorted(ids) and sorted(set(ids)) == [f"mdb{i:03d}" for i in range(1, 9)]
    for m in _table(dataset):
        if m.group(3):
            x, y, r = (int(m.group(i)) for i in (4, 5, 6))
            assert 0 <= x < SIZE and 0 <= y < SIZE and r > 0
    assert {m.group(3) for m in _table(dataset)} >= {"B", "M", None}  # benign, malignant and normal films


def test_truth_lies_in_the_annotated_circle_and_the_specks_are_there(dataset: Path) -> None:
    truth = _truth(dataset)
    clusters: dict[str, int] = {}
    checked = 0
    for m in _table(dataset):
        if not m.group(3):
            assert not [t for t in truth if t["image_id"] == m.group(1)]
            continue
        image_id, x, y, radius = m.group(1), int(m.group(4)), int(m.group(5)), int(m.group(6))
        index = clusters.get(image_id, 0)
        clusters[image_id] = index + 1
        row, col = SIZE - 1 - y, x  # origin bottom-left
        specks = [t for t in truth if t["image_id"] == image_id and int(t["cluster"]) == index]
        assert specks and all(t["severity"] == m.group(3) for t in specks)
        for t in specks:
            assert np.hypot(float(t["row"]) - row, float(t["col"]) - col) + float(t["radius_px"]) <= radius
        pixels = _pixels(dataset, image_id)
        rr, cc = np.ogrid[:SIZE, :SIZE]
        dist = np.hypot(rr - row, cc - col)
        inside = np.sort(pixels[dist <= radius])[-3:].mean()
        ring = pixels[(dist > radius + 3) & (dist <= radius + 12)]
        assert inside > np.percentile(ring, 99) + 0.02, (image_id, inside, np.percentile(ring, 99))
        # the same check with y read from the top finds nothing special there
        flipped = np.hypot(rr - y, cc - col)
        if abs(y - row) > 2 * radius + 12:
            top = np.sort(pixels[flipped <= radius])[-3:].mean()
            assert top < inside
        checked += 1
    assert checked >= 2


def test_laterality_chest_wall_side(dataset: Path) -> None:
    for number in range(1, 9):
        pixels = _pixels(dataset, f"mdb{number:03d}")
        left, right = pixels[:, : SIZE // 2].mean(), pixels[:, SIZE // 2 :].mean()
        assert (right > left) if number % 2 else (left > right), number


def _breast_crop(pixels: np.ndarray, number: int, size: int) -> np.ndarray:
    """A square well inside the breast (below the pectoral muscle, away from the skin)."""
    canonical = pixels[:, ::-1] if number % 2 else pixels  # chest wall on the left
    n, r0, c0 = int(0.2 * size), int(0.5 * size), int(0.12 * size)
    return canonical[r0 : r0 + n, c0 : c0 + n].astype(np.float64)


def test_pixel_statistics_are_plausible(dataset: Path) -> None:
    means: dict[str, list[float]] = {"F": [], "G": [], "D": []}
    tissue = {m.group(1): m.group(2) for m in _table(dataset)}
    for number in range(1, 9):
        pixels = _pixels(dataset, f"mdb{number:03d}")
        canonical = pixels[:, ::-1] if number % 2 else pixels
        background = canonical[int(0.8 * SIZE) :, int(0.85 * SIZE) :]  # far from the chest wall, below the label
        assert 0.0 < background.mean() < 0.08 and background.std() > 0
        breast = _breast_crop(pixels, number, SIZE)
        assert 0.3 < breast.mean() < 0.95
        assert pixels.max() <= 1.0
        means[tissue[f"mdb{number:03d}"]].append(float(breast.mean()))
    assert means["F"] and means["D"], means
    assert np.mean(means["F"]) < np.mean(means["D"])


def test_texture_power_spectrum_is_about_f_minus_3() -> None:
    size = 512
    spectra = []
    for number in range(1, 11):
        _, severities = image_plan(number, 0)
        if severities:
            continue
        pixels, _ = render_phantom_image(number, 0, size)
        crop = _breast_crop(pixels, number, size)
        n = crop.shape[0]
        yy, xx = np.mgrid[:n, :n]
        design = np.c_[yy.ravel(), xx.ravel(), np.ones(n * n)]
        crop = crop - (design @ np.linalg.lstsq(design, crop.ravel(), rcond=None)[0]).reshape(n, n)  # detrend
        window = np.hanning(n)
        spectra.append(np.abs(np.fft.fft2(crop * window[:, None] * window[None, :])) ** 2)
    assert len(spectra) >= 3
    n = spectra[0].shape[0]
    freq = np.hypot(*np.meshgrid(np.fft.fftfreq(n), np.fft.fftfreq(n), indexing="ij"))
    band = (freq >= 2 / n) & (freq <= 0.25)
    slope = np.polyfit(np.log(freq[band]), np.log(np.mean(spectra, axis=0)[band]), 1)[0]
    assert -3.5 <= slope <= -2.5, slope


def test_small_datasets_cover_the_classes() -> None:
    for seed in range(40):
        severities = [s for i in range(1, 5) for s in image_plan(i, seed)[1]]
        assert {"B", "M"} <= set(severities), seed
        assert {image_plan(i, seed)[0] for i in range(1, 7)} == {"F", "G", "D"}
    plans = [image_plan(i, 7)[1] for i in range(1, 501)]
    assert 0.35 <= sum(not p for p in plans) / len(plans) <= 0.45
    benign = sum(p.count("B") for p in plans) / sum(len(p) for p in plans)
    assert 0.4 <= benign <= 0.6


@pytest.mark.parametrize(("n", "size"), [(0, 256), (-1, 256), (2, 64)])
def test_bad_arguments(tmp_path: Path, n: int, size: int) -> None:
    with pytest.raises(MammoError, match="phantom"):
        write_phantom(tmp_path / "out", n=n, size=size)
    assert list(tmp_path.iterdir()) == []


def test_refuses_a_non_empty_folder_and_reuses_an_empty_one(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(MammoError, match="already exists"):
        write_phantom(out, n=1, size=128)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert (write_phantom(empty, n=1, size=128) / "mdb001.pgm").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "out"]


def test_failure_midway_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = phantom.render_phantom_image

    def flaky(index: int, seed: int, size: int):
        if index == 2:
            raise RuntimeError("disk full")
        return real(index, seed, size)

    monkeypatch.setattr(phantom, "render_phantom_image", flaky)
    with pytest.raises(RuntimeError):
        write_phantom(tmp_path / "out", n=3, size=128)
    assert list(tmp_path.iterdir()) == []


def test_cached_phantom_is_made_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAMMO_CACHE", str(tmp_path))
    monkeypatch.setattr(phantom, "DEFAULT_PHANTOM_N", 2)
    monkeypatch.setattr(phantom, "DEFAULT_PHANTOM_SIZE", 128)
    first = cached_phantom_dir()
    assert first == tmp_path / "phantom-v1-n2-s0-128"
    stamps = {p.name: p.stat().st_mtime_ns for p in first.iterdir()}
    assert {"Info.txt", "mdb001.pgm", "mdb002.pgm", "phantom_truth.csv"} <= set(stamps)

    def no_rewrite(*args, **kwargs):
        raise AssertionError("the cached phantom was written again")

    monkeypatch.setattr(phantom, "write_phantom", no_rewrite)
    assert cached_phantom_dir() == first
    assert {p.name: p.stat().st_mtime_ns for p in first.iterdir()} == stamps
    assert sorted(p.name for p in tmp_path.iterdir()) == [first.name]


@pytest.mark.skipif(importlib.util.find_spec("mammo_tf.data.mias") is None, reason="MIAS loader not written yet")
def test_mias_loader_reads_the_phantom(dataset: Path) -> None:
    from mammo_tf.data.mias import load_mias

    catalog = load_mias(dataset)
    assert catalog.n_images == 8 and catalog.n_patients == 4
    images = catalog.images.set_index("image_id")
    assert images.loc["mdb001", "laterality"] == "R" and images.loc["mdb002", "laterality"] == "L"
    assert set(images["height"]) == {SIZE} and set(images["bit_depth"]) == {8}
    calc = catalog.findings[catalog.findings["abnormality"] == "CALC"]
    assert set(calc["severity"]) == {"B", "M"}
    assert (calc["row"] == SIZE - 1 - calc["y"]).all() and (calc["col"] == calc["x"]).all()
    truth = _truth(dataset)
    first = calc.iloc[0]
    specks = [t for t in truth if t["image_id"] == first["image_id"] and t["cluster"] == "0"]
    assert (
        max(np.hypot(float(t["row"]) - first["row"], float(t["col"]) - first["col"]) for t in specks) < first["radius"]
    )
