"""The transfers front door: settings, the process-wide session, and upload/download of one file."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from orchestrator.retry import RetryPolicy
from orchestrator.transfer.attempts import LinkSource, RetryReporter, attempt_until_done
from orchestrator.transfer.download import FileDownload
from orchestrator.transfer.limits import AdaptiveLimiter, RateLimiter
from orchestrator.transfer.upload import FileUpload

__all__ = [
    "TRANSFER_RETRY",
    "DownloadResult",
    "LinkSource",
    "TransferSettings",
    "Transfers",
    "UploadResult",
    "make_session",
    "transfer_timeout",
]

TRANSFER_RETRY = RetryPolicy(initial_interval=1.0, maximum_interval=60.0, maximum_attempts=8)
"""Default retries for one file: up to 8 attempts, backing off from about 1 s to at most 60 s."""

MAX_DOWNLOAD_SIZE = 4 * 1024**3
"""Default ceiling for any one output, whatever its input: 4 GiB."""

OUTPUT_SIZE_FACTOR = 10
OUTPUT_SIZE_FLOOR = 64 * 1024 * 1024
"""An output may be at most OUTPUT_SIZE_FACTOR times its photo plus OUTPUT_SIZE_FLOOR bytes.

Edits are XMP sidecars (kilobytes), DNGs and JPEGs about the size of the photo; exports are
JPEGs; an HDR merge makes one DNG of several RAWs, and a linear DNG can be several times the
compressed RAW. Ten times plus 64 MiB leaves room for all of them and still stops an endless
body early: a 213-byte JPEG's edit stops at 64 MiB, not at the disk's end.
"""

READ_BUFFER_SIZE = 256 * 1024
"""Per-response read buffer: aiohttp stops reading a response once twice this is waiting, so it
bounds each download's memory (the rest waits in the kernel). 256 KiB is what asyncio takes from
a socket at a time; more only grows memory (16 downloads at 2 MiB: +50 MB), not throughput."""


@dataclass(frozen=True, kw_only=True)
class TransferSettings:
    """How transfers behave: concurrency, chunking, bandwidth, timeouts and retries."""

    concurrency: int = 8
    """Most transfers at once, for the whole process (throttling may lower it for a while)."""
    upload_chunk_size: int = 512 * 1024
    """Bytes of a photo read from disk in one trip to a thread (handed to the connection in
    `transfer.upload.SEND_PIECE`s). Each upload in flight holds one: a run of 24 x 40 MB photos
    peaked 4 MiB lower with 512 KiB than with 1 MiB, at the same rate (3 alternating pairs)."""
    download_chunk_size: int = 1024 * 1024
    """Bytes received before they are written to disk in one trip to a thread (and the piece
    a finished download is read back in to check it): 512 KiB pieces cost downloads 15%."""
    bwlimit: float | None = None
    """Bandwidth cap in bytes per second over all transfers; None for none."""
    connect_timeout: float = 30.0
    """Seconds to open a connection."""
    read_timeout: float = 120.0
    """Seconds storage may stay silent; there is no limit on a whole transfer."""
    retry: RetryPolicy = TRANSFER_RETRY
    """Attempts and backoff for each file."""
    max_download_size: int = MAX_DOWNLOAD_SIZE
    """Most bytes any one download may have; a bigger one is refused and its partial removed."""

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {self.concurrency}")
        if min(self.upload_chunk_size, self.download_chunk_size) < 1:
            raise ValueError(
                "chunk sizes must be positive, got "
                f"{self.upload_chunk_size} (uploads) and {self.download_chunk_size} (downloads)"
            )
        if self.bwlimit is not None and self.bwlimit <= 0:
            raise ValueError(f"bwlimit must be positive, got {self.bwlimit}")
        if self.max_download_size < 1:
            raise ValueError(f"max_download_size must be positive, got {self.max_download_size}")

    def output_cap(self, input_size: int | None) -> int:
        """Most bytes an output of a photo of `input_size` bytes may have (the ceiling if None)."""
        if input_size is None:
            return self.max_download_size
        return min(self.max_download_size, input_size * OUTPUT_SIZE_FACTOR + OUTPUT_SIZE_FLOOR)


@dataclass(frozen=True)
class UploadResult:
    """A finished upload: storage's ETag header as sent (quotes included), and attempts used."""

    etag: str | None
    attempts: int


@dataclass(frozen=True)
class DownloadResult:
    """A verified download at its final path.

    `resumed_from` is how many bytes were already on disk when the successful request started
    (the whole size when the file was already in place); `attempts` is 0 in that case.
    """

    path: Path
    size: int
    md5_hex: str
    resumed_from: int
    attempts: int


def transfer_timeout(settings: TransferSettings) -> aiohttp.ClientTimeout:
    """Timeouts for transfers: to connect and between reads, never on the whole (long) transfer."""
    return aiohttp.ClientTimeout(
        total=None, sock_connect=settings.connect_timeout, sock_read=settings.read_timeout
    )


def make_session(settings: TransferSettings) -> aiohttp.ClientSession:
    """The one HTTP session of the process, tuned for transfers; the caller closes it.

    No connection cap (the AdaptiveLimiter bounds transfers, and the Imagen client shares the
    pool), cached DNS, large read buffers, and bodies kept exactly as stored. Must not be given
    default headers such as the API key: they would go to storage with every transfer.
    """
    connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=300)
    return aiohttp.ClientSession(
        connector=connector,
        timeout=transfer_timeout(settings),
        read_bufsize=READ_BUFFER_SIZE,
        auto_decompress=False,
    )


