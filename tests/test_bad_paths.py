"""Every command, every kind of bad path: exit 2, one stderr line naming the path, no traceback, nothing written.

The table pairs each path parameter of each command with the kinds of bad
path that apply to its role (dataset input, folder-or-archive input, output
folder, output file). Commands run in a fresh interpreter, so stderr is the
real one. New commands get the same guarantees by using `mammo_tf_cli.paths`;
add their path parameters to COMMANDS.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import click
import pytest

from mammo_tf.errors import MammoError
from mammo_tf_cli.paths import InputDataset, InputFile, InputFolder, InputFolderOrFile, OutputFile, OutputFolder

IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


def run(*args: str) -> subprocess.CompletedProcess:
    code = "from mammo_tf_cli.main import main; main()"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A good dataset (a two-image phantom) for the parameters that are not under test."""
    from mammo_tf.data.phantom import write_phantom

    return write_phantom(tmp_path_factory.mktemp("good") / "phantom", n=2, seed=0, size=128)


# --- the kinds of bad path: name -> builder(tmp) returning the bad path (may create things in tmp) ---------


def _missing(tmp: Path) -> Path:
    return tmp / "nope"


def _a_file(tmp: Path) -> Path:
    (tmp / "notes.txt").write_text("not a dataset")
    return tmp / "notes.txt"


def _a_folder_named_png(tmp: Path) -> Path:
    (tmp / "out.png").mkdir()
    (tmp / "out.png" / "keep.txt").write_text("mine")
    return tmp / "out.png"


def _device(tmp: Path) -> Path:
    return Path(os.devnull)


def _device_named_png(tmp: Path) -> Path:
    (tmp / "dev.png").symlink_to(os.devnull)
    return tmp / "dev.png"


def _under_proc(tmp: Path) -> Path:
    return Path("/proc/mammo-tf-nope")  # procfs refuses new entries, even to root


def _under_proc_png(tmp: Path) -> Path:
    return Path("/proc/mammo-tf-nope.png")


def _under_sys(tmp: Path) -> Path:
    return Path("/sys/mammo-tf-nope")  # sysfs: "Operation not permitted", even to root


def _under_a_file(tmp: Path) -> Path:
    (tmp / "plain").write_text("a file, not a folder")
    return tmp / "plain" / "sub" / "out"


def _under_a_file_png(tmp: Path) -> Path:
    return _under_a_file(tmp).with_suffix(".png")


def _under_read_only(tmp: Path) -> Path:
    (tmp / "ro").mkdir()
    (tmp / "ro").chmod(0o555)
    return tmp / "ro" / "out"


def _under_read_only_png(tmp: Path) -> Path:
    return _under_read_only(tmp).with_suffix(".png")


def _not_empty(tmp: Path) -> Path:
    (tmp / "full").mkdir()
    (tmp / "full" / "keep.txt").write_text("mine")
    return tmp / "full"


def _wrong_ending(tmp: Path) -> Path:
    return tmp / "out.jpg"


def _damaged_archive(tmp: Path) -> Path:
    (tmp / "broken.tar.gz").write_bytes(b"\x1f\x8b garbage")
    return tmp / "broken.tar.gz"


DATASET_IN = {"missing": _missing, "file-not-a-dataset": _a_file, "device": _device}


def _truncated_archive(tmp: Path) -> Path:
    """A real .tar.gz cut in the middle of a member: it opens, then fails while copying (was "aborted", exit 1)."""
    import io
    import tarfile

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in [("Info.txt", b"mdb001 G NORM\n"), ("mdb001.pgm", os.urandom(200_000))]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    (tmp / "cut.tar.gz").write_bytes(buffer.getvalue()[:120_000])
    return tmp / "cut.tar.gz"


ARCHIVE_IN = {
    "missing": _missing,
    "file-not-an-archive": _a_file,
    "device": _device,
    "damaged-archive": _damaged_archive,
    "truncated-archive": _truncated_archive,
}
FOLDER_OUT = {
    "file-not-a-folder": _a_file,
    "device": _device,
    "parent-uncreatable": _under_proc,
    "parent-not-permitted": _under_sys,
    "parent-is-a-file": _under_a_file,
    "parent-read-only": _under_read_only,
    "not-empty": _not_empty,
}
WRITABLE_FOLDER = {k: v for k, v in FOLDER_OUT.items() if k != "not-empty"}  # outputs that add to a folder
FOLDER_IN = {"missing": _missing, "file-not-a-folder": _a_file, "device": _device}
FILE_OUT = {
    "folder-not-a-file": _a_folder_named_png,
    "device": _device_named_png,
    "parent-uncreatable": _under_proc_png,
    "parent-is-a-file": _under_a_file_png,
    "parent-read-only": _under_read_only_png,
    "wrong-ending": _wrong_ending,
}

