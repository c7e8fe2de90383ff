"""insert --films on the phantom: clusters in whole normal training films, every other pixel kept bit for bit,
a manifest whose circles hold the specks and that loads as a dataset, same seed same bytes, bad inputs."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from cli_helpers import invoke, one_error_line

from mammo_tf.data.catalog import load_catalog
from mammo_tf.data.preprocess import prepare
from mammo_tf.errors import MammoError
from mammo_tf.inference.insert_films import MAX_PER_FILM, insert_films
from mammo_tf.io.images import encode_pgm, read_image

CLASSIFIER = Path(__file__).resolve().parents[1] / "saved_models" / "calc-classifier" / "model.keras"


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    """An insertion model folder: the phantom's training fit (insertion.json) beside an untrained tiny refiner."""
    from mammo_tf.config import resolve
    from mammo_tf.data.insertion import FIT_NAME, fit_insertion
    from mammo_tf.models.refiner import build_refiner

    folder = tmp_path_factory.mktemp("model")
    (folder / FIT_NAME).write_text(json.dumps(fit_insertion(load_catalog(None), "train").to_dict()))
    build_refiner(resolve("insert", "tiny")).save(folder / "refiner.keras")
    return folder


@pytest.fixture(scope="module")
def films(model: Path, tmp_path_factory) -> tuple[Path, pd.DataFrame]:
    """12 clusters in the phantom's 5 normal training films: some films get several."""
    out = tmp_path_factory.mktemp("films") / "out"
    return out, insert_films(12, out, model=model, seed=1)


def _source_paths() -> pd.Series:
    catalog = load_catalog(None)
    return catalog.images.set_index("image_id")["path"]


def _circles(rows: pd.DataFrame, shape: tuple[int, int]) -> np.ndarray:
    """bool [H, W]: the pixels inside any of the rows' circles (row, col, radius)."""
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    inside = np.zeros(shape, bool)
    for r in rows.itertuples():
        inside |= np.hypot(yy - r.row, xx - r.col) <= r.radius
    return inside


def test_only_the_masked_pixels_change_and_the_circles_hold_them(films) -> None:
    out, manifest = films
    sources = _source_paths()
    catalog = load_catalog(None)
    normal = catalog.images[catalog.images["image_id"].map(catalog.image_labels()).eq("normal")]
    assert set(manifest["background_image"]) <= set(normal.loc[normal["split"] == "train", "image_id"])
    assert len(manifest) == 12 and manifest.groupby("image_id").size().max() <= MAX_PER_FILM
    assert sorted(manifest["index"]) == list(range(12))
    for image_id, rows in manifest.groupby("image_id"):
        source = read_image(sources[rows["background_image"].iloc[0]])
        written = read_image(out / rows["path"].iloc[0])
        mask = read_image(out / rows["mask"].iloc[0]).pixels > 0.5
        assert written.bit_depth == source.bit_depth and written.pixels.shape == source.pixels.shape
        changed = written.pixels != source.pixels
        np.testing.assert_array_equal(written.pixels[~mask], source.pixels[~mask])  # bit for bit outside
        assert changed.any() and not (mask & ~_circles(rows, mask.shape)).any(), image_id
        for r in rows.itertuples():  # each circle holds its own inserted specks
            assert changed[_circles(rows.loc[[r.Index]], mask.shape)].any(), (image_id, r.index)
        centres = rows[["row", "col"]].to_numpy(float)
        gaps = np.hypot(*(centres[:, None] - centres[None]).transpose(2, 0, 1))
        reach = rows["radius"].to_numpy()[:, None] + rows["radius"].to_numpy()[None]
        assert (gaps[~np.eye(len(rows), dtype=bool)] > reach[~np.eye(len(rows), dtype=bool)]).all()
        prepared = prepare(sources[rows["background_image"].iloc[0]])
        breast = prepared.mask[:, ::-1] if prepared.flipped else prepared.mask
        assert not (mask & ~breast).any()  # in the film's own orientation, inside the breast


def test_the_output_is_a_dataset_with_the_background_patients(films) -> None:
    out, manifest = films
    catalog = load_catalog(out)
    sources = load_catalog(None).images.set_index("image_id")
    assert catalog.n_images == manifest["image_id"].nunique() and catalog.source == "manifest"
    for image in catalog.images.itertuples():
        background = image.image_id.removesuffix("_ins")
        assert image.patient_id == sources.loc[background, "patient_id"]
        assert image.bit_depth == sources.loc[background, "bit_depth"]
    findings = catalog.findings.sort_values(["image_id", "row"]).reset_index(drop=True)
    expected = manifest.sort_values(["image_id", "row"]).reset_index(drop=True)
    assert list(findings["abnormality"]) == ["CALC"] * 12
    assert list(findings["severity"]) == [{"benign": "B", "malignant": "M"}[c] for c in expected["class"]]
    assert list(findings["x"]) == list(expected["col"]) and list(findings["y"]) == list(expected["row"])
    assert list(manifest["class"].value_counts().sort_index()) == [6, 6]


