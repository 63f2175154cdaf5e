"""The throwaway stage's service: a tiny fake client, built from its own settings.

It stands for what a real stage's client is (Imagga's, imgix's): something the process builds
once, from one settings group, only when that group is configured. This one notes each photo
the stage checked in a file, durably, so a test can count how often each photo was done.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from pathlib import Path

LOG_ENV = "ORCH_TEST_CHECKSUM_LOG"


@dataclass(frozen=True)
class LedgerSettings:
    """The client's settings group, read from its own variable."""

    path: str | None
    """ORCH_TEST_CHECKSUM_LOG: the file checked photos are noted in."""

    @classmethod
    def from_env(cls) -> LedgerSettings:
        """The group as the environment sets it."""
        return cls(os.environ.get(LOG_ENV) or None)


class CheckLedger:
    """Notes checked photos in a file, one name a line."""

    def __init__(self, path: Path) -> None:
        self.path = path

    async def note(self, name: str) -> None:
        """Count the photo as checked, durably, before its checkpoint (a kill may fall
        between)."""
        await asyncio.to_thread(self._note, name)

    def _note(self, name: str) -> None:
        with open(self.path, "a") as log:
            log.write(name + "\n")
            log.flush()
            os.fsync(log.fileno())