# command -> (kinds that apply to the parameter under test, argv builder(bad, tmp, dataset))
COMMANDS = {
    "info --data": (DATASET_IN, lambda bad, tmp, ds: ["data", "info", "--data", bad]),
    "preview --data": (DATASET_IN, lambda bad, tmp, ds: ["data", "preview", "--data", bad, "--out", tmp / "p.png"]),
    "preview --out": (FILE_OUT, lambda bad, tmp, ds: ["data", "preview", "--data", ds, "--out", bad]),
    "phantom --out": (FOLDER_OUT, lambda bad, tmp, ds: ["data", "phantom", "--n", "2", "--size", "128", "--out", bad]),
    "import SRC": (ARCHIVE_IN, lambda bad, tmp, ds: ["data", "import", bad, "--dest", tmp / "new"]),
    "import --dest": (FOLDER_OUT, lambda bad, tmp, ds: ["data", "import", ds, "--dest", bad, "--no-verify"]),
    "import-cbis SRC": (FOLDER_IN, lambda bad, tmp, ds: ["data", "import-cbis", bad, "--out", tmp / "new"]),
    "import-cbis --out": (FOLDER_OUT, lambda bad, tmp, ds: ["data", "import-cbis", ds, "--out", bad]),
    "import-vindr SRC": (FOLDER_IN, lambda bad, tmp, ds: ["data", "import-vindr", bad, "--out", tmp / "new"]),
    "import-vindr --out": (FOLDER_OUT, lambda bad, tmp, ds: ["data", "import-vindr", ds, "--out", bad]),
    "import-inbreast SRC": (FOLDER_IN, lambda bad, tmp, ds: ["data", "import-inbreast", bad, "--out", tmp / "new"]),
    "import-inbreast --out": (FOLDER_OUT, lambda bad, tmp, ds: ["data", "import-inbreast", ds, "--out", bad]),
    "fetch --dest": (
        FOLDER_OUT,
        lambda bad, tmp, ds: ["data", "fetch", "mias", "--dest", bad, "--url", "http://127.0.0.1:9/all-mias.tar.gz"],
    ),
    "train-sr --data": (DATASET_IN, lambda bad, tmp, ds: ["train-sr", "--data", bad, "--run-dir", tmp / "run"]),
    "train-sr --run-dir": (FOLDER_OUT, lambda bad, tmp, ds: ["train-sr", "--data", ds, "--run-dir", bad]),
    "upscale --out": (WRITABLE_FOLDER, lambda bad, tmp, ds: ["upscale", ds / "mdb001.pgm", "--out", bad]),
    "evaluate-sr --data": (DATASET_IN, lambda bad, tmp, ds: ["evaluate-sr", "--data", bad]),
    "evaluate-sr --out": (FOLDER_OUT, lambda bad, tmp, ds: ["evaluate-sr", "--data", ds, "--out", bad]),
    "ship-sr RUN_DIR": (FOLDER_IN, lambda bad, tmp, ds: ["ship-sr", bad, "--out", tmp / "models"]),
    "ship-sr --grid": (FOLDER_IN, lambda bad, tmp, ds: ["ship-sr", tmp, "--refresh", "--grid", bad]),
    "train-classifier --run-dir": (
        FOLDER_OUT,
        lambda bad, tmp, ds: ["train-classifier", "--data", ds, "--run-dir", bad],
    ),
    "detect --out": (WRITABLE_FOLDER, lambda bad, tmp, ds: ["detect", ds / "mdb001.pgm", "--out", bad]),
    "evaluate-aug --out": (WRITABLE_FOLDER, lambda bad, tmp, ds: ["evaluate-aug", "--data", ds, "--out", bad]),
    "train-gan --run-dir": (FOLDER_OUT, lambda bad, tmp, ds: ["train-gan", "--data", ds, "--run-dir", bad]),
    "synth --out": (WRITABLE_FOLDER, lambda bad, tmp, ds: ["synth", "--n", "2", "--out", bad]),
    "evaluate-gan --out": (FOLDER_OUT, lambda bad, tmp, ds: ["evaluate-gan", "--data", ds, "--out", bad]),
    "export --out": (WRITABLE_FOLDER, lambda bad, tmp, ds: ["export", "sr-x2", "--name", "sr", "--out", bad]),
}
ROOT_SKIP = pytest.mark.skipif(IS_ROOT, reason="root writes into a 0555 folder anyway; /proc and /sys cover it")
CASES = [
    pytest.param(command, kind, id=f"{command}|{kind}", marks=[ROOT_SKIP] if kind == "parent-read-only" else [])
    for command, (kinds, _) in COMMANDS.items()
    for kind in kinds
]


def _tree(root: Path) -> dict[str, tuple[bool, int]]:
    """Every path under `root` with (is folder, size): what a command may not change."""
    return {
        str(p.relative_to(root)): (p.is_dir(), 0 if p.is_dir() else p.lstat().st_size) for p in sorted(root.rglob("*"))
    }


