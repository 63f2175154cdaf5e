"""Stage: the job's Imagen project, created exactly once under its deterministic name."""

from __future__ import annotations

from orchestrator.crashpoints import crash_point
from orchestrator.imagen.errors import ImagenAmbiguous, ImagenUnavailable
from orchestrator.workflow.context import JobContext
from orchestrator.workflow.states import JobState

AMBIGUOUS_CHECKS = 5
"""How many times an ambiguous create is checked and tried again before giving up for now."""


async def create_project(ctx: JobContext) -> None:
    """Find the project by name (a crash may have created it already) or create it."""
    name = ctx.job.project_name
    for attempt in range(1, AMBIGUOUS_CHECKS + 1):
        uuid = await ctx.client.find_project_uuid(name)
        if uuid is not None:
            await ctx.event("resume", f"found project {name} created before an interruption",
                            project_uuid=uuid)
            break
        try:
            crash_point("before_create_project")
            uuid = await ctx.client.create_project(name)
            crash_point("after_create_project")
            break
        except ImagenAmbiguous as exc:
            await ctx.event("retry", f"project creation unconfirmed ({exc}); checking by name",
                            attempt=attempt)
            await ctx.nap(min(2.0**attempt, 30.0))
    else:
        raise ImagenUnavailable(f"could not confirm whether project {name} was created; "
                                "run again to check")
    await ctx.advance(JobState.PROJECT_CREATED, f"project {uuid}", project_uuid=uuid)
