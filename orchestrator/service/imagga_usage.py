"""`orchestrator usage`: the Imagga account's quota, asked over a session of its own."""

from __future__ import annotations

from typing import Any

import aiohttp

from orchestrator.config import ConfigError, Settings
from orchestrator.service.wiring import make_tagging
from orchestrator.workflow.tag import NOT_CONFIGURED


async def imagga_usage(settings: Settings) -> dict[str, Any]:
    """The month's quota and the concurrency cap, as `usage --json` prints them."""
    async with aiohttp.ClientSession() as session:
        tagging = make_tagging(settings, session)
        if tagging is None:
            raise ConfigError(NOT_CONFIGURED)
        found = await tagging.imagga.usage()
    return {
        "monthly_limit": found.monthly_limit,
        "monthly_processed": found.monthly_processed,
        "left": found.left,
        "resets_at": found.resets_at,
        "concurrency_max": found.concurrency_max,
        "concurrency_now": found.concurrency_now,
    }
