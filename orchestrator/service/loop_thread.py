"""An async context run on a thread of its own, with an event loop of its own.

The daemon serves HTTP there, so that a callback is answered while the main loop is busy
driving jobs: a handler no longer waits its turn behind a drive's parsing and statements.
Whatever is bound to an event loop (a database engine's connections, aiohttp's server) is
made, used and closed on that thread's loop; only thread-safe things cross (`Wakeups.wake`,
the metrics, `turns`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TypeVar

T = TypeVar("T")


@asynccontextmanager
async def in_own_thread(
    context: Callable[[], AbstractAsyncContextManager[T]], *, name: str
) -> AsyncIterator[T]:
    """Enter `context()` on a new thread's own event loop and give what it yields; on leaving,
    exit it there, wait for the thread to end, and raise here what entering or exiting raised.

    The thread's loop ends like `asyncio.run`'s: tasks the context left behind are cancelled.
    """
    started: concurrent.futures.Future[tuple[T, Callable[[], None]]] = concurrent.futures.Future()
    finished: concurrent.futures.Future[None] = concurrent.futures.Future()

    async def host() -> None:
        loop = asyncio.get_running_loop()
        leave = asyncio.Event()

        def leave_soon() -> None:
            loop.call_soon_threadsafe(leave.set)

        async with context() as value:
            started.set_result((value, leave_soon))
            await leave.wait()

    def run() -> None:
        try:
            asyncio.run(host())
        except BaseException as exc:  # handed to the caller, on its own thread
            (finished if started.done() else started).set_exception(exc)
        else:
            finished.set_result(None)

    # A daemon thread: an interrupted start cannot keep the process alive.
    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    value, leave = await asyncio.wrap_future(started)
    try:
        yield value
    finally:
        leave()
        await asyncio.wrap_future(finished)
        thread.join()


async def turns(loop: asyncio.AbstractEventLoop, *, within: float) -> bool:
    """Whether `loop`, another thread's, runs a step within `within` seconds (it is not stuck)."""
    here = asyncio.get_running_loop()
    turned = here.create_future()

    def answered() -> None:
        if not turned.done():  # the question may have timed out
            turned.set_result(None)

    def step() -> None:
        with contextlib.suppress(RuntimeError):  # the asking loop may have closed meanwhile
            here.call_soon_threadsafe(answered)

    loop.call_soon_threadsafe(step)
    try:
        async with asyncio.timeout(within):
            await turned
    except TimeoutError:
        return False
    return True
