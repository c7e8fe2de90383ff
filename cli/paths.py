"""Path arguments of every `mammo-tf` command: resolved and checked here, once, before the command runs.

A command says what each path must be by giving one of these Click types as
`type=`; nothing else is needed (no callbacks, no checks in the command body):

    InputFolder()                       an existing folder
    InputFile(*endings)                 an existing regular file, its name ending in one of `endings` (if given)
    InputFolderOrFile(*endings)         either of the two (e.g. `data import SRC`: a folder, .tar.gz or .zip)
    InputDataset()                      a dataset: a folder, a manifest .csv or an Info.txt
    OutputFolder(must_be_new_or_empty=True)
                                        a folder to create: absent (or, by default, empty), its parent creatable
    OutputFile(*endings, overwrite=True)
                                        a file to write: not a folder or a device, its parent creatable

Example (a command in cli/sample.py):

    from mammo_tf_cli.paths import InputFile, OutputFile

    @click.command(name="upscale")
    @click.argument("image", type=InputFile(".pgm", ".png", ".tif", ".tiff", ".dcm"))
    @click.option("--out", type=OutputFile(".png", ".tif", ".pgm", ".dcm"), required=True)
    def upscale(image: Path, out: Path) -> None: ...

The command receives a `pathlib.Path` (`~` expanded, otherwise as typed).
A bad path raises MammoError while Click parses the arguments, so the
command body never runs and nothing is written; `cli/main.py` prints it as
one line and exits with code 2:

    mammo-tf: error: /proc/nope: cannot be created: cannot write in /proc (No such file or directory) (--out)

What is checked: existence; folder vs regular file vs device; name endings;
read permission for inputs; for outputs, that the nearest existing parent is
a folder in which a folder can really be created (a probe folder is made and
removed at once: permission bits lie to root, and /proc refuses anyway). The
library's writers (mammo_tf.io.atomic) check again when they write, so a
Python caller gets the same one-line errors.
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

import click

from mammo_tf.errors import MammoError

__all__ = ["InputDataset", "InputFile", "InputFolder", "InputFolderOrFile", "OutputFile", "OutputFolder"]


def _kind(path: Path) -> str | None:
    """'a folder', 'a file', 'a device or special file', or None if nothing is there."""
    try:
        mode = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):  # NotADirectory: a parent is a file, nothing can be there
        return None
    except OSError as err:
        return f"a path it cannot look at ({err.strerror or err})"
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISREG(mode):
        return "a file"
    return "a device or special file"


def _endings_text(endings: tuple[str, ...]) -> str:
    return endings[0] if len(endings) == 1 else ", ".join(endings[:-1]) + " or " + endings[-1]


def _has_ending(path: Path, endings: tuple[str, ...]) -> bool:
    return not endings or path.name.lower().endswith(tuple(e.lower() for e in endings))


def _unwritable_parent(path: Path) -> str | None:
    """Why nothing can be created at `path` (its nearest existing parent refuses), or None."""
    parent = next((p for p in path.absolute().parents if _kind(p) is not None), None)
    if parent is None:  # pragma: no cover - "/" always exists
        return "cannot be created: none of its parents exists"
    if _kind(parent) != "a folder":
        return f"cannot be created: {parent} is not a folder"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"cannot be created: {parent} is not writable"
    try:  # root passes os.access everywhere, and /proc or a read-only mount refuse anyway: really try
        os.rmdir(tempfile.mkdtemp(prefix=".mammo-tf-probe-", dir=parent))
    except OSError as err:
        return f"cannot be created: cannot write in {parent} ({err.strerror or err})"
    return None


def _named(param: click.Parameter | None) -> str:
    """' (--out)' for an option, ' (SRC)' for an argument: which of a command's paths is wrong."""
    if param is None:
        return ""
    if isinstance(param, click.Option) and param.opts:
        return f" ({param.opts[0]})"
    return f" ({param.human_readable_name})"


