"""The typed async client for Imagen's project API, built on the HTTP API client core.

It owns Imagen's wire rules: the `x-api-key` header, the optional `data` envelope, which calls
change state (and so are never retried blindly), and the Imagen names of the core's errors.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any, TypeVar
from urllib.parse import quote

import aiohttp
from pydantic import TypeAdapter, ValidationError

from orchestrator.apicore.auth import ApiKeyHeader
from orchestrator.apicore.client import ApiClient, Call
from orchestrator.apicore.errors import (
    AnswerTooLarge,
    ApiAmbiguous,
    ApiBadRequest,
    ApiCredentialsRefused,
    ApiError,
    ApiNotFound,
    ApiUnavailable,
    MalformedAnswer,
)
from orchestrator.imagen.errors import (
    ImagenAmbiguous,
    ImagenAuthError,
    ImagenBadRequest,
    ImagenError,
    ImagenMalformedAnswer,
    ImagenNotFound,
    ImagenUnavailable,
)
from orchestrator.imagen.models import (
    DownloadLink,
    EditOptions,
    Profile,
    ProjectInfo,
    ProjectPage,
    TaskStatus,
    UploadLink,
)
from orchestrator.retry import RetryPolicy

T = TypeVar("T")

API_RETRY = RetryPolicy(initial_interval=0.5, maximum_interval=30.0, maximum_attempts=6)
"""Retry policy for API calls: about a minute of patience before Imagen is declared down."""

API_TIMEOUT = aiohttp.ClientTimeout(total=60, sock_connect=10)
"""Timeout for one API call when the caller gives none; API answers are small and quick."""

API_MAX_ANSWER_BYTES = 32 * 1024 * 1024
"""Largest answer read: link lists run to ~1.5 KB a photo, so this covers ~20,000 photos."""

_PROFILES = TypeAdapter(list[Profile])
_PROJECT = TypeAdapter(ProjectInfo)
_PROJECT_PAGE = TypeAdapter(ProjectPage)
_UPLOAD_LINKS = TypeAdapter(list[UploadLink])
_DOWNLOAD_LINKS = TypeAdapter(list[DownloadLink])
_TASK_STATUS = TypeAdapter(TaskStatus)
_TEMPLATES = TypeAdapter(list[dict[str, Any]])

_KINDS: tuple[tuple[type[ApiError], type[ImagenError]], ...] = (
    (ApiAmbiguous, ImagenAmbiguous),
    (ApiUnavailable, ImagenUnavailable),
    (ApiCredentialsRefused, ImagenAuthError),
    (ApiBadRequest, ImagenBadRequest),
    (ApiNotFound, ImagenNotFound),
    (MalformedAnswer, ImagenMalformedAnswer),
)
"""The Imagen name of each core error, most specific first; any other is a bare ImagenError."""


class ImagenClient:
    """Calls Imagen's API over a shared aiohttp session; one method per endpoint."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        base_url: str,
        api_key: str,
        retry: RetryPolicy = API_RETRY,
        timeout: aiohttp.ClientTimeout | None = None,
        on_retry: Callable[[str, int, str, float], None] | None = None,
    ) -> None:
        self._api = ApiClient(
            session,
            service="Imagen",
            base_url=base_url,
            auth=ApiKeyHeader(api_key, header="x-api-key"),
            retry=retry,
            timeout=timeout if timeout is not None else API_TIMEOUT,
            max_answer_bytes=API_MAX_ANSWER_BYTES,
            credentials_hint="Check IMAGEN_API_KEY.",
            unreachable_hint="Is the API (or `orchestrator sandbox`) running?",
            on_retry=on_retry,
        )
        self.base_url = self._api.base_url

    async def list_profiles(self) -> list[Profile]:
        """The editing profiles of the account."""
        call = _get("list_profiles", "/profiles")
        payload = await self._payload(call)
        return self._parse(call, _PROFILES, _items_in(call, payload, "profiles"))

    async def create_project(self, name: str | None = None) -> str:
        """Create a project and return its uuid; raises ImagenAmbiguous if it may exist anyway."""
        call = Call(
            name="create_project",
            method="POST",
            path="/projects/",
            idempotent=False,
            json={"name": name} if name else {},
        )
        try:
            return _project_uuid_in(call, await self._payload(call))
        except ImagenMalformedAnswer as exc:
            # The project exists but we cannot tell which one it is: the caller must look it
            # up by name rather than create another.
            raise ImagenAmbiguous(
                f"{exc}; the project was probably created, so look it up by name "
                "before creating another",
                status=exc.status,
            ) from None

    async def get_project(self, project_uuid: str) -> ProjectInfo:
        """What Imagen knows about one project."""
        call = _get("get_project", f"/projects/{_segment(project_uuid)}")
        return self._parse(call, _PROJECT, await self._payload(call))

    async def find_project_uuid(self, name: str) -> str | None:
        """The uuid of the project with this name, or None if there is none."""
        call = _get("find_project_uuid", f"/projects/{_segment(name)}/uuid")
        try:
            payload = await self._payload(call)
        except ImagenNotFound:
            return None
        return _project_uuid_in(call, payload)

    async def list_projects(
        self, *, page: int = 0, size: int = 100
    ) -> tuple[list[ProjectInfo], int]:
        """One page (zero-based, size 1–100) of the account's projects, and the total count."""
        call = _get("list_projects", "/projects", params={"page": page, "size": size})
        listing = self._parse(call, _PROJECT_PAGE, await self._payload(call))
        return listing.projects, listing.pagination.total

    async def iter_projects(self) -> AsyncIterator[ProjectInfo]:
        """Every project of the account, page after page."""
        page = 0
        seen = 0
        while True:
            projects, total = await self.list_projects(page=page, size=100)
            for project in projects:
                yield project
            seen += len(projects)
            # An empty page ends the walk even if the total was wrong, so it cannot loop forever.
            if not projects or seen >= total:
                return
            page += 1

    async def upload_links(
        self, project_uuid: str, files: Sequence[tuple[str, str | None]]
    ) -> list[UploadLink]:
        """Presigned upload links for (file name, base64 MD5 or None) pairs.

        An MD5 is sent only when given, because a link issued for an MD5 only accepts a PUT that
        carries the matching Content-MD5 header.
        """
        if not files:
            return []
        files_list: list[dict[str, str]] = []
        for file_name, md5 in files:
            item = {"file_name": file_name}
            if md5 is not None:
                item["md5"] = md5
            files_list.append(item)
        # Asking for links changes nothing but the links, so this POST may be repeated freely.
        call = Call(
            name="upload_links",
            method="POST",
            path=f"/projects/{_segment(project_uuid)}/get_temporary_upload_links",
            idempotent=True,
            json={"files_list": files_list},
        )
        payload = await self._payload(call)
        return self._parse(call, _UPLOAD_LINKS, _items_in(call, payload, "files_list"))

    async def start_edit(self, project_uuid: str, options: EditOptions) -> None:
        """Ask Imagen to edit every photo of the project; raises ImagenAmbiguous if unsure."""
        await self._start(
            Call(
                name="start_edit",
                method="POST",
                path=f"/projects/{_segment(project_uuid)}/edit",
                idempotent=False,
                json=options.to_request(),
            )
        )

    async def edit_status(self, project_uuid: str) -> TaskStatus:
        """Progress of the project's edit; ImagenNotFound if no edit was ever requested."""
        call = _get("edit_status", f"/projects/{_segment(project_uuid)}/edit/status")
        return self._parse(call, _TASK_STATUS, await self._payload(call))

    async def edit_download_links(self, project_uuid: str) -> list[DownloadLink]:
        """Presigned links to the edited files."""
        call = _get(
            "edit_download_links",
            f"/projects/{_segment(project_uuid)}/edit/get_temporary_download_links",
        )
        payload = await self._payload(call)
        return self._parse(call, _DOWNLOAD_LINKS, _items_in(call, payload, "files_list"))

    async def start_export(self, project_uuid: str) -> None:
        """Ask Imagen to render the edited project to JPEG; raises ImagenAmbiguous if unsure."""
        await self._start(
            Call(
                name="start_export",
                method="POST",
                path=f"/projects/{_segment(project_uuid)}/export",
                idempotent=False,
            )
        )

    async def export_status(self, project_uuid: str) -> TaskStatus:
        """Progress of the project's export."""
        call = _get("export_status", f"/projects/{_segment(project_uuid)}/export/status")
        return self._parse(call, _TASK_STATUS, await self._payload(call))

    async def export_download_links(self, project_uuid: str) -> list[DownloadLink]:
        """Presigned links to the exported JPEGs."""
        call = _get(
            "export_download_links",
            f"/projects/{_segment(project_uuid)}/export/get_temporary_download_links",
        )
        payload = await self._payload(call)
        return self._parse(call, _DOWNLOAD_LINKS, _items_in(call, payload, "files_list"))

    async def sky_templates(self) -> list[dict[str, Any]]:
        """The skies available to sky_replacement, as Imagen describes them (`id`, `is_default`)."""
        call = _get("sky_templates", "/projects/sky_replacement/templates")
        payload = await self._payload(call)
        return self._parse(call, _TEMPLATES, _items_in(call, payload, "templates"))

    async def _payload(self, call: Call) -> Any:
        """Make the call and return its JSON payload, without the `{"data": ...}` envelope."""
        try:
            payload = await self._api.send_json(call)
        except ApiError as exc:
            raise _imagen_error(exc) from None
        if isinstance(payload, dict) and payload.keys() == {"data"}:
            return payload["data"]
        return payload

    async def _start(self, call: Call) -> None:
        """Make a state-changing call whose answer does not matter beyond its status."""
        try:
            await self._api.send(call)
        except AnswerTooLarge as exc:
            # A 2xx answer we would not read: the call was accepted, so asking beats failing.
            raise ImagenAmbiguous(
                f"{exc}; {call.name} was probably accepted", status=exc.status
            ) from None
        except ApiError as exc:
            raise _imagen_error(exc) from None

    def _parse(self, call: Call, adapter: TypeAdapter[T], payload: object) -> T:
        """Validate a payload, turning a mismatch into an ImagenMalformedAnswer naming the call."""
        try:
            return adapter.validate_python(payload)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(part) for part in error['loc']) or 'answer'}: {error['msg']}"
                for error in exc.errors()[:3]
            )
            # `from None`: pydantic's own text quotes the input, which we do not control.
            raise _imagen_error(self._api.malformed(call, problems)) from None


