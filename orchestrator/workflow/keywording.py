"""Writing a photo's keywords into its files: shared by the keywording stage, review and the
`keywords` command, so that each replaces the words the last one wrote and keeps the others.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence
from pathlib import Path

from orchestrator.integrations.keywords import (
    INSTALL_HINT,
    ExiftoolMissing,
    KeywordFiles,
    KeywordWriteFailed,
    writable,
)
from orchestrator.rules.keywords import hierarchy
from orchestrator.store.models import Job
from orchestrator.workflow.photos import PhotoFailed
from orchestrator.workflow.tag_details import FileRef, TagDetails


async def write_keywords(
    files: KeywordFiles, job: Job, details: TagDetails, keywords: Sequence[str]
) -> TagDetails:
    """Make the photo's files carry `keywords` instead of the ones `details` records, keeping
    the words the files had before we came; the details with those keywords and the first
    file's new md5."""
    before = [w for w in details.keywords if w not in keywords]
    # The shoot's own words stay whatever the review makes of Imagga's.
    theirs = {w.casefold() for w in (*details.file_keywords, *shoot_words(job))}
    categories = list(details.categories or ())
    dropped = [w for w in before if w.casefold() not in theirs]
    paths = [_file_path(job, ref) for ref in details.files]
    try:
        for path in paths:
            await files.write(
                path,
                add=keywords,
                remove=dropped,
                hierarchy=hierarchy(keywords, categories),
                remove_hierarchy=hierarchy(dropped, categories),
            )
    except KeywordWriteFailed as exc:
        raise PhotoFailed(str(exc)) from None
    content_md5 = await asyncio.to_thread(_md5_of, paths[0])
    return details.model_copy(update={"keywords": tuple(keywords), "content_md5": content_md5})


def shoot_words(job: Job) -> tuple[str, ...]:
    """The shoot's own words its job writes into every photo (`--keyword`)."""
    words = job.options.get("keywords") or ()
    return tuple(str(word) for word in words)


async def write_shoot_keywords(
    files: KeywordFiles | None, path: Path, *, add: Sequence[str], remove: Sequence[str] = ()
) -> bool:
    """Put the shoot's own words into one output file (`remove`: words it no longer has),
    beside whatever else the file holds; whether the file changed (False: a kind of file
    that holds no keywords). PhotoFailed when exiftool is missing or refuses."""
    if not (add or remove) or not writable(path):
        return False
    if files is None:
        raise PhotoFailed(f"{path.name}: the shoot's keywords need exiftool: {INSTALL_HINT}")
    try:
        await files.write(path, add=add, remove=remove)
    except (ExiftoolMissing, KeywordWriteFailed) as exc:
        raise PhotoFailed(str(exc)) from None
    return True


def _file_path(job: Job, ref: FileRef) -> Path:
    folder = job.exported_dir if ref.kind == "export" else job.edited_dir
    return Path(folder) / ref.name


def _md5_of(path: Path) -> str:
    digest = hashlib.md5()
    with path.open("rb") as stream:
        while chunk := stream.read(1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()
