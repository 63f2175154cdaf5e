"""The Imagga client's face recognition index calls against the sandbox on a real port: feed,
train (a ticket), look up; what is billed; what is refused."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from orchestrator.apicore.errors import ApiBadRequest
from orchestrator.sandbox.server import RunningSandbox
from tests.integration.test_imagga_analyses import client, control, sandbox, scene

__all__ = ["sandbox"]  # the fixture, shared


async def test_a_trained_index_recognises_a_person_and_only_that_person(
    sandbox: RunningSandbox,
) -> None:
    async with aiohttp.ClientSession() as session:
        await control(session, sandbox, ticket_seconds=0.3)
        imagga = client(sandbox, session)
        faces = []
        for seed in ("s3", "s5", "s6", "s8"):
            upload_id = await imagga.upload(scene(seed))
            faces += [f.face_id for f in await imagga.faces(upload_id) if f.face_id]
        ticket = await imagga.group_faces(faces)
        for _ in range(600):  # until final (0.3 s at the sandbox), within half a minute
            state = await imagga.ticket(ticket)
            if state.final:
                break
            await asyncio.sleep(0.05)
        persons = [list(g) for g in state.groups] + [[f] for f in state.ungrouped]
        anna, other = persons[0], persons[1]

        assert await imagga.recognise("studio", anna[0]) == []  # no such index yet
        spent = sandbox.ledger()["imagga"]["monthly_processed"]
        await imagga.feed_index("studio", {"Anna": anna})
        assert sandbox.ledger()["imagga"]["monthly_processed"] == spent  # feeding is free
        assert await imagga.recognise("studio", anna[0]) == []  # fed, not trained
        training = await imagga.train_index("studio")
        first_look = await imagga.ticket_final(training)
        for _ in range(600):
            if await imagga.ticket_final(training):
                break
            await asyncio.sleep(0.05)
        [match] = [m for m in await imagga.recognise("studio", anna[-1]) if m.score >= 0.5]
        others = await imagga.recognise("studio", other[0])

    assert not first_look
    assert match.person == "Anna" and match.score > 0.5
    assert all(m.score < 0.5 for m in others)
    ledger = sandbox.ledger()["imagga"]
    assert ledger["recognition_trainings"] == 1
    assert ledger["recognition_lookups"] == 3  # the unknown index's 404 is not billed
    assert ledger["recognition_requests"] == 6
    assert ledger["recognition_indexes"]["studio"]["trained"] == {"Anna": len(anna)}


async def test_unknown_faces_are_refused_and_nothing_is_fed(sandbox: RunningSandbox) -> None:
    async with aiohttp.ClientSession() as session:
        imagga = client(sandbox, session)
        with pytest.raises(ApiBadRequest, match="HTTP 400"):
            await imagga.feed_index("studio", {"Anna": ["not-a-face"]})
        with pytest.raises(ApiBadRequest, match="HTTP 400"):
            await imagga.recognise("studio", "not-a-face")
    assert sandbox.ledger()["imagga"]["recognition_indexes"] == {}
