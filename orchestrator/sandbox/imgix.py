"""A fake of the imgix Management API under /imgix/api/v1: upload, asset metadata and listing,
purge.

The listing `GET /sources/{source_id}/assets` pages with `page[limit]` (1–1000, default 100)
and an opaque `page[cursor]` (the previous answer's `meta.cursor.next`, null on the last page);
filters with `filter[origin_path]` (a path prefix), `filter[content_type]`, `filter[categories]`
(assets holding that category); sorts with `sort` on `date_created`, `date_modified`,
`origin_path` or `file_size`, a leading `-` for descending (default `origin_path`).

Bearer auth with any non-empty key (or only the sandbox's `--api-key`); a key starting with
`browse-only-` holds only the Asset Manager Browse permission, to try a key that lacks one.
JSON:API documents (`application/vnd.api+json`, required on the bodies sent), errors as
`{"errors": [{status, title, detail, id}]}`. Each endpoint class has the token bucket of the
documented limits (times `imgix_rate_scale`) and answers 429 when it is empty. Both path forms
seen in the two generations of imgix's docs are served. Uploads keep only size and md5.
`DELETE /_sandbox/imgix/assets/{source_id}/{origin_path}` (no auth) makes an asset vanish, as
one deleted in the dashboard does.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from aiohttp import hdrs, web
from yarl import URL

PREFIX = "/imgix/api/v1"
JSON_API = "application/vnd.api+json"
MAX_UPLOAD_BYTES = 30 * 1000 * 1000
PURGE_REPEAT_SECONDS = 10.0
WRITABLE = frozenset({"categories", "custom_fields", "description", "name"})
READ_CHUNK = 1024 * 1024
RATES = {"upload": 2.0, "get": 10.0, "purge": 10.0, "other": 4.0}
"""The documented calls per second of each endpoint class."""
BROWSE_ONLY_PREFIX = "browse-only-"
EDIT, BROWSE, PURGE = "Asset Manager Edit", "Asset Manager Browse", "Purge"


class Bucket:
    """A token bucket holding a second's worth of calls (at least two), refilled continuously.

    Two at least: with one, any call that the network delays a little would find the next
    one's token not yet back, and no client could pace itself to never see a 429.
    """

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.capacity = max(rate, 2.0)
        self._tokens = self.capacity
        self._at = time.monotonic()

    def take(self) -> bool:
        """Spend a token if one is there."""
        now = time.monotonic()
        self._tokens = min(self.capacity, self._tokens + (now - self._at) * self.rate)
        self._at = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True


@dataclass(kw_only=True)
class ImgixAsset:
    """One uploaded asset and its metadata."""

    source_id: str
    origin_path: str
    content_type: str
    size: int
    md5_hex: str
    uploads: int = 1
    created: int = field(default_factory=lambda: int(time.time()))
    modified: int = field(default_factory=lambda: int(time.time()))
    attributes: dict[str, Any] = field(
        default_factory=lambda: {
            "categories": [],
            "custom_fields": {},
            "description": None,
            "name": None,
        }
    )

    def document(self) -> dict[str, Any]:
        """The asset's JSON:API document."""
        return {
            "data": {
                "id": f"{self.source_id}/{self.origin_path}",
                "type": "assets",
                "attributes": {
                    **self.attributes,
                    "origin_path": f"/{self.origin_path}",
                    "source_id": self.source_id,
                    "content_type": self.content_type,
                    "file_size": self.size,
                    "media_kind": "IMAGE",
                    "uploaded_by_api": True,
                    "date_created": self.created,
                    "date_modified": self.modified,
                },
            },
            "jsonapi": {"version": "1.0"},
        }


