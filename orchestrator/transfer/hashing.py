"""MD5 of photo files, streamed from disk in a worker thread so no photo is ever held in memory."""

from __future__ import annotations

import asyncio
import base64
import hashlib
from pathlib import Path
from typing import Protocol

from orchestrator.transfer.localfiles import open_reader

DEFAULT_CHUNK = 1024 * 1024
"""A photo is hashed through a buffer of this size (4 MiB ones raised a run's peak memory by 8 MB,
at no gain in speed)."""

SMALL_FILE = 256 * 1024
"""Files up to this size (small JPEGs, XMP sidecars) are read or written whole in one trip to a
worker thread, larger ones a chunk at a time: for thousands of small files the trips, not the
bytes, are the cost."""


class Hasher(Protocol):
    """The part of a hashlib object the transfers use."""

    def update(self, data: bytes | bytearray | memoryview, /) -> None:
        """Feed more bytes."""

    def digest(self) -> bytes:
        """The raw digest of everything fed so far."""

    def hexdigest(self) -> str:
        """The digest as lower-case hex."""


def new_md5() -> Hasher:
    """A fresh MD5 hasher; flagged as not for security so FIPS-mode Pythons allow it."""
    return hashlib.md5(usedforsecurity=False)


async def md5_of_file(path: Path, *, chunk_size: int = DEFAULT_CHUNK) -> Hasher:
    """A running MD5 over the whole file, ready to be fed more (a resumed download appends)."""
    # The buffer is allocated here, not in the worker thread: what a worker thread allocates
    # stays in its own malloc arena once freed, and each worker of the pool grows one.
    return await asyncio.to_thread(_hash_file, path, bytearray(chunk_size))


async def file_md5(path: Path, *, chunk_size: int = DEFAULT_CHUNK) -> bytes:
    """The raw MD5 digest of a file, read in `chunk_size` pieces off the event loop."""
    return (await md5_of_file(path, chunk_size=chunk_size)).digest()


def md5_base64(digest: bytes) -> str:
    """A raw digest as the base64 text that `Content-MD5` and Imagen's links request expect."""
    return base64.b64encode(digest).decode("ascii")


def read_whole(path: Path) -> bytes:
    """A small file's bytes, opened as safely as every photo is (no links, regular files only)."""
    with open_reader(path) as file:
        return file.readall()


def _hash_file(path: Path, buffer: bytearray) -> Hasher:
    hasher = new_md5()
    # One reusable buffer: the whole file streams through it without a fresh allocation per read.
    view = memoryview(buffer)
    # Never through a link, never blocking on a pipe: a photo swapped for either is refused.
    with open_reader(path) as file:
        while count := file.readinto(buffer):
            hasher.update(view[:count])
    return hasher
