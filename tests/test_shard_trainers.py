"""train-classifier and train-gan on patches shard folders, and every shard reader under several workers.

The phantom here has 8 films of 256 px (4 patients: 3 train, 1 val), sharded into small files so that each
class spans several (two workers each get files of every class). Runs are 2 steps in float32.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import invoke, one_error_line

from mammo_tf.errors import MammoError
from mammo_tf.io.shard_images import MANIFEST_NAME

RUN = ["--steps", 2, "--precision", "float32"]


def _shard(data: Path, out: Path, *args) -> Path:
    result = invoke("data", "shard", "--data", data, "--out", out, "--what", "patches", *args)
    assert result.exit_code == 0, result.output
    return out


def _manifest(folder: Path) -> dict:
    return json.loads((folder / MANIFEST_NAME).read_text())


@pytest.fixture(scope="module")
def phantom(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from mammo_tf.data.phantom import write_phantom

    out = tmp_path_factory.mktemp("phantom") / "phantom"
    write_phantom(out, n=8, seed=0, size=256)
    return out


@pytest.fixture(scope="module")
def patches64(phantom: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The training films' 64-px patches (what train-classifier's presets train on), ~2 a file."""
    return _shard(phantom, tmp_path_factory.mktemp("p64") / "shards", "--shard-size", 0.01)


