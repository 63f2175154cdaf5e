"""The Imagga client against the sandbox's Imagga on a real port: tags and categories of an
image sent as multipart, the account's limits (429 over the cap, 403 quota or plan, 401), junk
answers refused, and the key and secret never in any message."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from orchestrator.apicore.errors import MalformedAnswer
from orchestrator.errors import CredentialsRefused, Refused
from orchestrator.integrations.imagga import ImaggaClient
from orchestrator.integrations.imagga_models import ImaggaForbidden
from orchestrator.retry import RetryPolicy
from orchestrator.sandbox.config import SandboxConfig
from orchestrator.sandbox.server import RunningSandbox, start_sandbox
from tests.tagging_support import write_photo_jpeg

KEY, SECRET = "imagga-key-123", "imagga-secret-456"
FAST = RetryPolicy(initial_interval=0.05, maximum_interval=0.2, maximum_attempts=30)


@pytest.fixture
async def sandbox() -> AsyncIterator[RunningSandbox]:
    running = await start_sandbox(SandboxConfig(edit_seconds=0.1))
    yield running
    await running.close()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as http:
        yield http


def client(sandbox: RunningSandbox, session: aiohttp.ClientSession, **kwargs: Any) -> ImaggaClient:
    kwargs.setdefault("api_key", KEY)
    kwargs.setdefault("api_secret", SECRET)
    return ImaggaClient(session, base_url=sandbox.base_url + "/imagga/v2", retry=FAST, **kwargs)


async def control(session: aiohttp.ClientSession, sandbox: RunningSandbox, **body: Any) -> None:
    async with session.put(sandbox.base_url + "/_sandbox/imagga", json=body) as answer:
        assert answer.status == 200, await answer.text()


def image(tmp_path: Any, seed: int) -> bytes:
    return write_photo_jpeg(tmp_path / f"{seed}.jpg", seed).read_bytes()


async def test_tags_and_categories_of_an_image_sent_once(
    sandbox: RunningSandbox, session: aiohttp.ClientSession, tmp_path: Any
) -> None:
    imagga = client(sandbox, session)
    photo = image(tmp_path, 1)

    tags = await imagga.tags(photo, languages=["en", "de"])
    categories = await imagga.categories(photo, "personal_photos")
    usage = await imagga.usage()

    scores = [t.confidence for t in tags]
    assert scores == sorted(scores, reverse=True) and all(0 <= s <= 100 for s in scores)
    assert {t.tag for t in tags if t.tag.startswith("de:")}  # both languages came back
    assert categories and categories[0].confidence >= categories[-1].confidence
    ledger = sandbox.ledger()["imagga"]
    assert [entry["md5"] for entry in ledger["tagged"]] == [hashlib.md5(photo).hexdigest()]
    english = [t.tag for t in tags if not t.tag.startswith("de:")]
    assert [t["tag"] for t in ledger["tagged"][0]["tags"]] == english
    assert (usage.monthly_processed, usage.left, usage.concurrency_max) == (2, 998, 5)
    imagga.use_account_cap(usage)
    assert imagga.concurrency == 5


async def test_over_the_concurrency_cap_429_backs_off_and_every_image_is_tagged(
    sandbox: RunningSandbox, session: aiohttp.ClientSession, tmp_path: Any
) -> None:
    await control(session, sandbox, concurrency=1, delay_seconds=0.05)
    imagga = client(sandbox, session, concurrency=3)  # configured above the account's cap
    photos = [image(tmp_path, seed) for seed in range(6)]

    await asyncio.gather(*(imagga.tags(photo, languages=["en"]) for photo in photos))

    ledger = sandbox.ledger()["imagga"]
    assert ledger["throttled"] > 0 and ledger["peak_in_flight"] == 1
    assert sorted(e["md5"] for e in ledger["tagged"]) == sorted(
        hashlib.md5(p).hexdigest() for p in photos
    )


async def test_a_cap_learnt_from_usage_keeps_under_it(
    sandbox: RunningSandbox, session: aiohttp.ClientSession, tmp_path: Any
) -> None:
    await control(session, sandbox, concurrency=2, delay_seconds=0.05)
    imagga = client(sandbox, session)
    imagga.use_account_cap(await imagga.usage())
    photos = [image(tmp_path, seed) for seed in range(6)]

    await asyncio.gather(*(imagga.tags(photo, languages=["en"]) for photo in photos))

    assert sandbox.ledger()["imagga"]["throttled"] == 0
    assert sandbox.ledger()["imagga"]["peak_in_flight"] == 2


async def test_bad_credentials_are_refused_without_showing_them(
    sandbox: RunningSandbox, session: aiohttp.ClientSession, tmp_path: Any
) -> None:
    await control(session, sandbox, credentials=[KEY, SECRET])
    imagga = client(sandbox, session, api_secret="wrong-secret-789")

    with pytest.raises(CredentialsRefused) as refused:
        await imagga.tags(image(tmp_path, 1), languages=["en"])

    message = str(refused.value)
    assert "IMAGGA_API_KEY" in message and "401" in message
    assert KEY not in message and "wrong-secret-789" not in message
    assert sandbox.ledger()["imagga"]["tagged"] == []


async def test_a_spent_quota_and_a_feature_outside_the_plan_pause_with_the_reason(
    sandbox: RunningSandbox, session: aiohttp.ClientSession, tmp_path: Any
) -> None:
    imagga = client(sandbox, session)
    await control(session, sandbox, monthly_limit=1, forbidden=["categories/nsfw_beta"])
    photo = image(tmp_path, 1)

    with pytest.raises(ImaggaForbidden, match="plan does not allow") as feature:
        await imagga.categories(photo, "nsfw_beta")
    await imagga.tags(photo, languages=["en"])
    with pytest.raises(ImaggaForbidden, match=r"0 of 1 requests left; it resets 2099") as quota:
        await imagga.tags(photo, languages=["en"])

    assert "categories/nsfw_beta" in str(feature.value)
    assert KEY not in str(quota.value) + str(feature.value)
    await control(session, sandbox, monthly_processed=0)  # the month turns over
    assert await imagga.tags(photo, languages=["en"])


@pytest.mark.parametrize(("junk", "says"), [("html", "not JSON"), ("error_200", "HTTP 200")])
async def test_junk_answers_are_refused(
    sandbox: RunningSandbox, session: aiohttp.ClientSession, tmp_path: Any, junk: str, says: str
) -> None:
    await control(session, sandbox, junk=junk)
    imagga = client(sandbox, session)

    with pytest.raises(MalformedAnswer, match=says) as refused:
        await imagga.tags(image(tmp_path, 1), languages=["en"])

    assert isinstance(refused.value, Refused)
    assert sandbox.ledger()["imagga"]["tag_requests"] == 0


async def test_server_errors_and_resets_are_retried(
    sandbox: RunningSandbox, session: aiohttp.ClientSession, tmp_path: Any
) -> None:
    sandbox.set_faults({"error_5xx": 0.5, "reset": 0.3})
    imagga = client(sandbox, session)
    photos = [image(tmp_path, seed) for seed in range(5)]

    for photo in photos:
        assert await imagga.tags(photo, languages=["en"])

    faults = sandbox.ledger()["faults"]
    assert faults.get("error_5xx", 0) + faults.get("reset", 0) > 0
    assert len(sandbox.ledger()["imagga"]["tagged"]) == len(photos)
