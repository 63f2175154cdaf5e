"""Ctrl-C and SIGTERM: the first lets nearly-done transfers finish and stops cleanly at the
current checkpoint, a second forces; a server (the daemon, the page) stops cleanly on either."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import Iterator
from typing import Protocol

EXIT_INTERRUPTED = 130
GRACE_SECONDS = 5.0
"""How long the first interrupt waits for the transfers in flight before it stops them."""
QUIET_CHECKS = 3
"""Looks (a tenth of a second apart) that must find nothing in flight before the stop: time for
the finished transfers' checkpoints to be written."""


class Drainable(Protocol):
    """Transfers that can stop starting new ones and say how many still run."""

    def stop_starting(self) -> None: ...

    @property
    def in_flight(self) -> int: ...


_finishing: list[Drainable] = []


@contextlib.contextmanager
def let_finish(transfers: Drainable) -> Iterator[None]:
    """While the block runs, the first interrupt lets `transfers` in flight finish (up to
    GRACE_SECONDS) before it stops the command."""
    _finishing.append(transfers)
    try:
        yield
    finally:
        _finishing.remove(transfers)


@contextlib.contextmanager
def graceful_interrupts(task: asyncio.Task[object]) -> Iterator[None]:
    """Stop `task` on the first SIGINT/SIGTERM (after nearly-done transfers finish); exit at
    once with 130 on the second.

    Stopping is safe at any instant: every checkpoint is one transaction and every transfer
    that was not checkpointed is simply done again on resume.
    """
    loop = asyncio.get_running_loop()
    received: list[int] = []

    def on_signal(signum: int) -> None:
        received.append(signum)
        if len(received) == 1:
            draining = list(_finishing)
            busy = any(t.in_flight for t in draining)
            sys.stderr.write(
                "\nstopping at the current checkpoint"
                + (
                    f", letting transfers in flight finish (up to {GRACE_SECONDS:.0f} s)"
                    if busy
                    else ""
                )
                + "… (press Ctrl-C again to force)\n"
            )
            for transfers in draining:
                transfers.stop_starting()
            stopper.append(loop.create_task(_stop_after(task, draining if busy else [])))
        else:
            sys.stderr.write("\nforced stop\n")
            sys.stderr.flush()
            os._exit(EXIT_INTERRUPTED)

    stopper: list[asyncio.Task[None]] = []
    signals = (signal.SIGINT, signal.SIGTERM)
    for signum in signals:
        loop.add_signal_handler(signum, on_signal, signum)
    try:
        yield
    finally:
        for signum in signals:
            loop.remove_signal_handler(signum)


async def _stop_after(task: asyncio.Task[object], draining: list[Drainable]) -> None:
    """Cancel `task` once nothing is in flight (or GRACE_SECONDS have passed)."""
    deadline = time.monotonic() + GRACE_SECONDS
    quiet = 0
    while draining and quiet < QUIET_CHECKS and time.monotonic() < deadline:
        quiet = quiet + 1 if not any(t.in_flight for t in draining) else 0
        await asyncio.sleep(0.1)
    task.cancel()


@contextlib.contextmanager
def stop_on_signals(stop: asyncio.Event) -> Iterator[None]:
    """SIGTERM and SIGINT ask for a clean stop instead of killing the process."""
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        yield
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
