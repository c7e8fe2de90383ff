"""`--model` given the wrong file: every model command says what the file is and what it needs, in one line.

Tiny models of every kind are built once per module; the kinds are read from the archive's config.json before
Keras loads anything (mammo_tf.inference.registry.identify_model), so these runs are fast. Also: detect writes
nothing when no input could be processed.
"""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest
from cli_helpers import invoke, one_error_line

from mammo_tf.errors import MammoError
from mammo_tf.inference.registry import check_model, identify_model, resolve_model_path


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    """name -> .keras file: one tiny model of every kind mammo-tf makes, two foreign ones, and files that are not
    models at all."""
    import dataclasses

    from mammo_tf.config import SynthesisConfig, resolve_sr_config
    from mammo_tf.evaluation.features import FeatureConfig, _build
    from mammo_tf.models.classifier import CalcificationClassifier, build_classifier_network
    from mammo_tf.models.sr import build_sr_generator, compiled_srgan
    from mammo_tf.models.synthesis import build_synthesis_gan, build_synthesis_generator

    folder = tmp_path_factory.mktemp("kinds")
    sr = resolve_sr_config("tiny")
    build_sr_generator(sr, name="mammo_sr_generator_x2_ema").save(folder / "sr2.keras")
    build_sr_generator(dataclasses.replace(sr, scale=4)).save(folder / "sr4.keras")
    compiled_srgan(sr).save(folder / "srgan.keras")
    build_synthesis_generator(latent_dim=4, patch_size=8, n_classes=3, width=4, embed_dim=2, max_mult=1).save(
        folder / "synth.keras"
    )
    small = SynthesisConfig(patch_size=8, latent_dim=4, g_width=4, d_width=4, embed_dim=2, max_mult=1)
    build_synthesis_gan(small).save(folder / "synthgan.keras")
    classifier = CalcificationClassifier(build_classifier_network(16, 4))
    classifier(np.zeros((1, 16, 16, 1), np.float32))
    classifier.save(folder / "classifier.keras")
    _build(16, FeatureConfig())[0].save(folder / "featnet.keras")
    inputs = keras.Input((4,))
    keras.Model(inputs, keras.layers.Dense(1)(inputs), name="plain_dense").save(folder / "dense.keras")
    keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)]).save(folder / "sequential.keras")

    (folder / "empty.keras").write_bytes(b"")
    (folder / "image.keras").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
    (folder / "notes.keras").write_text("not a model\n")
    (folder / "weights.keras").write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(64))
    (folder / "lfs.keras").write_text("version https://git-lfs.github.com/spec/v1\noid sha256:00\nsize 1\n")
    (folder / "truncated.keras").write_bytes((folder / "sr2.keras").read_bytes()[:20000])
    with zipfile.ZipFile(folder / "noconfig.keras", "w") as archive:
        archive.writestr("readme.txt", "hello")
    with zipfile.ZipFile(folder / "badjson.keras", "w") as archive:
        archive.writestr("config.json", "{not json")
    with zipfile.ZipFile(folder / "unknown.keras", "w") as archive:
        archive.writestr("config.json", json.dumps({"class_name": "Gone", "registered_name": "mammo_tf>Gone"}))
    return {p.stem: p for p in folder.glob("*.keras")}


@pytest.fixture(scope="module")
def film(tmp_path_factory) -> Path:
    """One small phantom film (256 px) that detect can score."""
    from mammo_tf.data.phantom import render_phantom_image
    from mammo_tf.io.images import write_image

    path = tmp_path_factory.mktemp("film") / "film.pgm"
    write_image(path, render_phantom_image(0, 0, size=256)[0], 8)
    return path


# ------------------------------------------------------------------------------------------- identification


@pytest.mark.parametrize(
    ("name", "kind", "what"),
    [
        ("sr2", "sr", "an SR model of scale 2"),
        ("sr4", "sr", "an SR model of scale 4"),
        ("srgan", "srgan", "an SR training checkpoint (SRGAN, scale 2)"),
        ("synth", "synthesis", "a synthesis model (8 px patches, 3 classes)"),
        ("synthgan", "synthesis-gan", "a synthesis training checkpoint (SynthesisGAN, 8 px patches, 3 classes)"),
        ("classifier", "classifier", "a calcification classifier (16 px patches)"),
        ("featnet", "featnet", "evaluate-gan's feature network (16 px patches)"),
        ("dense", "other", "a Keras Functional model 'plain_dense' that mammo-tf did not make"),
        ("sequential", "other", "a Keras Sequential model"),
        ("unknown", "other", "class 'Gone' (registered as 'mammo_tf>Gone') that this version of mammo-tf"),
    ],
)
def test_identify_model_reads_the_kind_from_config_json(models, name: str, kind: str, what: str) -> None:
    info = identify_model(models[name])
    assert info.kind == kind and what in info.what, info


