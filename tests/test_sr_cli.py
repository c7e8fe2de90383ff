"""train-sr / upscale / evaluate-sr end to end on the phantom, the run-directory contract, and bad inputs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import keras
import numpy as np
import pydicom
import pytest
import tensorflow as tf
from cli_helpers import invoke, one_error_line
from dicom_builders import make_dataset, save

from mammo_tf.data.degrade import degrade
from mammo_tf.data.phantom import cached_phantom_dir
from mammo_tf.errors import MammoError
from mammo_tf.io.images import read_image, write_image
from mammo_tf.training.runs import NonFiniteLoss, Run, fit_in_run
from mammo_tf.workflows.training import train_sr


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    """A finished tiny SR run on the default phantom: 4 pretraining + 2 GAN steps, validation every 2."""
    run = tmp_path_factory.mktemp("runs") / "tiny"
    train_sr(None, run, preset="tiny", verbose=0)
    return run


def test_run_directory_contract(tiny_run: Path) -> None:
    config = json.loads((tiny_run / "config.json").read_text())
    assert config["kind"] == "sr" and config["pretrain_steps"] == 4 and config["gan_steps"] == 2
    assert config["precision_resolved"] in ("float32", "mixed_bfloat16") and config["train_patients"]
    records = [json.loads(line) for line in (tiny_run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "val_psnr" in r] == [2, 4, 6]
    assert {r["phase"] for r in records} == {"pretrain", "gan"}
    final = json.loads((tiny_run / "metrics.json").read_text())
    assert final["steps"] == 6 and np.isfinite(final["val_psnr"]) and final["validation_split"] == "val"
    assert final["best_pretrain_step"] in (2, 4)  # chosen among pretraining validations only
    assert final["noise_ceiling_greys"] > 0  # the noisiest training film's LR: upscale's noise gate
    for name in (
        "checkpoints/last.keras",
        "generator.keras",
        "generator_psnr.keras",
        "generator_gan.keras",
        "generator_best.keras",
    ):
        assert (tiny_run / name).is_file(), name
    assert len(list((tiny_run / "samples").glob("compare-*.png"))) == 3
    assert list((tiny_run / "tb").iterdir())
    assert not list(tiny_run.rglob("*.part*"))  # atomic writes leave no temporaries


def test_resume_continues_step_count_and_schedule(tiny_run: Path, tmp_path: Path) -> None:
    import shutil

    run = tmp_path / "resumed"
    shutil.copytree(tiny_run, run)
    train_sr(None, run, preset="tiny", resume=True, gan_steps=4, verbose=0)
    state = json.loads((run / "state.json").read_text())
    assert state["step"] == 8 and state["finished"]
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(steps) and steps[-1] == 8  # no restart from 0
    model = keras.models.load_model(run / "checkpoints" / "last.keras")
    assert int(model.g_optimizer.iterations) == 8 and int(model.d_optimizer.iterations) == 4


def test_diverse_degradations_from_a_model_and_older_configs_resume(tiny_run: Path, tmp_path: Path) -> None:
    run = tmp_path / "diverse"
    train_sr(None, run, preset="tiny", lr_degradations="diverse", init_from=tiny_run, steps=2, verbose=0)
    config = json.loads((run / "config.json").read_text())
    assert config["lr_degradations"] == "diverse" and config["init_from"].startswith("generator")
    start = keras.models.load_model(tiny_run / "generator.keras").get_layer("head").kernel.numpy()
    tuned = keras.models.load_model(run / "generator.keras").get_layer("head").kernel.numpy()
    assert np.abs(tuned - start).max() < 0.02 < np.abs(start).max()  # two Adam steps from it, not a fresh start
    with pytest.raises(MammoError, match="another generator architecture"):
        train_sr(None, tmp_path / "other", preset="tiny", generator="compact", init_from=tiny_run, verbose=0)
    # A run saved before lr_degradations existed resumes: the missing field meant the box.
    old = tmp_path / "old"
    shutil.copytree(tiny_run, old)
    saved = json.loads((old / "config.json").read_text())
    del saved["lr_degradations"]
    (old / "config.json").write_text(json.dumps(saved))
    train_sr(None, old, preset="tiny", resume=True, gan_steps=4, verbose=0)
    assert json.loads((old / "state.json").read_text())["step"] == 8


def test_train_sr_init_from_a_missing_model_is_one_line(tmp_path: Path) -> None:
    run = tmp_path / "run"
    result = invoke(
        "train-sr", "--preset", "quick", "--init-from", str(tmp_path / "nowhere.keras"), "--run-dir", str(run)
    )
    one_error_line(result, str(tmp_path / "nowhere.keras"), "model file not found")
    assert not run.exists() or not any(run.iterdir())


def test_resume_refusals(tiny_run: Path, tmp_path: Path) -> None:
    with pytest.raises(MammoError, match="no checkpoint"):
        train_sr(None, tmp_path / "empty", preset="tiny", resume=True)
    with pytest.raises(MammoError, match="another config .*seed"):
        train_sr(None, tiny_run, preset="tiny", resume=True, seed=5)
    with pytest.raises(MammoError, match="not empty"):
        train_sr(None, tiny_run, preset="tiny")


def test_nan_guard_stops_and_keeps_last_good_checkpoint(tmp_path: Path) -> None:
    from mammo_tf.config import resolve_sr_config
    from mammo_tf.models.sr import compiled_srgan

    model = compiled_srgan(resolve_sr_config("tiny"))
    lr = np.full((2, 8, 8, 1), 0.5, np.float32)
    good = tf.data.Dataset.from_tensors(((lr, np.zeros(2, np.float32)), np.full((2, 16, 16, 1), 0.5, np.float32)))
    bad = tf.data.Dataset.from_tensors(((lr, np.zeros(2, np.float32)), np.full((2, 16, 16, 1), np.nan, np.float32)))
    run = Run.create(tmp_path / "nan", {"kind": "test"})
    fit_in_run(model, good.repeat(), run, phase="pretrain", start=0, end=2, interval=2, verbose=0)
    saved = (tmp_path / "nan" / "checkpoints" / "last.keras").read_bytes()
    with pytest.raises(NonFiniteLoss, match="nan at step 3 .*last good checkpoint at step 2"):
        fit_in_run(model, bad.repeat(), run, phase="pretrain", start=2, end=4, interval=2, verbose=0)
    assert json.loads((tmp_path / "nan" / "state.json").read_text())["step"] == 2
    assert (tmp_path / "nan" / "checkpoints" / "last.keras").read_bytes() == saved


def test_a_resumed_run_removes_what_a_kill_left_of_an_atomic_write(tmp_path) -> None:
    """kill -9 during save_keras_atomic or atomic_file leaves its temporary beside the target: resuming removes
    it (and nothing else)."""
    Run.create(tmp_path / "run", {"kind": "test"})
    (tmp_path / "run" / "state.json").write_text(json.dumps({"step": 2, "phase": "pretrain", "finished": False}))
    (tmp_path / "run" / "checkpoints").mkdir()
    (tmp_path / "run" / "checkpoints" / "last.keras").write_bytes(b"whole")
    left = [
        tmp_path / "run" / ".classifier.pc1xq4a4.part.keras",
        tmp_path / "run" / "checkpoints" / ".last.keras.x1y2.part",
        tmp_path / "run" / "samples" / ".grid.png.ab12.part",
    ]
    for path in left:
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(b"half")
    (tmp_path / "run" / ".tiles.part").mkdir()  # an atomic_dir's
    (tmp_path / "run" / ".tiles.part" / "t0.npy").write_bytes(b"half")
    Run.create(tmp_path / "run", {"kind": "test"}, resume=True)
    names = {p.relative_to(tmp_path / "run").as_posix() for p in (tmp_path / "run").rglob("*")}
    assert not [name for name in names if ".part" in name], names
    assert {"checkpoints/last.keras", "config.json", "state.json", "samples"} <= names


def _dicom(path: Path) -> Path:
    pixels = (np.random.default_rng(0).random((40, 30)) * 4095).astype(np.uint16)
    ds = make_dataset(
        pixels, bits_stored=12, PixelSpacing=[0.1, 0.1], WindowCenter=2048, WindowWidth=4096, PatientID="P1"
    )
    return save(ds, path)


@pytest.mark.slow
def test_cli_train_upscale_evaluate(tmp_path: Path, tiny_run: Path) -> None:
    run = tmp_path / "quick"
    # 2 steps, both pretraining, validated once on the preset's 4 whole films (4 steps validated every step:
    # 16 whole-film upscales, half this test's time); tiny_run covers the GAN phase.
    result = invoke("train-sr", "--preset", "quick", "--steps", "2", "--run-dir", str(run), "--precision", "float32")
    assert result.exit_code == 0, result.output
    assert (run / "generator.keras").is_file()

    phantom = cached_phantom_dir()
    png16 = tmp_path / "in" / "film16.png"
    write_image(png16, read_image(phantom / "mdb001.pgm").pixels[:200, :150], 16)
    dcm = _dicom(tmp_path / "in" / "film.dcm")
    out = tmp_path / "out"
    result = invoke(
        "upscale",
        str(phantom / "mdb001.pgm"),
        str(png16),
        str(dcm),
        "--out",
        str(out),
        "--model",
        str(run),
        "--risk-map",
        "--noise-gate",
        "off",  # the DICOM is random pixels, far noisier than the phantom: the gate would write bicubic
    )
    assert result.exit_code == 0, result.output
    assert read_image(out / "mdb001_x2.pgm").pixels.shape == (2048, 2048)
    assert read_image(out / "mdb001_x2.pgm").bit_depth == 8
    sr16 = read_image(out / "film16_x2.png")
    assert sr16.bit_depth == 16 and sr16.pixels.shape == (400, 300)
    assert (out / "film16_x2_risk.png").is_file()
    derived, source = pydicom.dcmread(out / "film_x2.dcm"), pydicom.dcmread(dcm)
    assert (derived.Rows, derived.Columns) == (80, 60) and derived.BitsStored == 12
    assert [float(v) for v in derived.PixelSpacing] == [0.05, 0.05]
    assert derived.SOPInstanceUID != source.SOPInstanceUID and "DERIVED" in derived.ImageType
    assert derived.SourceImageSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID
    assert derived.PatientID == "P1" and "WindowCenter" not in derived
    back = read_image(out / "film_x2.dcm")  # reads back through the project's own reader
    from mammo_tf.data.degrade import area_downsample

    lr = read_image(dcm).pixels
    assert np.abs(area_downsample(back.pixels, 2) - lr).max() <= 1.5 / 4095  # half a grey level + rounding

    report = tmp_path / "report"
    result = invoke("evaluate-sr", "--model", str(tiny_run), "--out", str(report), "--max-images", "1")
    assert result.exit_code == 0, result.output
    metrics = json.loads((report / "metrics.json").read_text())
    assert set(metrics["variants"]) == {"float", "8-bit", "16-bit"}
    assert metrics["variants"]["float"]["consistency_error_max"] < 1e-5
    assert metrics["variants"]["8-bit"]["consistency_excess_max"] < 1e-6
    assert "truth_specks" in metrics["specks"]  # the phantom's ground truth was used
    assert "gain over bicubic" in (report / "report.md").read_text()
    assert "film foreground: HR > 0.08 eroded 9x9, 4-px border" in (report / "report.md").read_text()
    assert (report / "worst_region.png").is_file() and " rows " in metrics["worst_region"]["where"]
    row = next(r for r in metrics["per_image"] if r["variant"] == "8-bit")
    gain = metrics["variants"]["8-bit"]["anchor_gain_over_bicubic_db"]["estimate"]
    assert gain == pytest.approx(row["psnr_anchor_sr"] - row["psnr_anchor_bicubic"])
    files = metrics["files"]  # 16-bit rounding keeps the float gain (to 0.01 dB); 8-bit rounding need not
    assert files["sr_file16_vs_bicubic"]["estimate"] == pytest.approx(gain, abs=0.01)
    eight_bit = row["psnr_anchor_sr_file"] - row["psnr_anchor_bicubic_file"]
    assert files["sr_file_vs_bicubic_file"]["estimate"] == pytest.approx(eight_bit)
    assert "The files `upscale` writes" in (report / "report.md").read_text()


def test_upscale_keeps_going_after_a_bad_image(tmp_path: Path, tiny_run: Path) -> None:
    good = cached_phantom_dir() / "mdb002.pgm"
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    out = tmp_path / "out"
    result = invoke("upscale", broken, good, "--out", out, "--model", tiny_run, "--noise-gate", "off")
    one_error_line(result, str(broken))
    assert (tmp_path / "out" / "mdb002_x2.pgm").is_file()
    assert not (tmp_path / "out" / "broken_x2.png").exists()


def test_upscale_bits_and_engines(tmp_path: Path, tiny_run: Path) -> None:
    """--bits 16 keeps what rounding to an 8-bit film's levels drops; both engines give the same film."""
    film = tmp_path / "in" / "film.pgm"
    write_image(film, read_image(cached_phantom_dir() / "mdb001.pgm").pixels[300:420, 300:400], 8)
    outputs = {}
    for engine, bits in (("keras", "16"), ("xla", "16"), ("xla", "input")):
        out = tmp_path / f"{engine}-{bits}"
        result = invoke(
            "upscale", str(film), "--out", str(out), "--model", str(tiny_run), "--engine", engine, "--bits", bits
        )
        assert result.exit_code == 0, result.output
        outputs[engine, bits] = read_image(out / "film_x2.pgm")
    assert outputs["xla", "16"].bit_depth == 16 and outputs["xla", "input"].bit_depth == 8
    # precision auto: float32 on a CPU without native bf16, where the engines agree to round-off and one 16-bit
    # level; mixed_bfloat16 on one with it (Intel AVX-512), where keras rounds the residual to bf16 and xla does
    # not: 3.2e-3 measured for sr-x2's larger residual, so 1e-2 there.
    from mammo_tf.inference.sr_engine import computes_in_bfloat16

    bf16 = computes_in_bfloat16(keras.models.load_model(tiny_run / "generator.keras"))
    tolerance = 1e-2 if bf16 else 1.5 / 65535
    assert np.abs(outputs["keras", "16"].pixels - outputs["xla", "16"].pixels).max() <= tolerance
    eight, sixteen = outputs["xla", "input"].pixels, outputs["xla", "16"].pixels
    assert np.abs(eight - sixteen).max() <= 0.5 / 255 + 1 / 65535  # the 8-bit file is the 16-bit one rounded
    assert len(np.unique(sixteen)) > len(np.unique(eight))  # ... and the 16-bit file keeps levels between


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--scale", "4"], "this is an SR model of scale 2; upscale needs an SR model of scale 4"),
        (["--tile", "20", "--overlap", "16"], "smaller than twice the overlap"),
        (["--tile", "64", "--overlap", "4"], "seams"),
    ],
)
def test_upscale_bad_options(tmp_path: Path, tiny_run: Path, extra: list[str], needle: str) -> None:
    image = cached_phantom_dir() / "mdb001.pgm"
    result = invoke("upscale", str(image), "--out", str(tmp_path / "out"), "--model", str(tiny_run), *extra)
    one_error_line(result, needle)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_upscale_refuses_a_model_that_is_not_sr(tmp_path: Path) -> None:
    inputs = keras.Input((4,))
    other = tmp_path / "classifier.keras"
    keras.Model(inputs, keras.layers.Dense(1)(inputs), name="something_else").save(other)
    text = tmp_path / "notes.keras"
    text.write_text("not a model")
    image = cached_phantom_dir() / "mdb001.pgm"
    for model, needle in ((other, "upscale needs an SR model"), (text, "not a .keras archive")):
        result = invoke("upscale", str(image), "--out", str(tmp_path / "out"), "--model", str(model))
        one_error_line(result, str(model), needle)


