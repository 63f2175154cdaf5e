"""The typed async client for Imagen's project API.

It owns the wire rules: the API key header, the optional `data` envelope, both error shapes,
which failures are retried, and which are reported as ambiguous so the caller can keep
state-changing calls exactly-once.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any, TypeVar
from urllib.parse import quote

import aiohttp
from pydantic import TypeAdapter, ValidationError

from orchestrator.imagen.errors import (
    ImagenAmbiguous,
    ImagenAuthError,
    ImagenBadRequest,
    ImagenError,
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
from orchestrator.retry import (
    RetriesExhausted,
    RetryableError,
    RetryPolicy,
    call_with_retry,
    parse_retry_after,
)

T = TypeVar("T")

API_RETRY = RetryPolicy(initial_interval=0.5, maximum_interval=30.0, maximum_attempts=6)
"""Retry policy for API calls: about a minute of patience before Imagen is declared down."""

API_TIMEOUT = aiohttp.ClientTimeout(total=60, sock_connect=10)
"""Timeout for one API call when the caller gives none; API answers are small and quick."""

_MESSAGE_LIMIT = 300
"""Longest piece of server text quoted in an error message."""

_PROFILES = TypeAdapter(list[Profile])
_PROJECT = TypeAdapter(ProjectInfo)
_PROJECT_PAGE = TypeAdapter(ProjectPage)
_UPLOAD_LINKS = TypeAdapter(list[UploadLink])
_DOWNLOAD_LINKS = TypeAdapter(list[DownloadLink])
_TASK_STATUS = TypeAdapter(TaskStatus)
_TEMPLATES = TypeAdapter(list[dict[str, Any]])


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
        self._session = session
        self.base_url = base_url.rstrip("/")
        self._api_key = api_key
        self._retry = retry
        self._timeout = timeout if timeout is not None else API_TIMEOUT
        self._on_retry = on_retry

    async def list_profiles(self) -> list[Profile]:
        """The editing profiles of the account."""
        call = "list_profiles"
        payload = await self._get(call, "/profiles")
        return self._parse(call, _PROFILES, _items_in(call, payload, "profiles"))

    async def create_project(self, name: str | None = None) -> str:
        """Create a project and return its uuid; raises ImagenAmbiguous if it may exist anyway."""
        call = "create_project"
        text = await self._send(
            call, "POST", "/projects/", idempotent=False, json_body={"name": name} if name else {}
        )
        try:
            return _project_uuid_in(call, self._unwrap(call, text))
        except ImagenError as exc:
            # The project exists but we cannot tell which one it is: the caller must look it
            # up by name rather than create another.
            raise ImagenAmbiguous(
                f"{exc}; the project was probably created, so look it up by name "
                "before creating another"
            ) from None

    async def get_project(self, project_uuid: str) -> ProjectInfo:
        """What Imagen knows about one project."""
        call = "get_project"
        payload = await self._get(call, f"/projects/{_segment(project_uuid)}")
        return self._parse(call, _PROJECT, payload)

    async def find_project_uuid(self, name: str) -> str | None:
        """The uuid of the project with this name, or None if there is none."""
        call = "find_project_uuid"
        try:
            payload = await self._get(call, f"/projects/{_segment(name)}/uuid")
        except ImagenNotFound:
            return None
        return _project_uuid_in(call, payload)

    async def list_projects(
        self, *, page: int = 0, size: int = 100
    ) -> tuple[list[ProjectInfo], int]:
        """One page (zero-based, size 1–100) of the account's projects, and the total count."""
        call = "list_projects"
        payload = await self._get(call, "/projects", params={"page": page, "size": size})
        listing = self._parse(call, _PROJECT_PAGE, payload)
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
        call = "upload_links"
        if not files:
            return []
        files_list: list[dict[str, str]] = []
        for file_name, md5 in files:
            item = {"file_name": file_name}
            if md5 is not None:
                item["md5"] = md5
            files_list.append(item)
        # Asking for links changes nothing but the links, so this POST may be repeated freely.
        text = await self._send(
            call,
            "POST",
            f"/projects/{_segment(project_uuid)}/get_temporary_upload_links",
            idempotent=True,
            json_body={"files_list": files_list},
        )
        payload = self._unwrap(call, text)
        return self._parse(call, _UPLOAD_LINKS, _items_in(call, payload, "files_list"))

    async def start_edit(self, project_uuid: str, options: EditOptions) -> None:
        """Ask Imagen to edit every photo of the project; raises ImagenAmbiguous if unsure."""
        await self._send(
            "start_edit",
            "POST",
            f"/projects/{_segment(project_uuid)}/edit",
            idempotent=False,
            json_body=options.to_request(),
        )

    async def edit_status(self, project_uuid: str) -> TaskStatus:
        """Progress of the project's edit; ImagenNotFound if no edit was ever requested."""
        call = "edit_status"
        payload = await self._get(call, f"/projects/{_segment(project_uuid)}/edit/status")
        return self._parse(call, _TASK_STATUS, payload)

    async def edit_download_links(self, project_uuid: str) -> list[DownloadLink]:
        """Presigned links to the edited files."""
        call = "edit_download_links"
        payload = await self._get(
            call, f"/projects/{_segment(project_uuid)}/edit/get_temporary_download_links"
        )
        return self._parse(call, _DOWNLOAD_LINKS, _items_in(call, payload, "files_list"))

    async def start_export(self, project_uuid: str) -> None:
        """Ask Imagen to render the edited project to JPEG; raises ImagenAmbiguous if unsure."""
        await self._send(
            "start_export",
            "POST",
            f"/projects/{_segment(project_uuid)}/export",
            idempotent=False,
        )

    async def export_status(self, project_uuid: str) -> TaskStatus:
        """Progress of the project's export."""
        call = "export_status"
        payload = await self._get(call, f"/projects/{_segment(project_uuid)}/export/status")
        return self._parse(call, _TASK_STATUS, payload)

    async def export_download_links(self, project_uuid: str) -> list[DownloadLink]:
        """Presigned links to the exported JPEGs."""
        call = "export_download_links"
        payload = await self._get(
            call, f"/projects/{_segment(project_uuid)}/export/get_temporary_download_links"
        )
        return self._parse(call, _DOWNLOAD_LINKS, _items_in(call, payload, "files_list"))

    async def sky_templates(self) -> list[dict[str, Any]]:
        """The skies available to sky_replacement, as Imagen describes them (`id`, `is_default`)."""
        call = "sky_templates"
        payload = await self._get(call, "/projects/sky_replacement/templates")
        return self._parse(call, _TEMPLATES, _items_in(call, payload, "templates"))

    async def _get(
        self, call: str, path: str, *, params: Mapping[str, int] | None = None
    ) -> Any:
        """GET a path and return its JSON payload, envelope removed."""
        text = await self._send(call, "GET", path, idempotent=True, params=params)
        return self._unwrap(call, text)

    async def _send(
        self,
        call: str,
        method: str,
        path: str,
        *,
        idempotent: bool,
        json_body: dict[str, Any] | None = None,
        params: Mapping[str, int] | None = None,
    ) -> str:
        """Make one API call under the retry rules and return the body of its 2xx answer.

        An idempotent call is retried on any transient failure. A state-changing one is
        retried only when the server certainly did nothing with it (no connection, or 429);
        every other transient failure raises ImagenAmbiguous at once.
        """
        url = self.base_url + path

        async def attempt() -> str:
            try:
                # Redirects are not followed: aiohttp would forward the API key to any host.
                # Statuses are judged here whatever the session's raise_for_status says.
                async with self._session.request(
                    method,
                    url,
                    headers={"x-api-key": self._api_key},
                    json=json_body,
                    params=params,
                    timeout=self._timeout,
                    allow_redirects=False,
                    raise_for_status=False,
                ) as response:
                    body = (await response.read()).decode("utf-8", errors="replace")
            except aiohttp.ClientConnectorError as exc:
                # The connection was never made, so even a state-changing call had no effect.
                raise RetryableError(self._reason(exc)) from exc
            except (aiohttp.ClientError, TimeoutError) as exc:
                if idempotent:
                    raise RetryableError(self._reason(exc)) from exc
                raise self._ambiguous(call, self._reason(exc)) from exc
            status = response.status
            if 200 <= status < 300:
                return body
            if status in self._retry.retryable_statuses:
                reason = f"HTTP {status}: {self._server_message(body)}"
                if idempotent or status == 429:
                    retry_after = parse_retry_after(response.headers.get("Retry-After"))
                    raise RetryableError(reason, retry_after=retry_after)
                raise self._ambiguous(call, reason, status=status)
            raise self._refusal(call, status, body, response.headers.get("Location"))

        def report(attempt_number: int, error: RetryableError, delay: float) -> None:
            if self._on_retry is not None:
                self._on_retry(call, attempt_number, str(error), delay)

        try:
            return await call_with_retry(attempt, self._retry, on_retry=report)
        except RetriesExhausted as exc:
            raise self._unavailable(call, exc) from exc

    def _refusal(
        self, call: str, status: int, body: str, location: str | None
    ) -> ImagenError:
        """The error for a non-retryable, non-2xx answer."""
        if status in (401, 403):
            return ImagenAuthError(
                f"Imagen rejected the API key (HTTP {status}). Check IMAGEN_API_KEY.",
                status=status,
            )
        if 300 <= status < 400:
            return ImagenError(
                f"Imagen answered {call} with a redirect (HTTP {status}) to "
                f"{self._clean(location or '?')}, which is not followed; "
                f"check the API base URL {self.base_url}",
                status=status,
            )
        message = self._server_message(body)
        if status in (400, 409, 422):
            return ImagenBadRequest(
                f"Imagen refused {call} (HTTP {status}): {message}", status=status
            )
        if status == 404:
            return ImagenNotFound(
                f"Imagen found nothing for {call} (HTTP 404): {message}", status=404
            )
        return ImagenError(f"Imagen answered {call} with HTTP {status}: {message}", status=status)

    def _ambiguous(self, call: str, reason: str, *, status: int | None = None) -> ImagenAmbiguous:
        """The error for a state-changing call whose effect is unknown."""
        return ImagenAmbiguous(
            f"{call} may or may not have taken effect at Imagen ({self.base_url}): {reason}; "
            "check the project before trying again",
            status=status,
        )

    def _unavailable(self, call: str, exhausted: RetriesExhausted) -> ImagenUnavailable:
        """The error once the retry policy has given up."""
        last = exhausted.last
        if isinstance(last.__cause__, aiohttp.ClientConnectorError):
            return ImagenUnavailable(
                f"cannot reach Imagen at {self.base_url}: {last}. "
                "Is the API (or `orchestrator sandbox`) running?"
            )
        return ImagenUnavailable(
            f"the Imagen API (or sandbox) at {self.base_url} seems down: {call} failed "
            f"{exhausted.attempts} times, last with {last}"
        )

    def _unwrap(self, call: str, body: str) -> Any:
        """The JSON payload of an answer, without the `{"data": ...}` envelope if present."""
        try:
            payload = json.loads(body)
        except ValueError:
            raise ImagenError(
                f"unexpected answer from Imagen to {call}: not JSON: {self._clean(body)!r}"
            ) from None
        if isinstance(payload, dict) and payload.keys() == {"data"}:
            return payload["data"]
        return payload

    def _parse(self, call: str, adapter: TypeAdapter[T], payload: object) -> T:
        """Validate a payload, turning a mismatch into an ImagenError naming the call."""
        try:
            return adapter.validate_python(payload)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(part) for part in error['loc']) or 'answer'}: {error['msg']}"
                for error in exc.errors()[:3]
            )
            # `from None`: pydantic's own text quotes the input, which we do not control.
            raise ImagenError(
                f"unexpected answer from Imagen to {call}: {self._clean(problems)}"
            ) from None

    def _server_message(self, body: str) -> str:
        """The server's explanation: `error.message`, else `detail`, else the raw text."""
        try:
            payload = json.loads(body)
        except ValueError:
            payload = None
        if isinstance(payload, dict):
            error = payload.get("error")
            if isinstance(error, dict) and error.get("message"):
                return self._clean(str(error["message"]))
            if isinstance(error, str) and error:
                return self._clean(error)
            if payload.get("detail"):
                return self._clean(_describe_detail(payload["detail"]))
        return self._clean(body.strip()) or "(empty answer)"

    def _reason(self, exc: BaseException) -> str:
        """A short description of a transport failure."""
        if str(exc):
            return self._clean(str(exc))
        if isinstance(exc, TimeoutError):
            return "no answer before the timeout"
        return type(exc).__name__

    def _clean(self, text: str) -> str:
        """Server or library text made safe to show: API key removed, length bounded."""
        if self._api_key:
            text = text.replace(self._api_key, "[redacted]")
        if len(text) > _MESSAGE_LIMIT:
            return text[:_MESSAGE_LIMIT] + "…"
        return text


