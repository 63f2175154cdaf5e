"""The first Ctrl-C's wait for transfers in flight: bounded by GRACE_SECONDS, the README's cap."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from types import SimpleNamespace

import pytest

from orchestrator.service import signals
from orchestrator.service.signals import GRACE_SECONDS

README = Path(__file__).resolve().parents[2] / "README.md"


class Stuck:
    """Transfers that never finish; each look at them moves the stopper's clock on a second."""

    def __init__(self, clock: list[float]) -> None:
        self.clock = clock
        self.stopped = False

    def stop_starting(self) -> None:
        self.stopped = True

    @property
    def in_flight(self) -> int:
        self.clock[0] += 1.0
        return 1


async def test_a_transfer_that_never_ends_holds_the_stop_no_longer_than_the_grace(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = [1000.0]
    monkeypatch.setattr(signals, "time", SimpleNamespace(monotonic=lambda: clock[0]))
    running = asyncio.create_task(asyncio.sleep(3600))
    cancelled_at: list[float] = []
    running.add_done_callback(lambda _: cancelled_at.append(clock[0]))

    await asyncio.wait_for(signals._stop_after(running, [Stuck(clock)]), timeout=30)
    await asyncio.sleep(0)

    assert running.cancelled()
    # Stopped once the grace was over, and not before it.
    assert 1000.0 + GRACE_SECONDS <= cancelled_at[0] <= 1000.0 + GRACE_SECONDS + 1.0


def test_the_readme_quotes_the_grace() -> None:
    [quoted] = re.findall(r"\((\d+) seconds at most\)", README.read_text())
    assert float(quoted) == GRACE_SECONDS
