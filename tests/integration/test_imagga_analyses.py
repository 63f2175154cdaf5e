"""The Imagga client's other analyses against the sandbox's Imagga on a real port: one upload
read for colours, faces and croppings (each billed once), face groupings through a ticket that
is pending before it is final, junk answers refused, a plan without the feature a 403."""

from __future__ import annotations

import asyncio
import hashlib
import io
from collections.abc import AsyncIterator

import aiohttp
import pytest

from orchestrator.apicore.errors import MalformedAnswer
from orchestrator.integrations.imagga import ImaggaClient
from orchestrator.integrations.imagga_models import ImaggaForbidden
from orchestrator.retry import RetryPolicy
from orchestrator.sandbox import pictures
from orchestrator.sandbox.config import SandboxConfig
from orchestrator.sandbox.server import RunningSandbox, start_sandbox

FAST = RetryPolicy(initial_interval=0.05, maximum_interval=0.2, maximum_attempts=30)


@pytest.fixture
async def sandbox() -> AsyncIterator[RunningSandbox]:
    running = await start_sandbox(SandboxConfig(edit_seconds=0.1))
    yield running
    await running.close()


def scene(seed: str) -> bytes:
    out = io.BytesIO()
    pictures.synthetic(hashlib.md5(seed.encode()).hexdigest(), long_side=480).save(
        out, format="JPEG", quality=88
    )
    return out.getvalue()


async def control(session: aiohttp.ClientSession, sandbox: RunningSandbox, **body: object) -> None:
    async with session.put(sandbox.base_url + "/_sandbox/imagga", json=body) as answer:
        assert answer.status == 200, await answer.text()


def client(sandbox: RunningSandbox, session: aiohttp.ClientSession) -> ImaggaClient:
    return ImaggaClient(
        session, base_url=sandbox.base_url + "/imagga/v2", api_key="k", api_secret="s", retry=FAST
    )


async def test_one_upload_serves_colours_faces_and_croppings_each_billed_once(
    sandbox: RunningSandbox,
) -> None:
    async with aiohttp.ClientSession() as session:
        imagga = client(sandbox, session)
        upload_id = await imagga.upload(scene("s5"))
        colours = await imagga.colors(upload_id)
        faces = await imagga.faces(upload_id)
        crops = await imagga.croppings(upload_id, [(320, 320), (256, 320)])
        await imagga.delete_upload(upload_id)
    percents = [c.percent for c in colours]
    assert percents == sorted(percents, reverse=True) and 0 < sum(percents) <= 100.5
    assert all(c.hex.startswith("#") and len(c.hex) == 7 and c.name for c in colours)
    assert faces and all(f.face_id and f.xmax > f.xmin and f.ymax > f.ymin for f in faces)
    assert [(c.target_width, c.target_height) for c in crops] == [(320, 320), (256, 320)]
    assert all(0 <= c.x1 < c.x2 <= 480 for c in crops)
    ledger = sandbox.ledger()["imagga"]
    assert (ledger["colors_requests"], ledger["faces_requests"], ledger["croppings_requests"]) == (
        1,
        1,
        1,
    )
    assert [u["deleted"] for u in ledger["uploads"].values()] == [True]


async def test_groupings_answer_a_ticket_pending_then_final_with_the_faces_by_person(
    sandbox: RunningSandbox,
) -> None:
    async with aiohttp.ClientSession() as session:
        await control(session, sandbox, ticket_seconds=0.3)
        imagga = client(sandbox, session)
        face_ids: list[str] = []
        for seed in ("s3", "s5", "s6", "s8"):
            upload_id = await imagga.upload(scene(seed))
            face_ids += [f.face_id for f in await imagga.faces(upload_id) if f.face_id]
        ticket_id = await imagga.group_faces(face_ids)
        first = await imagga.ticket(ticket_id)
        for _ in range(600):  # until final (0.3 s at the sandbox), within half a minute
            state = await imagga.ticket(ticket_id)
            if state.final:
                break
            await asyncio.sleep(0.05)
    assert not first.final
    grouped = [f for group in state.groups for f in group] + list(state.ungrouped)
    assert sorted(grouped) == sorted(set(face_ids))
    assert sandbox.ledger()["imagga"]["groupings_requests"] == 1


async def test_a_plan_without_the_feature_is_a_403_and_junk_is_refused(
    sandbox: RunningSandbox,
) -> None:
    async with aiohttp.ClientSession() as session:
        imagga = client(sandbox, session)
        upload_id = await imagga.upload(scene("x"))
        await control(session, sandbox, forbidden=["colors"])
        with pytest.raises(ImaggaForbidden, match="plan does not allow it"):
            await imagga.colors(upload_id)
        await control(session, sandbox, forbidden=[], junk="error_200")
        with pytest.raises(MalformedAnswer):
            await imagga.faces(upload_id)
        await control(session, sandbox, junk=None)
