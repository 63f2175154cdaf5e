"""The fake Imagen's processing routes under /v1: edit, export, their status and result links.

Repeats: an edit (or export) request is accepted again only after the previous one Failed; while
one is pending, running or completed a repeat answers 400 and is counted in the ledger as
`edit_requests_rejected` (`export_requests_rejected`), never as an accepted request.
"""

from __future__ import annotations

import time

from aiohttp import web

from orchestrator.sandbox.context import IMAGEN, SKY_TEMPLATES
from orchestrator.sandbox.edit_rules import EditRuleError, parse_edit_request
from orchestrator.sandbox.imagen_api import API_PREFIX, find_project, json_body
from orchestrator.sandbox.jobs import Job
from orchestrator.sandbox.processing import freeze_inputs, release, run_edit, run_export
from orchestrator.sandbox.responses import data, detail_error, message_error
from orchestrator.sandbox.signing import storage_path


def _blocks_repeat(job: Job | None) -> bool:
    return job is not None and not (job.settled and job.failed)


async def start_edit(request: web.Request) -> web.Response:
    """POST /v1/projects/{uuid}/edit with Imagen's flat JSON (any Content-Type)"""
    context = request.app[IMAGEN]
    project = find_project(request)
    body = await json_body(request)
    # From here to the answer nothing awaits, so two racing requests cannot both be accepted.
    if _blocks_repeat(project.edit):
        project.edit_requests_rejected += 1
        return message_error(400, "An edit was already requested for this project")
    if not project.image_type or not project.number_of_images:
        return message_error(400, "No uploaded images in this project")
    try:
        settings = parse_edit_request(
            body,
            profiles=context.profiles,
            image_type=project.image_type,
            template_ids=SKY_TEMPLATES.keys(),
        )
    except EditRuleError as error:
        return message_error(400, str(error))
    project.edit_attempts += 1
    folder = project.directory / f"edit-{project.edit_attempts}"
    project.edit_inputs = freeze_inputs(project, folder / "inputs")
    project.edit_skipped = [name for name, f in project.files.items() if not f.uploads_completed]
    project.settings = settings
    project.edit_requests += 1
    release(context.projects.memory, project.edit_outputs)
    release(context.projects.memory, project.export_outputs)
    project.edit_outputs, project.export_outputs = {}, {}
    duration = context.config.edit_seconds
    edit = project.edit = Job(starts_at=time.monotonic(), duration=duration)
    context.tasks.spawn(run_edit(context, project, edit, settings, folder / "outputs"))
    project.export = None
    if settings.export:
        project.export_requests += 1
        export = project.export = Job(starts_at=edit.deadline, duration=duration)
        context.tasks.spawn(
            run_export(context, project, export, settings, folder / "export", after=edit)
        )
    return data({"message": "Edit request received"})


async def start_export(request: web.Request) -> web.Response:
    """POST /v1/projects/{uuid}/export (no body needed)"""
    context = request.app[IMAGEN]
    project = find_project(request)
    edit, settings = project.edit, project.settings
    if edit is None or settings is None or (await edit.status()).status != "Completed":
        return message_error(400, "The edit of this project has not completed")
    if _blocks_repeat(project.export):
        project.export_requests_rejected += 1
        return message_error(400, "An export was already requested for this project")
    project.export_requests += 1
    folder = (
        project.directory / f"edit-{project.edit_attempts}" / f"export-{project.export_requests}"
    )
    export = project.export = Job(starts_at=time.monotonic(), duration=context.config.edit_seconds)
    context.tasks.spawn(run_export(context, project, export, settings, folder, after=edit))
    return data({"message": "Export request received"})


async def _status(job: Job | None, action: str) -> web.Response:
    if job is None:
        # Clients rely on this 404 to learn that the request was never accepted.
        return detail_error(404, f"No {action} requested for this project")
    status = await job.status()
    return data({"status": status.status, "progress": status.progress, "details": status.details})


async def edit_status(request: web.Request) -> web.Response:
    """GET /v1/projects/{uuid}/edit/status"""
    return await _status(find_project(request).edit, "edit")


async def export_status(request: web.Request) -> web.Response:
    """GET /v1/projects/{uuid}/export/status"""
    return await _status(find_project(request).export, "export")


async def _links(request: web.Request, area: str) -> web.Response:
    project = find_project(request)
    job = project.edit if area == "edit" else project.export
    if job is None:
        return message_error(400, f"No {area} requested for this project")
    status = await job.status()
    if status.status != "Completed":
        return message_error(409, f"The {area} is not completed (status: {status.status})")
    signer, origin = request.app[IMAGEN].signer, request.url.origin()
    links = [
        {
            "file_name": name,
            "download_link": signer.sign(origin, "GET", storage_path(project.uuid, area, name)),
        }
        for name in project.outputs(area)
    ]
    return data({"files_list": links})


async def edit_links(request: web.Request) -> web.Response:
    """GET /v1/projects/{uuid}/edit/get_temporary_download_links"""
    return await _links(request, "edit")


async def export_links(request: web.Request) -> web.Response:
    """GET /v1/projects/{uuid}/export/get_temporary_download_links"""
    return await _links(request, "export")


def add_routes(router: web.UrlDispatcher) -> None:
    """Register the processing routes."""
    base = f"{API_PREFIX}/projects/{{uuid}}"
    router.add_post(f"{base}/edit", start_edit)
    router.add_get(f"{base}/edit/status", edit_status)
    router.add_get(f"{base}/edit/get_temporary_download_links", edit_links)
    router.add_post(f"{base}/export", start_export)
    router.add_get(f"{base}/export/status", export_status)
    router.add_get(f"{base}/export/get_temporary_download_links", export_links)
