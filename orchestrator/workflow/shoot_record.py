"""The small record a shoot folder keeps of the jobs that edited it (`.orchestrator/jobs.json`).

It travels with the folder, so a shoot is recognised even by a database that never saw it (a
new `ORCH_DATABASE_URL`, a new HOME, the folder copied elsewhere): planning then refuses to
redo the shoot silently, and the downloads know whose outputs the folder holds.
"""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path

from pydantic import BaseModel, ValidationError

RECORD = Path(".orchestrator") / "jobs.json"
"""Where in the shoot folder the record is kept (hidden, so the scan never reads it)."""


class RecordedJob(BaseModel, frozen=True):
    """One job that edited the shoot, and the database that holds it."""

    job_id: str
    image_type: str
    project_name: str
    project_uuid: str | None = None
    database: str
    """The job database's URL, its password hidden."""
    created_at: datetime


class ShootRecord(BaseModel):
    """Every job that edited the shoot, oldest first."""

    version: int = 1
    jobs: list[RecordedJob] = []


def read_record(folder: Path) -> ShootRecord:
    """The folder's record; an empty one if there is none or it cannot be read as one."""
    try:
        return ShootRecord.model_validate_json((folder / RECORD).read_bytes())
    except (OSError, ValidationError, ValueError):
        return ShootRecord()


def add_job(folder: Path, job: RecordedJob) -> None:
    """Add (or update, by job id) a job in the folder's record; raises OSError if unwritable."""
    record = read_record(folder)
    record.jobs = [j for j in record.jobs if j.job_id != job.job_id] + [job]
    path = folder / RECORD
    path.parent.mkdir(exist_ok=True)
    scratch = path.with_suffix(".tmp")
    scratch.write_text(json.dumps(record.model_dump(mode="json"), indent=2) + "\n")
    os.replace(scratch, path)  # a crash leaves the old record or the new one, never half


def set_project(folder: Path, job_id: str, project_uuid: str) -> None:
    """Note the Imagen project a recorded job created; nothing if the job is not recorded."""
    for job in read_record(folder).jobs:
        if job.job_id == job_id:
            add_job(folder, job.model_copy(update={"project_uuid": project_uuid}))
