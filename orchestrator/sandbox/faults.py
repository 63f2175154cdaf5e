"""Seeded fault injection: which request or callback misbehaves, and the middleware that does it.

Every request except `/_sandbox/*` draws its faults, in arrival order, from one generator seeded
with the config's seed, so the same seed and the same request sequence give the same faults.
A fault that answers instead of the handler (5xx, 429, expired link, reset) acts before any work,
so the request has no effect.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass

from aiohttp import web
from aiohttp.typedefs import Handler

from orchestrator.sandbox.config import check_faults
from orchestrator.sandbox.responses import detail_error, s3_error

REQUEST_FAULTS = ("error_5xx", "throttle_429", "reset", "slow", "expire_link")
STORAGE_PREFIX = "/_storage/"
CONTROL_PREFIX = "/_sandbox/"
RESET_READ_BYTES = 64 * 1024  # how much of a request body is read before the connection drops


@dataclass(frozen=True, kw_only=True)
class RequestFaults:
    """The faults drawn for one request."""

    error_status: int | None = None
    throttle: bool = False
    reset: bool = False
    slow: bool = False
    expire_link: bool = False


@dataclass(frozen=True, kw_only=True)
class CallbackFaults:
    """The faults drawn for one callback."""

    lose: bool = False
    duplicate: bool = False
    reorder: bool = False


class FaultInjector:
    """Decides with seeded generators which requests and callbacks misbehave; counts the faults."""

    def __init__(
        self, probabilities: Mapping[str, float], *, seed: int, slow_seconds: float
    ) -> None:
        self._probabilities: dict[str, float] = {}
        self.set_probabilities(probabilities)
        self._request_rng = random.Random(seed)
        # Callbacks fire from timers; a generator of their own keeps their timing from shifting
        # the faults that requests see.
        self._callback_rng = random.Random(f"callbacks-{seed}")
        self.slow_seconds = slow_seconds
        self.injected: Counter[str] = Counter()

    def set_probabilities(self, probabilities: Mapping[str, float]) -> None:
        """Replace the fault probabilities (already validated); the generators carry on."""
        self._probabilities = {name: p for name, p in probabilities.items() if p > 0}

    def _draw(self, rng: random.Random, name: str) -> bool:
        probability = self._probabilities.get(name)
        return probability is not None and rng.random() < probability

    def for_request(self) -> RequestFaults:
        """Draw the faults of the next request to arrive."""
        rng = self._request_rng
        error = self._draw(rng, "error_5xx")
        return RequestFaults(
            error_status=rng.choice((500, 502, 503)) if error else None,
            throttle=self._draw(rng, "throttle_429"),
            reset=self._draw(rng, "reset"),
            slow=self._draw(rng, "slow"),
            expire_link=self._draw(rng, "expire_link"),
        )

    def for_callback(self) -> CallbackFaults:
        """Draw the faults of the next callback to be sent."""
        rng = self._callback_rng
        return CallbackFaults(
            lose=self._draw(rng, "lose_callback"),
            duplicate=self._draw(rng, "duplicate_callback"),
            reorder=self._draw(rng, "reorder_callback"),
        )

    def record(self, name: str) -> None:
        """Count one fault actually injected (for the ledger)."""
        self.injected[name] += 1


FAULTS = web.AppKey("sandbox_faults", FaultInjector)
DOWNLOAD_RESET = web.RequestKey("sandbox_download_reset", bool)
"""Set on a storage GET whose connection must drop mid-body; the storage handler does it."""


async def drop_connection(request: web.Request, *, read_bytes: int = 0) -> None:
    """Abort the connection without answering, after reading up to `read_bytes` of the body.

    Whatever the handler returns afterwards never reaches the client: aiohttp fails to write it
    to the aborted transport and drops it quietly.
    """
    if read_bytes and request.can_read_body:
        await request.content.read(read_bytes)
    if request.transport is not None:
        request.transport.abort()


@web.middleware
async def fault_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Apply the drawn faults to every route except the sandbox's own control routes."""
    if request.path.startswith(CONTROL_PREFIX):
        return await handler(request)
    injector = request.app[FAULTS]
    faults = injector.for_request()
    storage = request.path.startswith(STORAGE_PREFIX)
    if faults.slow:
        injector.record("slow")
        await asyncio.sleep(injector.slow_seconds)
    if faults.error_status is not None:
        injector.record("error_5xx")
        if storage:
            return s3_error(
                faults.error_status, "InternalError", "We encountered an internal error."
            )
        return detail_error(faults.error_status, "Internal server error (injected)")
    if faults.throttle:
        injector.record("throttle_429")
        headers = {"Retry-After": "1"}
        if storage:
            return s3_error(429, "SlowDown", "Please reduce your request rate.", headers=headers)
        return detail_error(429, "Too many requests (injected)", headers=headers)
    if faults.expire_link and storage:
        injector.record("expire_link")
        return s3_error(403, "AccessDenied", "Request has expired")
    if faults.reset:
        if storage and request.method == "GET":
            request[DOWNLOAD_RESET] = True
            return await handler(request)
        injector.record("reset")
        await drop_connection(request, read_bytes=RESET_READ_BYTES if storage else 0)
        return web.Response(status=500)
    return await handler(request)


async def faults_route(request: web.Request) -> web.Response:
    """PUT /_sandbox/faults with {name: probability}: switch faults on or off while running."""
    try:
        body = await request.json()
        faults = check_faults(body) if isinstance(body, dict) else None
    except ValueError as error:
        return detail_error(400, str(error))
    if faults is None:
        return detail_error(400, "Send a JSON object of fault name to probability")
    request.app[FAULTS].set_probabilities(faults)
    return web.json_response({"faults": faults})
