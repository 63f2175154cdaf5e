"""Transfer retries of one stage, counted by kind and written to the job's history once."""

from __future__ import annotations

import re
from collections import Counter

from orchestrator.workflow.context import JobContext

SHOWN_KINDS = 3
"""Kinds of retry named in the history line before the rest are summed up."""


class RetryTally:
    """Counts a stage's transfer retries (the transfers' `on_retry` hook) by what went wrong."""

    def __init__(self) -> None:
        self.kinds: Counter[str] = Counter()

    def heard(self, file_name: str, attempt: int, reason: str, delay: float) -> None:
        """One retry of one file: counted under the reason's first words (no file, no link)."""
        self.kinds[_kind(reason.removeprefix(f"{file_name}: "))] += 1

    async def record(self, ctx: JobContext, stage: str) -> None:
        """One history line for the stage's retries, if there were any."""
        total = sum(self.kinds.values())
        if not total:
            return
        shown = ", ".join(f"{n} × {kind}" for kind, n in self.kinds.most_common(SHOWN_KINDS))
        more = (
            f", {total - sum(n for _, n in self.kinds.most_common(SHOWN_KINDS))} other"
            if len(self.kinds) > SHOWN_KINDS
            else ""
        )
        await ctx.event(
            "retry",
            f"{stage}: {total} transfer {'retry' if total == 1 else 'retries'} ({shown}{more})",
            retries=dict(self.kinds),
        )


def _kind(reason: str) -> str:
    # "storage answered HTTP 500: We encountered…" and "… (HTTP 503)" group by their head.
    return re.split(r": | \(", reason, maxsplit=1)[0].strip() or "unknown"