def test_train_sr_bad_run_dirs(tmp_path: Path, tiny_run: Path) -> None:
    one_error_line(invoke("train-sr", "--run-dir", str(tmp_path / "none"), "--resume"), "no checkpoint")
    one_error_line(invoke("train-sr", "--run-dir", str(tiny_run), "--resume", "--preset", "quick"), "another config")


@pytest.mark.slow
def test_ship_sr_writes_cards_and_the_default_model(tmp_path: Path, tiny_run: Path, monkeypatch) -> None:
    from mammo_tf.workflows.cards import ship_sr

    summary = ship_sr(tiny_run, None, tmp_path / "models", max_images=1)
    assert summary["default"] in ("psnr", "gan") and summary["reason"]
    for name in ("sr-x2-psnr", "sr-x2-gan", "sr-x2"):
        folder = tmp_path / "models" / name
        card = json.loads((folder / "card.json").read_text())
        assert card["training"]["steps"] == 6 and card["evaluate_sr_test"]["variants"]["8-bit"]["psnr_sr"] > 0
        assert (folder / "curve.png").is_file() and (folder / "model.keras").is_file()
        assert "evaluate-sr" in (folder / "card.md").read_text()
    assert "Default `upscale` model" in (tmp_path / "models" / "sr-x2" / "card.md").read_text()
    # the card keeps the patient ids, so the study can exclude them from its SR arm
    from mammo_tf.workflows.study import load_sr_model_and_patients

    trained_on = json.loads((tiny_run / "config.json").read_text())["train_patients"]
    card = json.loads((tmp_path / "models" / "sr-x2" / "card.json").read_text())
    assert card["training"]["train_patients"] == sorted(trained_on)
    assert load_sr_model_and_patients(tmp_path / "models" / "sr-x2" / "model.keras")[1] == set(trained_on)
    card["training"]["train_patients"] = len(trained_on)  # a card with a count only is refused, not trusted
    (tmp_path / "models" / "sr-x2" / "card.json").write_text(json.dumps(card))
    with pytest.raises(MammoError, match="ids of the model's training patients"):
        load_sr_model_and_patients(tmp_path / "models" / "sr-x2" / "model.keras")
    monkeypatch.setenv("MAMMO_MODELS", str(tmp_path / "models"))  # upscale without --model: the shipped default
    result = invoke("upscale", str(cached_phantom_dir() / "mdb001.pgm"), "--out", str(tmp_path / "out"))
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / "mdb001_x2.pgm").is_file()


