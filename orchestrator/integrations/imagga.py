"""The typed async client for Imagga v2 (tags, categorizers, usage), built on the API core.

It owns Imagga's wire rules: HTTP Basic with the key and secret, the `{"result", "status"}`
envelope (a 200 whose `status.type` is "error" is a refusal), at most the account's concurrency
cap in flight, and what a 403 means (quota spent or a feature not in the plan: the job pauses).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import quote

import aiohttp

from orchestrator.apicore.auth import BasicAuth
from orchestrator.apicore.client import ApiClient, Call, FilePart, OnRetry, RateLimit
from orchestrator.apicore.errors import ApiCredentialsRefused
from orchestrator.errors import Transient
from orchestrator.integrations.imagga_models import (
    Category,
    ImaggaForbidden,
    Suggestion,
    Usage,
    quota_spent,
)
from orchestrator.retry import RetryPolicy

PRODUCTION_URL = "https://api.imagga.com/v2"
IMAGGA_RETRY = RetryPolicy(initial_interval=1.0, maximum_interval=30.0, maximum_attempts=8)
"""429 over the concurrency cap and 5xx are retried for about two minutes."""
IMAGGA_TIMEOUT = aiohttp.ClientTimeout(total=120, sock_connect=10)
MAX_ANSWER_BYTES = 2 * 1024 * 1024
DEFAULT_CONCURRENCY = 2
"""In flight before /usage has told the account's cap (the smallest paid plan's)."""


class Slots:
    """A semaphore whose size can change while calls hold it (the cap is learnt from /usage)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_flight = 0
        self._changed = asyncio.Condition()

    @asynccontextmanager
    async def held(self) -> AsyncIterator[None]:
        """One slot, held while the block runs."""
        async with self._changed:
            await self._changed.wait_for(lambda: self.in_flight < self.limit)
            self.in_flight += 1
        try:
            yield
        finally:
            async with self._changed:
                self.in_flight -= 1
                self._changed.notify_all()


