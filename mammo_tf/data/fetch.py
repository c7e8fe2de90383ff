"""Getting mini-MIAS onto the machine: download (fetch) or offline import, verified and atomic.

Both routes end in `import_mias`, which extracts only the distribution's own
members (Info.txt, mdbNNN.pgm, README, Licence.txt), flattens folders, checks
every file against the checksum list shipped with the package, and renames the
finished folder into place. A failure at any point leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import tarfile
import zipfile
import zlib
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import BinaryIO

from mammo_tf.data.mias import INFO_NAME, load_mias
from mammo_tf.errors import MammoError, located
from mammo_tf.io.atomic import atomic_dir, scratch_dir
from mammo_tf.paths import cache_root

MIAS_URL = "http://peipa.essex.ac.uk/pix/mias/all-mias.tar.gz"
_MEMBER = re.compile(r"^(Info\.txt|mdb\d{3}\.pgm|README|Licence\.txt)$")
_CHUNK = 1 << 20


def shipped_checksums() -> dict[str, str]:
    """name -> sha256 of every mini-MIAS file (Info.txt and the 322 PGMs), as shipped in the package."""
    text = resources.files("mammo_tf.data").joinpath("mias_sha256sums.txt").read_text("ascii")
    pairs = (line.split() for line in text.splitlines() if line.strip())
    return {name: digest for digest, name in pairs}


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


TAR_SUFFIXES = (".tar.gz", ".tgz", ".tar")
ZIP_SUFFIXES = (".zip",)


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split())[:200] or type(err).__name__


def _kind(src: Path) -> str | None:
    name = src.name.lower()
    return next((s for s in (*TAR_SUFFIXES, *ZIP_SUFFIXES) if name.endswith(s)), None)


@contextlib.contextmanager
def _distribution(src: Path) -> Iterator[Iterator[tuple[str, BinaryIO]]]:
    """Open a folder, .tar(.gz) or .zip and yield its distribution files as (basename, stream).

    The archive is opened before anything is yielded, so a file that is not a
    readable archive fails here, in one line, before a progress bar or an
    output folder exists.
    """
    if src.is_dir():
        yield _folder_members(src)
        return
    kind = _kind(src)
    if kind is None:
        raise located(src, "not a folder, .tar.gz, .tgz, .tar or .zip")
    if not src.is_file():
        raise located(src, f"not a regular file (expected a {kind} archive)")
    try:
        archive = tarfile.open(src, "r:*") if kind in TAR_SUFFIXES else zipfile.ZipFile(src)  # noqa: SIM115 - see below
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError, ValueError) as err:
        reason = "" if isinstance(err, tarfile.ReadError) else f" ({_one_line(err)})"  # ReadError lists every codec
        raise located(src, f"damaged archive: not a readable {kind} file{reason}") from None
    with archive:
        members = _tar_members(archive) if isinstance(archive, tarfile.TarFile) else _zip_members(archive)
        yield _damage_is_one_line(src, members)


def _folder_members(src: Path) -> Iterator[tuple[str, BinaryIO]]:
    for path in sorted(src.rglob("*")):
        if path.is_file() and _MEMBER.match(path.name):
            with open(path, "rb") as handle:
                yield path.name, handle


def _tar_members(archive: tarfile.TarFile) -> Iterator[tuple[str, BinaryIO]]:
    for info in archive:
        base = Path(info.name).name
        if info.isfile() and _MEMBER.match(base):
            yield base, archive.extractfile(info)


def _zip_members(archive: zipfile.ZipFile) -> Iterator[tuple[str, BinaryIO]]:
    for info in archive.infolist():
        base = Path(info.filename).name
        if not info.is_dir() and _MEMBER.match(base):
            with archive.open(info) as handle:
                yield base, handle


def _damage_is_one_line(src: Path, members: Iterator[tuple[str, BinaryIO]]) -> Iterator[tuple[str, BinaryIO]]:
    """An archive damaged past its first header fails while iterating: still one line naming it."""
    try:
        yield from members
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error, OSError) as err:
        raise located(src, f"damaged archive: {_one_line(err)}") from None


@contextlib.contextmanager
def _progress(iterable, enabled: bool, **options) -> Iterator:
    """A tqdm bar on a terminal only; on failure it is erased, so the error stays the one line on stderr."""
    from tqdm import tqdm

    bar = tqdm(iterable, disable=None if enabled else True, **options)  # None: no bar unless stderr is a terminal
    try:
        yield bar
    except BaseException:
        bar.leave = False
        raise
    finally:
        bar.close()


def _verify(folder: Path, source: Path) -> None:
    """Every shipped checksum must match a file in `folder`."""
    expected = shipped_checksums()
    missing = sorted(n for n in expected if not (folder / n).is_file())
    if missing:
        raise located(source, f"incomplete mini-MIAS: {len(missing)} files missing (first: {missing[0]})")
    for name, digest in sorted(expected.items()):
        if _sha256(folder / name) != digest:
            raise located(source, f"{name} does not match the mini-MIAS checksum (use --no-verify for other copies)")


def import_mias(src: str | Path, dest: str | Path, *, verify: bool = True, progress: bool = True) -> Path:
    """Copy a mini-MIAS distribution (folder, .tar.gz or .zip) into `dest`, verified, atomically.

    dest must not exist or be empty. verify=False accepts other copies of MIAS
    (the files are still checked when loaded: Info.txt lines, PGM headers).
    """
    src, dest = Path(src), Path(dest)
    if not src.exists():
        raise located(src, "no such file or folder")
    _check_new_folder(dest)
    with _distribution(src) as members:
        if dest.exists():
            dest.rmdir()
        with atomic_dir(dest) as tmp, _progress(members, progress, desc=f"import {src.name}", unit=" files") as bar:
            for name, stream in bar:
                with open(tmp / name, "wb") as out:
                    _copy_member(src, name, stream, out)
            if not (tmp / INFO_NAME).is_file():
                raise located(src, f"no {INFO_NAME} found (not a mini-MIAS distribution)")
            if verify:
                _verify(tmp, src)
            load_mias(tmp)  # refuse a copy whose Info.txt or PGMs are damaged
    return dest


def _copy_member(src: Path, name: str, stream: BinaryIO, out: BinaryIO) -> None:
    """Copy one member; a read that fails (truncated archive, bad CRC) is the archive's fault, named in one line.

    (Click would turn a bare EOFError into "aborted".)
    """
    while True:
        try:
            block = stream.read(_CHUNK)
        except (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error, OSError) as err:
            raise located(src, f"damaged archive: cannot read {name} ({_one_line(err)})") from None
        if not block:
            return
        out.write(block)


def _check_new_folder(dest: Path) -> None:
    """`dest` must not exist, or be an empty folder."""
    if not dest.exists():
        return
    if not dest.is_dir():
        raise located(dest, "already exists and is not a folder")
    if any(dest.iterdir()):
        raise located(dest, "already exists and is not empty")


def fetch_mias(dest: str | Path, *, url: str = MIAS_URL, timeout: float = 60.0, progress: bool = True) -> Path:
    """Download the mini-MIAS archive (streamed, progress bar) and import it into `dest`, verified."""
    import urllib.error
    import urllib.request

    dest = Path(dest)
    _check_new_folder(dest)
    offline = f"offline? download {url} elsewhere and run: mammo-tf data import all-mias.tar.gz --dest {dest}"
    with scratch_dir(dest) as tmp:
        archive = tmp / "all-mias.tar.gz"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response, open(archive, "wb") as out:
                total = int(response.headers.get("Content-Length") or 0) or None
                with _progress(None, progress, total=total, unit="B", unit_scale=True, desc="download") as bar:
                    for block in iter(lambda: response.read(_CHUNK), b""):
                        out.write(block)
                        bar.update(len(block))
        except (urllib.error.URLError, OSError, ValueError) as err:
            reason = " ".join(str(getattr(err, "reason", None) or err).split())
            raise MammoError(f"{url}: download failed ({reason}); {offline}") from None
        return import_mias(archive, dest, progress=progress)


def unpacked_archive(archive: str | Path) -> Path:
    """The verified, unpacked copy of a distribution archive, made once in the cache.

    Lets users point `--data` at the folder holding `all-mias.tar.gz` (as
    distributed) without unpacking it by hand.
    """
    archive = Path(archive).resolve()
    stat = archive.stat()
    key = hashlib.sha256(f"{archive}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:16]
    target = cache_root() / "mias" / key
    if not (target / INFO_NAME).is_file():
        import_mias(archive, target, progress=False)
    return target