@pytest.mark.parametrize(
    ("name", "needle"),
    [
        ("empty", "not a .keras archive (a .keras model is a zip file; this one is empty (0 bytes))"),
        ("image", "not a .keras archive (a .keras model is a zip file; this one is a PNG image)"),
        ("notes", "not a .keras archive (a .keras model is a zip file; this one is a text file)"),
        ("weights", "this one is an HDF5 file"),
        ("lfs", "this one is a Git LFS pointer: fetch the model itself with `git lfs pull`"),
        ("truncated", "a damaged .keras archive (a truncated or corrupt zip, 20,000 bytes)"),
        ("noconfig", "a zip file but not a .keras model (no config.json inside; it holds readme.txt)"),
        ("badjson", "a damaged .keras archive (its config.json is not valid JSON)"),
    ],
)
def test_files_that_are_not_keras_archives_say_what_they_are(models, name: str, needle: str) -> None:
    with pytest.raises(MammoError) as caught:
        identify_model(models[name])
    message = str(caught.value)
    assert message.startswith(f"{models[name]}: ") and needle in message and "\n" not in message


def test_identifying_a_model_imports_no_tensorflow(models) -> None:
    code = (
        "import sys\n"
        "from mammo_tf.inference.registry import check_model\n"
        f"print(check_model({str(models['sr2'])!r}, ('sr',), 'upscale', scale=2).what)\n"
        "print('tensorflow' in sys.modules, 'keras' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split("\n")[:2] == ["an SR model of scale 2", "False False"]


# -------------------------------------------------------------------------------------- every model command

# command -> (argv with {model} and {out}, the wrong kind to give it, what the message says it is, what it needs)
COMMANDS = {
    "upscale": (
        ["upscale", "{film}", "--out", "{out}", "--model", "{model}"],
        "classifier",
        "this is a calcification classifier (16 px patches)",
        "upscale needs an SR model",
    ),
    "synth": (
        ["synth", "--n", "2", "--out", "{out}", "--model", "{model}"],
        "sr2",
        "this is an SR model of scale 2",
        "synth needs a synthesis model",
    ),
    "detect": (
        ["detect", "{film}", "--out", "{out}", "--model", "{model}"],
        "synth",
        "this is a synthesis model (8 px patches, 3 classes)",
        "detect needs a calcification classifier",
    ),
    "evaluate-sr": (
        ["evaluate-sr", "--data", "{data}", "--out", "{out}", "--model", "{model}"],
        "synthgan",
        "this is a synthesis training checkpoint (SynthesisGAN, 8 px patches, 3 classes)",
        "evaluate-sr needs an SR model",
    ),
    "evaluate-gan": (
        ["evaluate-gan", "--data", "{data}", "--out", "{out}", "--model", "{model}"],
        "classifier",
        "this is a calcification classifier (16 px patches)",
        "evaluate-gan needs a synthesis model",
    ),
    "export": (
        ["export", "{model}", "--name", "m", "--out", "{out}"],
        "featnet",
        "this is evaluate-gan's feature network (16 px patches)",
        "export needs an SR model, a synthesis model or a calcification classifier",
    ),
}


def _run(command: str, model: Path, film: Path, tmp_path: Path):
    out = tmp_path / "out"
    argv = [a.format(model=model, out=out, film=film, data=film.parent) for a in COMMANDS[command][0]]
    return invoke(*argv), out


@pytest.mark.parametrize("command", list(COMMANDS))
def test_a_model_of_the_wrong_kind_is_refused_in_one_line(command, models, film, tmp_path) -> None:
    _, wrong, what, needs = COMMANDS[command]
    result, out = _run(command, models[wrong], film, tmp_path)
    one_error_line(result, f"{models[wrong]}: {what}; {needs}")
    assert not out.exists()


@pytest.mark.parametrize("command", list(COMMANDS))
@pytest.mark.parametrize(("bad", "what"), [("image", "a PNG image"), ("notes", "a text file"), ("empty", "empty")])
def test_a_file_that_is_not_a_model_is_refused_in_one_line(command, bad, what, models, film, tmp_path) -> None:
    result, out = _run(command, models[bad], film, tmp_path)
    one_error_line(result, f"{models[bad]}: not a .keras archive (a .keras model is a zip file; this one is {what}")
    assert not out.exists()


@pytest.mark.parametrize("command", list(COMMANDS))
def test_a_damaged_or_unknown_archive_is_refused_in_one_line(command, models, film, tmp_path) -> None:
    for name, needle in (("truncated", "a damaged .keras archive"), ("unknown", "class 'Gone'")):
        result, out = _run(command, models[name], film, tmp_path)
        one_error_line(result, str(models[name]), needle)
        assert not out.exists()


def test_upscale_scale_mismatch_says_both_scales(models, film, tmp_path) -> None:
    out = tmp_path / "out"
    result = invoke("upscale", film, "--out", out, "--model", models["sr2"], "--scale", "4")
    one_error_line(result, f"{models['sr2']}: this is an SR model of scale 2; upscale needs an SR model of scale 4")
    assert not out.exists()


def test_a_training_checkpoint_points_to_the_exported_generator(models, film, tmp_path) -> None:
    result = invoke("upscale", film, "--out", tmp_path / "out", "--model", models["srgan"])
    one_error_line(result, "this is an SR training checkpoint (SRGAN, scale 2); upscale needs an SR model", "generator")
    with pytest.raises(MammoError, match="SynthesisGAN.*export needs .*not a checkpoint"):
        check_model(models["synthgan"], ("sr", "synthesis", "classifier"), "export")
    check_model(models["synthgan"], ("synthesis", "synthesis-gan"), "synth")  # synth samples its EMA generator


def test_run_directories_of_the_wrong_kind_or_without_a_model(models, film, tmp_path) -> None:
    import shutil

    sr_run = tmp_path / "sr-run"
    sr_run.mkdir()
    shutil.copy(models["sr2"], sr_run / "generator.keras")
    one_error_line(
        invoke("synth", "--n", 2, "--out", tmp_path / "out", "--model", sr_run),
        f"{sr_run / 'generator.keras'}: this is an SR model of scale 2; synth needs a synthesis model",
    )
    empty = tmp_path / "empty-run"
    (empty / "checkpoints").mkdir(parents=True)
    one_error_line(invoke("detect", film, "--out", tmp_path / "out", "--model", empty), str(empty), "no model")
    (empty / "checkpoints" / "last.keras").write_bytes(models["srgan"].read_bytes())
    with pytest.raises(MammoError, match="has not exported its model yet"):
        resolve_model_path(empty, "sr")
    shelf = tmp_path / "shelf"
    shelf.mkdir()
    shutil.copy(models["featnet"], shelf / "mammo-featnet-v1-abc.keras")
    with pytest.raises(MammoError, match="it holds mammo-featnet-v1-abc.keras: give the file itself"):
        resolve_model_path(shelf, "sr")
    (tmp_path / "serving").mkdir()
    (tmp_path / "serving" / "saved_model.pb").write_bytes(b"")
    with pytest.raises(MammoError, match="a TensorFlow SavedModel"):
        resolve_model_path(tmp_path / "serving", "sr")
    assert not (tmp_path / "out").exists()


def test_study_sr_arm_refuses_another_kind_before_reading_its_metadata(models) -> None:
    from mammo_tf.workflows.study import load_sr_model_and_patients

    with pytest.raises(MammoError, match=r"this is a synthesis model .*; evaluate-aug --sr-model needs an SR model"):
        load_sr_model_and_patients(models["synth"])


# --------------------------------------------------------------------------------------- detect, every input bad


def test_detect_writes_nothing_when_no_input_could_be_processed(models, tmp_path) -> None:
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    notes = tmp_path / "notes.pgm"
    notes.write_text("hello")
    out = tmp_path / "d"
    result = invoke("detect", broken, notes, "--out", out, "--model", models["classifier"], "--stride", 64)
    one_error_line(result, "no input could be processed: ", f"{broken}: ", f"{notes}: ")
    assert not out.exists() and result.stdout == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.png", "notes.pgm"]  # no temporaries
    existing = tmp_path / "existing"
    existing.mkdir()
    result = invoke("detect", broken, "--out", existing, "--model", models["classifier"], "--stride", 64)
    one_error_line(result, "no input could be processed: ", str(broken))
    assert not list(existing.iterdir())


def test_detect_keeps_the_films_that_worked(models, film, tmp_path) -> None:
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    for out in (tmp_path / "new", tmp_path / "existing"):
        if out.name == "existing":
            out.mkdir()
            (out / "keep.txt").write_text("mine")
        result = invoke("detect", broken, film, "--out", out, "--model", models["classifier"], "--stride", 64)
        one_error_line(result, str(broken))  # exit 2, the failed film named on its own line
        assert f"wrote {out / 'film_heatmap.png'}" in result.stdout
        table = pd.read_csv(out / "detections.csv")
        assert set(table["image"]) == {"film.pgm"} and table["model"].str.startswith("classifier@").all()
        names = sorted(p.name for p in out.iterdir())
        assert names == sorted(["detections.csv", "film_heatmap.png", *(["keep.txt"] * (out.name == "existing"))])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.png", "existing", "new"]  # no temporaries