@pytest.fixture(scope="module")
def patches16(phantom: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The training films' 16-px patches (24 normal, 8 benign, 24 malignant), ~5 a file."""
    return _shard(phantom, tmp_path_factory.mktemp("p16") / "shards", "--patch-size", 16, "--shard-size", 0.002)


def test_train_classifier_streams_patches_from_shards(patches64: Path, phantom: Path, tmp_path: Path) -> None:
    """--data PATCHES --val-data D: trained on the shards, validated on D's validation patients; the record
    names the shards' patients, sampling and counts. Without --val-data the run is not validated."""
    from mammo_tf.workflows.training import train_classifier

    run = tmp_path / "run"
    result = invoke("train-classifier", "--data", patches64, "--val-data", phantom, "--preset", "quick", *RUN,
                    "--run-dir", run)  # fmt: skip
    assert result.exit_code == 0, result.output
    config, manifest = json.loads((run / "config.json").read_text()), _manifest(patches64)
    assert config["data"] == str(patches64.resolve()) and config["train_patients"] == manifest["patients"]
    assert config["patch_shards"] == {"sampling": manifest["sampling"], "catalog_sha256": manifest["catalog_sha256"]}
    assert config["training_spacing_mm"] == manifest["training_spacing_mm"] and config["val_data"] == str(phantom)
    counts = manifest["counts"]
    assert config["train_patches"] == {"real": counts["patches"], "total": counts["patches"],
                                       **{c: counts[c] for c in ("normal", "benign", "malignant")}}  # fmt: skip
    final = json.loads((run / "metrics.json").read_text())
    assert final["steps"] == 2 and final["val_patches"] == 24 and np.isfinite(final["val_auc"])
    assert (run / "classifier.keras").is_file()
    alone = train_classifier(patches64, tmp_path / "alone", preset="tiny", steps=2, precision="float32", verbose=0)
    assert json.loads((alone / "config.json").read_text())["val_data"] is None
    final = json.loads((alone / "metrics.json").read_text())
    assert final["val_patches"] == 0 and "val_auc" not in final


def test_train_gan_streams_patches_from_shards(patches16: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    result = invoke("train-gan", "--data", patches16, "--patch-size", 16, *RUN, "--val-every", 2, "--run-dir", run)
    assert result.exit_code == 0, result.output
    config, manifest = json.loads((run / "config.json").read_text()), _manifest(patches16)
    assert config["data"] == str(patches16.resolve()) and config["train_patients"] == manifest["patients"]
    assert config["patch_shards"]["sampling"] == manifest["sampling"] and config["patch_shards"]["catalog_sha256"]
    assert config["train_patches"] == {"normal": 24, "benign": 8, "malignant": 24}
    final = json.loads((run / "metrics.json").read_text())
    assert final["steps"] == 2 and np.isfinite(final["val_mean_gap"]) and final["train_patches"]["benign"] == 8
    for name in ("generator.keras", "samples/real-0000000.png", "samples/samples-0000002.png"):
        assert (run / name).is_file(), name


def test_the_gan_holds_a_bounded_sample_of_the_shards(patches16: Path) -> None:
    """The first `per_class` patches of each class in file order: what the reader yields first, class by class."""
    from mammo_tf.data.sample_shards import first_patches
    from mammo_tf.data.shard_pipelines import patch_shard_dataset

    plain = {"shuffle": False, "augment": False, "repeat": False, "cycle_length": 1}
    dataset, manifest = patch_shard_dataset(patches16, 64, seed=0, patch_size=16, **plain)
    images, labels = next(dataset.as_numpy_iterator())  # all 56, by class in file order
    sample = first_patches(patches16, manifest, 6)
    assert sample.images.shape == (18, 16, 16, 1) and sample.labels.tolist() == [0] * 6 + [1] * 6 + [2] * 6
    expected = np.concatenate([images[labels == c][:6] for c in range(3)])
    assert np.array_equal(sample.images, expected)
    assert set(sample.patient_id) <= set(manifest["patients"])
    assert len(first_patches(patches16, manifest, 256).labels) == 56  # fewer than asked: all there are


def _tf_config(index: int, **cluster) -> dict[str, str]:
    cluster = cluster or {"worker": ["a:1", "b:2"]}
    return {"TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})}


@pytest.mark.parametrize(
    ("requested", "environ", "expected"),
    [
        ("multiworker", _tf_config(0), (2, 0)),
        ("multiworker", _tf_config(1), (2, 1)),
        ("multiworker", _tf_config(0, chief=["c:0"], worker=["a:1", "b:2"]), (3, 1)),  # the chief is number 0
        ("auto", _tf_config(1), None),  # auto never resolves to multiworker
        ("mirrored", _tf_config(1), None),
        ("default", {}, None),
    ],
)
def test_input_shard_is_this_workers_share(requested: str, environ: dict, expected) -> None:
    from mammo_tf.training.distribute import input_shard

    assert input_shard(requested, environ) == expected


def test_input_shard_needs_a_tf_config() -> None:
    from mammo_tf.training.distribute import input_shard

    with pytest.raises(MammoError, match="--strategy multiworker needs TF_CONFIG"):
        input_shard("multiworker", {})


def test_two_workers_read_disjoint_patches_that_make_up_the_folder(patches16: Path) -> None:
    from mammo_tf.data.shard_pipelines import patch_shard_dataset
    from mammo_tf.training.distribute import input_shard

    plain = {"shuffle": False, "augment": False, "repeat": False}

    def rows(input_context) -> list[bytes]:
        dataset, _ = patch_shard_dataset(patches16, 7, seed=0, patch_size=16, input_context=input_context, **plain)
        return [image.tobytes() + bytes([label]) for images, labels in dataset.as_numpy_iterator()
                for image, label in zip(images, labels, strict=True)]  # fmt: skip

    everything = rows(None)
    mine = [rows(input_shard("multiworker", _tf_config(w))) for w in (0, 1)]
    assert len(everything) == 56 and len(set(everything)) == 56  # every patch is distinct
    assert mine[0] and mine[1] and not set(mine[0]) & set(mine[1])
    assert sorted(mine[0] + mine[1]) == sorted(everything)


def test_every_trainer_reads_its_own_shard_files_under_multiworker(
    patches16: Path, phantom: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The trainers' shard datasets get this worker's files (auto-sharding then OFF) only under multiworker."""
    import tensorflow as tf

    from mammo_tf.config import resolve
    from mammo_tf.data.sample_shards import first_patches
    from mammo_tf.training.classifier_trainer import ClassifierTrainer
    from mammo_tf.training.gan_trainer import GANTrainer
    from mammo_tf.training.sr_trainer import _shard_dataset

    pairs = tmp_path / "pairs"
    args = ["--what", "sr-pairs", "--n", 24, "--hr-size", 32, "--shard-size", 0.01]
    assert invoke("data", "shard", "--data", phantom, "--out", pairs, *args).exit_code == 0
    patches, record = _manifest(patches16), {"data": str(patches16)}
    monkeypatch.setenv("TF_CONFIG", _tf_config(1)["TF_CONFIG"])
    for strategy, policy in (("multiworker", "OFF"), ("default", "AUTO")):
        configs = [resolve(kind, "tiny", strategy=strategy) for kind in ("classifier", "synthesis", "sr")]
        configs[0] = resolve("classifier", "tiny", strategy=strategy, patch_size=16)
        datasets = [
            ClassifierTrainer(configs[0], record, None, None, patch_shards=patches).dataset(),
            GANTrainer(configs[1], record, first_patches(patches16, patches, 1), patch_shards=patches).dataset(),
            _shard_dataset(str(pairs), _manifest(pairs), configs[2]),
        ]
        for config, dataset in zip(configs, datasets, strict=True):
            assert dataset.options().experimental_distribute.auto_shard_policy.name == policy, (config, strategy)
            batch = tf.nest.flatten(dataset.element_spec)[0].shape[0]
            assert batch == config.batch_size  # the GLOBAL batch (input_shard's docstring)


@pytest.fixture(scope="module")
def normals_only(phantom: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _shard(phantom, tmp_path_factory.mktemp("normal") / "shards", "--per-cluster", 0)


@pytest.mark.parametrize(
    ("command", "args", "needle"),
    [
        ("train-classifier", ["--task", "matched"], "--task matched needs --data a dataset"),
        ("train-classifier", ["--synthetic", "{synthetic}"], "--synthetic needs --data a dataset"),
        ("train-classifier", ["--spacing-mm", 1.6], "sampled with spacing_mm None; this run needs spacing_mm 1.6"),
        ("train-gan", ["--patch-size", 32], "sampled with patch_size 64; this run needs patch_size 32"),
        ("train-gan", ["--spacing-mm", 1.6], "sampled with spacing_mm None; this run needs spacing_mm 1.6"),
    ],
    ids=["matched", "synthetic", "classifier-spacing", "gan-patch-size", "gan-spacing"],
)
def test_what_shards_cannot_train_is_one_line(
    command: str, args: list, needle: str, patches64: Path, tmp_path: Path
) -> None:
    (tmp_path / "synthetic").mkdir()
    args = [str(a).format(synthetic=tmp_path / "synthetic") for a in args]
    run = tmp_path / "run"
    one_error_line(invoke(command, "--data", patches64, *args, "--run-dir", run), str(patches64), needle)
    assert not run.exists()


def test_other_refusals_are_one_line(patches16: Path, normals_only: Path, phantom: Path, tmp_path: Path) -> None:
    cases = [
        (["--data", normals_only], [str(normals_only), "hold only normal patches; the classifier needs both"]),
        (["--data", patches16], ["sampled with patch_size 16; this run needs patch_size 64"]),
        (["--data", phantom, "--val-data", phantom], ["--val-data is for --data a patches shard folder"]),
    ]
    for index, (args, needles) in enumerate(cases):
        run = tmp_path / f"run{index}"
        one_error_line(invoke("train-classifier", *args, "--preset", "quick", "--run-dir", run), *needles)
        assert not run.exists()
