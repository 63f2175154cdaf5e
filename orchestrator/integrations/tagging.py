"""What the keywording stage is given: the Imagga client, the keyword writer, and the studio's
rules for which suggestions become keywords (allow and block lists, moderation threshold)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from orchestrator.integrations.imagga_models import SAFE_CATEGORY, Category, Suggestion
from orchestrator.spec import TagSpec

if TYPE_CHECKING:
    from orchestrator.integrations.imagga import ImaggaClient
    from orchestrator.integrations.keywords import KeywordFiles


@dataclass(frozen=True)
class KeywordRules:
    """The studio's words: allowed only (when given) and never allowed; compared casefolded."""

    allow: frozenset[str] = field(default_factory=frozenset)
    block: frozenset[str] = field(default_factory=frozenset)
    moderation_threshold: float = 50.0

    @classmethod
    def of(
        cls, allow: Sequence[str], block: Sequence[str], moderation_threshold: float = 50.0
    ) -> KeywordRules:
        """Rules from the configured lists."""
        return cls(
            frozenset(w.casefold() for w in allow),
            frozenset(w.casefold() for w in block),
            moderation_threshold,
        )

    def permits(self, word: str) -> bool:
        """Whether the word may become a keyword at all."""
        folded = word.casefold()
        return folded not in self.block and (not self.allow or folded in self.allow)

    def choose(
        self,
        suggestions: Sequence[Suggestion],
        spec: TagSpec,
        *,
        threshold: float | None = None,
    ) -> list[str]:
        """The keywords: every permitted suggestion at or above the threshold, and always at
        least the `min_keywords` most confident, at most `max_keywords`; no word twice."""
        cut = spec.threshold if threshold is None else threshold
        chosen: list[str] = []
        seen: set[str] = set()
        for suggestion in sorted(suggestions, key=lambda s: -s.confidence):
            folded = suggestion.tag.casefold()
            if folded in seen or not self.permits(suggestion.tag):
                continue
            if len(chosen) >= spec.max_keywords:
                break
            if suggestion.confidence < cut and len(chosen) >= spec.min_keywords:
                break
            chosen.append(suggestion.tag)
            seen.add(folded)
        return chosen

    def moderation(self, categories: Sequence[Category]) -> dict[str, float | bool]:
        """{"flagged", "score"}: the score is the most confident category other than safe."""
        score = max((c.confidence for c in categories if c.name != SAFE_CATEGORY), default=0.0)
        return {"flagged": score >= self.moderation_threshold, "score": round(score, 4)}


@dataclass(frozen=True)
class Tagging:
    """Everything the keywording stage needs from the outside, shared by every job."""

    imagga: ImaggaClient
    files: KeywordFiles
    rules: KeywordRules = field(default_factory=KeywordRules)
    anyway: bool = False
    """Tag what the quota allows when it is too small for every photo (`--tag-anyway`)."""
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


def hierarchy(keywords: Sequence[str], categories: Sequence[Category] | None) -> list[str]:
    """`Category|keyword` paths under the most confident category, when there are categories."""
    if not categories:
        return []
    top = categories[0].name.replace("|", " ")
    return [f"{top}|{word.replace('|', ' ')}" for word in keywords]
