"""Hostile API answers on real 127.0.0.1 ports: each ends in a clear error, and nothing is hoarded.

Each test serves one bad answer from a small aiohttp app (or a raw TCP server) and calls it with
the real Imagen client, the way `run` would.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from orchestrator.errors import Refused
from orchestrator.imagen.client import API_MAX_ANSWER_BYTES, ImagenClient
from orchestrator.imagen.errors import (
    ImagenBadRequest,
    ImagenError,
    ImagenMalformedAnswer,
    ImagenUnavailable,
)
from orchestrator.retry import RetryPolicy

KEY = "sk-live-SECRET-0123456789"
FAST = RetryPolicy(initial_interval=0.001, maximum_interval=0.001, maximum_attempts=3)
MB = 1024 * 1024
HUGE = 100 * MB

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client_session:
        yield client_session


async def serve(handler: Handler) -> TestServer:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    return server


def imagen(session: aiohttp.ClientSession, base_url: str) -> ImagenClient:
    return ImagenClient(session, base_url=base_url, api_key=KEY, retry=FAST)


class Streamer:
    """Streams a huge answer in 1 MiB chunks and counts what the client let it send."""

    def __init__(self, *, status: int = 200, declare_length: bool = False) -> None:
        self.status = status
        self.declare_length = declare_length
        self.sent: list[int] = []
        self.finished = asyncio.Event()

    async def __call__(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(status=self.status)
        response.content_type = "application/json"
        if self.declare_length:
            response.content_length = HUGE
        await response.prepare(request)
        sent = 0
        chunk = b"[" + b"0," * (MB // 2 - 1) + b"0"
        try:
            while sent < HUGE:
                await response.write(chunk)
                sent += len(chunk)
        except (ConnectionError, aiohttp.ClientConnectionResetError):
            pass
        finally:
            self.sent.append(sent)
            self.finished.set()
        return response

    async def served(self, answers: int) -> list[int]:
        """Bytes written for each answer, once `answers` handlers have ended."""
        async with asyncio.timeout(60):
            while len(self.sent) < answers:
                self.finished.clear()
                await self.finished.wait()
        return self.sent


async def test_json_nested_200000_deep_is_a_clear_refusal(
    session: aiohttp.ClientSession,
) -> None:
    async def deep(request: web.Request) -> web.StreamResponse:
        return web.Response(body=b"[" * 200_000, content_type="application/json")

    server = await serve(deep)
    try:
        with pytest.raises(ImagenMalformedAnswer) as caught:
            await imagen(session, str(server.make_url("/v1"))).list_profiles()
    finally:
        await server.close()
    assert isinstance(caught.value, Refused)
    assert str(caught.value).startswith(
        "unexpected answer from Imagen to list_profiles: JSON nested deeper than 64 levels"
    )


async def test_a_100_mb_answer_is_refused_after_the_cap_without_reading_the_rest(
    session: aiohttp.ClientSession,
) -> None:
    streamer = Streamer()
    server = await serve(streamer)
    try:
        with pytest.raises(ImagenMalformedAnswer, match="longer than 33,554,432 bytes") as caught:
            await imagen(session, str(server.make_url("/v1"))).edit_download_links("p1")
        (sent,) = await streamer.served(1)
    finally:
        await server.close()
    assert isinstance(caught.value, Refused) and caught.value.status == 200
    # The cap, plus what the sockets' buffers held when the client hung up.
    assert API_MAX_ANSWER_BYTES < sent < API_MAX_ANSWER_BYTES + 8 * MB < HUGE


async def test_a_declared_100_mb_answer_is_refused_before_reading_it(
    session: aiohttp.ClientSession,
) -> None:
    streamer = Streamer(declare_length=True)
    server = await serve(streamer)
    try:
        with pytest.raises(ImagenMalformedAnswer, match="longer than 33,554,432 bytes"):
            await imagen(session, str(server.make_url("/v1"))).edit_download_links("p1")
        (sent,) = await streamer.served(1)
    finally:
        await server.close()
    assert sent < 8 * MB


async def test_a_100_mb_error_answer_is_read_only_as_far_as_its_explanation(
    session: aiohttp.ClientSession,
) -> None:
    streamer = Streamer(status=503)
    server = await serve(streamer)
    try:
        with pytest.raises(ImagenUnavailable, match="seems down") as caught:
            await imagen(session, str(server.make_url("/v1"))).edit_status("p1")
        sent = await streamer.served(FAST.maximum_attempts)
    finally:
        await server.close()
    assert len(str(caught.value)) < 600
    assert all(each < 8 * MB for each in sent)


async def test_an_html_page_with_status_200_is_a_clear_refusal(
    session: aiohttp.ClientSession,
) -> None:
    async def portal(request: web.Request) -> web.StreamResponse:
        return web.Response(
            text="<html><body>Please log in to the Wi-Fi</body></html>", content_type="text/html"
        )

    server = await serve(portal)
    base = str(server.make_url("/v1"))
    try:
        with pytest.raises(ImagenMalformedAnswer) as caught:
            await imagen(session, base).list_profiles()
    finally:
        await server.close()
    assert str(caught.value) == (
        "unexpected answer from Imagen to list_profiles: not JSON: "
        "'<html><body>Please log in to the Wi-Fi</body></html>'; "
        f"is {base} the Imagen API?"
    )


@pytest.mark.parametrize(
    ("status", "kind", "text"),
    [
        (400, ImagenBadRequest, "Imagen refused list_profiles (HTTP 400): bad [/] thing"),
        (
            200,
            ImagenMalformedAnswer,
            "unexpected answer from Imagen to list_profiles: no 'profiles' list",
        ),
    ],
)
async def test_a_detail_with_brackets_in_its_text_is_a_clear_error(
    session: aiohttp.ClientSession, status: int, kind: type[ImagenError], text: str
) -> None:
    async def detail(request: web.Request) -> web.StreamResponse:
        return web.json_response({"detail": "bad [/] thing"}, status=status)

    server = await serve(detail)
    try:
        with pytest.raises(kind) as caught:
            await imagen(session, str(server.make_url("/v1"))).list_profiles()
    finally:
        await server.close()
    assert str(caught.value) == text
    assert isinstance(caught.value, Refused)


@pytest.fixture
async def garbling_server() -> AsyncIterator[str]:
    """A raw TCP server that answers every request with a broken HTTP status line."""

    async def garble(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 2OO NOT OK\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(garble, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        server.close()
        await server.wait_closed()


def _texts(exc: BaseException) -> Iterator[str]:
    """str and repr of an exception and of every exception a traceback would show with it."""
    current: BaseException | None = exc
    while current is not None:
        yield str(current)
        yield repr(current)
        current = current.__cause__ or (
            None if current.__suppress_context__ else current.__context__
        )


async def test_a_garbled_http_answer_leaves_no_key_in_the_error_or_its_causes(
    session: aiohttp.ClientSession, garbling_server: str
) -> None:
    # aiohttp's own error for a broken answer carries the request, headers and all.
    with pytest.raises(ImagenUnavailable) as caught:
        await imagen(session, garbling_server).list_profiles()
    texts = list(_texts(caught.value))
    assert "seems down" in texts[0]
    assert all(KEY not in text for text in texts)
