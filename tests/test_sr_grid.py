"""evaluate-sr --grid: the scanner degradations do what they say, the speck counts on known cases, the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from cli_helpers import invoke, one_error_line

from mammo_tf.data import scanner_degradations as sd
from mammo_tf.data.degrade import degrade
from mammo_tf.data.phantom import TRUTH_NAME, write_phantom
from mammo_tf.errors import MammoError
from mammo_tf.evaluation.sr_eval import load_film
from mammo_tf.evaluation.sr_grid import reference_specks, score_outputs, summarise_grid

CELLS = {cell.name: cell for cell in sd.GRID_CELLS}


@pytest.fixture(scope="module")
def phantom(tmp_path_factory) -> Path:
    """Two 512-px phantom films (both in the train split), mdb001 with true specks."""
    return write_phantom(tmp_path_factory.mktemp("phantom") / "p", n=2, seed=0, size=512)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    """An untrained tiny x2 generator (bicubic skip + consistency projection), saved as a .keras file."""
    from mammo_tf.config import resolve_sr_config
    from mammo_tf.models.sr import build_sr_generator

    path = tmp_path_factory.mktemp("model") / "tiny-sr.keras"
    build_sr_generator(resolve_sr_config("tiny"), name="mammo_sr_generator_x2_ema").save(path)
    return path


def _texture(size: int = 128, seed: int = 0) -> np.ndarray:
    """float32 [size, size] in [0.2, 0.8]: white noise, every frequency present."""
    return (0.2 + 0.6 * np.random.default_rng(seed).random((size, size))).astype(np.float32)


def _high_frequency_energy(image: np.ndarray) -> float:
    return float(np.mean(cv2.Laplacian(np.asarray(image, np.float64), cv2.CV_64F) ** 2))


def test_default_cell_is_the_projects_degradation() -> None:
    hr = _texture()
    assert np.array_equal(sd.degrade_cell(hr, 2, CELLS["default"]), degrade(hr, 2, 8))


def test_random_degradation_draws_scanners_and_keeps_a_clean_share() -> None:
    hr = _texture(64)
    rng = np.random.default_rng(0)
    draws = [sd.random_degradation(hr, 2, 8, rng) for _ in range(400)]
    clean = degrade(hr, 2, 8)
    assert all(d.shape == (32, 32) and d.dtype == np.float32 for d in draws)
    assert all(np.allclose(d * 255, np.round(d * 255), atol=1e-4) for d in draws)  # on the 8-bit grid
    share = np.mean([np.array_equal(d, clean) for d in draws])
    # The clean draws (35 %) plus the rare no-op draws (sharp, area, no noise, no JPEG: ~2 %); 400 draws: SD 2.4 %.
    assert 0.28 < share < 0.46
    # Noise or a random PSF width makes a draw unique (~50 % of draws): 200 here; a fixed degradation gives 1-4.
    assert len({d.tobytes() for d in draws}) > 150
    again = np.random.default_rng(0)
    assert all(np.array_equal(d, sd.random_degradation(hr, 2, 8, again)) for d in draws[:20])  # seeded
    # Half the noisy draws are grainy: the noise of neighbouring pixels is correlated (white noise: ~0).
    flat = np.full((128, 128), 0.5, np.float32)
    noisy = [n for n in (sd.random_degradation(flat, 2, 16, rng) - 0.5 for _ in range(200)) if n.std() > 1e-3]
    neighbour = np.array([np.corrcoef(n[:, :-1].ravel(), n[:, 1:].ravel())[0, 1] for n in noisy])
    assert 0.3 < np.mean(neighbour > 0.3) < 0.7 and np.mean(np.abs(neighbour) < 0.1) > 0.25
    sixteen = sd.random_degradation(hr, 2, 16, np.random.default_rng(1))
    assert np.allclose(sixteen * 65535, np.round(sixteen * 65535), atol=1e-2)


@pytest.mark.parametrize(("mix", "max_greys", "white"), [("gated", 3, False), ("gated-noisy", 5, True)])
def test_gated_draws_keep_to_what_the_noise_gate_lets_through(mix: str, max_greys: float, white: bool) -> None:
    """ "gated" training pairs: half clean, and the noise always grainy (the gate cannot see it), never white;
    "gated-noisy": the same share clean, noise up to 5 grey levels, and about half of it white."""
    hr = _texture(64)
    rng = np.random.default_rng(0)
    clean = degrade(hr, 2, 8)
    draws = [sd.random_degradation(hr, 2, 8, rng, mix) for _ in range(400)]
    assert all(np.allclose(d * 255, np.round(d * 255), atol=1e-4) for d in draws)  # on the 8-bit grid
    assert 0.42 < np.mean([np.array_equal(d, clean) for d in draws]) < 0.6  # 50 % + the rare no-op draw
    flat = np.full((128, 128), 0.5, np.float32)
    noisy = [n for n in (sd.random_degradation(flat, 2, 16, rng, mix) - 0.5 for _ in range(200)) if n.std() > 1e-3]
    neighbour = np.array([np.corrcoef(n[:, :-1].ravel(), n[:, 1:].ravel())[0, 1] for n in noisy])
    assert len(noisy) > 60
    if white:
        assert 0.3 < np.mean(neighbour > 0.3) < 0.7 and np.mean(np.abs(neighbour) < 0.1) > 0.3
    else:
        assert np.all(neighbour > 0.3)  # diverse: a quarter of its noisy draws near 0
    stds = np.array([float(n.std()) for n in noisy]) / (np.sqrt(0.5 + sd.READ_NOISE_SHARE**2) / 255)  # in greys
    assert stds.max() < max_greys * 1.07 and stds.max() > max_greys * 0.8


@pytest.mark.parametrize("photon_std", [2 / 255, 8 / 255])
def test_poisson_gaussian_noise_has_the_stated_std(photon_std: float) -> None:
    rng = np.random.default_rng(0)
    for value in (0.25, 0.6):  # away from the clip at 0 and 1
        flat = np.full((256, 256), value, np.float32)
        measured = float((sd.poisson_gaussian(flat, photon_std, rng) - value).std())
        expected = np.sqrt(photon_std**2 * value + (sd.READ_NOISE_SHARE * photon_std) ** 2)
        assert measured == pytest.approx(expected, rel=0.05)
    assert np.array_equal(sd.poisson_gaussian(flat, 0.0, rng), flat)


def test_noise_grows_with_level_and_is_deterministic_by_seed() -> None:
    hr = np.full((128, 128), 0.5, np.float32)
    stds = [float(sd.degrade_cell(hr, 2, CELLS[f"noise-{k}"], seed=(0, 0)).std()) for k in (1, 2, 4)]
    assert stds[0] < stds[1] < stds[2]
    same = sd.degrade_cell(hr, 2, CELLS["noise-2"], seed=(0, 1))
    assert np.array_equal(same, sd.degrade_cell(hr, 2, CELLS["noise-2"], seed=(0, 1)))
    assert not np.array_equal(same, sd.degrade_cell(hr, 2, CELLS["noise-2"], seed=(0, 2)))


def test_correlated_noise_keeps_its_std_and_spreads_over_neighbours() -> None:
    """noise-corr-2 has noise-2's std (within 10 %), but neighbouring pixels' noise is correlated (white: ~0)."""
    hr = np.full((512, 512), 0.5, np.float32)

    def noise(name: str) -> np.ndarray:
        return sd.degrade_cell(hr, 2, CELLS[name], seed=(0, 0)).astype(np.float64) - 0.5

    white, grain = noise("noise-2"), noise("noise-corr-2")
    assert grain.std() == pytest.approx(white.std(), rel=0.1)
    neighbour = [float(np.corrcoef(n[:, :-1].ravel(), n[:, 1:].ravel())[0, 1]) for n in (white, grain)]
    assert abs(neighbour[0]) < 0.05 and neighbour[1] > 0.5
    flat = np.full((64, 64), 0.5, np.float32)
    assert np.array_equal(sd.correlate_noise(flat, flat + 0.01, 0.0), flat + 0.01)  # sigma 0: unchanged
    assert CELLS["noise-corr-2"].describe() == (
        "area, Poisson-Gaussian 2 grey (8-bit) at full scale, correlated over 1 px, 8 bits"
    )


def test_blur_reduces_high_frequency_energy() -> None:
    hr = _texture()
    energies = [_high_frequency_energy(sd.psf_blur(hr, sigma)) for sigma in (0.0, 0.7, 1.4)]
    assert energies[0] > 2 * energies[1] > 2 * energies[2]
    lr = {name: sd.degrade_cell(hr, 2, CELLS[name]) for name in ("default", "blur-0.7", "blur-1.4")}
    assert _high_frequency_energy(lr["default"]) > _high_frequency_energy(lr["blur-0.7"])
    assert _high_frequency_energy(lr["blur-0.7"]) > _high_frequency_energy(lr["blur-1.4"])
    assert float(sd.psf_blur(hr, 1.4).mean()) == pytest.approx(float(hr.mean()), abs=1e-3)  # no brightness change


def test_kernels_differ_but_keep_flat_fields() -> None:
    hr = _texture()
    lrs = {k: sd.downscale(hr, 2, k) for k in sd.KERNELS}
    assert all(lr.shape == (64, 64) and lr.dtype == np.float32 for lr in lrs.values())
    for a in sd.KERNELS:
        for b in sd.KERNELS:
            assert a == b or np.abs(lrs[a] - lrs[b]).max() > 0.01, (a, b)
    # bicubic without antialias is sharper than the box, the Gaussian smoother
    hf = {k: _high_frequency_energy(lr) for k, lr in lrs.items()}
    assert hf["bicubic"] > hf["area"] > hf["gaussian"]
    for kernel in sd.KERNELS:
        assert np.allclose(sd.downscale(np.full((32, 48), 0.4, np.float32), 2, kernel), 0.4, atol=1e-6), kernel
    with pytest.raises(MammoError, match="unknown downscaling kernel"):
        sd.downscale(hr, 2, "lanczos")


def test_bit_depths_and_jpeg() -> None:
    ramp = np.tile(np.linspace(0.0, 1.0, 1024, dtype=np.float32), (8, 1))
    eight = sd.degrade_cell(ramp, 2, CELLS["default"])
    assert len(np.unique(eight)) == 256 and np.allclose(eight * 255, np.round(eight * 255), atol=1e-4)
    twelve = sd.degrade_cell(ramp, 2, CELLS["bits-12"])
    assert len(np.unique(twelve)) > 256 and np.allclose(twelve * 4095, np.round(twelve * 4095), atol=1e-3)
    hr = _texture()
    jpeg = sd.degrade_cell(hr, 2, CELLS["jpeg-75"])
    assert np.allclose(jpeg * 255, np.round(jpeg * 255), atol=1e-4)  # on the 8-bit grid
    error = np.abs(jpeg - sd.degrade_cell(hr, 2, CELLS["default"]))
    assert 0.5 / 255 < error.max() < 0.5 and error.mean() < 0.05  # lossy beyond half a grey level, not garbage


def test_cell_names() -> None:
    assert len(sd.GRID_CELLS) == 13 and len(set(sd.CELL_NAMES)) == 13
    assert [c.name for c in sd.resolve_cells(["jpeg-75", "noise-2"])] == ["default", "noise-2", "jpeg-75"]
    with pytest.raises(MammoError, match="unknown grid cell 'noise-3'"):
        sd.resolve_cells(["noise-3"])
    assert CELLS["blur-1.4"].describe() == "PSF 1.4 px, area, 8 bits"


def _far_point(mask: np.ndarray, avoid: list[tuple[np.ndarray, np.ndarray]], distance: float = 20.0) -> tuple:
    """(row, col) inside the eroded mask at least `distance` px from every point to avoid."""
    inner = cv2.erode(mask.astype(np.uint8), np.ones((21, 21), np.uint8)).astype(bool)
    rows, cols = np.nonzero(inner)
    keep = np.ones(rows.size, bool)
    for r, c in avoid:
        for pr, pc in zip(r, c, strict=True):
            keep &= np.hypot(rows - pr, cols - pc) > distance
    i = int(np.flatnonzero(keep)[keep.sum() // 2])
    return int(rows[i]), int(cols[i])


def test_speck_counts_on_known_cases(phantom: Path) -> None:
    from mammo_tf.data.specks import detect_specks

    hr, mask = load_film(str(phantom / "mdb001.pgm"), 2)
    truth = pd.read_csv(phantom / TRUTH_NAME)
    mine = truth[truth["image_id"] == "mdb001"]
    reference = (mine["row"].to_numpy(), mine["col"].to_numpy())

    exact = score_outputs(hr, mask, hr.copy(), hr.copy(), reference)  # an "SR" that is HR
    assert exact["reference"] == len(mine) and exact["kept_hr"] > 0
    assert exact["kept_sr"] == exact["kept_bicubic"] == exact["kept_hr"]
    assert exact["spurious_sr"] == exact["spurious_bicubic"] == 0

    found = detect_specks(hr, mask)
    r, c = _far_point(mask, [reference, (found["row"].to_numpy(), found["col"].to_numpy())])
    speck = hr.copy()
    speck[r - 1 : r + 2, c - 1 : c + 2] = np.minimum(speck[r - 1 : r + 2, c - 1 : c + 2] + 0.3, 1.0)
    added = score_outputs(hr, mask, speck, hr.copy(), reference)  # one bright speck far from any true one
    assert added["spurious_sr"] == 1 and added["spurious_bicubic"] == 0
    assert added["kept_sr"] == exact["kept_hr"] and added["gain_db"] < 0  # SR differs from HR, bicubic does not

    smooth = cv2.GaussianBlur(hr, (0, 0), 3.0)  # an "SR" that wipes the specks out
    wiped = score_outputs(hr, mask, smooth, hr.copy(), reference)
    assert wiped["kept_sr"] < wiped["kept_bicubic"] == exact["kept_hr"]


def test_reference_specks_are_the_hr_specks_inside_the_circles() -> None:
    hr = np.full((96, 96), 0.4, np.float32)
    hr[20:23, 20:23] = 0.8  # inside the circle
    hr[70:73, 70:73] = 0.8  # outside
    hr += np.random.default_rng(0).normal(0, 0.002, hr.shape).astype(np.float32)  # a noise floor for the threshold
    mask = np.ones_like(hr, bool)
    circles = pd.DataFrame({"row": [25], "col": [25], "radius": [8]})
    rows, cols = reference_specks(hr, mask, circles)
    assert np.allclose(rows, [21]) and np.allclose(cols, [21])
    assert reference_specks(hr, mask, circles.iloc[:0])[0].size == 0


def test_the_rule_per_cell_and_overall() -> None:
    cells = sd.resolve_cells(["noise-1", "blur-0.7"])
    per_film = pd.DataFrame(
        [
            # cell, film, gain, kept SR / bicubic, spurious SR / bicubic
            ("default", "a", 0.3, 5, 5, 1, 3),
            ("default", "b", -0.1, 4, 4, 0, 0),
            ("noise-1", "a", 0.2, 5, 5, 9, 3),  # more spurious specks than bicubic: fails
            ("noise-1", "b", 0.1, 4, 4, 0, 0),
            ("blur-0.7", "a", -0.2, 3, 4, 0, 0),  # loses PSNR and a speck: fails twice
            ("blur-0.7", "b", 0.1, 4, 4, 0, 0),
        ],
        columns=["cell", "image_id", "gain_db", "kept_sr", "kept_bicubic", "spurious_sr", "spurious_bicubic"],
    ).assign(psnr_sr=40.0, psnr_bicubic=40.0, reference=6, kept_hr=5, gated=[False, True, False, False, False, False])
    table = summarise_grid(per_film, cells).set_index("cell")
    assert list(table.index) == ["default", "noise-1", "blur-0.7"] and (table["films"] == 2).all()
    assert table.loc["default", "pass"] and table.loc["default", "gain_db"] == pytest.approx(0.1)
    assert table.loc["noise-1", ["psnr_ok", "kept_ok", "spurious_ok"]].tolist() == [True, True, False]
    assert table.loc["blur-0.7", ["psnr_ok", "kept_ok", "spurious_ok"]].tolist() == [False, False, True]
    assert table.loc["blur-0.7", "kept_sr"] == 7 and not table["pass"].all()
    assert table["gated"].tolist() == [1, 0, 0]


def test_cli_grid_writes_every_cell(phantom: Path, tiny_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    args = ["evaluate-sr", "--data", phantom, "--model", tiny_model, "--split", "train", "--max-images", "1"]
    result = invoke(*args, "--grid", "--out", out)
    assert result.exit_code == 0, result.output
    grid = pd.read_csv(out / "grid.csv")
    assert grid["cell"].tolist() == list(sd.CELL_NAMES)
    assert grid["pass"].dtype == bool and (grid["films"] == 1).all()
    assert (grid["reference"] == 10).all() and (grid["kept_hr"] == grid["kept_hr"].iloc[0]).all()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["grid"]["films"] == ["mdb001"] and metrics["grid"]["pass"] == bool(grid["pass"].all())
    assert len(pd.read_csv(out / "grid_per_film.csv")) == len(sd.GRID_CELLS)
    report = (out / "report.md").read_text()
    assert "## Scanner grid" in report and "| kernel-gaussian |" in report
    assert "scanner grid on 1 films" in result.output
    picture = cv2.imread(str(out / "grid.png"))  # the per-cell picture the report shows
    assert "](grid.png)" in report and picture is not None and picture.shape[0] > 300 and picture.std() > 10


def test_noise_cells_are_scored_on_every_draw_and_summed(phantom: Path, tiny_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    args = ["evaluate-sr", "--data", phantom, "--model", tiny_model, "--split", "train", "--max-images", "1"]
    result = invoke(*args, "--grid-cells", "noise-corr-1,blur-0.7", "--grid-draws", "2", "--out", out)
    assert result.exit_code == 0, result.output
    per_film = pd.read_csv(out / "grid_per_film.csv")
    assert per_film.groupby("cell")["draw"].apply(list).to_dict() == {
        "default": [0],
        "noise-corr-1": [0, 1],
        "blur-0.7": [0],
    }
    noisy = per_film[per_film["cell"] == "noise-corr-1"]
    assert noisy["psnr_bicubic"].nunique() == 2  # two different noise draws, not one scored twice
    grid = pd.read_csv(out / "grid.csv").set_index("cell")
    assert grid["draws"].to_dict() == {"default": 1, "noise-corr-1": 2, "blur-0.7": 1} and (grid["films"] == 1).all()
    for count in ("spurious_sr", "spurious_bicubic", "kept_bicubic", "reference"):
        assert grid.loc["noise-corr-1", count] == noisy[count].sum()
    assert json.loads((out / "metrics.json").read_text())["grid"]["draws"] == 2
    assert "2 noise draws per noise cell" in (out / "report.md").read_text()


def test_cli_grid_bad_cell_is_one_line(phantom: Path, tiny_model: Path, tmp_path: Path) -> None:
    result = invoke("evaluate-sr", "--data", phantom, "--model", tiny_model, "--grid-cells", "noise-2,blur-9")
    one_error_line(result, "unknown grid cell 'blur-9'")
    help_text = " ".join(invoke("evaluate-sr", "--help").output.split())
    assert all(name in help_text for name in sd.CELL_NAMES)  # --help names every cell
