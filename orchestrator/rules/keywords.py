"""Which of Imagga's suggestions become keywords: the studio's allow and block lists, the job's
threshold and counts, the moderation flag, and the keyword hierarchy under a category. Pure
rules, shared by the keywording stage, review and the `keywords` command.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from orchestrator.integrations.imagga_models import SAFE_CATEGORY, Category, Suggestion
from orchestrator.spec import TagSpec

KEYWORD_BYTES = 64
"""Longest keyword in UTF-8 bytes: IPTC's limit for Keywords (IIM 2:25). XMP has none, but one
keyword is written to both, and a suggestion longer than this is no keyword (an Imagga answer
once held one of 5,000 characters): it is cut to this length in the XMP as in the IPTC."""


def capped(word: str) -> str:
    """The word cut to `KEYWORD_BYTES` of UTF-8 at a character boundary, without the spaces a
    cut leaves at its end."""
    encoded = word.strip().encode()
    if len(encoded) <= KEYWORD_BYTES:
        return word.strip()
    return encoded[:KEYWORD_BYTES].decode(errors="ignore").rstrip()


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
        least the `min_keywords` most confident, at most `max_keywords`; no word twice; each
        `capped` to IPTC's length."""
        cut = spec.threshold if threshold is None else threshold
        chosen: list[str] = []
        seen: set[str] = set()
        for suggestion in sorted(suggestions, key=lambda s: -s.confidence):
            word = capped(suggestion.tag)
            folded = word.casefold()
            if not word or folded in seen or not self.permits(word):
                continue
            if len(chosen) >= spec.max_keywords:
                break
            if suggestion.confidence < cut and len(chosen) >= spec.min_keywords:
                break
            chosen.append(word)
            seen.add(folded)
        return chosen

    def moderation(self, categories: Sequence[Category]) -> dict[str, float | bool]:
        """{"flagged", "score"}: the score is the most confident category other than safe."""
        score = max((c.confidence for c in categories if c.name != SAFE_CATEGORY), default=0.0)
        return {"flagged": score >= self.moderation_threshold, "score": round(score, 4)}


def hierarchy(keywords: Sequence[str], categories: Sequence[Category] | None) -> list[str]:
    """`Category|keyword` paths under the most confident category, when there are categories."""
    if not categories:
        return []
    top = categories[0].name.replace("|", " ")
    return [f"{top}|{word.replace('|', ' ')}" for word in keywords]
