"""Transfers on the wire, against a small S3-like server on 127.0.0.1: headers, bytes, resume.

The server records what arrives and injects faults on request, so these tests see what a real
storage service would see: the PUT's headers as sent, the body as streamed, Range requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import math
import os
import threading
import time
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import aiohttp
import pytest
from aiohttp import web
from multidict import CIMultiDict

from orchestrator.retry import RetryPolicy
from orchestrator.transfer import download as download_module
from orchestrator.transfer import upload as upload_module
from orchestrator.transfer.errors import (
    OutputInTheWay,
    OutputUnwritable,
    SourceChanged,
    TransferFailed,
    TransferRefused,
    VerificationFailed,
)
from orchestrator.transfer.hashing import file_md5, md5_base64
from orchestrator.transfer.manager import Transfers, TransferSettings, make_session
from orchestrator.transfer.storage import check_link, check_redirect

CHUNK = 256 * 1024
PIECE = 64 * 1024
LinkSource = Callable[[bool], Awaitable[str]]
T = TypeVar("T")


@dataclass
class Seen:
    """One request as the server saw it."""

    method: str
    name: str
    query: str
    headers: CIMultiDict[str]
    size: int = 0
    md5_hex: str = ""
    reads: int = 0


@dataclass
class FakeStorage:
    """Presigned-style storage: PUT stores, GET serves with Range/If-Match; faults on demand.

    `put_faults` / `get_faults` are consumed one per request: "403", "503", "reset" (drop the
    connection mid-body), "bad-etag", "early" (answer 200 after the first piece, keeping only
    it), "cut" (send half, then drop), "corrupt" (flip a byte), "ignore-range" (answer 200 with
    everything).
    """

    url: str = ""
    objects: dict[str, bytes] = field(default_factory=dict)
    files: dict[str, Path] = field(default_factory=dict)
    etags: dict[str, str] = field(default_factory=dict)
    put_faults: list[str] = field(default_factory=list)
    get_faults: list[str] = field(default_factory=list)
    seen: list[Seen] = field(default_factory=list)
    keep_uploads: bool = True
    during_put: Callable[[], None] | None = None
    """Called once the first piece of a PUT's body has arrived (to change the photo then)."""
    redirects: dict[str, str] = field(default_factory=dict)
    """GETs of these names are answered 302 with the Location given (a loop if it points back)."""

    def link(self, name: str) -> LinkSource:
        async def source(refresh: bool) -> str:
            return f"{self.url}/{name}?X-Amz-Signature=secret&fresh={int(refresh)}"

        return source

    def serve(self, name: str, data: bytes) -> None:
        self.objects[name] = data
        self.etags[name] = f'"{hashlib.md5(data).hexdigest()}"'

    def serve_file(self, name: str, path: Path, md5_hex: str) -> None:
        self.files[name] = path
        self.etags[name] = f'"{md5_hex}"'

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_put("/bucket/{name}", self._put)
        app.router.add_get("/bucket/{name}", self._get)
        return app

    def _record(self, request: web.Request) -> tuple[Seen, str | None]:
        seen = Seen(
            request.method,
            request.match_info["name"],
            request.query_string,
            CIMultiDict(request.headers),
        )
        self.seen.append(seen)
        faults = self.put_faults if request.method == "PUT" else self.get_faults
        return seen, faults.pop(0) if faults else None

    async def _put(self, request: web.Request) -> web.StreamResponse:
        seen, fault = self._record(request)
        if fault in ("403", "503"):
            return web.Response(status=int(fault), text="<Error><Code>No</Code></Error>")
        hasher = hashlib.md5()
        data = bytearray()
        while chunk := await request.content.readany():
            if seen.reads == 0 and self.during_put is not None:
                self.during_put()
            seen.reads += 1
            seen.size += len(chunk)
            hasher.update(chunk)
            if self.keep_uploads:
                data += chunk
            if fault == "reset" and seen.size >= 300_000:
                assert request.transport is not None
                request.transport.abort()
                return web.Response()
            if fault == "early":
                break
        seen.md5_hex = hasher.hexdigest()
        if self.keep_uploads:
            self.serve(seen.name, bytes(data))
        etag = "0" * 32 if fault == "bad-etag" else seen.md5_hex
        return web.Response(headers={"ETag": f'"{etag}"'})

    async def _get(self, request: web.Request) -> web.StreamResponse:
        seen, fault = self._record(request)
        if fault in ("403", "503"):
            return web.Response(status=int(fault))
        name = seen.name
        if name in self.redirects:
            return web.Response(status=302, headers={"Location": self.redirects[name]})
        if fault in ("overlong", "endless"):
            return await self._misbehave(request, fault, self.objects[name])
        total = len(self.objects[name]) if name in self.objects else self.files[name].stat().st_size
        etag = self.etags[name]
        headers = {"ETag": etag} if fault != "no-etag" else {}
        status, start = 200, 0
        wanted = request.headers.get("Range")
        if wanted and fault != "ignore-range":
            if request.headers.get("If-Match", etag) != etag:
                return web.Response(status=412)
            start = int(wanted.removeprefix("bytes=").removesuffix("-"))
            if start >= total:
                return web.Response(status=416, headers={"Content-Range": f"bytes */{total}"})
            status = 206
            headers["Content-Range"] = f"bytes {start}-{total - 1}/{total}"
        headers["Content-Length"] = str(total - start)
        response = web.StreamResponse(status=status, headers=headers)
        await response.prepare(request)
        sent = 0
        async for piece in self._pieces(name, start):
            if fault == "corrupt" and sent == 0:
                piece = bytes([piece[0] ^ 1]) + piece[1:]
            await response.write(piece)
            sent += len(piece)
            if fault == "cut" and sent >= (total - start) // 2:
                assert request.transport is not None
                await asyncio.sleep(0.1)  # let the client take in what was sent before the drop
                request.transport.abort()
                return response
        await response.write_eof()
        return response

    async def _misbehave(self, request: web.Request, fault: str, data: bytes) -> web.StreamResponse:
        """ "overlong": a body longer than its Content-Length, no ETag (written raw, past
        aiohttp's framing); "endless": a chunked body that never ends, with an ETag."""
        if fault == "overlong":
            assert request.transport is not None
            declared = len(data) // 2
            request.transport.write(
                f"HTTP/1.1 200 OK\r\nContent-Length: {declared}\r\n\r\n".encode() + data[:declared]
            )
            await asyncio.sleep(0.05)
            request.transport.write(data[declared:])
            await asyncio.sleep(0.05)
            request.transport.close()
            return web.Response()  # never reaches the client: the transport is closed
        response = web.StreamResponse(headers={"ETag": self.etags[request.match_info["name"]]})
        response.enable_chunked_encoding()
        await response.prepare(request)
        with contextlib.suppress(ConnectionError):
            while True:
                await response.write(data)
        return response

    async def _pieces(self, name: str, start: int) -> AsyncIterator[bytes]:
        if name in self.objects:
            data = self.objects[name]
            for offset in range(start, len(data), PIECE):
                yield data[offset : offset + PIECE]
            return
        with open(self.files[name], "rb") as file:  # noqa: ASYNC230 - a test double
            file.seek(start)
            while piece := await asyncio.to_thread(file.read, 1024 * 1024):
                yield piece