class ImaggaClient:
    """Calls Imagga's API over a shared aiohttp session; at most `concurrency` analyses at once."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        base_url: str,
        api_key: str,
        api_secret: str,
        concurrency: int | None = None,
        retry: RetryPolicy = IMAGGA_RETRY,
        on_retry: OnRetry | None = None,
    ) -> None:
        self._api = ApiClient(
            session,
            service="Imagga",
            base_url=base_url,
            auth=BasicAuth(api_key, api_secret),
            retry=retry,
            timeout=IMAGGA_TIMEOUT,
            limits={"usage": RateLimit(rate=2, per=1.0)},
            max_answer_bytes=MAX_ANSWER_BYTES,
            error_text=_status_text,
            credentials_hint="Check IMAGGA_API_KEY and IMAGGA_API_SECRET.",
            unreachable_hint="Is IMAGGA_API_URL right (or `orchestrator sandbox` running)?",
            on_retry=on_retry,
        )
        self.base_url = self._api.base_url
        self.configured_concurrency = concurrency
        self._slots = Slots(concurrency or DEFAULT_CONCURRENCY)

    def use_account_cap(self, usage: Usage) -> None:
        """Hold to the account's concurrency cap from /usage, unless one was configured."""
        if self.configured_concurrency is None and usage.concurrency_max:
            self._slots.limit = max(1, usage.concurrency_max)

    @property
    def concurrency(self) -> int:
        """Analyses in flight at most, over every job of the process."""
        return self._slots.limit

    async def usage(self) -> Usage:
        """The account's monthly quota and concurrency (`GET /usage?concurrency=1`)."""
        call = Call(
            name="usage", method="GET", path="/usage", params={"concurrency": 1}, limit="usage"
        )
        result = await self._result(call)
        concurrency = result.get("concurrency") if isinstance(result, dict) else None
        try:
            return Usage(
                monthly_limit=int(result["monthly_limit"]),
                monthly_processed=int(result["monthly_processed"]),
                concurrency_max=_int_or_none(concurrency, "max"),
                concurrency_now=_int_or_none(concurrency, "now"),
                resets_at=_text_or_none(result.get("billing_period_end")),
            )
        except (KeyError, TypeError, ValueError):
            raise self._api.malformed(call, "no monthly_limit and monthly_processed") from None

    async def tags(self, image: bytes, *, languages: Sequence[str]) -> list[Suggestion]:
        """Every tag Imagga suggests for the image, in each language, highest confidence first."""
        call = Call(
            name="tags",
            method="POST",
            path="/tags",
            # Nothing changes at Imagga; a retry only costs the request it repeats.
            idempotent=True,
            params={"language": ",".join(languages)},
            files=(FilePart("image", image, "image.jpg", "image/jpeg"),),
        )
        result = await self._analysis(call)
        entries = result.get("tags") if isinstance(result, dict) else None
        if not isinstance(entries, list):
            raise self._api.malformed(call, "no tags list in the result")
        found: list[Suggestion] = []
        for entry in entries:
            confidence, words = _scored(entry, "tag")
            if confidence is None:
                raise self._api.malformed(call, "a tag without a confidence and words")
            found += [Suggestion(words[lang], confidence) for lang in languages if lang in words]
        return _by_confidence(found, key=lambda s: s.confidence)

    async def categories(self, image: bytes, categorizer: str) -> list[Category]:
        """The image's categories by one categorizer (`personal_photos`, `nsfw_beta`, …)."""
        call = Call(
            name=f"categories/{categorizer}",
            method="POST",
            path=f"/categories/{quote(categorizer, safe='')}",
            idempotent=True,
            files=(FilePart("image", image, "image.jpg", "image/jpeg"),),
        )
        result = await self._analysis(call)
        entries = result.get("categories") if isinstance(result, dict) else None
        if not isinstance(entries, list):
            raise self._api.malformed(call, "no categories list in the result")
        found: list[Category] = []
        for entry in entries:
            confidence, names = _scored(entry, "name")
            if confidence is None or not names:
                raise self._api.malformed(call, "a category without a confidence and name")
            found.append(Category(names.get("en") or next(iter(names.values())), confidence))
        return _by_confidence(found, key=lambda c: c.confidence)

    async def _analysis(self, call: Call) -> Any:
        async with self._slots.held():
            return await self._result(call)

    async def _result(self, call: Call) -> Any:
        """The `result` of the envelope; 403 as ImaggaForbidden, `status.type: error` refused."""
        try:
            payload = await self._api.send_json(call)
        except ApiCredentialsRefused as exc:
            if exc.status == 403:
                raise ImaggaForbidden(await self._why_forbidden(call)) from None
            raise
        if not isinstance(payload, dict):
            raise self._api.malformed(call, "not a JSON object")
        status = payload.get("status")
        if isinstance(status, dict) and status.get("type") == "error":
            raise self._api.malformed(
                call, f"an error with HTTP 200: {status.get('text') or '(no text)'}", status=200
            )
        if "result" not in payload:
            raise self._api.malformed(call, "no result in the answer")
        return payload["result"]

    async def _why_forbidden(self, call: Call) -> str:
        """Why a 403 came: the quota when /usage shows it spent, else the plan."""
        if call.name != "usage":
            try:
                usage = await self.usage()
            except (ImaggaForbidden, Transient, ApiCredentialsRefused):
                usage = None
            if usage is not None and usage.left == 0:
                return quota_spent(usage)
        return (
            f"Imagga refused {call.name} (HTTP 403): your plan does not allow it; change "
            "the plan or drop the option that asks for it, then run again"
        )


def _status_text(payload: Any) -> str | None:
    """Imagga's explanation in an error answer: `status.text`."""
    if isinstance(payload, dict):
        status = payload.get("status")
        if isinstance(status, dict) and status.get("text"):
            return str(status["text"])
        if payload.get("detail"):
            return str(payload["detail"])
    return None


def _scored(entry: Any, field: str) -> tuple[float | None, dict[str, str]]:
    """(confidence, {language: word}) of one tag or category entry; None when malformed."""
    if not isinstance(entry, dict):
        return None, {}
    confidence, words = entry.get("confidence"), entry.get(field)
    if not isinstance(confidence, int | float) or isinstance(confidence, bool):
        return None, {}
    if not isinstance(words, dict):
        return None, {}
    clean = {str(k): v.strip() for k, v in words.items() if isinstance(v, str) and v.strip()}
    return min(100.0, max(0.0, float(confidence))), clean


def _by_confidence(items: list[Any], *, key: Any) -> list[Any]:
    """Highest confidence first, Imagga's own order among equals."""
    return sorted(items, key=lambda item: -key(item))


def _int_or_none(mapping: Any, key: str) -> int | None:
    if not isinstance(mapping, dict) or not isinstance(mapping.get(key), int | float):
        return None
    return int(mapping[key])


def _text_or_none(value: Any) -> str | None:
    return str(value)[:64] if isinstance(value, str | int) and str(value) else None
