"""The client of the imgix Management API (upload, asset metadata, purge) on the API core.

It owns imgix's wire rules: the bearer key, JSON:API documents (`application/vnd.api+json`),
its errors (`{"errors": [{"detail"}]}`), the permission each call needs, and the documented
per-endpoint rate limits, held before sending by one bucket per endpoint class. One client is
built per process and shared by every job, so the buckets are too.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import aiohttp

from orchestrator.apicore.auth import BearerToken
from orchestrator.apicore.client import ApiClient, Call, OnRetry, RateLimit, default_error_text
from orchestrator.apicore.errors import ApiBadRequest, ApiCredentialsRefused, ApiNotFound
from orchestrator.integrations.imgix_models import (
    Asset,
    ImgixConflict,
    ImgixPermissionMissing,
    ImgixSourceUnknown,
)
from orchestrator.retry import RetryPolicy

PRODUCTION_API_URL = "https://api.imgix.com/api/v1"
JSON_API = "application/vnd.api+json"

DOCUMENTED_RATES: Mapping[str, float] = {"upload": 2.0, "get": 10.0, "purge": 10.0, "other": 4.0}
"""Calls per second imgix allows per endpoint class (refresh, 10/min, is not used)."""

API_RETRY = RetryPolicy(initial_interval=0.5, maximum_interval=20.0, maximum_attempts=8)
"""About a minute of patience: a 429 waits a jittered backoff, a 5xx is tried again."""

API_TIMEOUT = aiohttp.ClientTimeout(total=600, sock_connect=10, sock_read=120)
"""An upload of up to 30 MB on a slow line takes minutes; no read may stall for two."""

PERMISSIONS = {
    "check_source": "Asset Manager Browse",
    "get_asset": "Asset Manager Browse",
    "list_assets": "Asset Manager Browse",
    "upload": "Asset Manager Edit",
    "update_asset": "Asset Manager Edit",
    "purge": "Purge",
}
"""The API key permission each call needs (imgix dashboard, API keys)."""


def rate_limits(scale: float = 1.0) -> dict[str, RateLimit]:
    """One token bucket per endpoint class at `scale` times the documented rate.

    Each bucket holds a single token: calls leave at most one interval apart, so imgix's own
    bucket (which holds a second's worth) never runs dry however the network bunches them.
    """
    return {
        name: RateLimit(rate=1, per=1.0 / (rate * scale)) for name, rate in DOCUMENTED_RATES.items()
    }


class ImgixClient:
    """Calls the Management API of one imgix Source over a shared aiohttp session."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        api_key: str,
        source_id: str,
        base_url: str = PRODUCTION_API_URL,
        rate_scale: float = 1.0,
        retry: RetryPolicy = API_RETRY,
        on_retry: OnRetry | None = None,
    ) -> None:
        self._api = ApiClient(
            session,
            service="imgix",
            base_url=base_url,
            auth=BearerToken(api_key),
            retry=retry,
            timeout=API_TIMEOUT,
            limits=rate_limits(rate_scale),
            error_text=_error_text,
            credentials_hint="Check IMGIX_API_KEY.",
            unreachable_hint="Is IMGIX_API_URL right (or `orchestrator sandbox` running)?",
            on_retry=on_retry,
        )
        self.source_id = source_id
        self.base_url = self._api.base_url

    async def check_source(self) -> None:
        """Read one asset of the Source (the cheapest authenticated read of it): the key and
        the Source id are right, or ImgixPermissionMissing / ImgixSourceUnknown says which."""
        call = Call(
            name="check_source",
            method="GET",
            path=f"/sources/{quote(self.source_id, safe='')}/assets",
            params={"page[limit]": "1"},
            limit="get",
        )
        try:
            await self._send(call)
        except ApiNotFound:
            raise ImgixSourceUnknown(
                f"imgix has no Source {self.source_id} for this key: check IMGIX_SOURCE_ID "
                "(the Source's id in the imgix dashboard)"
            ) from None

    async def get_asset(self, origin_path: str) -> Asset | None:
        """The asset at `origin_path`, or None when the Source has none there."""
        call = Call(name="get_asset", method="GET", path=self._asset_path(origin_path), limit="get")
        try:
            return self._asset(call, await self._send(call))
        except ApiNotFound:
            return None

    async def upload(
        self, origin_path: str, body: bytes, *, overwrite: bool, content_type: str = "image/jpeg"
    ) -> Asset:
        """Put `body` at `origin_path`; ImgixConflict if something is there and not `overwrite`.

        Only an overwriting upload is repeated after a failure that leaves its effect unknown
        (the same bytes land twice); a first one raises ApiAmbiguous instead.
        """
        call = Call(
            name="upload",
            method="POST",
            path=f"/sources/{quote(self.source_id, safe='')}/upload/{_quoted(origin_path)}",
            params={"overwrite": "true"} if overwrite else None,
            body=body,
            content_type=content_type,
            idempotent=overwrite,
            limit="upload",
        )
        return self._asset(call, await self._send(call))

    async def update_asset(self, origin_path: str, attributes: Mapping[str, Any]) -> Asset:
        """Replace each of the asset's `attributes` given (imgix replaces whole attributes)."""
        document = {
            "data": {
                "id": f"{self.source_id}/{origin_path}",
                "type": "assets",
                "attributes": dict(attributes),
            }
        }
        call = Call(
            name="update_asset",
            method="PATCH",
            path=self._asset_path(origin_path),
            body=json.dumps(document).encode(),
            content_type=JSON_API,
            idempotent=True,  # the same attributes written again change nothing
            limit="other",
        )
        return self._asset(call, await self._send(call))

    async def purge(self, url: str) -> str | None:
        """Ask imgix to drop `url` from its caches; the purge id, or None if a purge of it
        was accepted moments ago (409), which does the same."""
        document = {"data": {"attributes": {"url": url}, "type": "purges"}}
        call = Call(
            name="purge",
            method="POST",
            path="/purge",
            body=json.dumps(document).encode(),
            content_type=JSON_API,
            idempotent=True,  # purging twice is purging
            limit="purge",
        )
        try:
            payload = self._api.json(call, await self._send(call))
        except ImgixConflict:
            return None
        purge_id = _data(payload).get("attributes", {}).get("purge_id")
        return str(purge_id) if purge_id else None

    def _asset_path(self, origin_path: str) -> str:
        return f"/sources/{quote(self.source_id, safe='')}/assets/{_quoted(origin_path)}"

    async def _send(self, call: Call) -> Any:
        try:
            return await self._api.send(call)
        except ApiCredentialsRefused as exc:
            raise self._refused_key(call, exc) from None
        except ApiBadRequest as exc:
            if exc.status == 409:
                raise ImgixConflict(exc.message, call=exc.call, status=409) from None
            raise

    def _refused_key(self, call: Call, exc: ApiCredentialsRefused) -> ImgixPermissionMissing:
        permission = PERMISSIONS[call.name]
        if exc.status == 403:
            return ImgixPermissionMissing(
                f"imgix refused {call.name} (HTTP 403): the key in IMGIX_API_KEY lacks the "
                f"'{permission}' permission (or Source {self.source_id} is not its account's); "
                "give the key that permission in the imgix dashboard, then run again"
            )
        if exc.status == 401:
            return ImgixPermissionMissing(
                "imgix rejected the key in IMGIX_API_KEY (HTTP 401): check the key; delivery "
                "needs 'Asset Manager Edit' and 'Purge'"
            )
        return ImgixPermissionMissing(str(exc))

    async def list_assets(self, prefix: str = "", *, page_size: int = 100) -> list[Asset]:
        """Every asset of the Source whose origin path starts with `prefix`, page after page
        (`page[cursor]`), by origin path."""
        found: list[Asset] = []
        cursor: str | None = None
        while True:
            params = {"page[limit]": str(page_size), "sort": "origin_path"}
            if prefix:
                params["filter[origin_path]"] = "/" + prefix.lstrip("/")
            if cursor is not None:
                params["page[cursor]"] = cursor
            call = Call(
                name="list_assets",
                method="GET",
                path=f"/sources/{quote(self.source_id, safe='')}/assets",
                params=params,
                limit="other",
            )
            payload = self._api.json(call, await self._send(call))
            items = payload.get("data") if isinstance(payload, dict) else None
            if not isinstance(items, list):
                raise self._api.malformed(call, "no data list in the asset listing")
            for item in items:
                attributes = item.get("attributes") if isinstance(item, dict) else None
                found.append(self._checked(call, attributes))
            meta = payload.get("meta")
            page = meta.get("cursor") if isinstance(meta, dict) else None
            following = page.get("next") if isinstance(page, dict) else None
            if not isinstance(following, str) or not following or following == cursor or not items:
                return found
            cursor = following

    def _asset(self, call: Call, answer: Any) -> Asset:
        """The asset document of an answer, checked: nothing from outside is trusted."""
        payload = self._api.json(call, answer)
        return self._checked(call, _data(payload).get("attributes"))

    def _checked(self, call: Call, attributes: Any) -> Asset:
        """An asset's attributes, checked."""
        if not isinstance(attributes, dict):
            raise self._api.malformed(call, "no asset attributes in the answer")
        categories = attributes.get("categories") or []
        custom = attributes.get("custom_fields") or {}
        description = attributes.get("description")
        size = attributes.get("file_size")
        path = attributes.get("origin_path")
        if (
            not isinstance(categories, list)
            or not all(isinstance(c, str) for c in categories)
            or not isinstance(custom, dict)
            or not all(isinstance(k, str) and isinstance(v, str) for k, v in custom.items())
            or not (description is None or isinstance(description, str))
            or not (size is None or (isinstance(size, int) and size >= 0))
            or not isinstance(path, str)
        ):
            raise self._api.malformed(call, "asset attributes of the wrong shape")
        return Asset(
            origin_path=path.lstrip("/"),
            file_size=size,
            categories=tuple(categories),
            custom_fields=dict(custom),
            description=description,
        )


def _quoted(origin_path: str) -> str:
    """The origin path as URL path segments (its slashes kept)."""
    return quote(origin_path, safe="/")


def _data(payload: Any) -> dict[str, Any]:
    data = payload.get("data") if isinstance(payload, dict) else None
    return data if isinstance(data, dict) else {}


def _error_text(payload: Any) -> str | None:
    """JSON:API's `errors[].detail` (or title), else the core's usual fields."""
    errors = payload.get("errors") if isinstance(payload, dict) else None
    if isinstance(errors, list):
        texts = [
            str(error.get("detail") or error.get("title"))
            for error in errors
            if isinstance(error, dict) and (error.get("detail") or error.get("title"))
        ]
        if texts:
            return "; ".join(texts)
    return default_error_text(payload)
