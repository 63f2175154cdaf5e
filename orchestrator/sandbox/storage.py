"""The fake S3 behind Imagen's presigned links: PUT uploads, GET/HEAD downloads, S3-style errors.

Uploads are refused, as S3 refuses them, when:
- the request carries `x-api-key` (400: a client leaking its Imagen key to storage);
- the link is missing, tampered with (403 SignatureDoesNotMatch) or expired (403 AccessDenied);
- the body is chunked (501) or has no Content-Length (411);
- a non-empty Content-Type is sent (403 SignatureDoesNotMatch): links are signed for an empty
  one. The official SDK (httpx, `content=bytes`) sends no Content-Type, so it passes; aiohttp's
  default `application/octet-stream` does not;
- the link was issued with an md5 and `Content-MD5` is missing or different (403, it is signed),
  or `Content-MD5` does not match the body (400 BadDigest).
Bodies stream to a temporary file and replace the stored one only when complete and verified;
a small body (up to SMALL_OBJECT, within the memory budget) is kept in memory instead.

Downloads answer like S3: `ETag` is the quoted md5 of the whole object, `If-Match`,
`If-None-Match` and `If-Range` are judged against it, ranges give 206. HEAD is accepted with a
GET link.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO, NoReturn

import aiofiles
from aiohttp import hdrs, web
from aiohttp.abc import AbstractStreamWriter
from aiohttp.helpers import ETAG_ANY
from multidict import CIMultiDict

from orchestrator.sandbox.context import IMAGEN
from orchestrator.sandbox.faults import DOWNLOAD_RESET, FAULTS, drop_connection
from orchestrator.sandbox.responses import fail, s3_error
from orchestrator.sandbox.signing import LinkCheck, storage_path
from orchestrator.sandbox.state import SMALL_OBJECT, OutputFile, Project, StoredFile

WRITE_CHUNK = 1024 * 1024
TRUNCATED_BYTES = 256 * 1024  # the most a reset download sends before the connection drops
CONDITIONAL_HEADERS = (hdrs.IF_MATCH, hdrs.IF_NONE_MATCH, hdrs.IF_RANGE)


def _refuse(status: int, code: str, message: str) -> NoReturn:
    fail(s3_error(status, code, message))


def _authorise(request: web.Request, method: str, area: str) -> Project:
    """Refuse leaked API keys and bad links; the project the link points into."""
    if "x-api-key" in request.headers:
        _refuse(400, "InvalidArgument", "Storage requests must not carry an x-api-key header")
    context = request.app[IMAGEN]
    project_uuid = request.match_info["project"]
    path = storage_path(project_uuid, area, request.match_info["file_name"])
    check = context.signer.check(method, path, request.query)
    if check is LinkCheck.MISSING:
        _refuse(403, "AccessDenied", "Query-string authentication needs X-Signature and X-Expires")
    if check is LinkCheck.BAD_SIGNATURE:
        _refuse(403, "SignatureDoesNotMatch", "The request signature does not match the link")
    if check is LinkCheck.EXPIRED:
        _refuse(403, "AccessDenied", "Request has expired")
    project = context.projects.get(project_uuid)
    if project is None:
        _refuse(404, "NoSuchBucket", "The specified bucket does not exist")
    return project


def _announced_digest(request: web.Request) -> bytes | None:
    """The md5 the client announced in Content-MD5, checked against what the link was signed for."""
    signed = request.query.get("X-Md5", "")
    sent = request.headers.get("Content-MD5")
    if signed and sent != signed:
        _refuse(403, "SignatureDoesNotMatch", "The link was signed for another Content-MD5")
    if sent is None:
        return None
    try:
        digest = base64.b64decode(sent, validate=True)
    except binascii.Error:
        digest = b""
    if len(digest) != 16:
        _refuse(400, "InvalidDigest", "The Content-MD5 you specified was invalid.")
    return digest


def _check_upload_headers(request: web.Request) -> None:
    if "chunked" in request.headers.get(hdrs.TRANSFER_ENCODING, "").lower():
        _refuse(501, "NotImplemented", "Transfer-Encoding: chunked is not implemented")
    if request.content_length is None:
        _refuse(411, "MissingContentLength", "You must provide the Content-Length HTTP header.")
    if request.headers.get(hdrs.CONTENT_TYPE, "").strip():
        _refuse(403, "SignatureDoesNotMatch", "The link was signed for an empty Content-Type")


async def _receive(request: web.Request, partial: Path) -> tuple[bytes, int]:
    """Stream the body into `partial` in bounded chunks; its md5 digest and size.

    Hashing and writing run in a worker thread about a chunk at a time, so a small body costs
    one trip there and the event loop never hashes.
    """
    md5 = hashlib.md5()
    size = 0
    pieces: list[bytes] = []
    pending = 0
    file: BinaryIO | None = None
    try:
        async for chunk in request.content.iter_chunked(WRITE_CHUNK):
            pieces.append(chunk)
            pending += len(chunk)
            size += len(chunk)
            if pending >= WRITE_CHUNK:
                file = await asyncio.to_thread(_write_hashed, file, partial, pieces, md5)
                pieces, pending = [], 0
        file = await asyncio.to_thread(_write_hashed, file, partial, pieces, md5)
    finally:
        if file is not None:
            await asyncio.to_thread(file.close)
    return md5.digest(), size


def _write_hashed(
    file: BinaryIO | None, partial: Path, pieces: list[bytes], md5: hashlib._Hash
) -> BinaryIO:
    """Write and hash the pieces, opening `partial` first if it is not open yet."""
    if file is None:
        file = open(partial, "wb")  # noqa: SIM115 (closed by the caller after the last piece)
    for piece in pieces:
        file.write(piece)
        md5.update(piece)
    return file


async def upload(request: web.Request) -> web.Response:
    """PUT /_storage/{project}/upload/{file_name}?X-Expires=&X-Signature=&X-Md5="""
    project = _authorise(request, "PUT", "upload")
    _check_upload_headers(request)
    announced = _announced_digest(request)
    stored = project.files.get(request.match_info["file_name"])
    if stored is None:
        return s3_error(404, "NoSuchKey", "The specified key does not exist.")
    budget = request.app[IMAGEN].projects.memory
    length = request.content_length or 0
    in_memory = length <= SMALL_OBJECT and budget.take(length)
    kept: Received | web.Response | None = None
    try:
        if in_memory:
            kept = await _receive_small(request, announced)
        else:
            kept = await _receive_large(request, stored, announced)
    finally:
        if in_memory and not isinstance(kept, tuple):
            budget.give(length)
    if not isinstance(kept, tuple):
        assert kept is not None
        return kept
    if stored.data is not None:
        budget.give(len(stored.data))
    stored.data, digest, size = kept
    stored.uploads_completed += 1
    stored.size = size
    stored.md5_hex = digest.hex()
    return web.Response(status=200, headers={hdrs.ETAG: f'"{stored.md5_hex}"'})


Received = tuple[bytes | None, bytes, int]
"""An upload accepted: the bytes if kept in memory (None: at the stored path), md5, size."""


def _check_body(
    request: web.Request, digest: bytes, size: int, announced: bytes | None
) -> web.Response | None:
    """The refusal of a body that is not what was announced, if it is not."""
    if size != request.content_length:
        return s3_error(
            400,
            "IncompleteBody",
            "You did not provide the number of bytes specified by the Content-Length header",
        )
    if announced is not None and digest != announced:
        return s3_error(
            400, "BadDigest", "The Content-MD5 you specified did not match what we received."
        )
    return None


async def _receive_small(request: web.Request, announced: bytes | None) -> Received | web.Response:
    """A small body read into memory (hashing a few kilobytes costs less than a thread trip)."""
    data = await request.content.read()
    digest = hashlib.md5(data).digest()
    refusal = _check_body(request, digest, len(data), announced)
    if refusal is not None:
        return refusal
    return data, digest, len(data)


async def _receive_large(
    request: web.Request, stored: StoredFile, announced: bytes | None
) -> Received | web.Response:
    """A body streamed to a temporary file that replaces the stored one once verified."""
    # A temporary name per PUT: concurrent or interrupted uploads never touch the stored file.
    partial = stored.path.with_name(f"{stored.path.name}.{uuid.uuid4().hex}.part")
    try:
        digest, size = await _receive(request, partial)
        refusal = _check_body(request, digest, size, announced)
        if refusal is not None:
            return refusal
        os.replace(partial, stored.path)
    finally:
        partial.unlink(missing_ok=True)
    return None, digest, size


class StoredObjectResponse(web.FileResponse):
    """A FileResponse that speaks S3's conditional GETs against the object's md5 ETag.

    FileResponse judges If-Match/If-None-Match against its own mtime-size ETag and reads If-Range
    as a date only, so those headers are decided in the handler and hidden from it here;
    `before_send` (run by an on_response_prepare hook) puts the md5 ETag on the wire.
    """

    def __init__(
        self, output: OutputFile, *, drop_range: bool, on_full_body: Callable[[], None]
    ) -> None:
        assert output.path is not None
        super().__init__(output.path, headers={hdrs.CONTENT_TYPE: output.content_type})
        self._etag = f'"{output.md5_hex}"'
        self._size = output.size
        self._drop_range = drop_range
        self._on_full_body = on_full_body

    async def prepare(self, request: web.BaseRequest) -> AbstractStreamWriter | None:
        headers = CIMultiDict(request.headers)
        for name in CONDITIONAL_HEADERS + ((hdrs.RANGE,) if self._drop_range else ()):
            headers.popall(name, None)
        return await super().prepare(request.clone(headers=headers))

    def before_send(self, request: web.Request) -> None:
        """Just before the headers go out: set the md5 ETag, count a body sent to its end."""
        self.headers[hdrs.ETAG] = self._etag
        content_range = self.headers.get(hdrs.CONTENT_RANGE, "")
        to_the_end = self.status == 200 or (
            self.status == 206 and content_range.endswith(f"-{self._size - 1}/{self._size}")
        )
        if request.method == hdrs.METH_GET and to_the_end:
            # Counted when committed rather than after the last byte, so that a client that
            # has just read the body always finds it in the ledger.
            self._on_full_body()


async def before_send_hook(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare hook: let stored objects finish their headers."""
    if isinstance(response, StoredObjectResponse):
        response.before_send(request)


