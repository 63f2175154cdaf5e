"""Imagen's completion callbacks: POSTed to the client's callback_url, with callback faults applied.

- lose_callback: not sent at all.
- duplicate_callback: sent twice.
- reorder_callback: held back until the project's next callback has gone out (or `hold_seconds`
  pass), so that later callback overtakes it. A callback that has a held one to overtake goes
  out at once, even if it drew the fault itself, so the swap really happens.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import suppress
from typing import Any

import aiohttp

from orchestrator.sandbox.background import BackgroundTasks
from orchestrator.sandbox.faults import FaultInjector

log = logging.getLogger(__name__)
DELIVERY_TIMEOUT = aiohttp.ClientTimeout(total=10)


class CallbackDispatcher:
    """Sends callbacks through one client session owned by the sandbox; never raises."""

    def __init__(self, faults: FaultInjector, *, hold_seconds: float) -> None:
        self._faults = faults
        self._hold_seconds = hold_seconds
        self._tasks = BackgroundTasks()
        self._session: aiohttp.ClientSession | None = None
        self._held: dict[str, list[asyncio.Event]] = {}
        self.sent = 0
        self.failed = 0
        self.log: list[dict[str, Any]] = []

    async def start(self) -> None:
        """Open the client session; call from the running loop."""
        self._session = aiohttp.ClientSession(timeout=DELIVERY_TIMEOUT)

    async def close(self) -> None:
        """Drop undelivered callbacks and close the session."""
        await self._tasks.close()
        if self._session is not None:
            await self._session.close()

    def notify(self, url: str, *, project_uuid: str, action: str, status: str) -> None:
        """Schedule the callback for `action` ("edit"/"export") ending with `status`."""
        payload = {"project_uuid": project_uuid, "status": status, "action": action}
        faults = self._faults.for_callback()
        if faults.lose:
            self._faults.record("lose_callback")
            self.log.append({**payload, "delivered": False, "fault": "lose_callback"})
            return
        copies = 1
        if faults.duplicate:
            self._faults.record("duplicate_callback")
            copies = 2
        overtaken = self._held.pop(project_uuid, [])
        if faults.reorder and not overtaken:
            self._faults.record("reorder_callback")
            release = asyncio.Event()
            self._held.setdefault(project_uuid, []).append(release)
            self._tasks.spawn(self._deliver_later(release, url, payload, copies))
        else:
            self._tasks.spawn(self._deliver(url, payload, copies, overtaken))

    async def _deliver_later(
        self, release: asyncio.Event, url: str, payload: dict[str, str], copies: int
    ) -> None:
        with suppress(TimeoutError):
            await asyncio.wait_for(release.wait(), self._hold_seconds)
        held = self._held.get(payload["project_uuid"], [])
        if release in held:
            held.remove(release)
        await self._deliver(url, payload, copies, [])

    async def _deliver(
        self, url: str, payload: dict[str, str], copies: int, overtaken: list[asyncio.Event]
    ) -> None:
        for _ in range(copies):
            await self._post(url, payload)
        for release in overtaken:
            release.set()

    async def _post(self, url: str, payload: dict[str, str]) -> None:
        assert self._session is not None, "CallbackDispatcher.start() was not called"
        try:
            async with self._session.post(url, json=payload) as response:
                await response.read()
        except (aiohttp.ClientError, TimeoutError) as error:
            # The receiver is the client's business; the sandbox only notes the failure, by
            # type only: some messages quote the URL, whose path is the client's secret.
            self.failed += 1
            self.log.append({**payload, "delivered": False, "error": type(error).__name__})
            log.warning(
                "callback for project %s not delivered: %s",
                payload["project_uuid"],
                type(error).__name__,
            )
            return
        self.sent += 1
        self.log.append({**payload, "delivered": True, "http_status": response.status})
