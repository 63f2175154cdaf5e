"""One photo's presigned PUT: streamed from disk, paced, checked by Content-MD5 or its ETag."""

from __future__ import annotations

import asyncio
import io
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import NoReturn

import aiohttp
from aiohttp import hdrs

from orchestrator.retry import RetryableError
from orchestrator.transfer.errors import SourceChanged, TransferFailed
from orchestrator.transfer.hashing import SMALL_FILE, Hasher, file_md5, md5_base64, new_md5
from orchestrator.transfer.limits import RateLimiter
from orchestrator.transfer.localfiles import open_reader, open_regular, regular_stat
from orchestrator.transfer.storage import (
    NETWORK_ERRORS,
    check_link,
    connection_failure,
    etag_md5,
    raise_refusal,
    read_refusal,
)

ByteReporter = Callable[[int], None]

SEND_PIECE = 256 * 1024
"""Most bytes handed to the connection at once (a chunk read from disk goes in such pieces)."""


class FileUpload:
    """Everything the attempts of one file's upload share; `attempt(url)` makes one PUT.

    With the photo's recorded MD5 the PUT carries Content-MD5, storage checks the body against
    it, and the bytes are not hashed on the way: the file is hashed again only when storage
    reports a mismatch, to tell a changed photo from damage in transit. Without one, the bytes
    are hashed as they are read and checked against storage's ETag.

    The photo is opened without following links and must be a regular file; after each PUT it
    must still be the file that was read (same inode, size and mtime), or the bytes sent were
    an old version and SourceChanged says so.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        path: Path,
        size: int,
        md5: bytes | None,
        chunk_size: int,
        rate: RateLimiter,
        timeout: aiohttp.ClientTimeout,
        retryable_statuses: frozenset[int],
        on_bytes: ByteReporter | None,
    ) -> None:
        self._session = session
        self._path = path
        self._size = size
        self._md5 = md5
        self._chunk_size = chunk_size
        self._rate = rate
        self._timeout = timeout
        self._retryable = retryable_statuses
        self._on_bytes = on_bytes
        self._digest_mismatches = 0

    @property
    def file_name(self) -> str:
        """The name used in messages about this upload."""
        return self._path.name

    async def attempt(self, url: str) -> str | None:
        """PUT the file to `url` once; the ETag storage returned, if any."""
        check_link(self.file_name, url)
        # A small file is read whole in one trip to a thread; a large one streams from disk.
        preread = await self._read_small() if self._size <= SMALL_FILE else None
        if preread is None:
            await self._check_size()
        body = _Body(
            self._path,
            size=self._size,
            chunk_size=self._chunk_size,
            rate=self._rate,
            hashing=self._md5 is None,
            on_bytes=self._on_bytes,
        )
        try:
            etag, read_from = await self._put(url, body, preread)
            await self._verify(body, etag)
            await self._check_unchanged(read_from)
        except BaseException:
            # This attempt's bytes will be sent again: keep the caller's byte count honest.
            body.take_back()
            raise
        body.stop_reporting()
        return etag

    async def _read_small(self) -> tuple[bytes, os.stat_result]:
        try:
            data, now = await asyncio.to_thread(_read_small, self._path, self._size)
        except FileNotFoundError:
            raise self._gone() from None
        except OSError as exc:
            raise self._unreadable(exc) from exc
        if now.st_size != self._size:
            raise SourceChanged(self._path, f"it was {self._size} bytes, now {now.st_size}")
        if len(data) != self._size:
            raise SourceChanged(self._path, f"it ended after {len(data)} of {self._size} bytes")
        return data, now

    async def _check_size(self) -> None:
        try:
            actual = (await asyncio.to_thread(regular_stat, self._path)).st_size
        except FileNotFoundError:
            raise self._gone() from None
        except OSError as exc:
            raise self._unreadable(exc) from exc
        if actual != self._size:
            raise SourceChanged(self._path, f"it was {self._size} bytes, now {actual}")

    async def _check_unchanged(self, read_from: os.stat_result) -> None:
        """The photo must still be the file its bytes were read from; else they were stale."""
        try:
            now = await asyncio.to_thread(os.lstat, self._path)
        except FileNotFoundError:
            raise SourceChanged(self._path, "it was removed while it was being sent") from None
        except OSError as exc:
            raise self._unreadable(exc) from exc
        if _identity(now) != _identity(read_from):
            raise SourceChanged(
                self._path,
                f"it changed while it was being sent (size {read_from.st_size} -> {now.st_size})",
            )

    def _gone(self) -> SourceChanged:
        return SourceChanged(self._path, "the file is gone")

    def _unreadable(self, exc: OSError) -> TransferFailed:
        return TransferFailed(self.file_name, f"cannot read it: {exc.strerror or exc}")

    async def _put(
        self, url: str, body: _Body, preread: tuple[bytes, os.stat_result] | None
    ) -> tuple[str | None, os.stat_result]:
        """PUT the body; storage's ETag, and the stat of the file the bytes were read from."""
        if preread is not None:
            data, read_from = preread
            return await self._send(url, body, body.whole(data)), read_from
        try:
            file, read_from = await asyncio.to_thread(_open_for_reading, self._path)
        except FileNotFoundError:
            raise self._gone() from None
        except OSError as exc:
            raise self._unreadable(exc) from exc
        try:
            return await self._send(url, body, body.chunks(file)), read_from
        finally:
            # In a thread: a read may still be running there, and close waits for it.
            await asyncio.to_thread(file.close)

    async def _send(
        self, url: str, body: _Body, data: AsyncIterator[bytes | memoryview]
    ) -> str | None:
        # The link is signed for an empty Content-Type. Giving the header explicitly (empty)
        # stops aiohttp from filling in the payload's application/octet-stream; skipping the
        # auto header too keeps it out even if a future aiohttp dropped empty values.
        headers: dict[str, str] = {hdrs.CONTENT_TYPE: "", hdrs.CONTENT_LENGTH: str(self._size)}
        if self._md5 is not None:
            headers["Content-MD5"] = md5_base64(self._md5)
        try:
            # No redirects: a streamed body cannot be replayed to another address.
            async with self._session.put(
                url,
                data=data,
                headers=headers,
                skip_auto_headers=(hdrs.CONTENT_TYPE,),
                timeout=self._timeout,
                allow_redirects=False,
            ) as response:
                if response.status >= 300:
                    refusal = await read_refusal(response)
                    if refusal.code == "BadDigest":
                        await self._digest_mismatch(refusal.describe())
                    raise_refusal(
                        refusal, file_name=self.file_name, retryable_statuses=self._retryable
                    )
                return response.headers.get(hdrs.ETAG)
        except NETWORK_ERRORS as exc:
            # aiohttp wraps what the body generator raised; report the real cause.
            if body.failure is not None:
                raise body.failure from None
            raise connection_failure(exc) from None

    async def _verify(self, body: _Body, etag: str | None) -> None:
        if not body.complete:
            # Storage answered before taking every byte: whatever it kept is not the photo.
            raise RetryableError(
                f"storage answered after {body.read} of {self._size} bytes; sending again"
            )
        # What the bytes sent hash to: the recorded MD5 when storage checked them against it.
        sent = self._md5.hex() if self._md5 is not None else body.md5_hex()
        expected = etag_md5(etag)
        if expected is not None and expected != sent:
            await self._digest_mismatch(f"storage's ETag {etag} is not the MD5 of the bytes sent")

    async def _digest_mismatch(self, detail: str) -> NoReturn:
        if self._md5 is not None:
            try:
                now = await file_md5(self._path, chunk_size=self._chunk_size)
            except FileNotFoundError:
                raise self._gone() from None
            if now != self._md5:
                raise SourceChanged(self._path, "its content no longer matches the recorded MD5")
        # Once may be corruption on the way; twice in a row is not going to get better.
        self._digest_mismatches += 1
        if self._digest_mismatches > 1:
            raise TransferFailed(self.file_name, f"{detail} (twice)")
        raise RetryableError(f"{detail}; sending again")


