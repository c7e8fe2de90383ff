"""The one exception type for errors a user can fix (bad file, bad line, bad flag).

The CLI prints its message as one line on stderr and exits with code 2. Any
other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path


class MammoError(Exception):
    """A user-fixable error. The message names the file (and line) and what is wrong."""


def located(path: str | Path, message: str, line: int | None = None) -> MammoError:
    """Build a MammoError whose message starts with `path[:line]: `."""
    where = f"{path}:{line}" if line is not None else f"{path}"
    return MammoError(f"{where}: {message}")


# What a full, read-only or forbidden destination raises: the user can fix these (free space, another
# folder, permissions), so they are one line, not a traceback.
WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG})
_WRITE_REASONS = ("No space left on device", "Disk quota exceeded", "Read-only file system", "Permission denied")


def write_failure(err: BaseException, path: str | Path | None = None) -> MammoError | None:
    """A one-line MammoError for a failed write (full disk, quota, read-only, permissions), else None.

    Covers OSError (its errno) and TensorFlow's own file errors (their message names the reason; the
    class is not imported here). `path` names the destination when the error does not.
    """
    if isinstance(err, OSError) and err.errno in WRITE_ERRNOS:
        where = err.filename or path
        reason = err.strerror or os.strerror(err.errno)
        return MammoError(f"{where}: cannot write ({reason})") if where else MammoError(f"cannot write ({reason})")
    text = str(err)
    reason = next((r for r in _WRITE_REASONS if r in text), None)
    if reason and type(err).__module__.startswith("tensorflow"):
        first = text.strip().splitlines()[0][:200] if text.strip() else ""
        return MammoError(f"{path}: cannot write ({reason}): {first}" if path else f"cannot write ({reason}): {first}")
    return None
