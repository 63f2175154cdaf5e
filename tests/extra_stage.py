"""A throwaway extra stage, to show what adding a stage takes: this one module, with one spec
field, and its client (`tests/extra_stage_client.py`); nothing in `orchestrator/` changes.

`checksum` sits between the edits' download and the export. For every photo it reads the edit
back from disk, checks it against the md5 recorded when it was downloaded, notes the photo with
its service (a ledger client built from ORCH_TEST_CHECKSUM_LOG, so a test can count how often
each photo was done), and checkpoints the photo's `checksum` phase. Its declaration says what
the pipeline does for it: the check that the ledger is configured before anything is sent, the
building of the ledger, its photos' labels, its crash point and its details' model. Run as a
module, it is `orchestrator run` with this stage in the pipeline: `python -m tests.extra_stage
SHOOT` (IMAGEN_* and ORCH_* from the env).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import sys
from pathlib import Path

from orchestrator.config import Settings
from orchestrator.crashpoints import crash_point
from orchestrator.progress import NullProgress
from orchestrator.service.batch import run_batch
from orchestrator.spec import JobSpec
from orchestrator.store.queries import PhaseDone, PhotoRecord
from orchestrator.workflow.context import JobContext, JobFailed
from orchestrator.workflow.journey import PIPELINE
from orchestrator.workflow.photos import PhotoFailed, photo_run
from orchestrator.workflow.planning import RunRequest
from orchestrator.workflow.stage import Connection, Labels, PhaseDetails, Service, Stage
from tests.extra_stage_client import LOG_ENV, CheckLedger, LedgerSettings

PHASE = "checksum"
CHECKSUMMING = "checksumming"
NOT_CONFIGURED = f"--checksum needs {LOG_ENV} (the file checked photos are noted in): set it"


class ChecksumSpec(JobSpec, frozen=True, extra="forbid"):
    """The product's spec with the stage's one field."""

    checksum: bool = False
    """Check every downloaded edit against its recorded md5."""


class ChecksumDetails(PhaseDetails, frozen=True):
    """What the `checksum` phase records per photo."""

    checked_bytes: int
    """How many bytes of the edit were read back."""


def _ledger_settings(_: Settings) -> LedgerSettings:
    return LedgerSettings.from_env()


def _ledger_missing(group: LedgerSettings) -> str | None:
    return None if group.path else NOT_CONFIGURED


def _build_ledger(group: LedgerSettings, _: Connection) -> CheckLedger:
    assert group.path is not None  # built only when configured
    return CheckLedger(Path(group.path))


LEDGER: Service[LedgerSettings, CheckLedger] = Service(
    name="checksum ledger", settings=_ledger_settings, missing=_ledger_missing, build=_build_ledger
)
"""The stage's service, declared once: its settings, what it lacks, how it is built."""


async def checksum_edits(ctx: JobContext) -> None:
    """Check each edit not yet checked, then finish the stage."""
    ledger = ctx.services.find(LEDGER)
    assert ledger is not None  # the pipeline refuses a job asking for the stage without it
    photos = [p for p in await ctx.store.photos(ctx.job.id) if not p.done(PHASE)]
    async with photo_run(
        ctx, phase=PHASE, progress_stage=PHASE, photo_id=_photo_id, describe=_describe
    ) as run:
        failures = await run.run(photos, lambda photo: _check(ctx, ledger, photo))
    if failures:
        raise JobFailed(f"{len(failures)} edits changed on disk (first: {failures[0]})")
    await ctx.finish_stage("every edit checked")


async def _check(ctx: JobContext, ledger: CheckLedger, photo: PhotoRecord) -> PhaseDone:
    edit = photo.phase("edit")
    if edit is None or edit.output is None:
        raise PhotoFailed("it has no edit")
    data = await asyncio.to_thread((Path(ctx.job.edited_dir) / edit.output).read_bytes)
    digest = hashlib.md5(data).hexdigest()
    if digest != edit.md5:
        raise PhotoFailed("its edit changed on disk")
    await ledger.note(photo.file_name)
    crash_point("after_checksum")
    details = ChecksumDetails(checked_bytes=len(data))
    return PhaseDone(PHASE, md5=digest, details=details.model_dump())


def _photo_id(photo: PhotoRecord) -> int:
    return photo.id


def _describe(photo: PhotoRecord) -> str:
    return photo.rel_path


def _wants_checksum(spec: JobSpec) -> bool:
    return isinstance(spec, ChecksumSpec) and spec.checksum


STAGE = Stage(
    name=PHASE,
    states=(CHECKSUMMING,),
    step=checksum_edits,
    phase=PHASE,
    applies=_wants_checksum,
    requires=(LEDGER,),
    labels=Labels(done="checked", phase="edit check"),
    crash_points=("after_checksum",),
    details=ChecksumDetails,
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