@pytest.fixture
async def storage() -> AsyncIterator[FakeStorage]:
    fake = FakeStorage()
    runner = web.AppRunner(fake.app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    fake.url = f"http://127.0.0.1:{runner.addresses[0][1]}/bucket"
    yield fake
    await runner.cleanup()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    session = make_session(TransferSettings())
    yield session
    await session.close()


def make(
    session: aiohttp.ClientSession,
    *,
    attempts: int = 3,
    chunk_size: int = CHUNK,
    bwlimit: float | None = None,
    retries: list[str] | None = None,
) -> Transfers:
    policy = RetryPolicy(initial_interval=0.001, maximum_interval=0.001, maximum_attempts=attempts)
    settings = TransferSettings(
        upload_chunk_size=chunk_size,
        download_chunk_size=chunk_size,
        bwlimit=bwlimit,
        retry=policy,
    )

    def on_retry(name: str, attempt: int, reason: str, delay: float) -> None:
        if retries is not None:
            retries.append(reason)

    return Transfers(session, settings, on_retry=on_retry)


def payload(size: int) -> bytes:
    return os.urandom(size)


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def names_in(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir())


# Uploads


async def test_put_has_empty_content_type_content_md5_no_api_key_and_streams_the_file(
    storage: FakeStorage, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    data = payload(1_000_000)
    photo = write(tmp_path / "A.CR2", data)
    counted: list[int] = []
    result = await make(session).upload(
        photo,
        link=storage.link("A.CR2"),
        size=len(data),
        md5=hashlib.md5(data).digest(),
        on_bytes=counted.append,
    )

    (put,) = storage.seen
    assert put.headers.get("Content-Type", "") == ""
    assert put.headers["Content-MD5"] == md5_base64(hashlib.md5(data).digest())
    assert put.headers["Content-Length"] == str(len(data))
    assert "Transfer-Encoding" not in put.headers  # presigned PUTs do not take chunked bodies
    assert "x-api-key" not in put.headers
    assert storage.objects["A.CR2"] == data
    assert put.reads > 1
    assert counted == [CHUNK] * 3 + [len(data) - 3 * CHUNK]
    assert len(counted) == math.ceil(len(data) / CHUNK)
    assert result.etag == f'"{hashlib.md5(data).hexdigest()}"'
    assert result.attempts == 1


@pytest.mark.parametrize("md5_known", [True, False], ids=["content-md5", "etag-checked"])
async def test_a_small_photo_is_read_whole_and_put_with_the_same_headers(
    storage: FakeStorage, session: aiohttp.ClientSession, tmp_path: Path, md5_known: bool
) -> None:
    data = payload(upload_module.SMALL_FILE)
    photo = write(tmp_path / "A.jpg", data)
    counted: list[int] = []
    digest = hashlib.md5(data).digest()
    result = await make(session).upload(
        photo,
        link=storage.link("A.jpg"),
        size=len(data),
        md5=digest if md5_known else None,
        on_bytes=counted.append,
    )
    (put,) = storage.seen
    assert put.headers.get("Content-Type", "") == ""
    assert put.headers.get("Content-MD5") == (md5_base64(digest) if md5_known else None)
    assert put.headers["Content-Length"] == str(len(data))
    assert "Transfer-Encoding" not in put.headers and "x-api-key" not in put.headers
    assert storage.objects["A.jpg"] == data
    assert counted == [len(data)]
    assert result.etag == f'"{hashlib.md5(data).hexdigest()}"' and result.attempts == 1


@pytest.mark.parametrize("md5_known", [True, False], ids=["content-md5", "etag-checked"])
async def test_storage_answering_before_the_whole_body_is_never_taken_for_an_upload(
    storage: FakeStorage, session: aiohttp.ClientSession, tmp_path: Path, md5_known: bool
) -> None:
    """A 200 (with the ETag of what it kept) before the last byte was sent: sent again."""
    data = payload(1_500_000)
    photo = write(tmp_path / "A.CR2", data)
    storage.put_faults = ["early"]
    retries: list[str] = []
    result = await make(session, retries=retries).upload(
        photo,
        link=storage.link("A.CR2"),
        size=len(data),
        md5=hashlib.md5(data).digest() if md5_known else None,
    )
    first, second = storage.seen
    assert first.size < len(data) == second.size
    assert storage.objects["A.CR2"] == data
    assert result.attempts == 2 and len(retries) == 1, retries


async def test_a_reset_mid_body_is_retried_and_progress_stays_honest(
    storage: FakeStorage, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    data = payload(1_500_000)
    photo = write(tmp_path / "A.CR2", data)
    storage.put_faults = ["reset"]
    counted: list[int] = []
    retries: list[str] = []
    result = await make(session, retries=retries).upload(
        photo, link=storage.link("A.CR2"), size=len(data), md5=None, on_bytes=counted.append
    )
    assert result.attempts == 2
    assert storage.objects["A.CR2"] == data
    assert any(n < 0 for n in counted)
    assert sum(counted) == len(data)
    assert "secret" not in retries[0]


async def test_chunks_read_from_disk_go_out_in_pieces_and_a_retry_takes_them_all_back(
    storage: FakeStorage, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    mib, piece = 1024 * 1024, upload_module.SEND_PIECE
    data = payload(2 * mib + 300 * 1024 + 7)  # two whole chunks and a short one
    photo = write(tmp_path / "A.CR2", data)
    storage.put_faults = ["reset"]
    counted: list[int] = []
    result = await make(session, chunk_size=mib).upload(
        photo, link=storage.link("A.CR2"), size=len(data), md5=None, on_bytes=counted.append
    )

    assert result.attempts == 2
    assert storage.objects["A.CR2"] == data
    assert result.etag == f'"{hashlib.md5(data).hexdigest()}"'
    # The failed attempt's bytes were taken back in one count; the second sent every byte in
    # pieces of at most SEND_PIECE, each chunk's last piece short only at the file's end.
    last_take_back = max(i for i, n in enumerate(counted) if n < 0)
    short = len(data) - 2 * mib - piece
    assert counted[last_take_back + 1 :] == [piece] * (2 * mib // piece + 1) + [short]
    assert sum(counted) == len(data)


async def test_an_etag_that_does_not_match_is_retried_once_then_fails(
    storage: FakeStorage, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    data = payload(300_000)
    photo = write(tmp_path / "A.CR2", data)
    storage.put_faults = ["bad-etag"]
    result = await make(session).upload(photo, link=storage.link("A.CR2"), size=len(data), md5=None)
    assert result.attempts == 2

    storage.put_faults = ["bad-etag", "bad-etag"]
    with pytest.raises(TransferFailed, match="ETag"):
        await make(session, attempts=5).upload(
            photo, link=storage.link("A.CR2"), size=len(data), md5=None
        )
    assert len(storage.seen) == 4


async def test_a_photo_whose_size_changed_is_not_sent(
    storage: FakeStorage, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    photo = write(tmp_path / "A.CR2", b"x" * 1000)
    with pytest.raises(SourceChanged, match="1001 bytes, now 1000"):
        await make(session).upload(photo, link=storage.link("A.CR2"), size=1001, md5=None)
    with pytest.raises(SourceChanged, match="gone"):
        await make(session).upload(
            tmp_path / "missing.CR2", link=storage.link("A.CR2"), size=1000, md5=None
        )
    assert storage.seen == []


async def test_a_photo_whose_content_changed_is_reported(
    storage: FakeStorage, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    photo = write(tmp_path / "A.CR2", b"x" * 1000)
    with pytest.raises(SourceChanged, match="MD5"):
        await make(session).upload(
            photo, link=storage.link("A.CR2"), size=1000, md5=hashlib.md5(b"y" * 1000).digest()
        )


@pytest.mark.parametrize(
    ("size", "reader", "short_read"),
    [
        (upload_module.SMALL_FILE + 1, "_read_hashed", lambda file, chunk, hasher: 0),
        (1000, "_read_small", lambda path, size: (b"", os.stat(path))),
    ],
    ids=["streamed", "small-read-whole"],
)
async def test_a_photo_that_shrinks_while_being_read_is_reported_not_retried(
    storage: FakeStorage,
    session: aiohttp.ClientSession,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    size: int,
    reader: str,
    short_read: Callable[..., object],
) -> None:
    photo = write(tmp_path / "A.CR2", b"x" * size)
    monkeypatch.setattr(upload_module, reader, short_read)
    with pytest.raises(SourceChanged, match=f"ended after 0 of {size} bytes"):
        await make(session).upload(photo, link=storage.link("A.CR2"), size=size, md5=None)
    assert len(storage.seen) <= 1


async def test_an_unreadable_photo_is_a_failed_transfer_not_a_crash(
    storage: FakeStorage, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    photo = tmp_path / "A.CR2"
    photo.mkdir()  # as root, only something that is not a file cannot be read
    with pytest.raises(TransferFailed, match="cannot read it"):
        await make(session).upload(photo, link=storage.link("A.CR2"), size=1000, md5=None)
    assert storage.seen == []


async def test_an_expired_upload_link_is_refreshed(
    storage: FakeStorage, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    data = payload(100_000)
    photo = write(tmp_path / "A.CR2", data)
    storage.put_faults = ["403"]
    result = await make(session, attempts=1).upload(
        photo, link=storage.link("A.CR2"), size=len(data), md5=None
    )
    assert result.attempts == 1
    assert [seen.query.endswith("fresh=1") for seen in storage.seen] == [False, True]
    assert storage.objects["A.CR2"] == data


async def test_bandwidth_cap_holds_on_upload_and_download(
    storage: FakeStorage, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    data = payload(2_000_000)
    photo = write(tmp_path / "A.CR2", data)
    transfers = make(session, bwlimit=4_000_000)
    started = time.monotonic()
    await transfers.upload(photo, link=storage.link("A.CR2"), size=len(data), md5=None)
    assert time.monotonic() - started >= 0.4

    # A fresh manager: an idle bucket refills up to one second's worth (its burst), so on a busy
    # machine a pause between the two transfers would let the download through uncapped.
    transfers = make(session, bwlimit=4_000_000)
    started = time.monotonic()
    await transfers.download(link=storage.link("A.CR2"), folder=tmp_path / "out", file_name="A.CR2")
    assert time.monotonic() - started >= 0.4


# Downloads

SIZES = [
    pytest.param(1_000_000, id="streamed"),
    pytest.param(download_module.SMALL_FILE, id="small-received-whole"),
]
"""Outputs above SMALL_FILE are streamed to the partial; smaller ones are received whole."""


@pytest.mark.parametrize("size", SIZES)
async def test_a_download_returns_only_after_a_folder_sync_that_saw_its_rename(
    storage: FakeStorage,
    session: aiohttp.ClientSession,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    size: int,
) -> None:
    """The caller checkpoints a download once it returns, so the fsync of the folder that makes
    its rename durable must have started after the rename (shared or not), and ended."""
    names = [f"{letter}.xmp" for letter in "ABCD"]
    log: list[tuple[str, frozenset[str]]] = []
    gate = threading.Event()

    def fsync_folder(folder: Path) -> None:
        log.append(("sync started", frozenset(os.listdir(folder))))
        gate.wait()
        log.append(("sync ended", frozenset()))

    monkeypatch.setattr(download_module, "_fsync_folder", fsync_folder)
    transfers = make(session)

    async def fetch(name: str) -> None:
        storage.serve(name, payload(size))
        await transfers.download(link=storage.link(name), folder=tmp_path, file_name=name)
        log.append((f"returned {name}", frozenset()))

    fetches = [asyncio.create_task(fetch(name)) for name in names]
    # Every file renamed into place while no folder sync may end: none may have returned. The
    # renames happen in worker threads that signal nothing, so the disk is looked at.
    while not all((tmp_path / name).exists() for name in names):  # noqa: ASYNC110
        await asyncio.sleep(0.001)
    assert not any(task.done() for task in fetches)
    gate.set()
    await asyncio.gather(*fetches)
    for name in names:
        returned = next(i for i, (entry, _) in enumerate(log) if entry == f"returned {name}")
        covering = [
            i
            for i, (entry, seen) in enumerate(log[:returned])
            if entry == "sync started" and name in seen
        ]
        assert covering, (name, log)
        assert ("sync ended", frozenset()) in log[covering[0] : returned], (name, log)


@pytest.mark.parametrize("size", SIZES)
async def test_download_is_verified_renamed_and_leaves_nothing_else(
    storage: FakeStorage, session: aiohttp.ClientSession, tmp_path: Path, size: int
) -> None:
    data = payload(size)
    storage.serve("A.xmp", data)
    folder = tmp_path / "shoot" / "edited"
    counted: list[int] = []
    result = await make(session).download(
        link=storage.link("A.xmp"),
        folder=folder,
        file_name="A.xmp",
        expected_size=len(data),
        on_bytes=counted.append,
    )
    assert (folder / "A.xmp").read_bytes() == data
    assert names_in(folder) == ["A.xmp"]
    assert (result.path, result.size, result.resumed_from, result.attempts) == (
        folder / "A.xmp",
        len(data),
        0,
        1,
    )
    assert result.md5_hex == hashlib.md5(data).hexdigest()
    assert sum(counted) == len(data)
    (get,) = storage.seen
    assert get.headers["Accept-Encoding"] == "identity"
    assert "Range" not in get.headers and "x-api-key" not in get.headers


async def test_a_partial_from_an_earlier_run_is_resumed_with_range_and_if_match(
    storage: FakeStorage, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    data = payload(1_000_000)
    storage.serve("A.xmp", data)
    write(tmp_path / "A.xmp.partial", data[:300_000])
    write(tmp_path / "A.xmp.partial.etag", storage.etags["A.xmp"].encode())
    counted: list[int] = []
    result = await make(session).download(
        link=storage.link("A.xmp"), folder=tmp_path, file_name="A.xmp", on_bytes=counted.append
    )
    (get,) = storage.seen
    assert get.headers["Range"] == "bytes=300000-"
    assert get.headers["If-Match"] == storage.etags["A.xmp"]
    assert result.resumed_from == 300_000
    assert (tmp_path / "A.xmp").read_bytes() == data
    assert names_in(tmp_path) == ["A.xmp"]
    assert counted[0] == 300_000 and sum(counted) == len(data)


async def test_a_server_ignoring_the_range_means_starting_over(
    storage: FakeStorage, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    data = payload(1_000_000)
    storage.serve("A.xmp", data)
    write(tmp_path / "A.xmp.partial", data[:300_000])
    storage.get_faults = ["ignore-range"]
    counted: list[int] = []
    result = await make(session).download(
        link=storage.link("A.xmp"), folder=tmp_path, file_name="A.xmp", on_bytes=counted.append
    )
    assert len(storage.seen) == 1
    assert result.resumed_from == 0
    assert (tmp_path / "A.xmp").read_bytes() == data
    assert sum(counted) == len(data)


async def test_a_changed_object_412_restarts_from_zero(
    storage: FakeStorage, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    data = payload(1_000_000)
    storage.serve("A.xmp", data)
    write(tmp_path / "A.xmp.partial", b"old bytes of an older object")
    write(tmp_path / "A.xmp.partial.etag", b'"0123456789abcdef0123456789abcdef"')
    result = await make(session).download(
        link=storage.link("A.xmp"), folder=tmp_path, file_name="A.xmp"
    )
    first, second = storage.seen
    assert "If-Match" in first.headers
    assert "Range" not in second.headers and "If-Match" not in second.headers
    assert result.attempts == 1
    assert (tmp_path / "A.xmp").read_bytes() == data
    assert names_in(tmp_path) == ["A.xmp"]


async def test_a_complete_partial_416_is_verified_and_kept(
    storage: FakeStorage, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    data = payload(500_000)
    storage.serve("A.xmp", data)
    write(tmp_path / "A.xmp.partial", data)
    write(tmp_path / "A.xmp.partial.etag", storage.etags["A.xmp"].encode())
    result = await make(session).download(
        link=storage.link("A.xmp"), folder=tmp_path, file_name="A.xmp"
    )
    assert len(storage.seen) == 1
    assert result.resumed_from == len(data)
    assert (tmp_path / "A.xmp").read_bytes() == data
    assert names_in(tmp_path) == ["A.xmp"]


async def test_a_complete_partial_without_its_etag_is_fetched_again(
    storage: FakeStorage, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    # An older release left the whole object in the partial without the ETag it came with:
    # nothing can confirm it, so it is fetched again instead of refused.
    data = payload(500_000)
    storage.serve("A.xmp", data)
    write(tmp_path / "A.xmp.partial", data)
    result = await make(session).download(
        link=storage.link("A.xmp"), folder=tmp_path, file_name="A.xmp"
    )
    first, second = storage.seen
    assert "Range" in first.headers and "Range" not in second.headers
    assert result.resumed_from == 0
    assert (tmp_path / "A.xmp").read_bytes() == data
    assert names_in(tmp_path) == ["A.xmp"]


async def test_an_interrupted_download_leaves_no_final_file_and_resumes_later(
    storage: FakeStorage, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    data = payload(1_000_000)
    storage.serve("A.xmp", data)
    storage.get_faults = ["cut"]
    with pytest.raises(TransferFailed, match="gave up"):
        await make(session, attempts=1).download(
            link=storage.link("A.xmp"), folder=tmp_path, file_name="A.xmp"
        )
    assert names_in(tmp_path) == ["A.xmp.partial", "A.xmp.partial.etag"]
    kept = (tmp_path / "A.xmp.partial").stat().st_size
    assert 0 < kept < len(data)

    result = await make(session).download(
        link=storage.link("A.xmp"), folder=tmp_path, file_name="A.xmp"
    )
    assert storage.seen[-1].headers["Range"] == f"bytes={kept}-"
    assert result.resumed_from == kept
    assert (tmp_path / "A.xmp").read_bytes() == data
    assert names_in(tmp_path) == ["A.xmp"]


async def test_a_cut_inside_one_call_is_resumed_by_the_next_attempt(
    storage: FakeStorage, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    data = payload(1_000_000)
    storage.serve("A.xmp", data)
    storage.get_faults = ["cut"]
    counted: list[int] = []
    result = await make(session).download(
        link=storage.link("A.xmp"), folder=tmp_path, file_name="A.xmp", on_bytes=counted.append
    )
    assert result.attempts == 2
    assert result.resumed_from > 0
    assert "Range" in storage.seen[1].headers
    assert sum(counted) == len(data)
    assert (tmp_path / "A.xmp").read_bytes() == data


@pytest.mark.parametrize("size", SIZES)
async def test_failed_verification_removes_the_partial_and_raises(
    storage: FakeStorage, session: aiohttp.ClientSession, tmp_path: Path, size: int
) -> None:
    data = payload(size)
    storage.serve("A.xmp", data)
    storage.get_faults = ["corrupt", "corrupt"]
    retries: list[str] = []
    counted: list[int] = []
    with pytest.raises(VerificationFailed, match="MD5"):
        await make(session, attempts=2, retries=retries).download(
            link=storage.link("A.xmp"), folder=tmp_path, file_name="A.xmp", on_bytes=counted.append
        )
    assert names_in(tmp_path) == []
    assert len(retries) == 1 and "MD5" in retries[0]
    assert sum(counted) == 0


@pytest.mark.parametrize("size", SIZES)
async def test_a_corrupt_answer_is_fetched_again(
    storage: FakeStorage, session: aiohttp.ClientSession, tmp_path: Path, size: int
) -> None:
    data = payload(size)
    storage.serve("A.xmp", data)
    storage.get_faults = ["corrupt"]
    result = await make(session).download(
        link=storage.link("A.xmp"), folder=tmp_path, file_name="A.xmp", expected_md5_hex=None
    )
    assert result.attempts == 2
    assert (tmp_path / "A.xmp").read_bytes() == data


@pytest.mark.parametrize("name", ["../x", "a/b", "..", "", "/tmp/x", "a\x00b"])
async def test_unsafe_output_names_are_refused(
    storage: FakeStorage, session: aiohttp.ClientSession, tmp_path: Path, name: str
) -> None:
    storage.serve("x", b"data")
    folder = tmp_path / "out"
    with pytest.raises(TransferFailed, match="refusing"):
        await make(session).download(link=storage.link("x"), folder=folder, file_name=name)
    assert storage.seen == []
    assert names_in(tmp_path) == []


async def test_an_output_already_in_place_is_not_fetched_again(
    storage: FakeStorage, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    data = payload(100_000)
    write(tmp_path / "A.xmp", data)
    result = await make(session).download(
        link=storage.link("A.xmp"),
        folder=tmp_path,
        file_name="A.xmp",
        expected_size=len(data),
        expected_md5_hex=hashlib.md5(data).hexdigest(),
    )
    assert result.attempts == 0
    assert storage.seen == []


async def test_an_expired_download_link_is_refreshed(
    storage: FakeStorage, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    data = payload(100_000)
    storage.serve("A.xmp", data)
    storage.get_faults = ["403"]
    result = await make(session, attempts=1).download(
        link=storage.link("A.xmp"), folder=tmp_path, file_name="A.xmp"
    )
    assert result.attempts == 1
    assert storage.seen[1].query.endswith("fresh=1")


async def test_an_output_folder_under_a_file_is_unwritable(
    storage: FakeStorage, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    storage.serve("A.xmp", b"data")
    write(tmp_path / "not-a-folder", b"")
    folder = tmp_path / "not-a-folder" / "edited"
    with pytest.raises(OutputUnwritable, match="edited") as caught:
        await make(session).download(link=storage.link("A.xmp"), folder=folder, file_name="A.xmp")
    assert caught.value.folder == folder
    assert storage.seen == []


async def test_a_full_disk_stops_at_once_and_keeps_the_partial(
    storage: FakeStorage,
    session: aiohttp.ClientSession,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    storage.serve("A.xmp", payload(1_000_000))

    def disk_full(*args: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(download_module, "_write_hashed", disk_full)
    retries: list[str] = []
    with pytest.raises(OutputUnwritable, match="No space left") as caught:
        await make(session, retries=retries).download(
            link=storage.link("A.xmp"), folder=tmp_path, file_name="A.xmp"
        )
    assert str(tmp_path) in str(caught.value)
    assert len(storage.seen) == 1 and retries == []
    assert "A.xmp.partial" in names_in(tmp_path)
    assert "A.xmp" not in names_in(tmp_path)


async def test_a_full_disk_stops_a_small_output_at_once_and_leaves_no_final_file(
    storage: FakeStorage,
    session: aiohttp.ClientSession,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    storage.serve("A.xmp", payload(10_000))

    def disk_full(descriptor: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(download_module.os, "fsync", disk_full)
    retries: list[str] = []
    with pytest.raises(OutputUnwritable, match="No space left"):
        await make(session, retries=retries).download(
            link=storage.link("A.xmp"), folder=tmp_path, file_name="A.xmp"
        )
    assert len(storage.seen) == 1 and retries == []
    assert "A.xmp" not in names_in(tmp_path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write into a read-only folder")
async def test_a_read_only_folder_is_unwritable(
    storage: FakeStorage, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    storage.serve("A.xmp", b"data")
    folder = tmp_path / "edited"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        with pytest.raises(OutputUnwritable):
            await make(session).download(
                link=storage.link("A.xmp"), folder=folder, file_name="A.xmp"
            )
    finally:
        folder.chmod(0o755)


# Memory: a 64 MiB photo goes up and comes back without ever being held whole.

BIG = 64 * 1024 * 1024
MEMORY_CEILING = 16 * 1024 * 1024


def make_big_file(path: Path) -> None:
    block = os.urandom(1024 * 1024)
    with open(path, "wb") as file:
        for index in range(BIG // len(block)):
            file.write(index.to_bytes(8, "big") + block[8:])


async def test_a_64_mib_file_moves_both_ways_in_bounded_memory(
    storage: FakeStorage, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    photo = tmp_path / "BIG.CR2"
    await asyncio.to_thread(make_big_file, photo)
    md5_hex = (await file_md5(photo)).hex()
    storage.keep_uploads = False
    storage.serve_file("BIG.CR2", photo, md5_hex)
    transfers = make(session, chunk_size=1024 * 1024)

    tracemalloc.start()
    try:
        await transfers.upload(photo, link=storage.link("BIG.CR2"), size=BIG, md5=None)
        upload_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        result = await transfers.download(
            link=storage.link("BIG.CR2"), folder=tmp_path / "out", file_name="BIG.CR2"
        )
        download_peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()

    assert storage.seen[0].md5_hex == md5_hex
    assert result.md5_hex == md5_hex and result.size == BIG
    assert upload_peak < MEMORY_CEILING, f"upload peaked at {upload_peak / 2**20:.1f} MiB"
    assert download_peak < MEMORY_CEILING, f"download peaked at {download_peak / 2**20:.1f} MiB"


# Hostile local files and hostile storage (issue 14): links, pipes, changes mid-upload,
# endless or unconfirmable bodies, redirects off http(s).


@pytest.fixture
def release_pipes(tmp_path: Path) -> Iterator[None]:
    """After the test, open every named pipe under tmp_path from the other end, so a thread
    that old code left blocked on one (open waits for a peer) can finish and the run can end."""
    yield
    for path in tmp_path.rglob("*"):
        if path.is_fifo():
            for flags in (os.O_RDONLY | os.O_NONBLOCK, os.O_WRONLY | os.O_NONBLOCK):
                with contextlib.suppress(OSError):
                    os.close(os.open(path, flags))


async def within(seconds: float, awaitable: Awaitable[T]) -> T:
    """`awaitable`'s result, or a failure if it blocks (on a pipe, say) for `seconds`."""
    return await asyncio.wait_for(awaitable, seconds)


@pytest.mark.parametrize(
    "size", [1000, upload_module.SMALL_FILE + 1], ids=["small-read-whole", "streamed"]
)
@pytest.mark.parametrize("change", ["rewritten", "grown", "removed"])
async def test_a_photo_that_changes_or_vanishes_during_its_put_is_reported(
    storage: FakeStorage, session: aiohttp.ClientSession, tmp_path: Path, size: int, change: str
) -> None:
    data = payload(size)
    photo = write(tmp_path / "A.CR2", data)

    def edit_it() -> None:
        if change == "removed":
            photo.unlink()
            return
        with open(photo, "r+b") as file:  # an editor saving in place: same inode
            file.write(b"new" if change == "rewritten" else data + b"more")
        os.utime(photo, ns=(time.time_ns(), time.time_ns() + 10**9))

    storage.during_put = edit_it
    with pytest.raises(SourceChanged, match="while it was being sent"):
        await make(session).upload(
            photo, link=storage.link("A.CR2"), size=size, md5=hashlib.md5(data).digest()
        )
    assert len(storage.seen) == 1  # sent once, then reported: the stage sends the new version


async def test_a_photo_that_is_a_link_or_a_pipe_is_refused_without_a_request(
    storage: FakeStorage, session: aiohttp.ClientSession, tmp_path: Path, release_pipes: None
) -> None:
    secret = write(tmp_path / "secret", b"the daemon's own file")
    (tmp_path / "link.jpg").symlink_to(secret)
    os.mkfifo(tmp_path / "pipe.jpg")
    for name, kind in (("link.jpg", "a symbolic link"), ("pipe.jpg", "a named pipe")):
        with pytest.raises(TransferFailed, match=f"cannot read it: it is {kind}"):
            await within(
                5, make(session).upload(tmp_path / name, link=storage.link(name), size=21, md5=None)
            )
        with pytest.raises(OSError, match=f"it is {kind}, not a regular file"):
            await within(5, file_md5(tmp_path / name))
    assert storage.seen == []


async def test_a_partial_planted_as_a_link_is_refused_and_its_target_untouched(
    storage: FakeStorage, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    storage.serve("A.xmp", payload(1_000_000))
    victim = write(tmp_path / "victim", b"precious")
    out = tmp_path / "out"
    out.mkdir()
    (out / "A.xmp.partial").symlink_to(victim)
    write(out / "A.xmp.partial.etag", storage.etags["A.xmp"].encode())
    with pytest.raises(TransferRefused, match=r"A\.xmp\.partial is a symbolic link, not a file"):
        await make(session).download(link=storage.link("A.xmp"), folder=out, file_name="A.xmp")
    assert victim.read_bytes() == b"precious"
    assert storage.seen == []


async def test_an_etag_sidecar_planted_as_a_link_is_never_read_or_sent(
    storage: FakeStorage, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    data = payload(1_000_000)
    storage.serve("A.xmp", data)
    secret = write(tmp_path / "secret", b"api-key-of-someone")
    write(tmp_path / "A.xmp.partial", data[:1000])
    (tmp_path / "A.xmp.partial.etag").symlink_to(secret)
    with pytest.raises(TransferRefused, match=r"partial\.etag is a symbolic link"):
        await make(session).download(link=storage.link("A.xmp"), folder=tmp_path, file_name="A.xmp")
    assert all("api-key" not in str(seen.headers) for seen in storage.seen)
    assert secret.read_bytes() == b"api-key-of-someone"


async def test_a_partial_planted_as_a_pipe_is_refused_at_once(
    storage: FakeStorage, session: aiohttp.ClientSession, tmp_path: Path, release_pipes: None
) -> None:
    storage.serve("A.xmp", payload(1_000_000))
    os.mkfifo(tmp_path / "A.xmp.partial")
    with pytest.raises(TransferRefused, match="is a named pipe"):
        await within(
            5,
            make(session).download(link=storage.link("A.xmp"), folder=tmp_path, file_name="A.xmp"),
        )


async def test_a_final_name_planted_as_a_link_is_replaced_not_trusted(
    storage: FakeStorage, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    victim = write(tmp_path / "victim", payload(100_000))
    out = tmp_path / "out"
    out.mkdir()
    (out / "A.xmp").symlink_to(victim)
    data = victim.read_bytes()
    storage.serve("A.xmp", data)
    result = await make(session).download(
        link=storage.link("A.xmp"),
        folder=out,
        file_name="A.xmp",
        expected_size=len(data),
        expected_md5_hex=hashlib.md5(data).hexdigest(),
    )
    assert result.attempts == 1 and len(storage.seen) == 1  # fetched, not taken from the link
    assert not (out / "A.xmp").is_symlink() and (out / "A.xmp").read_bytes() == data
    assert victim.read_bytes() == data


async def test_a_file_older_than_asked_is_kept_without_a_request_a_newer_one_replaced(
    storage: FakeStorage, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    data = payload(1000)
    storage.serve("A.jpg", data)
    theirs = write(tmp_path / "A.jpg", b"the photographer's own")
    os.utime(theirs, (1_000_000, 1_000_000))
    transfers = make(session)
    with pytest.raises(OutputInTheWay, match=r"A\.jpg is older than this download"):
        await transfers.download(
            link=storage.link("A.jpg"), folder=tmp_path, file_name="A.jpg", keep_older_than=2e6
        )
    assert storage.seen == [] and theirs.read_bytes() == b"the photographer's own"
    assert names_in(tmp_path) == ["A.jpg"]

    os.utime(theirs, (3_000_000, 3_000_000))  # written since: an earlier attempt's, replaced
    await transfers.download(
        link=storage.link("A.jpg"), folder=tmp_path, file_name="A.jpg", keep_older_than=2e6
    )
    assert theirs.read_bytes() == data


def capped(session: aiohttp.ClientSession, ceiling: int, *, attempts: int = 3) -> Transfers:
    policy = RetryPolicy(initial_interval=0.001, maximum_interval=0.001, maximum_attempts=attempts)
    return Transfers(
        session,
        TransferSettings(download_chunk_size=CHUNK, retry=policy, max_download_size=ceiling),
    )


async def test_an_endless_body_is_cut_at_the_cap_and_its_partial_removed(
    storage: FakeStorage, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    storage.serve("A.jpg", payload(PIECE))
    storage.get_faults = ["endless"]
    with pytest.raises(TransferRefused, match="more than the 2097152 allowed"):
        await capped(session, 2 * 1024 * 1024).download(
            link=storage.link("A.jpg"), folder=tmp_path, file_name="A.jpg", input_size=213
        )
    assert names_in(tmp_path) == []
    assert len(storage.seen) == 1  # refused, not retried


async def test_a_declared_length_over_the_cap_is_refused_before_reading(
    storage: FakeStorage, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    storage.serve("A.xmp", payload(1_000_000))
    with pytest.raises(TransferRefused, match="storage offers 1000000 bytes, more than"):
        await capped(session, 500_000).download(
            link=storage.link("A.xmp"), folder=tmp_path, file_name="A.xmp"
        )
    assert names_in(tmp_path) == [] and len(storage.seen) == 1


def test_the_cap_follows_the_input_and_the_ceiling() -> None:
    settings = TransferSettings(max_download_size=1024**3)
    assert settings.output_cap(213) == 213 * 10 + 64 * 1024 * 1024
    assert settings.output_cap(200 * 1024**2) == 1024**3
    assert settings.output_cap(None) == 1024**3
    assert TransferSettings().output_cap(None) == 4 * 1024**3


@pytest.mark.parametrize("fault", ["overlong", "no-etag"])
async def test_a_download_whose_length_cannot_be_confirmed_is_refused(
    storage: FakeStorage, session: aiohttp.ClientSession, tmp_path: Path, fault: str
) -> None:
    storage.serve("A.jpg", payload(100_000))
    storage.get_faults = [fault]
    with pytest.raises(TransferRefused, match="no ETag, so the download cannot be checked"):
        await make(session).download(link=storage.link("A.jpg"), folder=tmp_path, file_name="A.jpg")
    assert names_in(tmp_path) == [] and len(storage.seen) == 1


async def test_a_known_size_confirms_a_download_without_an_etag(
    storage: FakeStorage, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    data = payload(100_000)
    storage.serve("A.jpg", data)
    storage.get_faults = ["no-etag"]
    result = await make(session).download(
        link=storage.link("A.jpg"), folder=tmp_path, file_name="A.jpg", expected_size=len(data)
    )
    assert result.size == len(data) and (tmp_path / "A.jpg").read_bytes() == data


@pytest.mark.parametrize(
    ("target", "reason"),
    [
        ("file:///etc/passwd", "redirected to a file address"),
        ("ftp://example.com/x", "redirected to a ftp address"),
        ("loop", "redirected more than 5 times"),
    ],
)
async def test_a_redirect_off_http_or_in_a_loop_is_refused_at_once(
    storage: FakeStorage, session: aiohttp.ClientSession, tmp_path: Path, target: str, reason: str
) -> None:
    storage.serve("A.xmp", b"data")
    storage.redirects["A.xmp"] = f"{storage.url}/A.xmp" if target == "loop" else target
    retries: list[str] = []
    with pytest.raises(TransferRefused, match=reason):
        await make(session, retries=retries).download(
            link=storage.link("A.xmp"), folder=tmp_path, file_name="A.xmp"
        )
    assert retries == []
    assert len(storage.seen) == (6 if target == "loop" else 1)
    assert names_in(tmp_path) == []


async def test_a_redirect_to_another_host_is_followed(
    storage: FakeStorage, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    data = payload(1000)
    storage.serve("B.xmp", data)
    storage.redirects["A.xmp"] = storage.url.replace("127.0.0.1", "localhost") + "/B.xmp"
    result = await make(session).download(
        link=storage.link("A.xmp"), folder=tmp_path, file_name="A.xmp"
    )
    assert [seen.name for seen in storage.seen] == ["A.xmp", "B.xmp"]
    assert storage.seen[1].headers["Host"].startswith("localhost:")
    assert result.size == len(data) and (tmp_path / "A.xmp").read_bytes() == data


def test_redirects_and_links_are_checked_by_scheme_not_host() -> None:
    here = "https://bucket.s3.amazonaws.com/a?X-Amz-Signature=s"
    assert check_redirect("a", here, "https://cdn.example.net/a") == "https://cdn.example.net/a"
    assert check_redirect("a", here, "/b?x=1") == "https://bucket.s3.amazonaws.com/b?x=1"
    with pytest.raises(TransferRefused, match="from https to plain http"):
        check_redirect("a", here, "http://bucket.s3.amazonaws.com/a")
    with pytest.raises(TransferRefused, match="without a Location"):
        check_redirect("a", here, None)
    assert check_link("a", "http://10.0.0.5:9000/bucket/a") == "http://10.0.0.5:9000/bucket/a"
    with pytest.raises(TransferRefused, match="refusing a file link"):
        check_link("a", "file:///etc/passwd")
