"""Getting mini-MIAS onto the machine: download (fetch) or offline import, verified and atomic.

Both routes end in `import_mias`, which extracts only the distribution's own
members (Info.txt, mdbNNN.pgm, README, Licence.txt), flattens folders, checks
every file against the checksum list shipped with the package, and renames the
finished folder into place. A failure at any point leaves nothing behind.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import tarfile
import tempfile
import zipfile
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import BinaryIO

from mammo_tf.errors import MammoError, located
from mammo_tf.io.atomic import atomic_dir
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


def _members(src: Path) -> Iterator[tuple[str, BinaryIO]]:
    """(basename, readable stream) for each distribution file inside a folder, .tar(.gz) or .zip."""
    if src.is_dir():
        for path in sorted(src.rglob("*")):
            if path.is_file() and _MEMBER.match(path.name):
                with open(path, "rb") as handle:
                    yield path.name, handle
        return
    name = src.name.lower()
    try:
        if name.endswith((".tar.gz", ".tgz", ".tar")):
            with tarfile.open(src, "r:*") as archive:
                for info in archive:
                    base = Path(info.name).name
                    if info.isfile() and _MEMBER.match(base):
                        yield base, archive.extractfile(info)
        elif name.endswith(".zip"):
            with zipfile.ZipFile(src) as archive:
                for info in archive.infolist():
                    base = Path(info.filename).name
                    if not info.is_dir() and _MEMBER.match(base):
                        with archive.open(info) as handle:
                            yield base, handle
        else:
            raise located(src, "not a folder, .tar.gz, .tgz, .tar or .zip")
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as err:
        raise located(src, f"damaged archive: {err}") from None


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
    from tqdm import tqdm

    src, dest = Path(src), Path(dest)
    if not src.exists():
        raise located(src, "no such file or folder")
    if dest.exists() and any(dest.iterdir()):
        raise located(dest, "already exists and is not empty")
    if dest.exists():
        dest.rmdir()
    with atomic_dir(dest) as tmp:
        for name, stream in tqdm(_members(src), desc=f"import {src.name}", unit=" files", disable=not progress):
            with open(tmp / name, "wb") as out:
                shutil.copyfileobj(stream, out, _CHUNK)
        if not (tmp / "Info.txt").is_file():
            raise located(src, "no Info.txt found (not a mini-MIAS distribution)")
        if verify:
            _verify(tmp, src)
        from mammo_tf.data.mias import load_mias

        load_mias(tmp)  # refuse a copy whose Info.txt or PGMs are damaged
    return dest


def fetch_mias(dest: str | Path, *, url: str = MIAS_URL, timeout: float = 60.0, progress: bool = True) -> Path:
    """Download the mini-MIAS archive (streamed, progress bar) and import it into `dest`, verified."""
    import urllib.error
    import urllib.request

    from tqdm import tqdm

    dest = Path(dest)
    if dest.exists() and any(dest.iterdir()):
        raise located(dest, "already exists and is not empty")
    dest.parent.mkdir(parents=True, exist_ok=True)
    offline = f"offline? download {url} elsewhere and run: mammo-tf data import all-mias.tar.gz --dest {dest}"
    with tempfile.TemporaryDirectory(prefix=".fetch-", dir=dest.parent) as tmp:
        archive = Path(tmp) / "all-mias.tar.gz"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response, open(archive, "wb") as out:
                total = int(response.headers.get("Content-Length") or 0) or None
                with tqdm(total=total, unit="B", unit_scale=True, desc="download", disable=not progress) as bar:
                    for block in iter(lambda: response.read(_CHUNK), b""):
                        out.write(block)
                        bar.update(len(block))
        except (urllib.error.URLError, OSError, ValueError) as err:
            reason = getattr(err, "reason", None) or err
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
    if not (target / "Info.txt").is_file():
        import_mias(archive, target, progress=False)
    return target
