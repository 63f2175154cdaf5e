"""Where the job database lives when no URL is given: read by the settings and by the store,
which keeps that folder private."""

from __future__ import annotations

import os
from pathlib import Path


def default_database_path() -> Path:
    """Where the SQLite database lives when ORCH_DATABASE_URL is not set (XDG data folder)."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "orchestrator" / "orchestrator.db"
