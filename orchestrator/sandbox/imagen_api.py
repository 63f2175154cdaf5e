"""The fake Imagen's account routes under /v1: auth, profiles, projects and upload links.

Errors come in both of Imagen's shapes on purpose (`{"detail": ...}` for auth, lookups and
query errors, `{"error": {"message": ...}}` for rejected bodies), so clients must read both.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import time
from collections import Counter
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from orchestrator.sandbox.context import IMAGEN, SKY_TEMPLATES, ImagenContext
from orchestrator.sandbox.outputs import export_output_name
from orchestrator.sandbox.responses import data, detail_error, fail, message_error
from orchestrator.sandbox.signing import storage_path
from orchestrator.sandbox.state import DuplicateProjectName, Project, image_type_of

API_PREFIX = "/v1"
CUSTOMER_REFERENCE_ID = 1  # the one account the sandbox serves
MAX_NAME_LENGTH = 255


@web.middleware
async def imagen_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Check `x-api-key` on every /v1 route and answer unknown routes in Imagen's JSON."""
    if not request.path.startswith(API_PREFIX + "/"):
        return await handler(request)
    key = request.headers.get("x-api-key", "").strip()
    pinned = request.app[IMAGEN].config.api_key
    if not key or (pinned is not None and not hmac.compare_digest(key.encode(), pinned.encode())):
        return detail_error(401, "Invalid API key")
    try:
        return await handler(request)
    except web.HTTPNotFound:
        return detail_error(404, "Not Found")
    except web.HTTPMethodNotAllowed:
        return detail_error(405, "Method Not Allowed")


async def json_body(request: web.Request) -> Any:
    """The JSON body whatever the Content-Type (the SDK sends an empty one); None if empty."""
    text = await request.text()
    if not text.strip():
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        fail(message_error(400, "The request body is not valid JSON"))


def find_project(request: web.Request) -> Project:
    """The project named by the route's `uuid`, or a 404 answer."""
    project = request.app[IMAGEN].projects.get(request.match_info["uuid"])
    if project is None:
        fail(detail_error(404, "Project not found"))
    return project


def project_info(project: Project, context: ImagenContext) -> dict[str, Any]:
    """A project as `GET /projects` lists it (every field the official SDK requires)."""
    now = time.monotonic()
    settings = project.settings
    profile = context.profiles.get(settings.profile_key) if settings else None
    return {
        "project_id": project.project_id,
        "project_uuid": project.uuid,
        "name": project.name,
        "status": project.edit.status_at(now).status if project.edit else "Created",
        "created_at": project.created_at.isoformat(),
        "number_of_images": project.number_of_images,
        "profile": profile.name if profile else None,
        "ai_tools": list(settings.tools) if settings else [],
        "customer_reference_id": CUSTOMER_REFERENCE_ID,
        "thumbnail_src": None,
        "export_status": project.export.status_at(now).status if project.export else None,
    }


async def list_profiles(request: web.Request) -> web.Response:
    """GET /v1/profiles"""
    profiles = request.app[IMAGEN].config.profiles
    return data(
        {
            "profiles": [
                {
                    "profile_key": profile.key,
                    "profile_name": profile.name,
                    "profile_type": profile.profile_type,
                    "image_type": profile.image_type,
                }
                for profile in profiles
            ]
        }
    )


async def create_project(request: web.Request) -> web.Response:
    """POST /v1/projects/ with an optional {"name": ...}"""
    body = await json_body(request)
    if body is not None and not isinstance(body, dict):
        return message_error(400, "The request body must be a JSON object")
    name = (body or {}).get("name")
    if name is not None and (not isinstance(name, str) or not name.strip()):
        return message_error(400, "name must be a non-empty string")
    try:
        project = request.app[IMAGEN].projects.create(name)
    except DuplicateProjectName as error:
        return message_error(400, str(error))
    return data({"project_uuid": project.uuid})


