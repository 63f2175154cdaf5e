"""What the review page shows of a photo before its JPEG: a small copy, and when it was taken.

A thumbnail is made once per photo and version (the md5 of the JPEG it is made from) with
Pillow: the JPEG decoded at a reduced scale, turned upright by its EXIF orientation, fitted in
`THUMB_SIDE` pixels and saved at a quality that keeps it a few tens of KB. It is written into a
cache folder (beside a SQLite database, else under the user's cache folder) by a rename, so a
half-made file is never served. The keywording stage makes it as each photo of a job to review
is tagged; the page makes the ones it does not find (service/thumbnails.py).

Capture times (EXIF DateTimeOriginal, else DateTime) put the grid in the order the day was
shot; they are read from the JPEG's header (a fraction of a millisecond each).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
import shutil
import tempfile
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from sqlalchemy.engine import URL, make_url

THUMB_SIDE = 400
"""Long side of a thumbnail in pixels: a 200 px tile on a screen of twice the density."""
THUMB_QUALITY = 72
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


def thumbnail_path(folder: Path, job_id: str, photo_id: int, version: str) -> Path:
    """Where the thumbnail of this version of the job's photo is kept under `folder`."""
    safe = "".join(c for c in version if c.isalnum())[:32] or "0"
    return folder / job_id / f"{photo_id}-{safe}.jpg"


def make_thumbnail(file: BinaryIO) -> bytes:
    """A JPEG of at most `THUMB_SIDE` px, upright, from the JPEG `file`; or ThumbnailFailed."""
    from PIL import Image, ImageOps, UnidentifiedImageError  # loaded when used (startup cost)

    try:
        with Image.open(file) as image:
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


def write_atomically(path: Path, body: bytes) -> None:
    """Write `body` to `path` through a temporary name and a rename (never half there)."""
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