def _get(name: str, path: str, *, params: Mapping[str, int] | None = None) -> Call:
    """A GET call, which is always safe to repeat."""
    return Call(name=name, method="GET", path=path, params=params)


def _imagen_error(exc: ApiError) -> ImagenError:
    """The core's error under its Imagen name, with the same text and status."""
    kind = next((ours for theirs, ours in _KINDS if isinstance(exc, theirs)), ImagenError)
    return kind(exc.message, status=exc.status)


def _segment(value: str) -> str:
    """A value quoted to stay one path segment, whatever characters it holds."""
    return quote(value, safe="")


def _items_in(call: Call, payload: Any, key: str) -> Any:
    """The list held under `key`, or the payload itself when the API sent a bare list."""
    if isinstance(payload, list):
        return payload
    if isinstance(payload, dict) and key in payload:
        return payload[key]
    raise ImagenMalformedAnswer(f"unexpected answer from Imagen to {call.name}: no {key!r} list")


def _project_uuid_in(call: Call, payload: Any) -> str:
    """A project uuid from an answer that is a bare string or holds `project_uuid` or `uuid`."""
    if isinstance(payload, str) and payload:
        return payload
    if isinstance(payload, dict):
        for key in ("project_uuid", "uuid"):
            value = payload.get(key)
            if isinstance(value, str) and value:
                return value
    raise ImagenMalformedAnswer(f"unexpected answer from Imagen to {call.name}: no project uuid")
