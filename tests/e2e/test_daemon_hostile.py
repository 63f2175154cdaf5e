"""The callback endpoint under hostile input: only 4xx answers, and the daemon stays up.

A seeded fuzz loop, bounded in count and in time, against a daemon process on a real port:
wrong and malformed secrets, bodies too large, not JSON, the wrong shape, the wrong project.
"""

from __future__ import annotations

import asyncio
import json
import random
import secrets
import time
from pathlib import Path

import aiohttp
from sqlalchemy import update

from orchestrator.store.models import Job
from orchestrator.store.queries import NewJob, NewPhoto, Store
from orchestrator.workflow.processing import callback_secret_hash
from tests.daemon_support import Daemon, daemon_env, free_port, http, wait_for

REQUESTS = 600
TIME_BUDGET_SECONDS = 20.0
PROJECT = "0b7a4ef0-9a51-4a55-a4e5-7f4a3f7f1c11"


async def _job_with_secret(db_url: str, secret: str) -> str:
    """A job waiting for its edit, whose callback secret the test knows (the daemon leaves it)."""
    store = Store.open(db_url)
    try:
        await store.create_job(
            NewJob(
                id="f" * 32,
                name="target",
                source="/nowhere",
                edited_dir="/nowhere/edited",
                exported_dir="/nowhere/exported",
                image_type="JPG",
                profile_key=2001,
                profile_name="P",
                spec={"version": 1},
                project_name="orchestrator-target",
            ),
            [NewPhoto("a.jpg", "a.jpg", 1, 1)],
        )
        async with store.engine.begin() as conn:
            await conn.execute(
                update(Job).values(
                    state="editing",
                    project_uuid=PROJECT,
                    callback_secret_hash=callback_secret_hash(secret),
                )
            )
    finally:
        await store.close()
    return "f" * 32


def _hostile_request(rng: random.Random, secret: str) -> tuple[str, str, bytes, dict[str, str]]:
    """One bad request: (method, path, body, headers)."""
    valid = {"project_uuid": PROJECT, "status": "Completed", "action": "edit"}
    missing = rng.choice(list(valid))
    wrong_secrets = [
        secrets.token_urlsafe(32),
        secret[:-1] + ("A" if secret[-1] != "A" else "B"),
        "short",
        "a" * 500,
        "..%2F..%2Fetc%2Fpasswd",
        "%F0%9F%92%A9" * 20,
        secret + "!",
        "".join(rng.choice("0123456789abcdef") for _ in range(64)),
        "%00" * 40,
    ]
    bodies: list[bytes] = [
        json.dumps({**valid, "project_uuid": str(rng.random())}).encode(),
        json.dumps({**valid, "action": rng.choice(["delete", "EDITS", "", 7, None])}).encode(),
        json.dumps({k: v for k, v in valid.items() if k != missing}).encode(),
        json.dumps({**valid, "status": "x" * rng.randint(33, 5000)}).encode(),
        json.dumps({**valid, "project_uuid": {"$ne": None}}).encode(),
        json.dumps([valid]).encode(),
        b"null",
        b"",
        b"{",
        b'{"project_uuid": "' + b"\xff" * 8,
        bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 2000))),
        b"[" * 100_000 + b"]" * 100_000,
        json.dumps({**valid, "pad": "x" * rng.randint(17_000, 1_000_000)}).encode(),
    ]
    if rng.random() < 0.3:
        path = f"/callbacks/{rng.choice(wrong_secrets)}"
        body = json.dumps(valid).encode() if rng.random() < 0.5 else rng.choice(bodies)
    else:
        path, body = f"/callbacks/{secret}", rng.choice(bodies)
    method = "POST" if rng.random() < 0.9 else rng.choice(["GET", "PUT", "DELETE", "PATCH"])
    headers = {
        "Content-Type": rng.choice(
            ["application/json", "text/plain", "", "x-unknown/type; charset=utf-9"]
        )
    }
    return method, path, body, headers


async def _fire(base_url: str, secret: str, seed: int) -> dict[int, int]:
    rng = random.Random(seed)
    statuses: dict[int, int] = {}
    deadline = time.monotonic() + TIME_BUDGET_SECONDS
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:

        async def one() -> None:
            method, path, body, headers = _hostile_request(rng, secret)
            try:
                async with session.request(
                    method, base_url + path, data=body, headers=headers
                ) as answer:
                    await answer.read()
                    statuses[answer.status] = statuses.get(answer.status, 0) + 1
            except (aiohttp.ClientOSError, aiohttp.ServerDisconnectedError):
                # The server may close on a body it refused before it was all sent.
                statuses[-1] = statuses.get(-1, 0) + 1

        sent = 0
        while sent < REQUESTS and time.monotonic() < deadline:
            await asyncio.gather(*(one() for _ in range(16)))
            sent += 16
    return statuses


def test_hostile_callbacks_get_4xx_and_change_nothing(
    tmp_path: Path, daemons: list[Daemon]
) -> None:
    db_url = f"sqlite:///{tmp_path / 'orchestrator.db'}"
    secret = secrets.token_urlsafe(32)
    env = daemon_env(f"http://127.0.0.1:{free_port()}/v1", db_url)
    daemon = Daemon(env, tmp_path)
    daemons.append(daemon.start())
    job_id = asyncio.run(_job_with_secret(db_url, secret))

    statuses = asyncio.run(_fire(daemon.url, secret, seed=5))
    answered = {code for code in statuses if code != -1}
    assert answered and all(400 <= code < 500 for code in answered), statuses
    assert statuses.get(-1, 0) <= sum(statuses.values()) // 20, statuses
    assert daemon.alive() and http("GET", f"{daemon.url}/healthz")[0] == 200
    assert not [e for e in daemon.job(job_id)["events"] if e["kind"] == "callback"]

    # The real callback still gets through, once.
    good = json.dumps({"project_uuid": PROJECT, "status": "Completed", "action": "edit"})
    assert http("POST", f"{daemon.url}/callbacks/{secret}", good.encode())[0] == 202
    assert http("POST", f"{daemon.url}/callbacks/{secret}", good.encode())[0] == 200
    assert len([e for e in daemon.job(job_id)["events"] if e["kind"] == "callback"]) == 1
    metrics = wait_for(lambda: http("GET", f"{daemon.url}/metrics")[1].decode(), timeout=5)
    for outcome in (
        "unknown_secret",
        "bad_body",
        "wrong_project",
        "too_large",
        "accepted",
        "duplicate",
    ):
        assert f'orchestrator_callbacks_total{{outcome="{outcome}"}}' in metrics, outcome
    assert secret not in daemon.logs()
