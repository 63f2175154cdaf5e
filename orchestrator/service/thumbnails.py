"""Small copies of a job's photos for the review grid, and when each photo was taken.

A thumbnail is made once per photo and version (the md5 of the JPEG it is made from) with
Pillow: the JPEG decoded at a reduced scale, turned upright by its EXIF orientation, fitted in
`THUMB_SIDE` pixels and saved at a quality that keeps it a few tens of KB. It is written into a
cache folder (beside a SQLite database, else under the user's cache folder) by a rename, so a
half-made file is never served, and served from there ever after. A few are made at once, on
threads: a grid of thousands asking at once never starves the server's loop.

Capture times (EXIF DateTimeOriginal, else DateTime) put the grid in the order the day was
shot; they are read from the same JPEG's header (a fraction of a millisecond each) and kept,
per job, in the cache folder too.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from sqlalchemy.engine import URL, make_url

log = logging.getLogger("orchestrator.thumbnails")

THUMB_SIDE = 400
"""Long side of a thumbnail in pixels: a 200 px tile on a screen of twice the density."""
THUMB_QUALITY = 72
MAKING_AT_ONCE = 2
"""Thumbnails made at once (each a thread decoding a JPEG)."""
JOB_ID = re.compile(r"[0-9a-f]{32}")
"""A job's id as the store makes them: the only names a cache folder of jobs holds."""
EXIF_IFD = 0x8769
DATE_TIME_ORIGINAL = 0x9003
DATE_TIME = 0x0132
EXIF_TIME = "%Y:%m:%d %H:%M:%S"


class ThumbnailFailed(RuntimeError):
    """The photo's JPEG cannot be read as a picture; the message says why."""


def cache_folder(database_url: str | URL) -> Path:
    """Where thumbnails of this database's jobs are kept: beside a SQLite file
    (`jobs.db-thumbnails/`), else under `$XDG_CACHE_HOME/orchestrator/` by the database's
    address (without its password)."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        database = Path(str(url.database))
        return database.with_name(database.name + "-thumbnails")
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    named = url.set(password=None).render_as_string(hide_password=True)
    digest = hashlib.sha256(named.encode()).hexdigest()[:16]
    return base / "orchestrator" / "thumbnails" / digest


def make_thumbnail(data: bytes) -> bytes:
    """A JPEG of at most `THUMB_SIDE` px, upright, from the JPEG `data`; or ThumbnailFailed."""
    from PIL import Image, ImageOps, UnidentifiedImageError  # loaded when used (startup cost)

    try:
        with Image.open(io.BytesIO(data)) as image:
            image.draft("RGB", (THUMB_SIDE, THUMB_SIDE))  # decode at 1/2, 1/4 or 1/8 scale
            upright = ImageOps.exif_transpose(image)
            upright = upright.convert("RGB")
            upright.thumbnail((THUMB_SIDE, THUMB_SIDE), Image.Resampling.LANCZOS)
            out = io.BytesIO()
            upright.save(out, "JPEG", quality=THUMB_QUALITY, optimize=True, progressive=True)
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as exc:
        raise ThumbnailFailed(f"not a picture Pillow can read: {exc}") from None
    return out.getvalue()


def capture_time(file: BinaryIO) -> datetime | None:
    """When the photo was taken, by its EXIF (DateTimeOriginal, else DateTime), if it says;
    only the file's header is read."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(file) as image:
            exif = image.getexif()
            found = exif.get_ifd(EXIF_IFD).get(DATE_TIME_ORIGINAL) or exif.get(DATE_TIME)
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError):
        return None
    if not isinstance(found, str):
        return None
    try:
        # The camera's wall clock, zone unknown: kept as if UTC, for ordering only.
        return datetime.strptime(found.strip("\x00 ")[:19], EXIF_TIME).replace(tzinfo=UTC)
    except ValueError:
        return None


def _write_atomically(path: Path, body: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".part-")
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(body)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


Opener = Callable[[str, str], BinaryIO]
"""Opens the JPEG named (folder, name), refusing with a LookupError what may not be read (a
name leaving its folder, a link): the web page's own `open_output`."""
PhotoJpeg = tuple[int, str, str, str]
"""A photo's JPEG: (photo id, version, folder, name in it)."""


def cached_jobs(folder: Path) -> list[str]:
    """The jobs that have thumbnails kept in `folder`."""
    try:
        return [entry.name for entry in folder.iterdir() if JOB_ID.fullmatch(entry.name)]
    except FileNotFoundError:
        return []


def forget_jobs(folder: Path, job_ids: Iterable[str]) -> None:
    """Remove the thumbnails and capture times kept for these jobs."""
    for job_id in job_ids:
        if JOB_ID.fullmatch(job_id):
            shutil.rmtree(folder / job_id, ignore_errors=True)


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
        safe = "".join(c for c in version if c.isalnum())[:32] or "0"
        return self.folder / job_id / f"{photo_id}-{safe}.jpg"

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
        with contextlib.suppress(FileNotFoundError):
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
                    body = make_thumbnail(file.read())
                try:
                    _write_atomically(path, body)
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
            _write_atomically(self._times_path(job_id), json.dumps(times).encode())
        except OSError as exc:
            log.warning("capture times not kept", extra={"job_id": job_id, "why": str(exc)})


def _key(photo_id: int, version: str) -> str:
    return f"{photo_id}:{version}"
