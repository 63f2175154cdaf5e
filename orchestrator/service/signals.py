"""Ctrl-C and SIGTERM: the first stops cleanly at the current checkpoint, a second forces."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Iterator

EXIT_INTERRUPTED = 130


@contextlib.contextmanager
def graceful_interrupts(task: asyncio.Task[object]) -> Iterator[None]:
    """Cancel `task` on the first SIGINT/SIGTERM; exit at once with 130 on the second.

    Cancelling is safe at any instant: every checkpoint is one transaction and every transfer
    that was not checkpointed is simply done again on resume.
    """
    loop = asyncio.get_running_loop()
    received: list[int] = []

    def on_signal(signum: int) -> None:
        received.append(signum)
        if len(received) == 1:
            sys.stderr.write(
                "\nstopping at the current checkpoint… (press Ctrl-C again to force)\n"
            )
            task.cancel()
        else:
            sys.stderr.write("\nforced stop\n")
            sys.stderr.flush()
            os._exit(EXIT_INTERRUPTED)

    signals = (signal.SIGINT, signal.SIGTERM)
    for signum in signals:
        loop.add_signal_handler(signum, on_signal, signum)
    try:
        yield
    finally:
        for signum in signals:
            loop.remove_signal_handler(signum)