class ImgixState:
    """Assets, purges and rate limits of the fake imgix account."""

    def __init__(self, *, rate_scale: float = 1.0, api_key: str | None = None) -> None:
        self.assets: dict[str, ImgixAsset] = {}
        self.purges: list[str] = []
        self.throttled = 0
        self.api_key = api_key
        self.buckets = {name: Bucket(rate * rate_scale) for name, rate in RATES.items()}
        self._last_purge: dict[str, float] = {}

    def purge_is_repeat(self, url: str) -> bool:
        """Record a purge of `url`; True if the same URL was purged moments ago."""
        now = time.monotonic()
        last = self._last_purge.get(url)
        if last is not None and now - last < PURGE_REPEAT_SECONDS:
            return True
        self._last_purge[url] = now
        self.purges.append(url)
        return False

    def ledger(self) -> dict[str, Any]:
        """What the ledger reports about imgix."""
        return {
            "assets": {
                asset_id: {
                    "uploads": asset.uploads,
                    "size": asset.size,
                    "md5": asset.md5_hex,
                    "purges": sum(
                        URL(url).path.lstrip("/") == asset.origin_path for url in self.purges
                    ),
                    **asset.attributes,
                }
                for asset_id, asset in self.assets.items()
            },
            "purges": list(self.purges),
            "throttled": self.throttled,
        }


IMGIX = web.AppKey("sandbox_imgix", ImgixState)


def _document(doc: dict[str, Any], status: int = 200) -> web.Response:
    return web.json_response(doc, status=status, content_type=JSON_API)


def _error(status: int, title: str, detail: str) -> web.Response:
    error = {"status": str(status), "title": title, "detail": detail, "id": uuid.uuid4().hex}
    return _document({"errors": [error]}, status)


def _refused(request: web.Request, endpoint: str, permission: str) -> web.Response | None:
    """The answer to a call that may not go on (key, permission, rate limit), or None."""
    state = request.app[IMGIX]
    scheme, _, token = request.headers.get(hdrs.AUTHORIZATION, "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or (state.api_key and token != state.api_key):
        return _error(401, "Unauthorized", "Send a valid API key as 'Authorization: Bearer <key>'")
    if token.startswith(BROWSE_ONLY_PREFIX) and permission != BROWSE:
        return _error(403, "Forbidden", f"This API key lacks the '{permission}' permission")
    if not state.buckets[endpoint].take():
        state.throttled += 1
        return _error(429, "Too Many Requests", "Rate limit exceeded for this endpoint")
    return None


def _not_json_api(request: web.Request) -> web.Response | None:
    if request.content_type != JSON_API:
        return _error(415, "Unsupported Media Type", f"Send the document as {JSON_API}")
    return None


def _asset_id(request: web.Request) -> str:
    return f"{request.match_info['source_id']}/{request.match_info['origin_path']}"


async def _json(request: web.Request) -> Any:
    try:
        return json.loads(await request.text())
    except json.JSONDecodeError:
        return None


async def upload(request: web.Request) -> web.Response:
    """POST /imgix/api/v1/sources/{source_id}/upload/{origin_path}[?overwrite=true], raw body"""
    if refused := _refused(request, "upload", EDIT):
        return refused
    state = request.app[IMGIX]
    asset_id = _asset_id(request)
    existing = state.assets.get(asset_id)
    if existing is not None and request.query.get("overwrite", "").lower() != "true":
        return _error(409, "Conflict", f"An asset already exists at {asset_id}; use overwrite=true")
    md5 = hashlib.md5()
    size = 0
    async for chunk in request.content.iter_chunked(READ_CHUNK):
        md5.update(chunk)
        size += len(chunk)
        if size >= MAX_UPLOAD_BYTES:
            return _error(413, "Payload Too Large", "Files of 30 MB or more need upload sessions")
    if not size:
        return _error(400, "Bad Request", "The upload body is empty")
    asset = ImgixAsset(
        source_id=request.match_info["source_id"],
        origin_path=request.match_info["origin_path"],
        content_type=request.headers.get(hdrs.CONTENT_TYPE) or "application/octet-stream",
        size=size,
        md5_hex=md5.hexdigest(),
    )
    if existing is not None:
        asset.uploads = existing.uploads + 1
        asset.created = existing.created
        asset.attributes = existing.attributes
    state.assets[asset_id] = asset
    return _document(asset.document())


async def get_asset(request: web.Request) -> web.Response:
    """GET /imgix/api/v1/sources/{source_id}/assets/{origin_path}"""
    if refused := _refused(request, "get", BROWSE):
        return refused
    asset = request.app[IMGIX].assets.get(_asset_id(request))
    if asset is None:
        return _error(404, "Not Found", f"No asset at {_asset_id(request)}")
    return _document(asset.document())


def _attribute_problem(name: str, value: Any) -> str | None:
    if name not in WRITABLE:
        return f"Attribute '{name}' is read-only or unknown"
    if name == "categories":
        ok = isinstance(value, list) and all(isinstance(item, str) for item in value)
    elif name == "custom_fields":
        ok = isinstance(value, dict) and all(isinstance(item, str) for item in value.values())
    else:
        ok = value is None or isinstance(value, str)
    return None if ok else f"Attribute '{name}' has the wrong type"


async def patch_asset(request: web.Request) -> web.Response:
    """PATCH /imgix/api/v1/sources/{source_id}/assets/{origin_path}: replaces each sent attribute"""
    if refused := _refused(request, "other", EDIT) or _not_json_api(request):
        return refused
    asset_id = _asset_id(request)
    asset = request.app[IMGIX].assets.get(asset_id)
    if asset is None:
        return _error(404, "Not Found", f"No asset at {asset_id}")
    body = await _json(request)
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, dict) or data.get("type") != "assets":
        return _error(400, "Bad Request", 'Send {"data": {"id", "type": "assets", "attributes"}}')
    if data.get("id", asset_id) != asset_id:
        return _error(409, "Conflict", f"Document id does not match {asset_id}")
    attributes = data.get("attributes") or {}
    if not isinstance(attributes, dict):
        return _error(400, "Bad Request", "attributes must be an object")
    for name, value in attributes.items():
        if problem := _attribute_problem(name, value):
            return _error(400, "Bad Request", problem)
    asset.attributes.update(attributes)
    asset.modified = int(time.time())
    return _document(asset.document())


