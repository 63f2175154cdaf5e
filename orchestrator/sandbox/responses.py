"""Answers in the shapes the real services use, so clients meet every shape they must parse."""

from __future__ import annotations

from typing import Any, NoReturn
from xml.sax.saxutils import escape

from aiohttp import web
from aiohttp.typedefs import Handler


def data(payload: dict[str, Any], *, status: int = 200) -> web.Response:
    """A success in Imagen's `{"data": {...}}` envelope."""
    return web.json_response({"data": payload}, status=status)


def detail_error(
    status: int, message: str, *, headers: dict[str, str] | None = None
) -> web.Response:
    """An error shaped `{"detail": "..."}`, as Imagen's older routes answer."""
    return web.json_response({"detail": message}, status=status, headers=headers)


def message_error(status: int, message: str) -> web.Response:
    """An error shaped `{"error": {"message": "..."}}`, as Imagen's newer routes answer."""
    return web.json_response({"error": {"message": message}}, status=status)


def s3_error(
    status: int, code: str, message: str, *, headers: dict[str, str] | None = None
) -> web.Response:
    """An S3-style XML error, as presigned storage answers."""
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{escape(code)}</Code><Message>{escape(message)}</Message></Error>"
    )
    return web.Response(status=status, text=body, content_type="application/xml", headers=headers)


class ApiError(Exception):
    """Raised by a handler to answer with `response`; `error_middleware` answers it."""

    def __init__(self, response: web.Response) -> None:
        super().__init__(response.status)
        self.response = response


def fail(response: web.Response) -> NoReturn:
    """Stop the handler here and answer with `response`."""
    raise ApiError(response)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Answer the response carried by an ApiError."""
    try:
        return await handler(request)
    except ApiError as error:
        return error.response
