"""Fetch and import of mini-MIAS: verified, atomic, offline route named on network failure."""

from __future__ import annotations

import functools
import http.server
import shutil
import socket
import tarfile
import threading
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from mammo_tf.data.fetch import fetch_mias, import_mias, shipped_checksums
from mammo_tf.errors import MammoError
from mammo_tf_cli.main import cli


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_shipped_checksums_cover_the_distribution() -> None:
    sums = shipped_checksums()
    assert len(sums) == 323 and "Info.txt" in sums and "mdb322.pgm" in sums


def test_network_failure_names_the_offline_route_and_leaves_nothing(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{_closed_port()}/all-mias.tar.gz"
    result = CliRunner().invoke(cli, ["data", "fetch", "mias", "--dest", str(tmp_path / "mias"), "--url", url])
    assert result.exit_code == 2
    assert "download failed" in result.output and "mammo-tf data import" in result.output
    assert list(tmp_path.iterdir()) == []


def test_import_refuses_non_distribution_and_cleans_up(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "notes.txt").write_text("hello")
    with pytest.raises(MammoError, match="no Info.txt found"):
        import_mias(tmp_path / "src", tmp_path / "dest")
    (tmp_path / "broken.tar.gz").write_bytes(b"\x1f\x8b garbage")
    with pytest.raises(MammoError, match="damaged archive"):
        import_mias(tmp_path / "broken.tar.gz", tmp_path / "dest")
    with pytest.raises(MammoError, match="not a folder, .tar.gz"):
        import_mias(tmp_path / "src" / "notes.txt", tmp_path / "dest")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.tar.gz", "src"]


def test_import_refuses_non_empty_destination(tmp_path: Path) -> None:
    (tmp_path / "dest").mkdir()
    (tmp_path / "dest" / "keep.txt").write_text("mine")
    result = CliRunner().invoke(cli, ["data", "import", str(tmp_path), "--dest", str(tmp_path / "dest")])
    assert result.exit_code == 2 and "already exists and is not empty" in result.output
    assert (tmp_path / "dest" / "keep.txt").read_text() == "mine"


@pytest.mark.mias
def test_import_zip_with_a_folder_inside(mias_dir: Path, tmp_path: Path) -> None:
    archive = tmp_path / "mias.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_STORED) as out:
        for path in sorted(mias_dir.iterdir()):
            out.write(path, f"all-mias/{path.name}")
    result = CliRunner().invoke(cli, ["data", "import", str(archive), "--dest", str(tmp_path / "m")])
    assert result.exit_code == 0, result.output
    assert len(list((tmp_path / "m").glob("mdb*.pgm"))) == 322


@pytest.mark.mias
def test_import_detects_a_modified_copy(mias_dir: Path, tmp_path: Path) -> None:
    src = tmp_path / "src"
    shutil.copytree(mias_dir, src)
    raw = bytearray((src / "mdb007.pgm").read_bytes())
    raw[-1] ^= 0xFF
    (src / "mdb007.pgm").write_bytes(bytes(raw))
    with pytest.raises(MammoError, match="mdb007.pgm does not match the mini-MIAS checksum"):
        import_mias(src, tmp_path / "dest", progress=False)
    assert not (tmp_path / "dest").exists()
    assert import_mias(src, tmp_path / "dest", verify=False, progress=False).is_dir()


@pytest.mark.mias
def test_import_tarball_missing_members(mias_dir: Path, tmp_path: Path) -> None:
    archive = tmp_path / "part.tar.gz"
    with tarfile.open(archive, "w:gz", compresslevel=1) as out:
        for name in ["Info.txt", "mdb001.pgm", "mdb002.pgm"]:
            out.add(mias_dir / name, name)
    with pytest.raises(MammoError, match="incomplete mini-MIAS: 320 files missing"):
        import_mias(archive, tmp_path / "dest", progress=False)
    with pytest.raises(MammoError, match="lists mdb003 but"):
        import_mias(archive, tmp_path / "dest", verify=False, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["part.tar.gz"]


@pytest.mark.mias
def test_fetch_streams_and_verifies(mias_source: Path, tmp_path: Path) -> None:
    """The real archive served on loopback, fetched through the same code path as the official address."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(mias_source))
    handler.log_message = lambda *args: None  # type: ignore[method-assign]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/all-mias.tar.gz"
        out = fetch_mias(tmp_path / "mias", url=url, progress=False)
    finally:
        server.shutdown()
    assert len(list(out.glob("mdb*.pgm"))) == 322
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mias"]
