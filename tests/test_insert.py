"""train-insert and insert on the phantom: a tiny refiner run, inserted patches with masks, bad inputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from cli_helpers import invoke, one_error_line

from mammo_tf.data.catalog import load_catalog
from mammo_tf.data.insertion import fit_insertion, insert_clusters
from mammo_tf.errors import MammoError
from mammo_tf.io.images import read_image
from mammo_tf.workflows.training import train_insert


@pytest.fixture(scope="module")
def insert_run(tmp_path_factory) -> Path:
    """A finished tiny insertion run on the default phantom (4 steps, validation every 2)."""
    run = tmp_path_factory.mktemp("runs") / "insert"
    train_insert(None, run, preset="tiny", verbose=0)
    return run


def test_run_directory_contract_and_patients(insert_run: Path) -> None:
    config = json.loads((insert_run / "config.json").read_text())
    catalog = load_catalog(None)
    train = set(catalog.images.loc[catalog.images["split"] == "train", "patient_id"])
    assert config["kind"] == "insert" and set(config["train_patients"]) <= train
    assert set(config["layout_patients"]) <= train and config["layout_patients"]
    for name in ("refiner.keras", "insertion.json", "checkpoints/last.keras", "metrics.json"):
        assert (insert_run / name).is_file(), name
    records = [json.loads(line) for line in (insert_run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "val_change_in_mask" in r] == [2, 4]
    assert list((insert_run / "samples").glob("samples-*.png"))


def test_insert_writes_patches_masks_and_manifest_deterministically(insert_run: Path, tmp_path: Path) -> None:
    for out in ("a", "b"):
        result = invoke("insert", "--n", 6, "--model", insert_run, "--out", tmp_path / out, "--seed", 3, "--refine")
        assert result.exit_code == 0, result.stderr
        assert "wrote 6 patches (benign 3, malignant 3)" in result.stdout
    manifest = pd.read_csv(tmp_path / "a" / "manifest.csv")
    assert list(manifest["class"]) == ["benign", "malignant"] * 3 and manifest["refined"].all()
    images = [read_image(tmp_path / "a" / name).pixels for name in manifest["file"]]
    assert all(image.shape == (32, 32) for image in images)  # the size the (tiny) refiner was trained at
    plain = invoke("insert", "--n", 2, "--model", insert_run, "--out", tmp_path / "plain")
    assert plain.exit_code == 0 and not pd.read_csv(tmp_path / "plain" / "manifest.csv")["refined"].any()
    for row in manifest.itertuples():
        a, b = (tmp_path / "a" / row.file).read_bytes(), (tmp_path / "b" / row.file).read_bytes()
        assert a == b  # same model, data, seed: same bytes
        mask = read_image(tmp_path / "a" / row.mask).pixels > 0.5
        assert mask.any() and row.n_specks >= 1


def test_refinement_and_rendering_leave_the_tissue_outside_the_mask_untouched(insert_run: Path, tmp_path: Path) -> None:
    from mammo_tf.inference.insert import load_insertion_model, refine_patches

    refiner, fit, _ = load_insertion_model(insert_run)
    catalog = load_catalog(None)
    assert fit.jitter == 16  # the tiny preset's real positives' jitter, recorded in insertion.json
    made = insert_clusters(catalog, fit, 8, 32, seed=1, jitter=fit.jitter)
    backgrounds = made.backgrounds.images[..., 0]
    refined = refine_patches(refiner, made.images, made.masks)
    for i in range(8):
        outside = ~made.masks[i]
        np.testing.assert_array_equal(made.images[i, ..., 0][outside], backgrounds[i][outside])
        np.testing.assert_array_equal(refined[i][outside], backgrounds[i][outside])


def test_inserted_clusters_are_jittered_like_real_positives() -> None:
    """Real positives' centres sit up to min(jitter, cluster radius) px off the patch centre; inserted ones too
    (so where a cluster sits does not tell them apart), by their own random stream: jitter 0 keeps the layouts."""
    catalog = load_catalog(None)
    fit = fit_insertion(catalog, "train")
    centred = insert_clusters(catalog, fit, 12, 32, seed=2)
    jittered = insert_clusters(catalog, fit, 12, 32, seed=2, jitter=16)
    again = insert_clusters(catalog, fit, 12, 32, seed=2, jitter=16)
    np.testing.assert_array_equal(jittered.images, again.images)
    assert all(r["centre"] == (16.0, 16.0) for r in centred.records)
    offsets = [np.subtract(r["centre"], 16.0) for r in jittered.records]
    assert sum(np.any(o != 0) for o in offsets) >= 6
    for offset, layout_radius in zip(offsets, [r["layout_radius"] for r in jittered.records], strict=True):
        assert np.hypot(*offset) <= min(16, int(layout_radius)) + 1e-9
    assert [r["arrangement"] for r in centred.records] == [r["arrangement"] for r in jittered.records]


def test_a_fit_never_sees_a_test_patient() -> None:
    catalog = load_catalog(None)
    fit = fit_insertion(catalog, "train")
    others = set(catalog.images.loc[catalog.images["split"] != "train", "patient_id"])
    assert fit.patients and not set(fit.patients) & others


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--n", "0"], "--n must be >= 1"),
        (["--class", "normal"], "Invalid value for '--class'"),
    ],
)
def test_insert_bad_options(insert_run: Path, tmp_path: Path, args: list[str], needle: str) -> None:
    one_error_line(invoke("insert", "--model", insert_run, "--out", tmp_path / "o", *args), needle)
    assert not (tmp_path / "o").exists()


def test_insert_refuses_another_kind_of_model_and_a_used_folder(insert_run: Path, tmp_path: Path) -> None:
    classifier = Path(__file__).resolve().parents[1] / "saved_models" / "calc-classifier" / "model.keras"
    one_error_line(invoke("insert", "--n", 2, "--model", classifier, "--out", tmp_path / "o"), "insertion.json")
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "x.txt").write_text("x")
    one_error_line(invoke("insert", "--n", 2, "--model", insert_run, "--out", tmp_path / "used"), "not empty")
    assert not (tmp_path / "o").exists() and sorted(p.name for p in (tmp_path / "used").iterdir()) == ["x.txt"]


def test_no_calcification_findings_is_one_clear_error(tmp_path: Path) -> None:
    from mammo_tf.data.schema import Catalog

    catalog = load_catalog(None)
    findings = catalog.findings.iloc[0:0]
    empty = Catalog(catalog.images, findings, catalog.source, catalog.root)
    with pytest.raises(MammoError, match="no calcification findings"):
        train_insert(None, tmp_path / "run", preset="tiny", catalog=empty, verbose=0)
    assert not (tmp_path / "run").exists()


def test_an_inserted_background_is_never_also_a_negative_of_the_same_training_set(tmp_path: Path) -> None:
    from mammo_tf.data.samplers import Patches
    from mammo_tf.training.classifier_trainer import without_backgrounds

    patches = Patches(
        images=np.zeros((4, 32, 32, 1), np.float32),
        labels=np.array([0, 0, 0, 2], np.int32),
        image_id=np.array(["mdb001", "mdb001", "mdb002", "mdb001"]),
        patient_id=np.array(["p1", "p1", "p1", "p1"]),
        centre_row=np.array([100, 300, 100, 100]),
        centre_col=np.array([100, 100, 100, 100]),
    )
    pd.DataFrame(
        {"file": ["b.png"], "class": ["benign"], "background_image": ["mdb001"], "background_row": [120],
         "background_col": [90]}
    ).to_csv(tmp_path / "manifest.csv", index=False)  # fmt: skip
    kept = without_backgrounds(patches, tmp_path)
    # the first normal overlaps the background (20 px away < 32); the far one, the other film's and the positive stay
    assert list(kept.centre_row) == [300, 100, 100] and list(kept.image_id) == ["mdb001", "mdb002", "mdb001"]


def test_a_shipped_insertion_model_carries_its_fit_and_is_the_default(
    insert_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mammo_tf.workflows.cards import ship_run

    folder = ship_run(insert_run, "insert-64", tmp_path / "models")
    assert (folder / "insertion.json").read_bytes() == (insert_run / "insertion.json").read_bytes()
    assert json.loads((folder / "card.json").read_text())["kind"] == "insert"
    monkeypatch.setenv("MAMMO_MODELS", str(tmp_path / "models"))  # insert without --model: the shipped default
    result = invoke("insert", "--n", 2, "--out", tmp_path / "out")
    assert result.exit_code == 0, result.stderr
    assert pd.read_csv(tmp_path / "out" / "manifest.csv")["model"].str.startswith("insert-64@").all()
