"""Three daemons on one Postgres, callbacks lost, duplicated and reordered, daemons SIGKILLed.

ORCH_CHAOS_ROUNDS sets how many times a daemon is killed and restarted (default 3); raise it
for a soak: whenever every job is done, a few more are submitted, so each round hits work in
progress. Every job must complete with one project, one edit and one export, outputs verified.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from pathlib import Path

import pytest

from orchestrator.imagen.client import ImagenClient
from orchestrator.sandbox.samples import make_sample_shoot
from orchestrator.service.submit import submit_request
from orchestrator.spec import JobSpec
from orchestrator.store.queries import Store
from orchestrator.transfer.manager import TransferSettings, make_session
from orchestrator.workflow.planning import RunRequest
from tests.daemon_support import Daemon, all_in, daemon_env, md5_matches_ledger, migrated, wait_for
from tests.helpers import ledger, sandbox_process

pytestmark = pytest.mark.postgres

ROUNDS = int(os.environ.get("ORCH_CHAOS_ROUNDS", "3"))
JOBS = 12
FAULTS = (
    "lose_callback=0.3,duplicate_callback=0.3,reorder_callback=0.3,error_5xx=0.02,throttle_429=0.02"
)
TERMINAL = {"completed", "failed", "cancelled"}


async def _submit_all(db_url: str, api_url: str, shoots: list[Path]) -> list[str]:
    store = Store.open(db_url)
    session = make_session(TransferSettings())
    try:
        client = ImagenClient(session, base_url=api_url, api_key="test-key-0123456789")
        return [
            job.id
            for shoot in shoots
            for job in (
                await submit_request(
                    store,
                    client,
                    RunRequest(source=shoot, profiles=["2001"], spec=JobSpec(export=True)),
                )
            ).jobs
        ]
    finally:
        await session.close()
        await store.close()


def _shoots(base: Path, first: int, count: int) -> list[Path]:
    shoots = []
    for n in range(first, first + count):
        shoots.append(base / f"shoot{n:03d}")
        make_sample_shoot(shoots[-1], raw=0, jpeg=3)
    return shoots


def _any_alive(daemons: list[Daemon]) -> Daemon:
    return next(d for d in daemons if d.alive())


def _wait_for_lease_holder(daemons: list[Daemon], *, seconds: float) -> Daemon | None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        owners = [j["lease_owner"] or "" for j in _any_alive(daemons).jobs().values()]
        for daemon in daemons:
            if any(f":{daemon.pid}:" in owner for owner in owners):
                return daemon
        time.sleep(0.05)
    return None


def test_every_job_completes_once_through_kills_and_callback_chaos(
    pg_url: str, tmp_path: Path, daemons: list[Daemon]
) -> None:
    migrated(pg_url)
    rng = random.Random(20261122)
    with sandbox_process("--edit-seconds", "1", "--faults", FAULTS, "--seed", "7") as sandbox:
        env = daemon_env(
            f"{sandbox}/v1",
            pg_url,
            ORCH_LEASE_TTL="2",
            ORCH_MAX_JOBS="3",
            ORCH_POLL_INITIAL="1",
            ORCH_POLL_MAX="2",
        )
        daemons.extend(Daemon(env, tmp_path, name=f"daemon{i}").start() for i in range(3))
        ids = asyncio.run(_submit_all(pg_url, f"{sandbox}/v1", _shoots(tmp_path, 0, JOBS)))
        assert len(ids) == JOBS

        killed_lease_holders = 0
        for _ in range(ROUNDS):
            time.sleep(rng.uniform(0.3, 1.5))
            if all_in(_any_alive(daemons).jobs(), ids, TERMINAL):
                ids += asyncio.run(
                    _submit_all(pg_url, f"{sandbox}/v1", _shoots(tmp_path, len(ids), 4))
                )
            # Prefer a daemon caught holding a lease: its jobs must be taken over.
            holder = _wait_for_lease_holder(daemons, seconds=3)
            victim = holder or rng.choice(daemons)
            killed_lease_holders += holder is not None
            victim.kill()
            time.sleep(rng.uniform(0.2, 1.0))
            victim.start()

        jobs = wait_for(
            lambda: (j := _any_alive(daemons).jobs()) and all_in(j, ids, TERMINAL) and j,
            timeout=120,
            interval=0.5,
            what="every job to finish",
        )
        assert {jobs[i]["state"] for i in ids} == {"completed"}, {
            i: (jobs[i]["state"], jobs[i]["last_error"]) for i in ids
        }
        by_name: dict[str, list[dict[str, object]]] = {}
        for project in ledger(sandbox)["projects"]:
            by_name.setdefault(project["name"], []).append(project)
        verified = 0
        for job_id in ids:
            [project] = by_name[jobs[job_id]["project_name"]]
            assert project["project_uuid"] == jobs[job_id]["project_uuid"]
            assert (project["edit_requests"], project["export_requests"]) == (1, 1), job_id
            verified += md5_matches_ledger(project, jobs[job_id])
        assert verified == len(ids) * 6
        if killed_lease_holders:
            takeovers = [
                e
                for job_id in ids
                for e in _any_alive(daemons).job(job_id)["events"]
                if e["kind"] == "lease"
            ]
            assert takeovers, "a killed daemon's leases were never taken over"
