"""A full disk during training: one line naming the file, the last good checkpoint kept, --resume finishes.

The disk is a real one where the machine allows it (a 24 MiB tmpfs mounted for the test, filled up
after the first run until it has less room than a checkpoint); elsewhere every Keras save fails with
ENOSPC instead, which is what a full disk does to it.
"""

from __future__ import annotations

import contextlib
import errno
import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from mammo_tf.errors import MammoError
from mammo_tf.workflows.training import train_sr
from mammo_tf_cli.main import cli


@contextlib.contextmanager
def _tmpfs(path: Path, size_mib: int) -> Iterator[bool]:
    """Mount a tmpfs at `path` (True), or just make the folder where mounting is not allowed (False)."""
    path.mkdir(parents=True)
    if shutil.which("mount") is None:
        yield False
        return
    mounted = (
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size_mib}m", "tmpfs", str(path)], capture_output=True
        ).returncode
        == 0
    )
    try:
        yield mounted
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(path)], capture_output=True)


def _fill(folder: Path, leave: int) -> Path:
    """Write a filler file until the filesystem of `folder` has about `leave` bytes free."""
    filler = folder / "filler"
    with open(filler, "wb") as handle:
        chunk = b"\0" * (1 << 20)
        with contextlib.suppress(OSError):
            while True:
                handle.write(chunk)
                handle.flush()
    free = shutil.disk_usage(folder).free
    with open(filler, "r+b") as handle:  # give back `leave` bytes: room for small files, not a checkpoint
        handle.truncate(max(0, filler.stat().st_size - (leave - free)))
    return filler


@pytest.mark.slow
def test_a_full_disk_mid_run_keeps_the_last_checkpoint_and_resume_finishes(tmp_path: Path, monkeypatch) -> None:
    with _tmpfs(tmp_path / "disk", 24) as real_disk:
        run = tmp_path / "disk" / "run"
        train_sr(None, run, preset="tiny", verbose=0)  # 6 steps, a checkpoint every 2
        checkpoint = (run / "checkpoints" / "last.keras").read_bytes()
        state = json.loads((run / "state.json").read_text())
        if real_disk:
            filler = _fill(tmp_path / "disk", leave=len(checkpoint) // 4)
        else:
            import keras

            def full(*args, **kwargs):
                raise OSError(errno.ENOSPC, "No space left on device")

            monkeypatch.setattr(keras.Model, "save", full)

        with pytest.raises(MammoError, match=r"disk/run/.*: cannot write \(No space left on device\)"):
            train_sr(None, run, preset="tiny", resume=True, gan_steps=4, verbose=0)

        assert (run / "checkpoints" / "last.keras").read_bytes() == checkpoint
        assert json.loads((run / "state.json").read_text()) == state
        assert not [p for p in run.rglob("*") if ".part" in p.name], "temporary files must be removed"

        if real_disk:
            filler.unlink()
        else:
            monkeypatch.undo()
        train_sr(None, run, preset="tiny", resume=True, gan_steps=4, verbose=0)
        assert json.loads((run / "state.json").read_text())["step"] == 8


@pytest.mark.parametrize(
    "error",
    [
        OSError(errno.ENOSPC, "No space left on device", "/runs/a/checkpoints/.last.x.part.keras"),
        OSError(errno.EROFS, "Read-only file system", "/mnt/ro/out.png"),
        OSError(errno.EDQUOT, "Disk quota exceeded", "/home/u/run/tb/events"),
        OSError(errno.EACCES, "Permission denied", "/srv/export/1"),
    ],
    ids=["ENOSPC", "EROFS", "EDQUOT", "EACCES"],
)
def test_the_cli_turns_a_failed_write_anywhere_into_one_line(error: OSError, monkeypatch) -> None:
    """Writes outside the atomic helpers (Keras, TensorBoard) reach the CLI as OSError: still one line, exit 2."""
    import mammo_tf.workflows.training as training

    def failing(*args, **kwargs):
        raise error

    monkeypatch.setattr(training, "train_sr", failing)
    result = CliRunner().invoke(cli, ["train-sr", "--preset", "quick", "--run-dir", "/tmp/unused-run"])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert lines == [f"mammo-tf: error: {error.filename}: cannot write ({error.strerror})"]


def test_other_os_errors_stay_bugs_with_a_traceback(monkeypatch) -> None:
    import mammo_tf.workflows.training as training

    def failing(*args, **kwargs):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(training, "train_sr", failing)
    result = CliRunner().invoke(cli, ["train-sr", "--preset", "quick", "--run-dir", "/tmp/unused-run"])
    assert isinstance(result.exception, OSError) and result.exception.errno == errno.EIO
