"""Group commit of per-photo checkpoints: each photo waits for its own commit, but shares it.

A transfer worker that finished a photo hands its checkpoint over and waits until it is in the
database before it takes the next photo, so at any instant at most one finished-but-unsaved
photo per worker exists: a crash repeats at most `workers` transfers. Photos that finish while
a commit is running are written together by the next one, so the cost per photo falls as the
pace rises (one transaction per photo made a 10,000-photo job spend minutes in the database).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from orchestrator.store.queries import Checkpoint, Lease, PhotoWriter, Store

_Entry = tuple[int, Checkpoint, "asyncio.Future[None] | None"]
"""A queued checkpoint: photo id, what to write, and the future its waiter awaits (if any)."""


class PhotoCheckpoints:
    """Commits photo checkpoints of one job in shared transactions; see the module doc."""

    def __init__(self, writer: PhotoWriter) -> None:
        self._writer = writer
        self._queue: list[_Entry] = []
        self._wake = asyncio.Event()
        self._closing = False
        self._failure: Exception | None = None
        self._failure_unseen = False
        """A batch holding only `save`d checkpoints failed, and nobody has been told yet."""

    async def commit(self, photo_id: int, values: Checkpoint) -> None:
        """Write this checkpoint of the photo; returns once it is committed."""
        self.raise_failure()
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append((photo_id, values, done))
        self._wake.set()
        await done

    def save(self, photo_id: int, values: Checkpoint) -> None:
        """Queue this checkpoint of the photo without waiting, for what is cheap to redo (hashes).

        They are committed before anything queued after them.
        """
        self.raise_failure()
        self._queue.append((photo_id, values, None))
        self._wake.set()

    def raise_failure(self) -> None:
        """Raise what made a batch fail, if one did: later checkpoints would fail alike."""
        if self._failure is not None:
            self._failure_unseen = False
            raise self._failure

    def raise_unseen_failure(self) -> None:
        """Raise a failure that only `save`d checkpoints met, so that it is not lost."""
        if self._failure_unseen:
            self.raise_failure()

    async def run(self) -> None:
        """Write what is queued, batch after batch, until closed and drained."""
        while True:
            if not self._queue:
                if self._closing:
                    return
                # Cleared only when nothing is queued: whoever queues next sets it again.
                self._wake.clear()
                await self._wake.wait()
                continue
            batch, self._queue = self._queue, []
            await self._write(batch)

    def close(self) -> None:
        """Let `run` end once the queue is empty."""
        self._closing = True
        self._wake.set()

    async def _write(self, batch: list[_Entry]) -> None:
        try:
            await self._writer.write([(photo_id, values) for photo_id, values, _ in batch])
        except Exception as exc:
            self._failure = exc
            waiters = [done for _, _, done in batch if done is not None and not done.done()]
            for waiter in waiters:
                waiter.set_exception(exc)
            self._failure_unseen = not waiters
            return
        for _, _, done in batch:
            if done is not None and not done.done():
                done.set_result(None)


@contextlib.asynccontextmanager
async def photo_checkpoints(store: Store, lease: Lease) -> AsyncIterator[PhotoCheckpoints]:
    """Group-committed photo checkpoints for the block's duration.

    On the way out, also when the job is interrupted (Ctrl-C), what is already queued is still
    committed: those transfers are finished, and saving them spares the next run their repeat.
    """
    async with store.photo_writer(lease) as writer:
        checkpoints = PhotoCheckpoints(writer)
        flusher = asyncio.create_task(checkpoints.run())
        try:
            yield checkpoints
        finally:
            checkpoints.close()
            await _finish(flusher)
        checkpoints.raise_unseen_failure()


async def _finish(flusher: asyncio.Task[Any]) -> None:
    """Wait for the flusher to drain; a second cancel (forced stop) abandons it."""
    try:
        await asyncio.shield(flusher)
    except asyncio.CancelledError:
        flusher.cancel()
        raise
