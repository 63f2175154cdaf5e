"""One output's presigned GET: resumed with Range, verified, then renamed into place atomically."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import io
import os
import re
import sys
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from aiohttp import hdrs

from orchestrator.crashpoints import crash_point
from orchestrator.retry import RetryableError
from orchestrator.transfer.attempts import Mismatch
from orchestrator.transfer.errors import (
    OutputInTheWay,
    OutputUnwritable,
    TransferFailed,
    TransferRefused,
)
from orchestrator.transfer.hashing import SMALL_FILE, Hasher, md5_of_file, new_md5
from orchestrator.transfer.limits import RateLimiter
from orchestrator.transfer.localfiles import (
    NotAFile,
    open_reader,
    open_regular,
    regular_stat,
    written_before,
)
from orchestrator.transfer.names import check_output_name, etag_path, partial_path
from orchestrator.transfer.storage import (
    MAX_REDIRECTS,
    NETWORK_ERRORS,
    REDIRECT_STATUSES,
    check_link,
    check_redirect,
    connection_failure,
    etag_md5,
    raise_refusal,
    read_refusal,
)

FATAL_DISK_ERRNOS = frozenset(
    {errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR}
)
"""Local write errors that no retry can fix: the job stops with OutputUnwritable."""

_MAX_ETAG_FILE = 4096
"""More than any ETag header aiohttp accepts; bounds what is read back from the sidecar."""

_CONTENT_RANGE = re.compile(r"\s*bytes\s+(?:(\d+)-\d+|\*)/(\d+|\*)\s*", re.IGNORECASE)


@dataclass(frozen=True)
class Fetched:
    """A verified file at its final name."""

    path: Path
    size: int
    md5_hex: str
    resumed_from: int


class FileDownload:
    """Everything the attempts of one output's download share; `attempt(url)` makes one GET.

    The bytes go to `<name>.partial` and reach `<name>` only after verification, by an atomic
    rename. A partial left by an earlier attempt or an earlier run is resumed with a Range
    request, guarded by the ETag kept in `<name>.partial.etag`.

    Nothing found in the folder is trusted: the partial, its sidecar and the final file are
    opened without following links and must be regular files. A download is accepted only when
    its length is confirmed (an MD5 checks it, or storage sent an ETag and declared the length)
    and it stays within `max_size`.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        folder: Path,
        file_name: str,
        expected_size: int | None,
        expected_md5_hex: str | None,
        chunk_size: int,
        rate: RateLimiter,
        timeout: aiohttp.ClientTimeout,
        retryable_statuses: frozenset[int],
        on_bytes: Callable[[int], None] | None,
        max_size: int | None = None,
    ) -> None:
        self.file_name = check_output_name(file_name)
        self._session = session
        self._folder = folder
        self._final = folder / file_name
        self._partial = partial_path(folder, file_name)
        self._etag_file = etag_path(folder, file_name)
        self._expected_size = expected_size
        self._expected_md5 = expected_md5_hex.lower() if expected_md5_hex else None
        self._chunk_size = chunk_size
        self._rate = rate
        self._timeout = timeout
        self._retryable = retryable_statuses
        self._on_bytes = on_bytes
        self._max_size = max_size
        # Bytes of this file reported through on_bytes; kept equal to what the partial holds.
        self._counted = 0
        # What the partial measured when the folder was made (the size, or the error met),
        # until the first attempt takes it.
        self._first_look: int | OSError | None = None

    async def prepare(self, keep_older_than: float | None = None) -> Fetched | None:
        """Make sure the folder exists; the final file if it is already there and verified.

        OutputInTheWay if a regular file last written before `keep_older_than` is at the final
        name. The partial an earlier attempt left is measured in the same trip to a thread, for
        the first attempt (a tiny output costs a few trips in all, and the trips are its cost).
        """
        try:
            self._first_look = await asyncio.to_thread(
                _make_folder_and_look, self._folder, self._final, self._partial, keep_older_than
            )
        except OSError as exc:
            raise OutputUnwritable(self._folder, exc) from exc
        if self._expected_size is None and self._expected_md5 is None:
            # Nothing to check an existing file against: fetch it again rather than trust it.
            return None
        with self._local_files():
            try:
                size = (await asyncio.to_thread(regular_stat, self._final)).st_size
                if self._expected_size is not None and size != self._expected_size:
                    return None
                md5_hex = (await md5_of_file(self._final, chunk_size=self._chunk_size)).hexdigest()
            except (FileNotFoundError, NotAFile):
                # Not ours (a link, a pipe): fetched again, and the rename replaces it.
                return None
        if self._expected_md5 is not None and md5_hex != self._expected_md5:
            return None
        self._count(size)
        return Fetched(path=self._final, size=size, md5_hex=md5_hex, resumed_from=size)

    async def attempt(self, url: str) -> Fetched:
        """GET the object from `url` once (resuming the partial if any) and put it in place."""
        check_link(self.file_name, url)
        while True:
            offset, stored_etag = await self._resume_point()
            headers: dict[str, str] = {hdrs.ACCEPT_ENCODING: "identity"}
            if offset:
                headers[hdrs.RANGE] = f"bytes={offset}-"
                if stored_etag is not None:
                    headers[hdrs.IF_MATCH] = stored_etag
            try:
                async with self._get(url, headers) as response:
                    if offset and response.status in (412, 416):
                        total = _content_range(response.headers.get(hdrs.CONTENT_RANGE))[1]
                        whole = total if total is not None else self._expected_size
                        confirmable = self._unconfirmed(stored_etag, whole) is None
                        if response.status == 416 and offset == whole and confirmable:
                            # The partial already holds the whole object: it only needs checking.
                            with self._local_files():
                                hasher = await md5_of_file(
                                    self._partial, chunk_size=self._chunk_size
                                )
                            return await self._finish(
                                hasher, offset, stored_etag, whole, resumed_from=offset
                            )
                        # The object changed (412), the partial does not fit it (416), or
                        # nothing says what it holds (an older release kept no ETag): again.
                        await self._discard()
                        continue
                    if response.status not in (200, 206):
                        raise_refusal(
                            await read_refusal(response),
                            file_name=self.file_name,
                            retryable_statuses=self._retryable,
                        )
                    return await self._receive(response, offset, stored_etag)
            except NETWORK_ERRORS as exc:
                raise connection_failure(exc) from None

    @contextlib.asynccontextmanager
    async def _get(
        self, url: str, headers: Mapping[str, str]
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """The answer to a GET of `url`, redirects followed by hand so each hop is checked.

        aiohttp's own following would take a file: target or a loop for a network error and
        retry it for a minute; here they are refused at once.
        """
        for _ in range(MAX_REDIRECTS + 1):
            async with self._session.get(
                url, headers=headers, timeout=self._timeout, allow_redirects=False
            ) as response:
                if response.status not in REDIRECT_STATUSES:
                    yield response
                    return
                url = check_redirect(self.file_name, url, response.headers.get(hdrs.LOCATION))
        raise TransferRefused(
            self.file_name, f"storage redirected more than {MAX_REDIRECTS} times (a redirect loop)"
        )

    def uncount(self) -> None:
        """The download is given up: take back the bytes reported for it."""
        self._count(0)

    async def _resume_point(self) -> tuple[int, str | None]:
        with self._local_files():
            measured, self._first_look = self._first_look, None
            if measured is None:
                measured = await asyncio.to_thread(_partial_size, self._partial)
            if isinstance(measured, OSError):
                raise measured
            offset = measured
            limits = [n for n in (self._expected_size, self._max_size) if n is not None]
            if limits and offset > min(limits):
                await self._discard()
                offset = 0
            stored_etag = await asyncio.to_thread(_read_etag, self._etag_file) if offset else None
        self._count(offset)
        return offset, stored_etag

    async def _receive(
        self, response: aiohttp.ClientResponse, offset: int, stored_etag: str | None
    ) -> Fetched:
        etag = response.headers.get(hdrs.ETAG)
        if response.status == 206:
            start, total = _content_range(response.headers.get(hdrs.CONTENT_RANGE))
            if start != offset:
                await self._discard()
                raise RetryableError(f"storage sent a range starting at {start}, not {offset}")
        else:
            if offset:
                # Storage ignored the Range and sends everything: start over.
                await self._discard()
                offset = 0
            total = response.content_length
        if total is not None and self._expected_size is not None and total != self._expected_size:
            await self._discard()
            raise Mismatch(f"storage offers {total} bytes, expected {self._expected_size}")
        if total is not None and self._max_size is not None and total > self._max_size:
            await self._discard()
            raise self._too_large(f"storage offers {total} bytes")
        if offset == 0 and total is not None and total <= SMALL_FILE:
            return await self._receive_whole(response, etag, total)

        with self._local_files():
            if offset == 0 or stored_etag is None:
                # Written before any byte, so a crash mid-body still knows what it holds.
                await asyncio.to_thread(_store_etag, self._etag_file, etag)
            if offset:
                file, hasher = await asyncio.to_thread(
                    _open_to_resume, self._partial, offset, self._chunk_size
                )
            else:
                file, hasher = await asyncio.to_thread(_open_for_writing, self._partial), new_md5()
        if file is None:
            # The partial changed since it was measured: start again from what it is now.
            raise RetryableError("the partial download changed while it was being resumed")
        written = offset
        try:
            written = await self._stream(response, file, hasher, written)
        except TransferRefused:
            await self._discard()
            raise
        finally:
            with self._local_files():
                await asyncio.to_thread(file.close)
        if total is not None and written < total:
            raise RetryableError(f"connection ended after {written} of {total} bytes")
        return await self._finish(hasher, written, etag or stored_etag, total, resumed_from=offset)

    async def _receive_whole(
        self, response: aiohttp.ClientResponse, etag: str | None, total: int
    ) -> Fetched:
        """A small body: read into memory, verified and written to its final name at once."""
        try:
            data = await response.read()
        except NETWORK_ERRORS as exc:
            raise connection_failure(exc) from None
        unconfirmed = self._unconfirmed(etag, total)
        if unconfirmed is not None:
            raise TransferRefused(self.file_name, unconfirmed)
        await self._rate.consume(len(data))
        self._count(len(data))
        wanted = self._expected_md5 or etag_md5(etag)
        with self._local_files():
            md5_hex = await asyncio.to_thread(
                _store_whole, data, self._partial, self._final, self._etag_file, wanted, etag
            )
        problem = self._problem(len(data), md5_hex, etag)
        if problem is not None:
            self._count(0)
            raise Mismatch(problem)
        return Fetched(path=self._final, size=len(data), md5_hex=md5_hex, resumed_from=0)

    async def _stream(
        self, response: aiohttp.ClientResponse, file: io.FileIO, hasher: Hasher, written: int
    ) -> int:
        # The pieces are kept as the network delivered them (no joining, no copying) and handed
        # to the thread about a chunk at a time.
        pieces: list[bytes] = []
        pending = 0
        try:
            async for data, _ in response.content.iter_chunks():
                if self._max_size is not None and written + pending + len(data) > self._max_size:
                    raise self._too_large(f"storage sent more than {self._max_size} bytes")
                await self._rate.consume(len(data))
                pieces.append(data)
                pending += len(data)
                if pending >= self._chunk_size:
                    written = await self._write(file, pieces, hasher, written)
                    pieces, pending = [], 0
        except NETWORK_ERRORS as exc:
            # Keep what did arrive: the next attempt asks only for the rest.
            await self._write(file, pieces, hasher, written)
            raise connection_failure(exc) from None
        return await self._write(file, pieces, hasher, written)

    async def _write(
        self, file: io.FileIO, pieces: list[bytes], hasher: Hasher, written: int
    ) -> int:
        if not pieces:
            return written
        with self._local_files():
            await asyncio.to_thread(_write_hashed, file, pieces, hasher)
        written += sum(len(piece) for piece in pieces)
        self._count(written)
        return written

    async def _finish(
        self, hasher: Hasher, size: int, etag: str | None, total: int | None, *, resumed_from: int
    ) -> Fetched:
        md5_hex = hasher.hexdigest()
        problem = self._problem(size, md5_hex, etag)
        if problem is not None:
            await self._discard()
            raise Mismatch(problem)
        unconfirmed = self._unconfirmed(etag, total)
        if unconfirmed is not None:
            await self._discard()
            raise TransferRefused(self.file_name, unconfirmed)
        with self._local_files():
            await asyncio.to_thread(_commit, self._partial, self._final, self._etag_file)
        return Fetched(path=self._final, size=size, md5_hex=md5_hex, resumed_from=resumed_from)

    def _problem(self, size: int, md5_hex: str, etag: str | None) -> str | None:
        if self._expected_size is not None and size != self._expected_size:
            return f"got {size} bytes, expected {self._expected_size}"
        wanted = self._expected_md5 or etag_md5(etag)
        if wanted is not None and wanted != md5_hex:
            return f"MD5 is {md5_hex}, expected {wanted}"
        return None

    def _unconfirmed(self, etag: str | None, total: int | None) -> str | None:
        """Why the download's length cannot be trusted, if it cannot; None when it can.

        An MD5 (the caller's or a plain ETag) or the caller's size confirm it. Otherwise storage
        must have sent an ETag and declared the length: without an ETag, a body longer than its
        Content-Length is cut at the declared length and nothing would tell.
        """
        if self._expected_md5 or etag_md5(etag) or self._expected_size is not None:
            return None
        if etag is None:
            return (
                "storage sent no ETag, so the download cannot be checked; refusing it "
                "rather than keeping a file that may be cut short"
            )
        if total is None:
            return (
                "storage declared no length and no checksum, so the download cannot be "
                "checked; refusing it"
            )
        return None

    def _too_large(self, detail: str) -> TransferRefused:
        return TransferRefused(
            self.file_name,
            f"{detail}, more than the {self._max_size} "
            "allowed for an output of this photo; not kept",
        )

    async def _discard(self) -> None:
        with self._local_files():
            await asyncio.to_thread(_remove, self._partial, self._etag_file)
        self._count(0)

    def _count(self, on_disk: int) -> None:
        delta = on_disk - self._counted
        self._counted = on_disk
        if delta and self._on_bytes is not None:
            self._on_bytes(delta)

    @contextlib.contextmanager
    def _local_files(self) -> Iterator[None]:
        """Turn errors of local file operations into the transfer errors callers act on."""
        try:
            yield
        except NotAFile as exc:
            # Something planted where our temporary files go: never written through, never read.
            raise TransferRefused(
                self.file_name,
                f"{exc.filename} is {exc.kind}, not a file "
                "this program wrote: remove it and run again",
            ) from exc
        except OSError as exc:
            if exc.errno in FATAL_DISK_ERRNOS:
                raise OutputUnwritable(self._folder, exc) from exc
            raise TransferFailed(
                self.file_name,
                f"cannot write {exc.filename or self._folder}: {exc.strerror or exc}",
            ) from exc


def _content_range(value: str | None) -> tuple[int | None, int | None]:
    """(first byte, total size) from a Content-Range header; None for what it does not say."""
    match = _CONTENT_RANGE.fullmatch(value or "")
    if match is None:
        return None, None
    start, total = match.groups()
    return (int(start) if start is not None else None, int(total) if total != "*" else None)


def _make_folder_and_look(
    folder: Path, final: Path, partial: Path, keep_older_than: float | None
) -> int | OSError:
    """Make `folder` (its errors raised); OutputInTheWay if a regular file at `final` was last
    written before `keep_older_than`; else `_partial_size` of the partial."""
    folder.mkdir(parents=True, exist_ok=True)
    if keep_older_than is not None and written_before(final, keep_older_than):
        raise OutputInTheWay(final)
    return _partial_size(partial)


def _partial_size(partial: Path) -> int | OSError:
    """The partial's size, 0 if there is none; the error measuring it met, to be raised where
    the partial is used (something planted there is NotAFile)."""
    try:
        return regular_stat(partial).st_size
    except FileNotFoundError:
        return 0
    except OSError as exc:
        return exc


def _read_etag(path: Path) -> str | None:
    try:
        with open_reader(path) as file:
            return file.read(_MAX_ETAG_FILE).decode("utf-8", "replace").strip() or None
    except FileNotFoundError:
        return None


def _store_etag(path: Path, etag: str | None) -> None:
    if etag:
        with _open_for_writing(path) as file:
            file.write(etag.encode("utf-8", "replace"))
    else:
        path.unlink(missing_ok=True)


def _open_for_writing(path: Path) -> io.FileIO:
    """`path` emptied (or created) for writing; never through a link, only a regular file."""
    # Unbuffered: every write reaches the OS at once, so a full disk shows up at that write.
    descriptor, _ = open_regular(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    return io.FileIO(descriptor, "wb", closefd=True)


def _open_to_resume(path: Path, offset: int, chunk_size: int) -> tuple[io.FileIO | None, Hasher]:
    """The partial open to append to, and the MD5 of what it holds; None if it is not `offset`
    bytes any more. One descriptor for both, so what is hashed is what is appended to."""
    descriptor, status = open_regular(path, os.O_RDWR | os.O_APPEND)
    file = io.FileIO(descriptor, "a+", closefd=True)
    hasher = new_md5()
    try:
        if status.st_size != offset:
            file.close()
            return None, hasher
        file.seek(0)
        buffer = bytearray(min(chunk_size, max(offset, 1)))
        view = memoryview(buffer)
        read = 0
        while count := file.readinto(buffer):
            hasher.update(view[:count])
            read += count
        if read != offset:
            file.close()
            return None, hasher
    except BaseException:
        file.close()
        raise
    return file, hasher


def _write_hashed(file: io.FileIO, pieces: list[bytes], hasher: Hasher) -> None:
    start = file.tell()
    for piece in pieces:
        view = memoryview(piece)
        while view:
            view = view[file.write(view) :]
        hasher.update(piece)
    _start_writeback(file, start)


def _start_writeback(file: io.FileIO, start: int) -> None:
    """Have the OS start writing the bytes from `start` to disk now, without waiting for it.

    Otherwise the whole file is still in memory when `_commit` syncs it, and the download
    stalls for as long as the disk needs to take it all. On Linux, POSIX_FADV_DONTNEED starts
    writeback of the range's dirty pages (and drops only pages already clean): a hint, so a
    filesystem that refuses it costs nothing but the early start.
    """
    if sys.platform == "linux":
        with contextlib.suppress(OSError):
            os.posix_fadvise(file.fileno(), start, file.tell() - start, os.POSIX_FADV_DONTNEED)


def _remove(partial: Path, etag_file: Path) -> None:
    partial.unlink(missing_ok=True)
    etag_file.unlink(missing_ok=True)


def _store_whole(
    data: bytes,
    partial: Path,
    final: Path,
    etag_file: Path,
    wanted_md5: str | None,
    etag: str | None,
) -> str:
    """Hash `data`; unless it is not what was wanted, write it to `partial` and commit it.

    The ETag goes beside the partial first, as for a streamed body: a crash before the rename
    leaves a partial the next attempt can still confirm, instead of one it must refuse.
    """
    hasher = new_md5()
    hasher.update(data)
    md5_hex = hasher.hexdigest()
    if wanted_md5 is not None and md5_hex != wanted_md5:
        return md5_hex
    _store_etag(etag_file, etag)
    with _open_for_writing(partial) as file:
        view = memoryview(data)
        while view:
            view = view[file.write(view) :]
        os.fsync(file.fileno())
    _rename_into_place(partial, final, etag_file)
    return md5_hex


def _commit(partial: Path, final: Path, etag_file: Path) -> None:
    descriptor, _ = open_regular(partial)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
    _rename_into_place(partial, final, etag_file)


def _rename_into_place(partial: Path, final: Path, etag_file: Path) -> None:
    """Move a synced partial to its final name, durably."""
    crash_point("before_rename")
    os.replace(partial, final)
    etag_file.unlink(missing_ok=True)
    _fsync_folder(final.parent)


def _fsync_folder(folder: Path) -> None:
    """Make the rename durable; some filesystems refuse to fsync a folder, which is no error."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(descriptor)
    finally:
        os.close(descriptor)
