"""Atomic writes: a failed command leaves nothing half-written behind.

Everything is written under a temporary name in the destination's own folder
(same filesystem) and renamed into place only when complete. A write that fails
for lack of space, quota or permission removes the temporary and is a one-line
MammoError naming the destination and the cause. A destination
whose folder cannot be created or written (a read-only disk, /proc, a file in
the way) is a MammoError naming the destination, raised before anything is
written, so library callers get the same one-line error as the CLI.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from mammo_tf.errors import located, write_failure


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _make_parent(path: Path) -> list[Path]:
    """Create the folder that will hold `path`; returns the folders it created (outermost first)."""
    missing = [p for p in path.parents if not p.exists()][::-1]
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        _remove_created(missing)
        existing = next((p for p in path.parents if p.exists()), None)
        if existing is not None and not existing.is_dir():
            raise located(path, f"cannot create its folder: {existing} is not a folder") from None
        raise located(path, f"cannot create its folder {path.parent} ({err.strerror or err})") from None
    if not path.parent.is_dir():
        raise located(path, f"cannot write here: {path.parent} is not a folder")
    return missing


def _remove_created(folders: list[Path]) -> None:
    """Remove the parent folders a failed write created (only if still empty), deepest first."""
    for folder in reversed(folders):
        with contextlib.suppress(OSError):
            folder.rmdir()


@contextlib.contextmanager
def _temporary(path: Path, make) -> Iterator[tuple]:
    """`make(dir=...)` a temporary name beside `path`; a MammoError if impossible; created parents go on error."""
    created = _make_parent(path)
    try:
        tmp = make(dir=path.parent)
    except OSError as err:
        _remove_created(created)
        raise located(path, f"cannot write in {path.parent} ({err.strerror or err})") from None
    try:
        yield tmp
    except BaseException:
        _remove_created(created)
        raise


def _raise_write_failure(err: BaseException, path: Path) -> None:
    """Re-raise a full disk, quota, read-only or permission error as one line naming `path` (else return)."""
    failure = write_failure(err, path)
    if failure is not None:
        raise failure from None


def _publish(tmp: str | Path, path: Path) -> None:
    try:
        os.replace(tmp, path)
    except OSError as err:
        raise located(path, f"cannot move the finished output into place ({err.strerror or err})") from None


@contextlib.contextmanager
def atomic_file(path: str | Path, mode: str = "wb") -> Iterator:
    """Open a temporary file beside `path`; rename it to `path` on success, delete it on error."""
    path = Path(path)
    make = functools.partial(tempfile.mkstemp, prefix=f".{path.name}.", suffix=".part")
    with _temporary(path, make) as (fd, tmp):
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; a finished file gets the usual permissions
        try:
            with os.fdopen(fd, mode) as handle:
                yield handle
            _publish(tmp, path)
        except BaseException as err:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            _raise_write_failure(err, path)
            raise


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    """Write `data` to `path` atomically."""
    with atomic_file(path, "wb") as handle:
        handle.write(data)


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a temporary folder beside `path`; rename it to `path` on success, remove it on error.

    `path` must not exist yet (callers decide whether to refuse or replace).
    """
    path = Path(path)
    make = functools.partial(tempfile.mkdtemp, prefix=f".{path.name}.", suffix=".part")
    with _temporary(path, make) as tmp:
        os.chmod(tmp, 0o777 & ~_umask())
        try:
            yield Path(tmp)
            _publish(tmp, path)
        except BaseException as err:
            shutil.rmtree(tmp, ignore_errors=True)
            _raise_write_failure(err, path)
            raise


@contextlib.contextmanager
def scratch_dir(path: str | Path) -> Iterator[Path]:
    """A temporary folder beside `path` (same filesystem, e.g. for a download), always removed on exit."""
    path = Path(path)
    make = functools.partial(tempfile.mkdtemp, prefix=f".{path.name}.", suffix=".tmp")
    with _temporary(path, make) as tmp:
        try:
            yield Path(tmp)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