def test_same_seed_same_bytes(model: Path, films, tmp_path: Path) -> None:
    out, _ = films
    again = insert_films(12, tmp_path / "again", model=model, seed=1)
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in (tmp_path / "again").iterdir())
    for path in out.iterdir():
        assert path.read_bytes() == (tmp_path / "again" / path.name).read_bytes(), path.name
    other = insert_films(12, tmp_path / "other", model=model, seed=2)
    assert not other[["image_id", "row", "col"]].equals(again[["image_id", "row", "col"]])


def test_cli_refines_once_and_still_keeps_the_tissue(model: Path, tmp_path: Path) -> None:
    result = invoke("insert", "--films", "--n", 2, "--model", model, "--out", tmp_path / "r", "--refine")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith("wrote 2 clusters (benign 1, malignant 1) into ")
    manifest = pd.read_csv(tmp_path / "r" / "manifest.csv")
    assert manifest["refined"].all()
    sources = _source_paths()
    for rows in manifest.groupby("image_id"):
        first = rows[1].iloc[0]
        written = read_image(tmp_path / "r" / first["path"]).pixels
        mask = read_image(tmp_path / "r" / first["mask"]).pixels > 0.5
        np.testing.assert_array_equal(written[~mask], read_image(sources[first["background_image"]]).pixels[~mask])


def test_without_refine_tensorflow_is_not_imported(model: Path, tmp_path: Path) -> None:
    code = (
        "import sys; from mammo_tf.inference.insert_films import insert_films;"
        f"insert_films(1, {str(tmp_path / 'o')!r}, model={str(model)!r});"
        "print('tensorflow' in sys.modules, 'keras' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "False"] and (tmp_path / "o" / "manifest.csv").is_file()


def _dataset(folder: Path, image: np.ndarray, finding: str) -> Path:
    """A one-film manifest dataset in the training split: `finding` is NORM or a benign CALC at the centre."""
    folder.mkdir()
    (folder / "film.pgm").write_bytes(encode_pgm(image, 8))
    centre = image.shape[0] // 2
    extra = f",CALC,B,{centre},{centre},20" if finding == "CALC" else ",NORM,,,,"
    (folder / "manifest.csv").write_text(
        f"path,patient_id,split,abnormality,severity,row,col,radius\nfilm.pgm,p1,train{extra}\n"
    )
    return folder


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--n", "0"], "--n must be >= 1"),
        (["--n", "16"], "do not fit: at most 3 go into one film"),
        (["--class", "normal"], "Invalid value for '--class'"),
        (["--format", "npy"], "--format applies to patches"),
        (["--model", CLASSIFIER], "insertion.json"),
        (["--data", "no-normal"], "no normal film (no finding) in the training split"),
        (["--data", "blank", "--n", "1"], "no usable breast region"),
    ],
)
def test_bad_inputs_are_one_line_and_write_nothing(model: Path, tmp_path: Path, args: list, needle: str) -> None:
    phantom = read_image(_source_paths().iloc[0]).pixels
    data = {
        "no-normal": lambda: _dataset(tmp_path / "calc", phantom, "CALC"),
        "blank": lambda: _dataset(tmp_path / "blank", np.zeros((256, 256), np.float32), "NORM"),
    }
    args = [data[a]() if a in data else a for a in args]
    options = ["--model", model] if "--model" not in args else []
    one_error_line(invoke("insert", "--films", *options, "--out", tmp_path / "o", *args), needle)
    assert not (tmp_path / "o").exists()


def test_another_kind_of_model_and_a_used_folder_are_refused(model: Path, tmp_path: Path) -> None:
    other = tmp_path / "classifier"
    other.mkdir()
    shutil.copy(CLASSIFIER, other / "model.keras")
    shutil.copy(model / "insertion.json", other / "insertion.json")
    one_error_line(invoke("insert", "--films", "--model", other, "--out", tmp_path / "o"), "calcification classifier")
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "x.txt").write_text("x")
    used = invoke("insert", "--films", "--n", 1, "--model", model, "--out", tmp_path / "used")
    one_error_line(used, "not empty (use --overwrite)")
    assert not (tmp_path / "o").exists() and [p.name for p in (tmp_path / "used").iterdir()] == ["x.txt"]
    with pytest.raises(MammoError, match="normal tissue is not inserted"):
        insert_films(1, tmp_path / "n", model=model, class_name="normal")


def test_overwrite_replaces_a_previous_output(model: Path, tmp_path: Path) -> None:
    first = invoke("insert", "--films", "--n", 1, "--model", model, "--out", tmp_path / "o", "--seed", 5)
    second = invoke("insert", "--films", "--n", 2, "--model", model, "--out", tmp_path / "o", "--overwrite")
    assert first.exit_code == 0 and second.exit_code == 0, second.stderr
    assert len(pd.read_csv(tmp_path / "o" / "manifest.csv")) == 2