@pytest.mark.parametrize(("command", "kind"), CASES)
def test_bad_path_is_one_line_exit_2_and_writes_nothing(command: str, kind: str, tmp_path: Path, dataset: Path) -> None:
    kinds, argv = COMMANDS[command]
    work = tmp_path / "work"
    work.mkdir()
    bad = kinds[kind](work)
    before, dataset_before = _tree(tmp_path), _tree(dataset)
    try:
        result = run(*(str(a) for a in argv(bad, work, dataset)))
    finally:
        if (work / "ro").exists():
            (work / "ro").chmod(0o755)
    assert result.returncode == 2, (result.returncode, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert str(bad) in lines[0], lines[0]
    assert lines[0].startswith("mammo-tf: error: "), lines[0]
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert _tree(tmp_path) == before, "the command wrote something"
    assert _tree(dataset) == dataset_before
    if kind.startswith("parent-"):  # outside tmp_path (/proc, /sys) too: the output was not created
        assert not bad.exists()


def test_the_issue_examples(tmp_path: Path) -> None:
    """The three reports of the issue, word for word."""
    result = run("data", "info", "--data", "/dev/null")
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert "/dev/null: must be a dataset folder, a manifest .csv or an Info.txt, not a device" in result.stderr
    result = run("data", "phantom", "--n", "2", "--out", "/proc/nope")
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert "/proc/nope: cannot be created" in result.stderr
    (tmp_path / "broken.tar.gz").write_bytes(b"\x1f\x8b garbage")
    result = run("data", "import", str(tmp_path / "broken.tar.gz"), "--dest", str(tmp_path / "d"))
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert "broken.tar.gz: damaged archive: not a readable .tar.gz file" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.tar.gz"]


# --- the types themselves: good paths pass through as Path, bad ones are MammoErrors naming the parameter ----


def test_good_paths_pass_through(tmp_path: Path, dataset: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "a.PNG").write_bytes(b"x")
    (tmp_path / "m.csv").write_text("path,patient_id\n")
    good = [
        (InputFolder(), dataset),
        (InputFile(".png"), tmp_path / "a.PNG"),  # endings ignore case
        (InputFile(), dataset / "Info.txt"),
        (InputFolderOrFile(".csv"), tmp_path / "m.csv"),
        (InputDataset(), dataset),
        (InputDataset(), dataset / "Info.txt"),
        (InputDataset(), tmp_path / "m.csv"),
        (OutputFolder(), tmp_path / "new" / "deeper"),
        (OutputFolder(), tmp_path / "empty"),
        (OutputFolder(must_be_new_or_empty=False), dataset),
        (OutputFile(".png"), tmp_path / "a.PNG"),  # overwriting a file is allowed by default
        (OutputFile(), tmp_path / "new" / "out.bin"),
    ]
    for kind, value in good:
        converted = kind.convert(str(value), None, None)
        assert isinstance(converted, Path) and converted == value, (kind, value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.PNG", "empty", "m.csv"]  # the probes left nothing


def test_bad_paths_name_the_parameter(tmp_path: Path) -> None:
    option = click.Option(["--out"])
    argument = click.Argument(["src"])
    (tmp_path / "f.png").write_bytes(b"x")
    with pytest.raises(MammoError, match=r"f.png: already exists \(--out\)$"):
        OutputFile(".png", overwrite=False).convert(str(tmp_path / "f.png"), option, None)
    with pytest.raises(MammoError, match=r"nope: no such folder \(SRC\)$"):
        InputFolder().convert(str(tmp_path / "nope"), argument, None)
    with pytest.raises(MammoError, match=r"f.png: must be a folder, not a file$"):
        InputFolder().convert(str(tmp_path / "f.png"), None, None)
    with pytest.raises(MammoError, match="empty path"):
        InputFile().convert("", None, None)


def test_library_writers_refuse_the_same_paths(tmp_path: Path) -> None:
    """Python callers get the one-line MammoError too (mammo_tf.io.atomic), and nothing is left behind."""
    import numpy as np

    from mammo_tf.data.catalog import load_catalog
    from mammo_tf.data.phantom import write_phantom
    from mammo_tf.io.images import write_image

    (tmp_path / "plain").write_text("x")
    with pytest.raises(MammoError, match="/proc/nope: cannot write in /proc"):
        write_phantom("/proc/nope", n=2, size=128)
    with pytest.raises(MammoError, match="is not a folder"):
        write_image(tmp_path / "plain" / "a" / "b.png", np.zeros((4, 4), np.float32), 8)
    with pytest.raises(MammoError, match="not a folder or a regular file"):
        load_catalog(os.devnull)
    assert [p.name for p in tmp_path.iterdir()] == ["plain"]