SHARE_UNDER_CAP = 2_000_000
"""Bytes per second each transfer should get under a bandwidth cap at the least."""


def concurrency_under_cap(concurrency: int, bwlimit: float | None) -> int:
    """Transfers at once: under a cap, only as many as each gets SHARE_UNDER_CAP of it.

    A cap is shared evenly by the transfers in flight: eight at 5 MB/s all finish together at
    the end, and an interrupt finds none done. Two at a time finish one after another.
    """
    if bwlimit is None:
        return concurrency
    return max(1, min(concurrency, int(bwlimit // SHARE_UNDER_CAP)))


class Transfers:
    """Uploads and downloads files through presigned links, sharing limits process-wide.

    `on_retry(file_name, attempt, reason, delay)` hears of every retry (and each call's own
    `on_retry` of its retries); `sleep` is how backoff waits (tests pass a fake).
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        settings: TransferSettings,
        *,
        on_retry: RetryReporter | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if any(name.lower() == "x-api-key" for name in session.headers):
            raise ValueError(
                "the transfer session must not carry the API key as a default "
                "header: it would be sent to storage"
            )
        self._session = session
        self._settings = settings
        self._on_retry = on_retry
        self._sleep = sleep
        self._timeout = transfer_timeout(settings)
        self.limiter = AdaptiveLimiter(
            concurrency_under_cap(settings.concurrency, settings.bwlimit)
        )
        self.rate = RateLimiter(settings.bwlimit)

    def stop_starting(self) -> None:
        """Let the transfers in flight finish, and start no more (see signals.let_finish)."""
        self.limiter.close()

    @property
    def in_flight(self) -> int:
        """Transfers running right now."""
        return self.limiter.in_flight

    def _reporter(self, extra: RetryReporter | None) -> RetryReporter | None:
        """The process-wide retry hook and a call's own (`on_retry` of upload, download)."""
        hooks = [hook for hook in (self._on_retry, extra) if hook is not None]
        if len(hooks) < 2:
            return hooks[0] if hooks else None

        def both(file_name: str, attempt: int, reason: str, delay: float) -> None:
            for hook in hooks:
                hook(file_name, attempt, reason, delay)

        return both

    async def upload(
        self,
        path: Path,
        *,
        link: LinkSource,
        size: int,
        md5: bytes | None,
        on_bytes: Callable[[int], None] | None = None,
        on_retry: RetryReporter | None = None,
    ) -> UploadResult:
        """PUT the file at `path` (recorded as `size` bytes, `md5` raw digest if sent for the link).

        Raises SourceChanged, TransferFailed (permanent, or retries exhausted).
        """
        upload = FileUpload(
            self._session,
            path=path,
            size=size,
            md5=md5,
            chunk_size=self._settings.upload_chunk_size,
            rate=self.rate,
            timeout=self._timeout,
            retryable_statuses=self._settings.retry.retryable_statuses,
            on_bytes=on_bytes,
        )
        etag, attempts = await attempt_until_done(
            upload.file_name,
            upload.attempt,
            link=link,
            policy=self._settings.retry,
            limiter=self.limiter,
            on_retry=self._reporter(on_retry),
            sleep=self._sleep,
        )
        return UploadResult(etag=etag, attempts=attempts)

    async def download(
        self,
        *,
        link: LinkSource,
        folder: Path,
        file_name: str,
        expected_size: int | None = None,
        expected_md5_hex: str | None = None,
        input_size: int | None = None,
        keep_older_than: float | None = None,
        on_bytes: Callable[[int], None] | None = None,
        on_retry: RetryReporter | None = None,
    ) -> DownloadResult:
        """GET one output into `folder / file_name`, resuming and verifying; atomic at the end.

        `input_size` is the size of the photo the output was made from: it caps the output's
        size (see TransferSettings.output_cap). A regular file at the target last written
        before `keep_older_than` (a timestamp) is kept: OutputInTheWay, before any request.
        Raises TransferRefused (at once: over the cap, length unconfirmed, a bad redirect,
        something planted in the folder), TransferFailed (unsafe name, permanent, or retries
        exhausted), VerificationFailed, OutputUnwritable.
        """
        download = FileDownload(
            self._session,
            folder=folder,
            file_name=file_name,
            expected_size=expected_size,
            expected_md5_hex=expected_md5_hex,
            chunk_size=self._settings.download_chunk_size,
            rate=self.rate,
            timeout=self._timeout,
            retryable_statuses=self._settings.retry.retryable_statuses,
            on_bytes=on_bytes,
            max_size=self._settings.output_cap(input_size),
        )
        existing = await download.prepare(keep_older_than)
        if existing is not None:
            return DownloadResult(
                path=existing.path,
                size=existing.size,
                md5_hex=existing.md5_hex,
                resumed_from=existing.resumed_from,
                attempts=0,
            )
        try:
            fetched, attempts = await attempt_until_done(
                download.file_name,
                download.attempt,
                link=link,
                policy=self._settings.retry,
                limiter=self.limiter,
                on_retry=self._reporter(on_retry),
                sleep=self._sleep,
            )
        except BaseException:
            download.uncount()
            raise
        return DownloadResult(
            path=fetched.path,
            size=fetched.size,
            md5_hex=fetched.md5_hex,
            resumed_from=fetched.resumed_from,
            attempts=attempts,
        )
