"""What the keywording stage is given: the Imagga client, the keyword writer, and the studio's
rules for which suggestions become keywords (`rules/keywords.py`)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from orchestrator.rules.keywords import KeywordRules

if TYPE_CHECKING:
    from orchestrator.integrations.imagga import ImaggaClient
    from orchestrator.integrations.keywords import KeywordFiles


@dataclass(frozen=True)
class Tagging:
    """Everything the keywording stage needs from the outside, shared by every job."""

    imagga: ImaggaClient
    files: KeywordFiles
    rules: KeywordRules = field(default_factory=KeywordRules)
    anyway: bool = False
    """Tag what the quota allows when it is too small for every photo (`--tag-anyway`)."""
    people_index: str | None = None
    """The studio's face recognition index (ORCH_PEOPLE_INDEX) that names known persons."""
    asking: dict[tuple[str, str], asyncio.Lock] = field(default_factory=dict)
    """One lock per (image md5, analysis) being asked for, so that photos showing the same
    picture at the same time ask Imagga once and the others take the kept answer."""

    def lock_for(self, image_md5: str, analysis: str) -> asyncio.Lock:
        """The lock of one image and analysis (dropped again by `done_with`)."""
        return self.asking.setdefault((image_md5, analysis), asyncio.Lock())

    def done_with(self, image_md5: str, analysis: str, lock: asyncio.Lock) -> None:
        """Forget the lock once nobody waits on it."""
        if not lock.locked() and self.asking.get((image_md5, analysis)) is lock:
            del self.asking[(image_md5, analysis)]
