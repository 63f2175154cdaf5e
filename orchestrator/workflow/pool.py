"""A bounded pool of workers over a list of items, collecting per-item failures."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

T = TypeVar("T")


class ItemFailed(Exception):
    """Raised by a pool's work function for a failure that concerns only its item."""


async def run_pool(
    items: Sequence[T], work: Callable[[T], Awaitable[None]], *, workers: int
) -> list[str]:
    """Run `work` on every item with at most `workers` at once.

    An `ItemFailed` (or a subclass) is collected and the others go on; any other exception
    stops the pool and propagates.
    """
    queue = list(reversed(items))
    failures: list[str] = []

    async def worker() -> None:
        while queue:
            item = queue.pop()
            try:
                await work(item)
            except ItemFailed as exc:
                failures.append(str(exc))

    try:
        async with asyncio.TaskGroup() as group:
            for _ in range(min(workers, len(items))):
                group.create_task(worker())
    except BaseExceptionGroup as group_error:
        # Callers handle the failure itself (Imagen down, disk full), not a group of it.
        raise group_error.exceptions[0] from None
    return failures
