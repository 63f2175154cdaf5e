"""Fixtures shared by the end-to-end tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.daemon_support import Daemon


@pytest.fixture
def daemons() -> Iterator[list[Daemon]]:
    """Every daemon a test starts; all of them killed at the end, whatever happened."""
    started: list[Daemon] = []
    yield started
    for daemon in started:
        daemon.stop()
