"""Deliveries started from the pages (a job's "Deliver", the shoot's "Deliver the shoot
again"), as `orchestrator deliver` does them: checked at once, so a refusal is shown on the
page, then run in the background (uploads can take minutes, a request must not); each job's
history says what was delivered, and a failure is logged."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from orchestrator.config import Settings
from orchestrator.progress import NullProgress
from orchestrator.service.deliveries import completed_deliveries, redeliver
from orchestrator.store.queries import StateConflict, Store

log = logging.getLogger("orchestrator.web")


class PageDeliveries:
    """The deliveries the pages started and that still run."""

    def __init__(self, store: Store, settings: Settings | None) -> None:
        self._store = store
        self._settings = settings
        """What a delivery needs to reach imgix; None where the pages cannot deliver."""
        self._running: set[asyncio.Task[Any]] = set()

    def can_deliver(self) -> bool:
        """Whether these pages can deliver at all (they were given the settings)."""
        return self._settings is not None

    async def start(self, ref: str) -> None:
        """Deliver again what changed in the completed jobs `ref` names (a shoot: each of its
        jobs that delivers; a job id: that job), in the background; refused at once (an
        OperatorRefusal) when nothing named can be delivered."""
        if self._settings is None:
            raise StateConflict("these pages cannot deliver: they run without imgix settings")
        await completed_deliveries(self._store, ref, self._settings)
        task = asyncio.create_task(redeliver(ref, self._settings, NullProgress()))
        self._running.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._running.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("delivery from the page failed", extra={"why": str(task.exception())})