@pytest.mark.parametrize(
    ("gan_psnr", "spurious", "choice", "needle"),
    [
        (44.95, 0, "gan", "within 0.050 dB"),
        (44.70, 0, "psnr", "loses 0.300 dB"),
        (45.10, 3, "psnr", "more spurious specks than bicubic on the phantom (3 vs 1)"),
    ],
)
def test_default_sr_model_rule(gan_psnr: float, spurious: int, choice: str, needle: str) -> None:
    from mammo_tf.workflows.cards import _default_choice

    def result(psnr: float, spurious_sr: int) -> tuple:
        test = {"variants": {"8-bit": {"psnr_sr": psnr}}}
        return test, {"specks": {"spurious_sr": spurious_sr, "spurious_bicubic": 1}}, None

    picked, reason = _default_choice({"psnr": result(45.0, 0), "gan": result(gan_psnr, spurious)})
    assert picked == choice and needle in reason


def test_validation_scores_whole_films_in_the_anchor_region(tiny_run: Path) -> None:
    """Validation is scored as the test films are: whole films, tissue and labels, no film background."""
    from mammo_tf.config import resolve_sr_config
    from mammo_tf.data.catalog import load_catalog
    from mammo_tf.data.degrade import area_downsample, interpolate
    from mammo_tf.evaluation.sr import psnr
    from mammo_tf.evaluation.sr_eval import anchor_mask
    from mammo_tf.evaluation.sr_validation import validate, validation_set
    from mammo_tf.io.images import quantize

    catalog = load_catalog(None)
    val = validation_set(catalog, resolve_sr_config("tiny", val_films=2))
    films = catalog.images[catalog.images["split"] == "val"]
    assert val.split == "val" and len(val.hr) == min(2, len(films))
    for hr, region in zip(val.hr, val.region, strict=True):
        assert region.shape == hr.shape and region.any() and (hr[region] > 0.08).all()
    values, sr = validate(keras.saving.load_model(tiny_run / "generator.keras"), val)
    assert [x.shape for x in sr] == [x.shape for x in val.hr]
    first = films.iloc[0]  # recomputed from the file: the bicubic baseline of the first film
    hr = read_image(first["path"]).pixels
    hr = hr[: hr.shape[0] // 2 * 2, : hr.shape[1] // 2 * 2]
    lr = quantize(area_downsample(hr, 2).astype(np.float32), int(first["bit_depth"]), as_float=True)  # as evaluate-sr
    assert psnr(interpolate(lr, 2, "bicubic"), hr, anchor_mask(hr)) == pytest.approx(
        psnr(val.bicubic[0], val.hr[0], val.region[0]), abs=1e-4
    )
    assert np.isfinite(values["val_gain_db"])


def test_upscale_cli_scanner_lines_option(tmp_path: Path, tiny_run: Path) -> None:
    """`--scanner-lines keep` is the network's film; `average` differs from it only at the lines' blocks."""
    from mammo_tf.inference.scanner_lines import line_mask

    hr = np.full((128, 160), 0.5, np.float32) + 0.002 * np.arange(160, dtype=np.float32)[None, :]
    hr[61, 4:156] = 0.0  # a 1-px scanner line of 76 LR pixels
    film = tmp_path / "in" / "film.pgm"
    write_image(film, degrade(hr, 2, 8), 8)
    outputs = {}
    for choice in ("average", "keep"):
        out = tmp_path / choice
        result = invoke("upscale", film, "--out", out, "--model", tiny_run, "--scanner-lines", choice, "--tile", 0)
        assert result.exit_code == 0, result.output
        outputs[choice] = read_image(out / "film_x2.pgm").pixels
    lr = read_image(film).pixels
    blocks = np.kron(line_mask(lr, 0) | line_mask(lr, 1), np.ones((2, 2), bool))
    assert blocks.any()
    np.testing.assert_array_equal(outputs["average"][~blocks], outputs["keep"][~blocks])
    bad = invoke("upscale", film, "--out", tmp_path / "bad", "--model", tiny_run, "--scanner-lines", "fix")
    assert bad.exit_code == 2 and "--scanner-lines" in bad.output


def test_upscale_states_checks_and_resamples_pixel_spacing(tmp_path: Path, tiny_run: Path) -> None:
    """A 0.05 mm DICOM through a model trained on 0.2 mm films (inputs 0.4 mm): warned, refused, or resampled."""
    model = tmp_path / "model"
    model.mkdir()
    shutil.copy(tiny_run / "generator.keras", model / "generator.keras")
    # Trained on MIAS: 0.2 mm pixels; no noise ceiling, as the film below is random pixels (the gate would
    # write it as bicubic: tests/test_noise_gate.py).
    (model / "config.json").write_text(json.dumps({"source": "mias", "noise_ceiling_greys": None}))
    rng = np.random.default_rng(0)
    stored = (rng.uniform(0.3, 0.7, (96, 80)) * 4095).astype(np.uint16)
    film = save(make_dataset(stored, 12, PixelSpacing=[0.05, 0.05]), tmp_path / "in" / "film.dcm")

    warned = invoke("upscale", film, "--out", tmp_path / "warned", "--model", model)
    assert warned.exit_code == 0, warned.output
    assert warned.stderr.strip().splitlines() == [
        f"mammo-tf: warning: {film}: pixels of 0.05 mm, the model was trained on inputs of 0.4 mm (8.0x smaller): "
        "another task for it; --resample-to model brings the film to its input spacing first"
    ]
    assert "(pixels 0.05 mm, out 0.025 mm)" in warned.stdout
    out = pydicom.dcmread(tmp_path / "warned" / "film_x2.dcm")
    assert [float(v) for v in out.PixelSpacing] == [0.025, 0.025] and (out.Rows, out.Columns) == (192, 160)

    refused = invoke("upscale", film, "--out", tmp_path / "refused", "--model", model, "--spacing-check", "refuse")
    one_error_line(refused, "film.dcm: pixels of 0.05 mm", "8.0x smaller")
    assert not (tmp_path / "refused" / "film_x2.dcm").exists()

    resampled = invoke("upscale", film, "--out", tmp_path / "resampled", "--model", model, "--resample-to", "model")
    assert resampled.exit_code == 0 and not resampled.stderr, resampled.output
    assert "(pixels 0.05 mm, resampled to 0.4, out 0.2 mm)" in resampled.stdout
    out = pydicom.dcmread(tmp_path / "resampled" / "film_x2.dcm")
    assert [float(v) for v in out.PixelSpacing] == [0.2, 0.2] and (out.Rows, out.Columns) == (24, 20)

    bad = invoke("upscale", film, "--out", tmp_path / "bad", "--model", model, "--resample-to", "zero")
    assert bad.exit_code == 2 and "--resample-to" in bad.output and not (tmp_path / "bad").exists()


@pytest.fixture(scope="module")
def shipped(tmp_path_factory, tiny_run: Path) -> Path:
    """saved_models/sr-x2 as ship_sr writes it (write_card, evaluate-sr report), on one phantom film per evaluation."""
    from mammo_tf.evaluation.sr_eval import evaluate_sr
    from mammo_tf.workflows.cards import write_card

    root, model = tmp_path_factory.mktemp("shipped"), tiny_run / "generator_gan.keras"
    test = evaluate_sr(model, None, split="test", max_images=1, out=root / "report")
    phantom = evaluate_sr(model, None, split="test", max_images=1)
    return write_card(tiny_run, model, "sr-x2", root / "models", test, phantom, "A note.", root / "report")


def _files(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` with its bytes: what a refused refresh may not change."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.slow
def test_refresh_sr_card_recomputes_the_evaluation_and_keeps_model_and_training(shipped: Path, tmp_path: Path) -> None:
    from mammo_tf.evaluation.sr_eval import evaluate_sr
    from mammo_tf.evaluation.sr_grid import scanner_grid
    from mammo_tf.workflows.cards import refresh_sr_card

    folder = tmp_path / "models" / "sr-x2"
    shutil.copytree(shipped, folder)
    (folder / "evaluate-sr" / "stale.txt").write_text("from the old evaluation")
    before, kept = json.loads((folder / "card.json").read_text()), _files(folder)
    grid = tmp_path / "grid"  # the scanner grid of the shipped file (default cell only, one film)
    evaluate_sr(folder, None, max_images=1, out=grid, sections=[scanner_grid(["default"])])

    assert refresh_sr_card(folder, None, max_images=1, grids=[grid, grid]) == folder  # e.g. test and validation
    card, text = json.loads((folder / "card.json").read_text()), (folder / "card.md").read_text()
    for name in ("model.keras", "curve.png"):
        assert (folder / name).read_bytes() == kept[name], name
    for key in ("training", "validation_curve", "selected_step", "note", "source_file", "name", "scale"):
        assert card[key] == before[key], key
    # evaluated again, from the shipped file (ship-sr scored the run's file of the same bytes)
    old_id, new_id = before["evaluate_sr_test"]["model"], card["evaluate_sr_test"]["model"]
    assert old_id.startswith("generator_gan@") and new_id.startswith("sr-x2@") and card["evaluate_sr_phantom"]
    assert old_id.split("@")[1] == new_id.split("@")[1] and card["noise_ceiling_greys"] == before["noise_ceiling_greys"]
    assert (folder / "evaluate-sr" / "report.md").is_file() and not (folder / "evaluate-sr" / "stale.txt").exists()
    refreshed = card["refreshed"]
    assert "refreshed" not in before and refreshed["date"].endswith("Z") and refreshed["machine"]["cpus"] >= 1
    assert f"Evaluation recomputed on {refreshed['date'][:10]}" in text and "current `upscale` pipeline" in text
    assert "training paragraph below is from the original card" in text and "A note." in text and "curve.png" in text
    assert len(card["scanner_grids"]) == 2 and text.count("## Scanner grid: phantom test films") == 2
    assert all(g["report"] == str(grid) and g["model"] == new_id for g in card["scanner_grids"])
    assert card["refreshed"]["engine"] == card["evaluate_sr_test"]["engine"]
    primary = card["evaluate_sr_test"]["variants"]["8-bit"]
    assert primary["images_below_bicubic_by_region"]["breast_mask"] == primary["images_below_bicubic"]
    assert set(primary["images_below_bicubic_by_region"]) == {"film_foreground", "interior", "breast_mask"}
    assert ("The gate wrote" in text) == (card["noise_ceiling_greys"] is not None)
    assert "| 16 bits (`--bits 16`) |" in text and "films below bicubic: foreground / interior / mask" in text
    assert "## Scanner grid" in text and "| default | area, 8 bits |" in text and " of 1 cells pass" in text
    assert sorted(p.name for p in folder.parent.iterdir()) == ["sr-x2"]  # no staging or scratch folder left

    result = invoke("ship-sr", folder, "--refresh")  # the CLI, on the refreshed card, without a grid
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"refreshed: {folder}") and "phantom test" in result.output
    again = json.loads((folder / "card.json").read_text())
    assert again["training"] == before["training"] and (folder / "model.keras").read_bytes() == kept["model.keras"]
    assert "scanner_grids" not in again and again["refreshed"]["date"] >= refreshed["date"]


def test_refresh_sr_card_refusals_are_one_line_and_change_nothing(shipped: Path, tmp_path: Path) -> None:
    folder = tmp_path / "sr-x2"
    shutil.copytree(shipped, folder)
    card = json.loads((folder / "card.json").read_text())
    grid = tmp_path / "grid"  # a grid report of another model: only its metrics.json is read
    grid.mkdir()
    cell = {"cell": "default", "pass": True}
    (grid / "metrics.json").write_text(json.dumps({"model": "generator@0123456789ab", "grid": {"cells": [cell]}}))

    (folder / "card.json").unlink()
    files = _files(folder)
    one_error_line(invoke("ship-sr", folder, "--refresh"), f"{folder / 'card.json'}: not found")
    assert _files(folder) == files

    (folder / "card.json").write_text(json.dumps({**card, "kind": "synthesis"}))
    files = _files(folder)
    one_error_line(invoke("ship-sr", folder, "--refresh"), str(folder / "card.json"), "kind 'synthesis'")
    assert _files(folder) == files

    (folder / "card.json").write_text(json.dumps(card))
    files = _files(folder)
    refused = invoke("ship-sr", folder, "--refresh", "--grid", grid)
    one_error_line(refused, str(grid / "metrics.json"), "another model (generator@0123456789ab)")
    assert _files(folder) == files
    (folder / "model.keras").rename(tmp_path / "model.keras")
    files = _files(folder)
    one_error_line(invoke("ship-sr", folder, "--refresh"), f"{folder / 'model.keras'}: not found")
    assert _files(folder) == files

    for args in (["--grid", grid], ["--refresh", "--out", tmp_path / "models"]):  # usage errors
        result = invoke("ship-sr", folder, *args)
        assert result.exit_code == 2 and args[-2] in result.output, result.output
    assert _files(folder) == files and sorted(p.name for p in tmp_path.iterdir()) == ["grid", "model.keras", "sr-x2"]


def test_ship_sr_blend_writes_the_blended_weights_and_says_so(tmp_path: Path, tiny_run: Path) -> None:
    """ship-sr --blend-with: (1 - alpha) x the clean model + alpha x the run's GAN generator, carded as such."""
    from mammo_tf.inference.registry import load_model
    from mammo_tf.workflows.blend import ship_sr_blend

    clean, robust = tmp_path / "clean.keras", tiny_run / "generator_gan.keras"
    model = load_model(tiny_run / "generator_psnr.keras", ("sr",), "test")[0]
    rng = np.random.default_rng(0)  # the tiny run's two generators are almost one: make the clean one differ
    model.set_weights([w + rng.normal(0, 0.01, w.shape).astype(w.dtype) for w in model.get_weights()])
    model.save(clean)
    (tmp_path / "card.json").write_text(json.dumps({"noise_ceiling_greys": 1.5}))  # the clean model's gate
    assert "noise_ceiling_greys" in json.loads((tiny_run / "metrics.json").read_text())  # the run's: not kept
    folder = ship_sr_blend(tiny_run, None, tmp_path / "models", clean=clean, alpha=0.25, max_images=1)
    shipped = load_model(folder / "model.keras", ("sr",), "test")[0].get_weights()
    a, b = (load_model(p, ("sr",), "test")[0].get_weights() for p in (clean, robust))
    for got, x, y in zip(shipped, a, b, strict=True):
        np.testing.assert_allclose(got, 0.75 * x + 0.25 * y, rtol=0, atol=1e-6)
    card = json.loads((folder / "card.json").read_text())
    assert card["training"]["config"]["interpolation"]["alpha"] == 0.25
    assert card["training"]["config"]["interpolation"]["robust"].startswith("generator_gan@")
    assert card["source_file"] == "generator_blend.keras" and card["evaluate_sr_test"]["variants"]
    assert card["noise_ceiling_greys"] == 1.5 and card["evaluate_sr_test"]["noise_gate"]["ceiling_greys"] == 1.5
    text = (folder / "card.md").read_text()
    assert "(1 - 0.25) x `clean@" in text and "at the end of the run" not in text
    assert [p.name for p in (tmp_path / "models").iterdir()] == ["sr-x2"]  # only <name>, no scratch left


def test_ship_sr_blend_refusals_are_one_line(tmp_path: Path, tiny_run: Path) -> None:
    clean = str(tiny_run / "generator_psnr.keras")
    out = ["--out", tmp_path / "models"]
    for args, needle in (
        (["--alpha", "0.5"], "--blend-with and --alpha go together"),
        (["--blend-with", clean], "--blend-with and --alpha go together"),
        (["--blend-with", clean, "--alpha", "1"], "--alpha"),
        (["--blend-with", clean, "--alpha", "0.5", "--refresh"], "not with --refresh"),
    ):
        result = invoke("ship-sr", tiny_run, *args, *out)
        assert result.exit_code == 2 and needle in result.output, result.output
    empty = tmp_path / "empty"
    empty.mkdir()
    one_error_line(invoke("ship-sr", empty, "--blend-with", clean, "--alpha", "0.5", *out), "no generator_gan.keras")
    other = tmp_path / "other.keras"
    keras.Sequential([keras.Input((8,)), keras.layers.Dense(1)]).save(other)
    one_error_line(invoke("ship-sr", tiny_run, "--blend-with", other, "--alpha", "0.5", *out), str(other))
    assert not (tmp_path / "models").exists() or not any((tmp_path / "models").iterdir())