def _segment(value: str) -> str:
    """A value quoted to stay one path segment, whatever characters it holds."""
    return quote(value, safe="")


def _items_in(call: str, payload: Any, key: str) -> Any:
    """The list held under `key`, or the payload itself when the API sent a bare list."""
    if isinstance(payload, list):
        return payload
    if isinstance(payload, dict) and key in payload:
        return payload[key]
    raise ImagenError(f"unexpected answer from Imagen to {call}: no {key!r} list")


def _project_uuid_in(call: str, payload: Any) -> str:
    """A project uuid from an answer that is a bare string or holds `project_uuid` or `uuid`."""
    if isinstance(payload, str) and payload:
        return payload
    if isinstance(payload, dict):
        for key in ("project_uuid", "uuid"):
            value = payload.get(key)
            if isinstance(value, str) and value:
                return value
    raise ImagenError(f"unexpected answer from Imagen to {call}: no project uuid")


def _describe_detail(detail: Any) -> str:
    """Readable text from a `detail` that may be a string, a validation error list or a dict."""
    if isinstance(detail, str):
        return detail
    if isinstance(detail, list):
        return "; ".join(_describe_detail(item) for item in detail)
    if isinstance(detail, dict) and "msg" in detail:
        location = ".".join(str(part) for part in detail.get("loc", ()))
        return f"{location}: {detail['msg']}" if location else str(detail["msg"])
    return json.dumps(detail, ensure_ascii=False)
