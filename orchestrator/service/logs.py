"""The daemon's logs: one JSON object per line on stderr, with the fields given as `extra`."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

_STANDARD_FIELDS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
}


class JsonFormatter(logging.Formatter):
    """Formats a record as JSON: time, level, logger, message, then its extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update((k, v) for k, v in vars(record).items() if k not in _STANDARD_FIELDS)
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(level: str, library_level: str | None = None) -> None:
    """Send our records at `level` or above, other libraries' at `library_level`, to stderr.

    The libraries' level defaults to ours but never below INFO: their DEBUG lines (a database
    driver narrates every statement, megabytes a minute) show only when asked for.
    """
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    ours = logging.getLevelNamesMapping()[level]
    root.setLevel(library_level or max(ours, logging.INFO))
    logging.getLogger("orchestrator").setLevel(ours)
    # Alembic narrates every revision lookup (each /readyz): only its warnings are news.
    logging.getLogger("alembic").setLevel(max(logging.WARNING, root.level))
