"""Writing a photo's keywords into its files: shared by the keywording stage, review and the
`keywords` command, so that each replaces the words the last one wrote and keeps the others.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence
from pathlib import Path

from orchestrator.integrations.keywords import (
    EMBEDDED,
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
    files: KeywordFiles,
    job: Job,
    details: TagDetails,
    keywords: Sequence[str],
    *,
    retired: TagDetails | None = None,
) -> TagDetails:
    """Make the photo's files carry `keywords` instead of the ones `details` records, keeping
    the words the files had before we came, with the analyses' words (`Colors|…`, `People|…`)
    and face regions; the details with those keywords and the first file's new md5.

    `retired`: the details as the files carry them now, when the analyses' words changed since
    (a person named): its words that are no longer wanted are taken out."""
    before = [w for w in details.keywords if w not in keywords]
    # The shoot's own words stay whatever the review makes of Imagga's.
    theirs = {w.casefold() for w in (*details.file_keywords, *shoot_words(job))}
    categories = list(details.categories or ())
    dropped = [w for w in before if w.casefold() not in theirs]
    extra, extra_paths = details.analysis_words, details.analysis_paths
    gone = [w for w in (retired.analysis_words if retired else ()) if w not in extra]
    gone_paths = [p for p in (retired.analysis_paths if retired else ()) if p not in extra_paths]
    wanted = [*keywords, *(w for w in extra if w not in keywords)]
    paths = [_file_path(job, ref) for ref in details.files]
    try:
        for path in paths:
            await files.write(
                path,
                add=wanted,
                remove=[*dropped, *(w for w in gone if w.casefold() not in theirs)],
                hierarchy=hierarchy(keywords, categories) + extra_paths,
                remove_hierarchy=hierarchy(dropped, categories) + gone_paths,
            )
            if details.faces is not None and path.suffix.lower() in EMBEDDED:
                await files.write_regions(path, [face.area() for face in details.faces])
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
