"""The ledger: what the sandbox saw, as JSON, so tests can check what a client really did."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from orchestrator.sandbox.context import IMAGEN
from orchestrator.sandbox.faults import FAULTS
from orchestrator.sandbox.imagga import IMAGGA
from orchestrator.sandbox.imgix import IMGIX
from orchestrator.sandbox.state import Project


def _project(project: Project) -> dict[str, Any]:
    return {
        "project_uuid": project.uuid,
        "name": project.name,
        "image_type": project.image_type,
        "edit_requests": project.edit_requests,
        "edit_requests_rejected": project.edit_requests_rejected,
        "export_requests": project.export_requests,
        "export_requests_rejected": project.export_requests_rejected,
        "files": {
            stored.name: {
                "uploads_completed": stored.uploads_completed,
                "size": stored.size,
                "md5": stored.md5_hex,
                "links_issued": stored.links_issued,
            }
            for stored in project.files.values()
        },
        "edit_inputs": [source.name for source in project.edit_inputs],
        "edit_skipped": list(project.edit_skipped),
        "edit_outputs": {name: out.md5_hex for name, out in project.edit_outputs.items()},
        "export_outputs": {name: out.md5_hex for name, out in project.export_outputs.items()},
        "downloads_completed": {
            area: dict(counts) for area, counts in project.downloads_completed.items()
        },
    }


def build_ledger(app: web.Application) -> dict[str, Any]:
    """Everything the sandbox recorded, as `GET /_sandbox/ledger` answers it."""
    imagen = app[IMAGEN]
    callbacks = imagen.callbacks
    return {
        "projects": [_project(project) for project in imagen.projects.all()],
        "faults": dict(app[FAULTS].injected),
        "callbacks_sent": callbacks.sent,
        "callbacks_failed": callbacks.failed,
        "callbacks": list(callbacks.log),
        "imagga": app[IMAGGA].ledger(),
        "imgix": app[IMGIX].ledger(),
    }


async def ledger_route(request: web.Request) -> web.Response:
    """GET /_sandbox/ledger (no auth, never faulted)"""
    return web.json_response(build_ledger(request.app))
