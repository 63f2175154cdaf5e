"""The imgix client's asset listing against the sandbox's imgix over real HTTP: every page
followed by its cursor, only the assets under the path asked for, each checked."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from orchestrator.integrations.imgix import ImgixClient
from orchestrator.sandbox import RunningSandbox, SandboxConfig, start_sandbox

SOURCE = "src-listing"


@pytest.fixture
async def sandbox() -> AsyncIterator[RunningSandbox]:
    running = await start_sandbox(SandboxConfig(edit_seconds=0.1, imgix_rate_scale=50.0))
    yield running
    await running.close()


async def test_the_listing_follows_every_cursor_and_keeps_to_the_path(
    sandbox: RunningSandbox,
) -> None:
    async with aiohttp.ClientSession() as session:
        imgix = ImgixClient(
            session,
            api_key="imgix-key-0123456789",
            source_id=SOURCE,
            base_url=f"{sandbox.base_url}/imgix/api/v1",
            rate_scale=50.0,
        )
        paths = [f"shoot/IMG_{n:02d}.jpg" for n in range(7)] + ["other/a.jpg", "shooting.jpg"]
        for number, path in enumerate(paths):
            await imgix.upload(path, b"x" * (number + 1), overwrite=False)
        under = await imgix.list_assets("shoot/", page_size=2)
        every = await imgix.list_assets(page_size=1000)
    assert [a.origin_path for a in under] == sorted(p for p in paths if p.startswith("shoot/"))
    assert [a.file_size for a in under] == list(range(1, 8))
    assert sorted(a.origin_path for a in every) == sorted(paths)
    assert sandbox.ledger()["imgix"]["throttled"] == 0
