"""Named instants where a test can make this process die by SIGKILL, to prove resume.

`ORCH_CRASH_AT=name` (or `name:n` for the n-th time it is reached) kills the process with
SIGKILL at that point, exactly as a power cut or the OOM killer would. Unset, it costs a dict
lookup. Each stage declares the points its step passes (`Stage.crash_points`), and
`Pipeline.crash_points` lists them all, so that a test can walk every one.
"""

from __future__ import annotations

import os
import signal

_hits: dict[str, int] = {}


def crash_point(name: str) -> None:
    """Die here by SIGKILL if ORCH_CRASH_AT names this point (and its hit count)."""
    wanted = os.environ.get("ORCH_CRASH_AT")
    if not wanted:
        return
    point, _, count = wanted.partition(":")
    if point != name:
        return
    _hits[name] = _hits.get(name, 0) + 1
    if _hits[name] >= int(count or 1):
        os.kill(os.getpid(), signal.SIGKILL)