def _query_int(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query.get(name)
    try:
        value = default if raw is None else int(raw)
    except ValueError:
        fail(detail_error(400, f"{name} must be an integer"))
    if not low <= value <= high:
        fail(detail_error(400, f"{name} must be between {low} and {high}"))
    return value


async def list_projects(request: web.Request) -> web.Response:
    """GET /v1/projects?page=&size= (page zero-based, newest first)"""
    context = request.app[IMAGEN]
    size = _query_int(request, "size", 20, 1, 100)
    page = _query_int(request, "page", 0, 0, 1_000_000)
    # Nothing is ever archived here, so asking for archived projects finds none.
    archived = request.query.get("is_archived", "false").lower() == "true"
    projects = [] if archived else list(reversed(context.projects.all()))
    window = projects[page * size : (page + 1) * size]
    return data(
        {
            "projects": [project_info(project, context) for project in window],
            "pagination": {"total": len(projects), "size": size, "page": page},
        }
    )


async def get_project(request: web.Request) -> web.Response:
    """GET /v1/projects/{uuid}"""
    return data(project_info(find_project(request), request.app[IMAGEN]))


async def project_uuid_by_name(request: web.Request) -> web.Response:
    """GET /v1/projects/{name}/uuid"""
    project = request.app[IMAGEN].projects.by_name(request.match_info["name"])
    if project is None:
        return detail_error(404, "Project not found")
    return data({"project_uuid": project.uuid})


async def sky_templates(request: web.Request) -> web.Response:
    """GET /v1/projects/sky_replacement/templates"""
    templates = [{"id": key, "is_default": default} for key, default in SKY_TEMPLATES.items()]
    return data({"templates": templates})


def _requested_files(body: Any) -> list[tuple[str, str]]:
    """(file_name, base64 md5 or "") pairs from a links request, shape-checked."""
    files = body.get("files_list") if isinstance(body, dict) else None
    if not isinstance(files, list) or not files:
        fail(message_error(400, "files_list must be a non-empty list"))
    requested = []
    for item in files:
        name = item.get("file_name") if isinstance(item, dict) else None
        if not isinstance(name, str) or not name:
            fail(message_error(400, "Every files_list item needs a file_name"))
        md5 = item.get("md5") or ""
        if not isinstance(md5, str) or (md5 and not _is_md5_base64(md5)):
            fail(message_error(400, f'File "{name}": md5 must be the base64 of a 16-byte digest'))
        requested.append((name, md5))
    return requested


def _is_md5_base64(value: str) -> bool:
    try:
        return len(base64.b64decode(value, validate=True)) == 16
    except binascii.Error:
        return False


def _check_names(project: Project, names: list[str]) -> str:
    """Apply Imagen's file rules to a links request; the project's image type if they pass."""
    for name, count in Counter(names).items():
        if count > 1:
            fail(message_error(400, f'File "{name}" appears {count} times.'))
    types = {project.image_type} if project.image_type else set()
    for name in names:
        unsafe = name in (".", "..") or any(ch in name for ch in "/\\") or not name.isprintable()
        if unsafe or len(name) > MAX_NAME_LENGTH:
            fail(message_error(400, f'File name "{name}" is not allowed'))
        image_type = image_type_of(name)
        if image_type is None:
            fail(message_error(400, f'File "{name}" has an unsupported file type'))
        types.add(image_type)
    if len(types) > 1:
        fail(message_error(400, "A project holds either RAW or JPEG files, not both"))
    # Outputs are named after the stem; two inputs sharing one would overwrite each other.
    owners = dict(project.output_owners)
    for name in names:
        owner = owners.setdefault(export_output_name(name), name)
        if owner != name:
            fail(message_error(400, f'File "{name}" would have the same output name as "{owner}"'))
    project.output_owners = owners
    return types.pop()


async def upload_links(request: web.Request) -> web.Response:
    """POST /v1/projects/{uuid}/get_temporary_upload_links"""
    context = request.app[IMAGEN]
    project = find_project(request)
    requested = _requested_files(await json_body(request))
    project.image_type = _check_names(project, [name for name, _ in requested])
    origin = request.url.origin()
    links = []
    for name, md5 in requested:
        project.file(name).links_issued += 1
        path = storage_path(project.uuid, "upload", name)
        links.append(
            {"file_name": name, "upload_link": context.signer.sign(origin, "PUT", path, md5=md5)}
        )
    return data({"files_list": links})


def add_routes(router: web.UrlDispatcher) -> None:
    """Register the account routes; the fixed sky-templates path goes before `{uuid}` ones."""
    v1 = API_PREFIX
    for path in (f"{v1}/profiles", f"{v1}/profiles/"):
        router.add_get(path, list_profiles)
    for path in (f"{v1}/projects", f"{v1}/projects/"):
        router.add_post(path, create_project)
        router.add_get(path, list_projects)
    router.add_get(f"{v1}/projects/sky_replacement/templates", sky_templates)
    router.add_get(f"{v1}/projects/{{name}}/uuid", project_uuid_by_name)
    router.add_get(f"{v1}/projects/{{uuid}}", get_project)
    router.add_post(f"{v1}/projects/{{uuid}}/get_temporary_upload_links", upload_links)
