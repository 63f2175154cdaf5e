"""The imgix client against the sandbox's imgix over real HTTP: raw-body uploads, JSON:API
metadata, purge's repeat window, permissions, and rate limits held before sending."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest

from orchestrator.apicore.errors import ApiBadRequest
from orchestrator.integrations.imgix import ImgixClient
from orchestrator.integrations.imgix_models import ImgixConflict, ImgixPermissionMissing
from orchestrator.sandbox import RunningSandbox, SandboxConfig, start_sandbox
from orchestrator.sandbox.imgix import MAX_UPLOAD_BYTES

SOURCE = "src0123"
KEY = "imgix-key-SECRET-0123456789"


@pytest.fixture
async def sandbox() -> AsyncIterator[RunningSandbox]:
    running = await start_sandbox(SandboxConfig(edit_seconds=0.1))
    yield running
    await running.close()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client_session:
        yield client_session


def client(sandbox: RunningSandbox, session: aiohttp.ClientSession, key: str = KEY) -> ImgixClient:
    return ImgixClient(
        session, api_key=key, source_id=SOURCE, base_url=f"{sandbox.base_url}/imgix/api/v1"
    )


def asset(sandbox: RunningSandbox, path: str) -> dict[str, object]:
    found: dict[str, object] = sandbox.ledger()["imgix"]["assets"][f"{SOURCE}/{path}"]
    return found


async def test_an_upload_carries_the_raw_bytes_and_refuses_to_overwrite_unless_asked(
    sandbox: RunningSandbox, session: aiohttp.ClientSession
) -> None:
    imgix = client(sandbox, session)
    path = "My Shoot/IMG 1 #1?.jpg"  # spaces and URL metacharacters travel encoded
    body = b"\xff\xd8\xff" + bytes(range(256)) * 10
    assert await imgix.get_asset(path) is None
    uploaded = await imgix.upload(path, body, overwrite=False)
    assert (uploaded.origin_path, uploaded.file_size) == (path, len(body))
    assert asset(sandbox, path)["md5"] == hashlib.md5(body).hexdigest()
    with pytest.raises(ImgixConflict):
        await imgix.upload(path, b"other", overwrite=False)
    await imgix.upload(path, b"new bytes", overwrite=True)
    assert asset(sandbox, path)["uploads"] == 2
    assert asset(sandbox, path)["md5"] == hashlib.md5(b"new bytes").hexdigest()


async def test_metadata_is_a_json_api_document_and_read_only_attributes_are_refused(
    sandbox: RunningSandbox, session: aiohttp.ClientSession
) -> None:
    imgix = client(sandbox, session)
    await imgix.upload("a/b.jpg", b"jpeg", overwrite=False)
    await imgix.update_asset("a/b.jpg", {"custom_fields": {"theirs": "kept"}})
    updated = await imgix.update_asset(
        "a/b.jpg", {"categories": ["x", "y"], "custom_fields": {"theirs": "kept", "ours": "1"}}
    )
    assert updated.categories == ("x", "y")
    assert (await imgix.get_asset("a/b.jpg")) == updated
    with pytest.raises(ApiBadRequest, match="read-only or unknown"):
        await imgix.update_asset("a/b.jpg", {"file_size": 1})
    # The sandbox refuses a PATCH that is not JSON:API, which the client never sends.
    async with session.patch(
        f"{sandbox.base_url}/imgix/api/v1/sources/{SOURCE}/assets/a/b.jpg",
        json={"data": {"type": "assets", "attributes": {}}},
        headers={"Authorization": f"Bearer {KEY}"},
    ) as answer:
        assert answer.status == 415


async def test_a_purge_repeated_within_seconds_counts_as_done(
    sandbox: RunningSandbox, session: aiohttp.ClientSession
) -> None:
    imgix = client(sandbox, session)
    first = await imgix.purge("https://studio.imgix.net/a/b.jpg")
    assert first
    assert await imgix.purge("https://studio.imgix.net/a/b.jpg") is None  # the sandbox's 409
    assert sandbox.ledger()["imgix"]["purges"] == ["https://studio.imgix.net/a/b.jpg"]


async def test_both_path_forms_of_the_docs_reach_the_same_asset(
    sandbox: RunningSandbox, session: aiohttp.ClientSession
) -> None:
    base = f"{sandbox.base_url}/imgix/api/v1"
    auth = {"Authorization": f"Bearer {KEY}"}
    async with session.post(f"{base}/sources/upload/{SOURCE}/old/x.jpg", data=b"1", headers=auth):
        pass
    await client(sandbox, session).upload("new/y.jpg", b"2", overwrite=False)
    for path in ("assets/{s}/new/y.jpg", "sources/{s}/assets/old/x.jpg"):
        async with session.get(f"{base}/{path.format(s=SOURCE)}", headers=auth) as answer:
            assert answer.status == 200
            assert answer.content_type == "application/vnd.api+json"


async def test_a_bad_key_and_a_missing_permission_are_named_without_the_key(
    session: aiohttp.ClientSession,
) -> None:
    pinned = await start_sandbox(SandboxConfig(api_key=KEY))
    try:
        with pytest.raises(ImgixPermissionMissing) as bad:
            await client(pinned, session, key="wrong-SECRET-key").get_asset("a.jpg")
        assert "IMGIX_API_KEY" in str(bad.value) and "SECRET" not in str(bad.value)
    finally:
        await pinned.close()
    sandbox = await start_sandbox(SandboxConfig())
    try:
        browse_only = client(sandbox, session, key="browse-only-SECRET-1")
        assert await browse_only.get_asset("a.jpg") is None
        with pytest.raises(ImgixPermissionMissing, match="'Asset Manager Edit' permission") as no:
            await browse_only.upload("a.jpg", b"x", overwrite=False)
        with pytest.raises(ImgixPermissionMissing, match="'Purge' permission"):
            await browse_only.purge("https://studio.imgix.net/a.jpg")
        assert "SECRET" not in str(no.value)
    finally:
        await sandbox.close()


async def test_the_sandbox_throttles_a_burst_and_the_client_never_causes_one(
    sandbox: RunningSandbox, session: aiohttp.ClientSession
) -> None:
    base = f"{sandbox.base_url}/imgix/api/v1/sources/{SOURCE}/upload"
    auth = {"Authorization": f"Bearer {KEY}"}

    async def raw(n: int) -> int:
        async with session.post(f"{base}/burst/{n}.jpg", data=b"x", headers=auth) as answer:
            return answer.status

    statuses = await asyncio.gather(*(raw(n) for n in range(6)))
    assert statuses.count(429) >= 3  # the documented 2/s: a burst of 6 cannot pass
    throttled = sandbox.ledger()["imgix"]["throttled"]
    assert throttled == statuses.count(429)
    await asyncio.sleep(1.0)  # let the bucket refill: what follows must start from a full one

    imgix = client(sandbox, session)
    started = time.monotonic()
    await asyncio.gather(*(imgix.upload(f"paced/{n}.jpg", b"x", overwrite=False) for n in range(7)))
    elapsed = time.monotonic() - started
    assert sandbox.ledger()["imgix"]["throttled"] == throttled  # held before sending: no 429
    assert elapsed >= 2.9  # 7 uploads at 2/s, one token at a time


async def test_the_sandbox_refuses_30_mb_uploads(
    sandbox: RunningSandbox, session: aiohttp.ClientSession
) -> None:
    async with session.post(
        f"{sandbox.base_url}/imgix/api/v1/sources/{SOURCE}/upload/big.jpg",
        data=b"\0" * MAX_UPLOAD_BYTES,
        headers={"Authorization": f"Bearer {KEY}"},
    ) as answer:
        assert answer.status == 413
    assert sandbox.ledger()["imgix"]["assets"] == {}
