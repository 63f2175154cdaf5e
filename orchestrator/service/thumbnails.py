"""The review page's thumbnails and capture times of every job: served from the cache folder
when made ahead (integrations/previews.py, by the keywording stage of a job to review), else
made on demand and kept there.

A few thumbnails are made at once, on threads: a grid of thousands asking at once never
starves the server's loop. Capture times the keywording stage did not record (an older job,
or one tagged without `--review`) are read from the JPEGs' headers once and kept, per job, in
the cache folder (`captured.json`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

from orchestrator.integrations.previews import (
    JOB_ID,
    capture_time,
    make_thumbnail,
    thumbnail_path,
    write_atomically,
)
from orchestrator.workflow.review_previews import PhotoJpeg

log = logging.getLogger("orchestrator.thumbnails")

MAKING_AT_ONCE = 2
"""Thumbnails made at once (each a thread decoding a JPEG)."""

Opener = Callable[[str, str], BinaryIO]
"""Opens the JPEG named (folder, name), refusing with a LookupError what may not be read (a
name leaving its folder, a link): the web page's own `open_output`."""


class Thumbnails:
    """The thumbnails and capture times of every job, kept under `folder`."""

    def __init__(self, folder: Path, opener: Opener) -> None:
        self.folder = folder
        self._open = opener
        self._making = asyncio.Semaphore(MAKING_AT_ONCE)
        self._pending: dict[Path, asyncio.Future[bytes]] = {}
        self._times: dict[str, dict[str, str | None]] = {}

    def path(self, job_id: str, photo_id: int, version: str) -> Path:
        """Where the thumbnail of this version of the photo is kept."""
        return thumbnail_path(self.folder, job_id, photo_id, version)

    async def kept(self, job_id: str, photo_id: int, version: str) -> bytes | None:
        """The thumbnail of this version of the photo if it was made already (the page then
        serves it without reading the database), else None."""
        if not JOB_ID.fullmatch(job_id):
            return None
        try:
            return await asyncio.to_thread(self.path(job_id, photo_id, version).read_bytes)
        except OSError:
            return None

    async def thumbnail(self, job_id: str, image: PhotoJpeg) -> bytes:
        """The thumbnail's bytes, made from the photo's JPEG unless it was made before;
        LookupError if the JPEG may not be read, ThumbnailFailed if it is no picture."""
        photo_id, version, folder, name = image
        path = self.path(job_id, photo_id, version)
        with contextlib.suppress(OSError):  # not made yet, or the cache cannot be read: made
            return await asyncio.to_thread(path.read_bytes)
        running = self._pending.get(path)
        if running is None:
            running = asyncio.ensure_future(self._make(path, folder, name))
            self._pending[path] = running
            running.add_done_callback(lambda _: self._pending.pop(path, None))
        return await asyncio.shield(running)

    async def _make(self, path: Path, folder: str, name: str) -> bytes:
        async with self._making:

            def make() -> bytes:
                with self._open(folder, name) as file:
                    body = make_thumbnail(file)
                try:
                    write_atomically(path, body)
                except OSError as exc:  # served all the same; made again next time
                    log.warning("thumbnail not kept", extra={"path": str(path), "why": str(exc)})
                return body

            return await asyncio.to_thread(make)

    async def capture_times(
        self, job_id: str, images: Iterable[PhotoJpeg]
    ) -> dict[int, datetime | None]:
        """When each photo was taken, by its JPEG; read from the JPEGs once, then from the
        job's `captured.json`."""
        known = self._times.get(job_id)
        if known is None:
            known = await asyncio.to_thread(self._load_times, job_id)
            self._times[job_id] = known
        wanted = list(images)
        missing = [entry for entry in wanted if _key(entry[0], entry[1]) not in known]
        if missing:
            found = await asyncio.to_thread(self._read_times, missing)
            known.update(found)
            await asyncio.to_thread(self._save_times, job_id, known)
        result = {}
        for pid, version, _, _ in wanted:
            text = known.get(_key(pid, version))
            result[pid] = datetime.fromisoformat(text) if text else None
        return result

    def _read_times(self, images: list[PhotoJpeg]) -> dict[str, str | None]:
        found: dict[str, str | None] = {}
        for photo_id, version, folder, name in images:
            try:
                with self._open(folder, name) as file:
                    taken = capture_time(file)
            except (LookupError, OSError):  # not there, or not to be read: by name then
                taken = None
            found[_key(photo_id, version)] = taken.isoformat() if taken else None
        return found

    def _times_path(self, job_id: str) -> Path:
        return self.folder / job_id / "captured.json"

    def _load_times(self, job_id: str) -> dict[str, str | None]:
        try:
            loaded = json.loads(self._times_path(job_id).read_text())
        except (OSError, ValueError):
            return {}
        if not isinstance(loaded, dict):
            return {}
        return {k: v for k, v in loaded.items() if isinstance(v, str | None)}

    def _save_times(self, job_id: str, times: dict[str, str | None]) -> None:
        try:
            write_atomically(self._times_path(job_id), json.dumps(times).encode())
        except OSError as exc:
            log.warning("capture times not kept", extra={"job_id": job_id, "why": str(exc)})


def _key(photo_id: int, version: str) -> str:
    return f"{photo_id}:{version}"
