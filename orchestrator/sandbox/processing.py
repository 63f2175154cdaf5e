"""Accepted edits and exports run here: outputs written off the loop, settled on time, called back.

Each run is one background task scheduled when the request is accepted. It writes the outputs
in a worker thread, sleeps until the job's deadline, settles the job and sends the callback.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from pathlib import Path

from orchestrator.sandbox.context import ImagenContext
from orchestrator.sandbox.edit_rules import EditSettings
from orchestrator.sandbox.jobs import Job
from orchestrator.sandbox.outputs import OutputError, write_edit_outputs, write_export_outputs
from orchestrator.sandbox.state import EditInput, MemoryBudget, OutputFile, Project

STOPPED = "The job stopped before it finished"


def freeze_inputs(project: Project, folder: Path) -> list[EditInput]:
    """Hard-link every uploaded file into `folder` (a small one in memory is kept as it is), so
    later uploads cannot change this edit."""
    folder.mkdir(parents=True)
    inputs = []
    for index, stored in enumerate(project.files.values()):
        if not stored.uploads_completed or stored.md5_hex is None:
            continue
        pinned = None
        if stored.data is None:
            pinned = folder / f"{index:06d}"
            os.link(stored.path, pinned)
        inputs.append(
            EditInput(name=stored.name, path=pinned, md5_hex=stored.md5_hex, data=stored.data)
        )
    return inputs


Writer = Callable[[list[EditInput], Path, EditSettings, MemoryBudget], dict[str, OutputFile]]


def release(budget: MemoryBudget, outputs: dict[str, OutputFile]) -> None:
    """Give back the memory of outputs no longer published."""
    for output in outputs.values():
        if output.data is not None:
            budget.give(output.size)


async def _produce(
    write: Writer, context: ImagenContext, project: Project, folder: Path, settings: EditSettings
) -> tuple[dict[str, OutputFile], str | None]:
    budget = context.projects.memory
    try:
        return await asyncio.to_thread(write, project.edit_inputs, folder, settings, budget), None
    except (OutputError, OSError) as error:
        return {}, str(error)


async def _finish(
    context: ImagenContext,
    project: Project,
    job: Job,
    action: str,
    outputs: dict[str, OutputFile],
    failure: str | None,
) -> None:
    """At the deadline: publish the outputs, settle the job, call back."""
    await job.wait_due()
    # A failed run may have been superseded by a new request meanwhile; only the current one
    # publishes its outputs.
    budget = context.projects.memory
    if action == "edit" and project.edit is job:
        release(budget, project.edit_outputs)
        project.edit_outputs = outputs
    elif action == "export" and project.export is job:
        release(budget, project.export_outputs)
        project.export_outputs = outputs
    else:
        release(budget, outputs)
    job.settle(failure)
    settings = project.settings
    if settings is not None and settings.callback_url:
        context.callbacks.notify(
            settings.callback_url,
            project_uuid=project.uuid,
            action=action,
            status="Failed" if failure else "Completed",
        )


def _settle_if_stopped(job: Job) -> None:
    # Cancelled (the sandbox stopped) or crashed: pollers waiting for the outcome must not hang.
    if not job.settled:
        job.settle(STOPPED)


async def run_edit(
    context: ImagenContext, project: Project, job: Job, settings: EditSettings, folder: Path
) -> None:
    """Produce the edit outputs of `project` and settle `job` at its deadline."""
    try:
        outputs, failure = await _produce(write_edit_outputs, context, project, folder, settings)
        await _finish(context, project, job, "edit", outputs, failure)
    finally:
        _settle_if_stopped(job)


async def run_export(
    context: ImagenContext,
    project: Project,
    job: Job,
    settings: EditSettings,
    folder: Path,
    *,
    after: Job,
) -> None:
    """Produce the export of `project` once the edit `after` has succeeded; settle `job` on time."""
    try:
        await after.wait_settled()
        if after.failed:
            await _finish(context, project, job, "export", {}, "The edit failed")
            return
        outputs, failure = await _produce(write_export_outputs, context, project, folder, settings)
        await _finish(context, project, job, "export", outputs, failure)
    finally:
        _settle_if_stopped(job)
