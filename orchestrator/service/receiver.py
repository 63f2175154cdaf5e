"""Imagen's callbacks: checked at the door, kept once in the inbox, the job woken; answered fast.

The URL is `<public url>/callbacks/<secret>`, the secret long, random and per job; only its
SHA-256 is stored. Anything that is not a well-formed callback for the job owning the secret
gets a 4xx (404 for an unknown secret) and changes nothing. A callback never moves a job: it
makes it due now, and the engine asks Imagen for the status.

A callback is answered as soon as it is recorded, and recording waits for nothing else the
daemon does: arrivals are written in groups (`GroupInbox`), one write for all that came while
the writers were busy (on Postgres one statement, two at a time), so a burst of a thousand
costs a few dozen writes and each sender waits about one of them, whatever the drives and
pages are doing with the database meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, Field, ValidationError, field_validator

from orchestrator.imagen.models import KNOWN_STATUSES
from orchestrator.service.metrics import Metrics
from orchestrator.service.wakeups import Wakeups
from orchestrator.store.inbox import Arrival, Delivery, Verdict, deliver_callbacks, inbox_writers
from orchestrator.store.queries import Store
from orchestrator.store.scheduling import database_errors
from orchestrator.workflow.processing import callback_secret_hash

log = logging.getLogger("orchestrator.daemon")

MAX_BODY_BYTES = 16 * 1024
"""Largest callback body accepted; Imagen's is under a hundred bytes."""

OTHER_STATUS = "other"
"""The inbox's one status for every word Imagen is not known to send."""
SECRET_SHAPE = re.compile(r"[A-Za-z0-9_-]{32,128}")
"""What a secret of ours looks like (`secrets.token_urlsafe`); anything else is not looked up."""
GROUP_MAX = 500
"""Most callbacks written in one transaction (a burst's group stays a few hundred rows)."""


class CallbackBody(BaseModel, frozen=True, extra="ignore"):
    """What Imagen POSTs when an edit or export ends."""

    project_uuid: str = Field(min_length=1, max_length=100)
    action: Literal["edit", "export"]
    status: str = Field(min_length=1, max_length=32)

    @field_validator("action", "status", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        # Imagen writes statuses in Title Case, older docs in upper case: one key in the inbox.
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("status")
    @classmethod
    def _known(cls, value: str) -> str:
        # Any other word is kept as one "other": a sender inventing statuses cannot grow the
        # inbox and the history by a row per word (the engine asks Imagen for the truth anyway).
        return value if value in KNOWN_STATUSES else OTHER_STATUS


class GroupInbox:
    """Writes callbacks in groups: an arrival is written at once while a writer is free
    (`inbox_writers`), and those that arrive while all are busy wait and go together in the
    next group (a group commit)."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._waiting: list[tuple[Arrival, asyncio.Future[Delivery]]] = []
        self._writers: set[asyncio.Task[None]] = set()
        self._most_writers = inbox_writers(store)

    async def deliver(self, arrival: Arrival) -> Delivery:
        """The arrival's verdict once its group is committed; a database error if it failed."""
        answer: asyncio.Future[Delivery] = asyncio.get_running_loop().create_future()
        self._waiting.append((arrival, answer))
        if len(self._writers) < self._most_writers:
            writer = asyncio.create_task(self._write(), name="callback-inbox")
            self._writers.add(writer)
            writer.add_done_callback(self._writers.discard)
        return await answer

    async def _write(self) -> None:
        while self._waiting:
            group, self._waiting = self._waiting[:GROUP_MAX], self._waiting[GROUP_MAX:]
            try:
                deliveries = await deliver_callbacks(self._store, [a for a, _ in group])
            except Exception as exc:  # each sender hears of it (a database error: 503)
                for _, answer in group:
                    if not answer.done():
                        answer.set_exception(exc)
                continue
            for (_, answer), delivery in zip(group, deliveries, strict=True):
                if not answer.done():  # its sender may have gone
                    answer.set_result(delivery)


class Receiver:
    """The POST /callbacks/{secret} handler."""

    def __init__(self, *, store: Store, wakeups: Wakeups, metrics: Metrics) -> None:
        self._inbox = GroupInbox(store)
        self._wakeups = wakeups
        self._metrics = metrics

    async def handle(self, request: web.Request) -> web.Response:
        """Validate, store once, wake the job; 202 for new news, 200 for a duplicate.

        The body is read and checked before the database is touched, so a slow or hostile
        sender never holds a database connection.
        """
        secret = request.match_info["secret"]
        if not SECRET_SHAPE.fullmatch(secret):
            return self._refuse("unknown_secret", 404, "not found")
        if (request.content_length or 0) > MAX_BODY_BYTES:
            return self._refuse("too_large", 413, "body too large")
        try:
            body = CallbackBody.model_validate_json(await request.read())
        except web.HTTPRequestEntityTooLarge:
            return self._refuse("too_large", 413, "body too large")
        except ValidationError as exc:
            return self._refuse(
                "bad_body",
                400,
                "expected JSON with project_uuid, action (edit or export) and status",
                problems=exc.error_count(),
            )
        try:
            delivery = await self._inbox.deliver(
                Arrival(callback_secret_hash(secret), body.project_uuid, body.action, body.status)
            )
        except database_errors():
            self._metrics.callbacks.labels("database_down").inc()
            log.warning("callback not stored: the database is unreachable; polling will catch up")
            return web.json_response({"error": "try again later"}, status=503)
        outcome = delivery.verdict.value
        if delivery.verdict is Verdict.UNKNOWN_SECRET:
            return self._refuse(outcome, 404, "not found")
        if delivery.verdict is Verdict.WRONG_PROJECT:
            return self._refuse(outcome, 422, "project_uuid does not match", job_id=delivery.job_id)
        self._metrics.callbacks.labels(outcome).inc()
        if delivery.verdict is Verdict.DUPLICATE:
            return web.json_response({"result": outcome}, status=200)
        self._wakeups.wake()
        log.info(
            "callback received",
            extra={"job_id": delivery.job_id, "action": body.action, "status": body.status},
        )
        return web.json_response({"result": outcome}, status=202)

    def _refuse(self, outcome: str, status: int, message: str, **fields: object) -> web.Response:
        self._metrics.callbacks.labels(outcome).inc()
        # Unknown secrets are what scanners send: counted, logged only when debugging.
        level = logging.DEBUG if outcome == "unknown_secret" else logging.WARNING
        log.log(level, "callback refused", extra={"outcome": outcome, **fields})
        return web.json_response({"error": message}, status=status)
