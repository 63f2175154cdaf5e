"""Calls that must reach a service exactly once (create a project, start an edit or export).

The job's state already records the intent when such a call is made, so after a crash the
service is asked whether the call arrived before it is made again; and a call that failed in a
way that leaves this unknown (`Ambiguous`) is followed by asking, never by calling blindly.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from orchestrator.crashpoints import crash_point
from orchestrator.errors import Ambiguous, Transient
from orchestrator.workflow.context import JobContext

T = TypeVar("T")

AMBIGUOUS_CHECKS = 5
"""How many times an unconfirmed call is checked and tried again before giving up for now."""


def crash_points(action: str) -> tuple[str, str]:
    """The crash points around the call named `action`, for its stage to declare."""
    return f"before_{action}", f"after_{action}"


async def call_once(
    ctx: JobContext,
    *,
    action: str,
    what: str,
    arrived: Callable[[], Awaitable[T | None]],
    call: Callable[[], Awaitable[T]],
    found: str,
) -> T:
    """The result of `call`, made only if `arrived` finds no trace of an earlier one.

    `action` names the crash points around the call (`before_<action>`, `after_<action>`),
    `what` the call in messages, and `found` is the history's note when an earlier call had
    arrived.
    """
    for attempt in range(1, AMBIGUOUS_CHECKS + 1):
        earlier = await arrived()
        if earlier is not None:
            await ctx.event("resume", found)
            return earlier
        try:
            # Spelled as `crash_points` spells them, so the crash tests can read them here.
            crash_point(f"before_{action}")
            result = await call()
            crash_point(f"after_{action}")
            return result
        except Ambiguous as exc:
            await ctx.event(
                "retry", f"{what} unconfirmed ({exc}); asking before trying again", attempt=attempt
            )
            await ctx.nap(min(2.0**attempt, 30.0))
    raise Transient(f"could not confirm whether {what} arrived; run again to check")
