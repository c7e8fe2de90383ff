"""The one exception type for errors a user can fix (bad file, bad line, bad flag).

The CLI prints its message as one line on stderr and exits with code 2. Any
other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

from pathlib import Path


class MammoError(Exception):
    """A user-fixable error. The message names the file (and line) and what is wrong."""


def located(path: str | Path, message: str, line: int | None = None) -> MammoError:
    """Build a MammoError whose message starts with `path[:line]: `."""
    where = f"{path}:{line}" if line is not None else f"{path}"
    return MammoError(f"{where}: {message}")
