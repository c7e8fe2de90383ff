"""Shared fixtures: an isolated cache, and the real mini-MIAS unpacked once per run.

The MIAS tests run on ../shared/data/mias (or $MAMMO_MIAS_SOURCE). In CI
(CI=true) a missing distribution fails the run; on a user's machine those tests
skip with the reason.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MIAS_SOURCE = Path(os.environ.get("MAMMO_MIAS_SOURCE", REPO.parent / "shared" / "data" / "mias"))
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Tests never read or write the user's ~/.cache/mammo-tf, nor pick up their MAMMO_DATA."""
    os.environ["MAMMO_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    os.environ.pop("MAMMO_DATA", None)


def _require_mias(path: Path) -> None:
    if path.exists():
        return
    message = f"mini-MIAS not found at {path} (set MAMMO_MIAS_SOURCE or place shared/data/mias beside the repo)"
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def mias_source() -> Path:
    """The read-only distribution folder: Info.txt, SHA256SUMS, all-mias.tar.gz."""
    _require_mias(MIAS_SOURCE / "all-mias.tar.gz")
    return MIAS_SOURCE


@pytest.fixture(scope="session")
def mias_dir(mias_source: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """mini-MIAS unpacked and verified once per test run: Info.txt + mdb001..322.pgm."""
    from mammo_tf.data.fetch import import_mias

    return import_mias(mias_source / "all-mias.tar.gz", tmp_path_factory.mktemp("mias") / "mias", progress=False)
