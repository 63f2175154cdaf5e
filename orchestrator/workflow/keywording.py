"""Writing a photo's keywords into its files: shared by the keywording stage, review and the
`keywords` command, so that each replaces the words the last one wrote and keeps the others.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from orchestrator.integrations.imagga_models import Category
from orchestrator.integrations.keywords import KeywordFiles, KeywordWriteFailed
from orchestrator.rules.keywords import hierarchy
from orchestrator.store.models import Job
from orchestrator.workflow.photos import PhotoFailed


async def write_keywords(
    files: KeywordFiles, job: Job, details: dict[str, Any], keywords: Sequence[str]
) -> None:
    """Make the photo's files carry `keywords` instead of the ones `details` records, keeping
    the words the files had before we came; `details` is updated (keywords, content_md5)."""
    before = [w for w in details.get("keywords", []) if w not in keywords]
    theirs = {w.casefold() for w in details.get("file_keywords", [])}
    categories = [
        Category(str(c["name"]), float(c["confidence"])) for c in details.get("categories") or []
    ]
    dropped = [w for w in before if w.casefold() not in theirs]
    paths = [_file_path(job, ref) for ref in details["files"]]
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
    details["keywords"] = list(keywords)
    details["content_md5"] = await asyncio.to_thread(_md5_of, paths[0])


def _file_path(job: Job, ref: dict[str, str]) -> Path:
    folder = job.exported_dir if ref["kind"] == "export" else job.edited_dir
    return Path(folder) / ref["name"]


def _md5_of(path: Path) -> str:
    digest = hashlib.md5()
    with path.open("rb") as stream:
        while chunk := stream.read(1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()