class _Body:
    """The bytes of one PUT attempt: read in a thread, hashed if asked, paced, reported as sent."""

    def __init__(
        self,
        path: Path,
        *,
        size: int,
        chunk_size: int,
        rate: RateLimiter,
        hashing: bool,
        on_bytes: ByteReporter | None,
    ) -> None:
        self._path = path
        self._size = size
        self._chunk_size = chunk_size
        self._rate = rate
        self._on_bytes = on_bytes
        self._reporting = True
        self._hasher = new_md5() if hashing else None
        self.read = 0
        self.reported = 0
        self.failure: SourceChanged | None = None

    @property
    def complete(self) -> bool:
        """Whether every byte of the file was read for this attempt."""
        return self.read == self._size

    def md5_hex(self) -> str | None:
        """The MD5 of the bytes read so far; None when not hashing."""
        return self._hasher.hexdigest() if self._hasher is not None else None

    async def chunks(self, file: io.BufferedReader) -> AsyncIterator[memoryview]:
        """The file's first `size` bytes, read `chunk_size` at a time, sent in `SEND_PIECE`s."""
        while self.read < self._size:
            # Allocated here, filled in the worker thread: memory a worker thread allocates
            # stays in that thread's malloc arena after it is freed, and with a pool of threads
            # reading for eight transfers those arenas held 40 MB more than the data in flight.
            chunk = bytearray(min(self._chunk_size, self._size - self.read))
            count = await asyncio.to_thread(_read_hashed, file, chunk, self._hasher)
            del chunk[count:]
            if not chunk:
                self.failure = SourceChanged(
                    self._path, f"it ended after {self.read} of {self._size} bytes"
                )
                raise self.failure
            self.read += len(chunk)
            # Handed over in pieces: what the socket does not take at once is copied into the
            # connection's buffer, so a whole chunk would be held twice per upload in flight.
            # A chunk is never reused or resized once handed over: newer Pythons' transports
            # keep a reference to unsent bytes instead of copying them.
            view = memoryview(chunk)
            for start in range(0, len(chunk), SEND_PIECE):
                piece = view[start : start + SEND_PIECE]
                await self._rate.consume(len(piece))
                yield piece
                self._report(len(piece))

    async def whole(self, data: bytes) -> AsyncIterator[bytes]:
        """The file's bytes, read beforehand in one piece (a small file)."""
        if self._hasher is not None:
            self._hasher.update(data)
        self.read = len(data)
        await self._rate.consume(len(data))
        yield data
        self._report(len(data))

    def take_back(self) -> None:
        """Stop reporting and report minus everything reported so far."""
        self._reporting = False
        if self.reported and self._on_bytes is not None:
            self._on_bytes(-self.reported)

    def stop_reporting(self) -> None:
        """The attempt is over; a late wake-up of the generator must not count bytes."""
        self._reporting = False

    def _report(self, count: int) -> None:
        if self._reporting:
            self.reported += count
            if self._on_bytes is not None:
                self._on_bytes(count)


def _read_small(path: Path, size: int) -> tuple[bytes, os.stat_result]:
    """At most `size + 1` bytes of the file (enough to see it grew) and its stat now."""
    with open_reader(path) as file:
        return file.read(size + 1) or b"", os.fstat(file.fileno())


def _open_for_reading(path: Path) -> tuple[io.BufferedReader, os.stat_result]:
    descriptor, status = open_regular(path)
    return open(descriptor, "rb", closefd=True), status


def _identity(status: os.stat_result) -> tuple[int, int, int, int]:
    """What tells one version of a file from another without reading it."""
    return status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns


def _read_hashed(file: io.BufferedReader, chunk: bytearray, hasher: Hasher | None) -> int:
    """Fill `chunk` from the file (short only at its end); how many bytes were read."""
    view = memoryview(chunk)
    count = 0
    while count < len(chunk) and (got := file.readinto(view[count:])):
        count += got
    if hasher is not None:
        hasher.update(view[:count])
    return count
