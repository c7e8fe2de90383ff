"""Where mammo-tf keeps derived files: one cache root, overridable for tests and shared machines."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """MAMMO_CACHE if set, else ~/.cache/mammo-tf. Created on first use by the writers."""
    value = os.environ.get("MAMMO_CACHE")
    return Path(value) if value else Path.home() / ".cache" / "mammo-tf"