async def purge(request: web.Request) -> web.Response:
    """POST /imgix/api/v1/purge with {"data": {"attributes": {"url"}, "type": "purges"}}"""
    if refused := _refused(request, "purge", PURGE) or _not_json_api(request):
        return refused
    body = await _json(request)
    data = body.get("data") if isinstance(body, dict) else None
    attributes = data.get("attributes") if isinstance(data, dict) else None
    url = attributes.get("url") if isinstance(attributes, dict) else None
    if not isinstance(data, dict) or data.get("type") != "purges" or not isinstance(url, str):
        return _error(
            400, "Bad Request", 'Send {"data": {"attributes": {"url": ...}, "type": "purges"}}'
        )
    if URL(url).scheme not in ("http", "https") or not URL(url).host:
        return _error(400, "Bad Request", "url must be an absolute http(s) URL")
    if request.app[IMGIX].purge_is_repeat(url):
        return _error(409, "Conflict", "This URL was purged moments ago")
    purge_id = uuid.uuid4().hex
    return _document(
        {
            "data": {
                "id": purge_id,
                "type": "purges",
                "attributes": {"purge_id": purge_id, "url": url},
            }
        }
    )


SORTABLE = {
    "date_created": lambda asset: asset.created,
    "date_modified": lambda asset: asset.modified,
    "origin_path": lambda asset: asset.origin_path,
    "file_size": lambda asset: asset.size,
}
PAGE_LIMIT, MAX_PAGE_LIMIT = 100, 1000


def _cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"offset": offset}).encode()).decode()


def _offset(cursor: str) -> int | None:
    try:
        offset = json.loads(base64.urlsafe_b64decode(cursor.encode()))["offset"]
    except (binascii.Error, ValueError, KeyError, TypeError):
        return None
    return offset if isinstance(offset, int) and offset >= 0 else None


