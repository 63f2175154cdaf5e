"""Stage: the job's Imagen project, created exactly once under its deterministic name."""

from __future__ import annotations

import asyncio
from pathlib import Path

from orchestrator.states import JobState
from orchestrator.workflow.context import JobContext
from orchestrator.workflow.intent import call_once, crash_points
from orchestrator.workflow.shoot_record import set_project
from orchestrator.workflow.stage import Stage


async def create_project(ctx: JobContext) -> None:
    """Find the project by name (a crash may have created it already) or create it."""
    name = ctx.job.project_name
    imagen = ctx.services.imagen
    uuid = await call_once(
        ctx,
        action="create_project",
        what=f"the creation of project {name}",
        arrived=lambda: imagen.find_project_uuid(name),
        call=lambda: imagen.create_project(name),
        found=f"found project {name} created before an interruption",
    )
    await ctx.record_project(uuid, f"project {uuid}")
    try:
        await asyncio.to_thread(set_project, Path(ctx.job.source), ctx.job.id, uuid)
    except OSError as exc:
        ctx.note(
            f"cannot note the project in the shoot's record: {exc.strerror or exc}", level="warn"
        )


STAGE = Stage(
    name="project",
    states=(JobState.QUEUED,),
    step=create_project,
    crash_points=crash_points("create_project"),
)