def _range_still_valid(request: web.Request, etag: str) -> bool:
    """False when an entity-tag If-Range no longer matches, so the whole object must be sent."""
    if_range = request.headers.get(hdrs.IF_RANGE)
    if if_range is None or not if_range.lstrip().startswith(('"', "W/")):
        return True
    return if_range.strip() == etag


async def _truncated(request: web.Request, output: OutputFile) -> web.StreamResponse:
    """Send the headers and part of the body, then drop the connection (the reset fault)."""
    response = web.StreamResponse(
        headers={hdrs.CONTENT_TYPE: output.content_type, hdrs.ETAG: f'"{output.md5_hex}"'}
    )
    response.content_length = output.size
    await response.prepare(request)
    sent = min(TRUNCATED_BYTES, output.size // 2)
    if output.data is not None:
        await response.write(output.data[:sent])
    else:
        assert output.path is not None
        async with aiofiles.open(output.path, "rb") as source:
            await response.write(await source.read(sent))
    await drop_connection(request)
    return response


def _from_memory(
    request: web.Request, output: OutputFile, *, drop_range: bool
) -> tuple[web.Response, bool]:
    """A small object's answer, judging Range as FileResponse does for one on disk; and
    whether it sends the body to its end."""
    data = output.data
    assert data is not None
    headers = {
        hdrs.CONTENT_TYPE: output.content_type,
        hdrs.ETAG: f'"{output.md5_hex}"',
        hdrs.ACCEPT_RANGES: "bytes",
    }
    size = len(data)
    try:
        wanted = slice(None, None) if drop_range else request.http_range
    except ValueError:  # a Range header that does not parse
        wanted = slice(size, None)
    if wanted.start is None:
        return web.Response(body=data, headers=headers), True
    start, end = wanted.start, size if wanted.stop is None else min(wanted.stop, size)
    if start < 0 and wanted.stop is None:  # the last -start bytes
        start = max(0, start + size)
    if start >= size:
        headers[hdrs.CONTENT_RANGE] = f"bytes */{size}"
        return web.Response(status=416, headers=headers), False
    headers[hdrs.CONTENT_RANGE] = f"bytes {start}-{end - 1}/{size}"
    return web.Response(status=206, body=data[start:end], headers=headers), end == size


async def download(request: web.Request) -> web.StreamResponse:
    """GET or HEAD /_storage/{project}/{edit|export}/{file_name}?X-Expires=&X-Signature="""
    area = request.match_info["area"]
    project = _authorise(request, "GET", area)
    name = request.match_info["file_name"]
    output = project.outputs(area).get(name)
    if output is None:
        return s3_error(404, "NoSuchKey", "The specified key does not exist.")
    etag = f'"{output.md5_hex}"'
    if request.get(DOWNLOAD_RESET):
        request.app[FAULTS].record("reset")
        return await _truncated(request, output)
    if_match = request.if_match
    if if_match is not None and not any(
        tag.value in (ETAG_ANY, output.md5_hex) and not tag.is_weak for tag in if_match
    ):
        return s3_error(
            412,
            "PreconditionFailed",
            "At least one of the pre-conditions you specified did not hold",
        )
    if_none_match = request.if_none_match
    if if_none_match is not None and any(
        tag.value in (ETAG_ANY, output.md5_hex) for tag in if_none_match
    ):
        return web.Response(status=304, headers={hdrs.ETAG: etag})

    def count() -> None:
        project.downloads_completed[area][name] += 1

    drop_range = not _range_still_valid(request, etag)
    if output.data is not None:
        response, to_the_end = _from_memory(request, output, drop_range=drop_range)
        if request.method == hdrs.METH_GET and to_the_end:
            count()
        return response
    return StoredObjectResponse(output, drop_range=drop_range, on_full_body=count)


def add_routes(router: web.UrlDispatcher) -> None:
    """Register the storage routes (GET also answers HEAD)."""
    router.add_put("/_storage/{project}/upload/{file_name}", upload)
    router.add_get("/_storage/{project}/{area:edit|export}/{file_name}", download)