class _CheckedPath(click.ParamType):
    """A path checked by `problem()`; a MammoError naming the path and the parameter if it has one."""

    name = "path"
    completion = "file"

    def problem(self, path: Path) -> str | None:  # pragma: no cover - every subclass overrides it
        raise NotImplementedError

    def convert(self, value, param: click.Parameter | None, ctx: click.Context | None) -> Path:
        if ctx is not None and ctx.resilient_parsing:  # shell completion: never fail
            return Path(value)
        text = os.fspath(value)
        path = Path(os.path.expanduser(text))
        problem = "empty path" if not text else self.problem(path)
        if problem is None:
            return path
        raise MammoError(f"{text or repr(text)}: {problem}{_named(param)}")

    def shell_complete(self, ctx: click.Context, param: click.Parameter, incomplete: str):
        from click.shell_completion import CompletionItem

        return [CompletionItem(incomplete, type=self.completion)]


class _Input(_CheckedPath):
    """An existing folder and/or regular file (`endings` restrict files), readable."""

    def __init__(self, *endings: str, folder: bool, file: bool, expected: str | None = None) -> None:
        self.endings, self.folder, self.file = tuple(endings), folder, file
        a_file = f"a {_endings_text(self.endings)} file" if self.endings else "a file"
        self.expected = expected or " or ".join(["a folder"] * folder + [a_file] * file)

    def problem(self, path: Path) -> str | None:
        kind = _kind(path)
        if kind is None:
            return "no such " + ("file or folder" if self.folder and self.file else "folder" if self.folder else "file")
        ok_kind = (kind == "a folder" and self.folder) or (kind == "a file" and self.file)
        if not ok_kind or (kind == "a file" and not _has_ending(path, self.endings)):
            found = "a file with another name" if kind == "a file" and self.file else kind
            return f"must be {self.expected}, not {found}"
        if not os.access(path, os.R_OK | (os.X_OK if kind == "a folder" else 0)):
            return "cannot be read (permission denied)"
        return None


class InputFolder(_Input):
    """An existing, readable folder."""

    name = "folder"
    completion = "dir"

    def __init__(self) -> None:
        super().__init__(folder=True, file=False)


class InputFile(_Input):
    """An existing, readable regular file; with `endings`, its name must end in one of them (any case)."""

    name = "file"

    def __init__(self, *endings: str) -> None:
        super().__init__(*endings, folder=False, file=True)


class InputFolderOrFile(_Input):
    """An existing folder, or an existing regular file whose name ends in one of `endings` (if given)."""

    def __init__(self, *endings: str) -> None:
        super().__init__(*endings, folder=True, file=True)


class InputDataset(_Input):
    """A dataset for `--data`: a folder, a manifest .csv or an Info.txt (what the loader makes of it is its call)."""

    name = "dataset"

    def __init__(self) -> None:
        super().__init__(
            ".csv", "Info.txt", folder=True, file=True, expected="a dataset folder, a manifest .csv or an Info.txt"
        )


class OutputFolder(_CheckedPath):
    """A folder the command creates: absent, or (must_be_new_or_empty=False) an existing folder; parent writable."""

    name = "folder"
    completion = "dir"

    def __init__(self, must_be_new_or_empty: bool = True) -> None:
        self.must_be_new_or_empty = must_be_new_or_empty

    def problem(self, path: Path) -> str | None:
        kind = _kind(path)
        if kind is not None and kind != "a folder":
            return f"already exists and is {kind}, not a folder"
        if kind == "a folder" and self.must_be_new_or_empty:
            try:
                if any(path.iterdir()):
                    return "already exists and is not empty"
            except OSError as err:
                return f"cannot be read ({err.strerror or err})"
        return _unwritable_parent(path)


class OutputFile(_CheckedPath):
    """A file the command writes: name ending in one of `endings` (if given), not a folder or device; parent writable.

    overwrite=False refuses an existing file.
    """

    name = "file"

    def __init__(self, *endings: str, overwrite: bool = True) -> None:
        self.endings, self.overwrite = tuple(endings), overwrite

    def problem(self, path: Path) -> str | None:
        if not _has_ending(path, self.endings):
            return f"must be a {_endings_text(self.endings)} file"
        kind = _kind(path)
        if kind is not None and kind != "a file":
            return f"must be a file, not {kind}"
        if kind == "a file" and not self.overwrite:
            return "already exists"
        return _unwritable_parent(path)
