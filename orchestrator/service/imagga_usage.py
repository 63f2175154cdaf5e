"""`orchestrator usage`: the Imagga account's quota, asked over a session of its own."""

from __future__ import annotations

from contextlib import AsyncExitStack
from typing import Any

import aiohttp

from orchestrator.config import ConfigError, Settings
from orchestrator.workflow.services import TAGGING
from orchestrator.workflow.stage import Connection


async def imagga_usage(settings: Settings) -> dict[str, Any]:
    """The month's quota and the concurrency cap, as `usage --json` prints them."""
    if refusal := TAGGING.refusal(settings):
        raise ConfigError(refusal)
    async with aiohttp.ClientSession() as session, AsyncExitStack() as closing:
        tagging = TAGGING.build(settings.tagging, Connection(session, None, closing))
        found = await tagging.imagga.usage()
    return {
        "monthly_limit": found.monthly_limit,
        "monthly_processed": found.monthly_processed,
        "left": found.left,
        "resets_at": found.resets_at,
        "concurrency_max": found.concurrency_max,
        "concurrency_now": found.concurrency_now,
    }
