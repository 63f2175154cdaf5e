"""aioresponses made to work with aiohttp 3.14, for the unit tests of the HTTP clients."""

from __future__ import annotations

from typing import Any
from unittest.mock import Mock

from aiohttp import ClientResponse
from aioresponses import aioresponses
from yarl import URL


class MockResponse(ClientResponse):
    """A mocked response that aiohttp 3.14 accepts.

    aioresponses 0.7.9 does not pass the `stream_writer` that aiohttp 3.14 made required
    (pnuckowski/aioresponses#289); a stand-in reporting zero bytes sent is enough.
    """

    def __init__(self, method: str, url: URL, **kwargs: Any) -> None:
        kwargs.setdefault("stream_writer", Mock(output_size=0))
        super().__init__(method, url, **kwargs)


class Mocked(aioresponses):
    """aioresponses whose every mock builds a `MockResponse`."""

    def add(  # type: ignore[override]
        self, url: Any, method: str = "GET", **kwargs: Any
    ) -> None:
        kwargs.setdefault("response_class", MockResponse)
        super().add(url, method, **kwargs)
