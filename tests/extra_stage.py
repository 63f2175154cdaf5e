"""A throwaway extra stage, to show what adding a stage takes: this one module and one spec field.

`checksum` sits between the edits' download and the export. For every photo it reads the edit
back from disk, checks it against the md5 recorded when it was downloaded, notes the photo in
the file named by ORCH_TEST_CHECKSUM_LOG (so a test can count how often each photo was done),
and checkpoints the photo's `checksum` phase. Run as a module, it is `orchestrator run` with this
stage in the pipeline: `python -m tests.extra_stage SHOOT` (IMAGEN_* and ORCH_* from the env).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import sys
from pathlib import Path

from orchestrator.config import Settings
from orchestrator.crashpoints import crash_point
from orchestrator.progress import NullProgress
from orchestrator.service.batch import run_batch
from orchestrator.spec import JobSpec
from orchestrator.store.queries import PhaseDone, PhotoRecord
from orchestrator.workflow.context import JobContext, JobFailed
from orchestrator.workflow.photos import PhotoFailed, photo_run
from orchestrator.workflow.pipeline import PIPELINE
from orchestrator.workflow.planning import RunRequest
from orchestrator.workflow.stage import Stage

PHASE = "checksum"
CHECKSUMMING = "checksumming"
LOG_ENV = "ORCH_TEST_CHECKSUM_LOG"


class ChecksumSpec(JobSpec, frozen=True, extra="forbid"):
    """The product's spec with the stage's one field."""

    checksum: bool = False
    """Check every downloaded edit against its recorded md5."""


async def checksum_edits(ctx: JobContext) -> None:
    """Check each edit not yet checked, then finish the stage."""
    photos = [p for p in await ctx.store.photos(ctx.job.id) if not p.done(PHASE)]
    async with photo_run(
        ctx, phase=PHASE, progress_stage=PHASE, photo_id=_photo_id, describe=_describe
    ) as run:
        failures = await run.run(photos, lambda photo: _check(ctx, photo))
    if failures:
        raise JobFailed(f"{len(failures)} edits changed on disk (first: {failures[0]})")
    await ctx.finish_stage("every edit checked")


async def _check(ctx: JobContext, photo: PhotoRecord) -> PhaseDone:
    edit = photo.phase("edit")
    if edit is None or edit.output is None:
        raise PhotoFailed("it has no edit")
    path = Path(ctx.job.edited_dir) / edit.output
    digest = await asyncio.to_thread(_md5, path)
    if digest != edit.md5:
        raise PhotoFailed("its edit changed on disk")
    await asyncio.to_thread(_note, photo.file_name)
    crash_point("after_checksum")
    return PhaseDone(PHASE, md5=digest)


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def _note(name: str) -> None:
    """Count the photo as checked, durably, before its checkpoint (a kill may fall between)."""
    with open(os.environ[LOG_ENV], "a") as log:
        log.write(name + "\n")
        log.flush()
        os.fsync(log.fileno())


def _photo_id(photo: PhotoRecord) -> int:
    return photo.id


def _describe(photo: PhotoRecord) -> str:
    return photo.rel_path


def _wants_checksum(spec: JobSpec) -> bool:
    return isinstance(spec, ChecksumSpec) and spec.checksum


STAGE = Stage(
    name=PHASE, states=(CHECKSUMMING,), step=checksum_edits, phase=PHASE, applies=_wants_checksum
)
CHECKSUM_PIPELINE = PIPELINE.with_stage(STAGE, after="download_edits", spec_model=ChecksumSpec)


def main(shoot: str) -> int:
    """`orchestrator run SHOOT --profile 2001 --export` with the checksum stage; exit code."""
    request = RunRequest(
        source=Path(shoot), profiles=["1001", "2001"], spec=ChecksumSpec(export=True, checksum=True)
    )
    result = asyncio.run(
        run_batch(request, Settings(concurrency=4), NullProgress(), pipeline=CHECKSUM_PIPELINE)
    )
    sys.stdout.write(
        json.dumps(
            [{"id": o.job.id, "state": o.job.state, "paused": o.paused} for o in result.outcomes]
        )
        + "\n"
    )
    return result.exit_code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