async def list_assets(request: web.Request) -> web.Response:
    """GET /imgix/api/v1/sources/{source_id}/assets[?page[cursor]&page[limit]&filter[…]&sort]"""
    if refused := _refused(request, "other", BROWSE):
        return refused
    query = request.query
    source_id = request.match_info["source_id"]
    limit_text = query.get("page[limit]", str(PAGE_LIMIT))
    if not limit_text.isdigit() or not 1 <= int(limit_text) <= MAX_PAGE_LIMIT:
        return _error(400, "Bad Request", f"page[limit] must be 1 to {MAX_PAGE_LIMIT}")
    limit = int(limit_text)
    offset = _offset(query["page[cursor]"]) if "page[cursor]" in query else 0
    if offset is None:
        return _error(400, "Bad Request", "page[cursor] is not a cursor this API gave")
    sort = query.get("sort", "origin_path")
    key = SORTABLE.get(sort.removeprefix("-"))
    if key is None:
        return _error(400, "Bad Request", f"sort must be one of {', '.join(SORTABLE)} (- descends)")
    known = {"filter[origin_path]", "filter[content_type]", "filter[categories]"}
    if unknown := sorted(n for n in query if n.startswith("filter[") and n not in known):
        return _error(400, "Bad Request", f"Unknown filter {unknown[0]}")
    prefix = query.get("filter[origin_path]", "").lstrip("/")
    content_type = query.get("filter[content_type]")
    category = query.get("filter[categories]")
    chosen = [
        asset
        for asset in request.app[IMGIX].assets.values()
        if asset.source_id == source_id
        and asset.origin_path.startswith(prefix)
        and (content_type is None or asset.content_type == content_type)
        and (category is None or category in asset.attributes["categories"])
    ]
    chosen.sort(key=lambda asset: asset.origin_path)
    chosen.sort(key=key, reverse=sort.startswith("-"))
    page = chosen[offset : offset + limit]
    following = offset + limit if offset + limit < len(chosen) else None
    return _document(
        {
            "data": [asset.document()["data"] for asset in page],
            "meta": {
                "cursor": {
                    "current": _cursor(offset),
                    "limit": limit,
                    "next": None if following is None else _cursor(following),
                    "hasMore": following is not None,
                    "totalRecords": len(chosen),
                }
            },
            "jsonapi": {"version": "1.0"},
        }
    )


async def forget_asset(request: web.Request) -> web.Response:
    """DELETE /_sandbox/imgix/assets/{source_id}/{origin_path}: the asset vanishes, as one
    deleted in the imgix dashboard does (never faulted, no auth)."""
    asset_id = f"{request.match_info['source_id']}/{request.match_info['origin_path']}"
    if request.app[IMGIX].assets.pop(asset_id, None) is None:
        return web.json_response({"detail": "no such asset"}, status=404)
    return web.json_response({"deleted": asset_id})


def add_routes(router: web.UrlDispatcher) -> None:
    """Register the imgix routes, in the current docs' path form and the older one."""
    for uploads, assets in (
        (
            "sources/{source_id}/upload/{origin_path:.+}",
            "sources/{source_id}/assets/{origin_path:.+}",
        ),
        ("sources/upload/{source_id}/{origin_path:.+}", "assets/{source_id}/{origin_path:.+}"),
    ):
        router.add_post(f"{PREFIX}/{uploads}", upload)
        router.add_get(f"{PREFIX}/{assets}", get_asset)
        router.add_patch(f"{PREFIX}/{assets}", patch_asset)
    router.add_get(f"{PREFIX}/sources/{{source_id}}/assets", list_assets)
    router.add_post(f"{PREFIX}/purge", purge)
    router.add_delete("/_sandbox/imgix/assets/{source_id}/{origin_path:.+}", forget_asset)
