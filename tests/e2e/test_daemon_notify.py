"""The daemon tells the studio through Apprise: a real daemon, the sandbox, and a small receiver
on 127.0.0.1 that Apprise's `json://` target posts to (answering as each test tells it)."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from orchestrator.sandbox.samples import make_sample_shoot
from tests.daemon_support import Daemon, daemon_env, free_port, wait_for
from tests.helpers import orchestrator, sandbox_process

JPEG_PROFILE = "2001"
PASSWORD = "s3cret-receiver-password"


class Receiver:
    """An HTTP endpoint in a thread of its own: records each POST, answers the statuses given
    (then 200)."""

    def __init__(self, statuses: list[int]) -> None:
        self.port = free_port()
        self.statuses = list(statuses)
        self.received: list[dict[str, Any]] = []
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def url(self) -> str:
        """The Apprise URL of this receiver (with a password Apprise must keep out of logs)."""
        return f"json://studio:{PASSWORD}@127.0.0.1:{self.port}/hook"

    async def _handle(self, request: web.Request) -> web.Response:
        self.received.append(
            {"path": request.path, "auth": request.headers.get("Authorization", "")}
            | json.loads(await request.read())
        )
        status = self.statuses.pop(0) if self.statuses else 200
        return web.Response(status=status, text="no" if status >= 300 else "ok")

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        app.router.add_post("/hook", self._handle)
        runner = web.AppRunner(app)
        self._loop.run_until_complete(runner.setup())
        self._loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", self.port).start())
        self._started.set()
        self._loop.run_forever()
        self._loop.run_until_complete(runner.cleanup())

    def __enter__(self) -> Receiver:
        self._thread.start()
        self._started.wait(10)
        return self

    def __exit__(self, *_: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


@pytest.fixture
def sandbox() -> Iterator[str]:
    with sandbox_process("--edit-seconds", "0.3") as url:
        yield url


def _run_one_job(
    tmp_path: Path, sandbox: str, daemons: list[Daemon], notify: str
) -> tuple[Daemon, dict[str, Any]]:
    """Submit a two-photo shoot, start a daemon that notifies `notify`, wait for the end."""
    env = daemon_env(f"{sandbox}/v1", f"sqlite:///{tmp_path / 'jobs.db'}", ORCH_NOTIFY=notify)
    shoot = tmp_path / "Smith wedding"
    shoot.mkdir()
    make_sample_shoot(shoot, raw=0, jpeg=2)
    done = orchestrator("submit", str(shoot), "--profile", JPEG_PROFILE, "--json", env=env)
    assert done.returncode == 0, done.stderr
    [job_id] = json.loads(done.stdout)
    daemon = Daemon(env, tmp_path)
    daemons.append(daemon.start())
    job = wait_for(
        lambda: (j := daemon.jobs().get(job_id)) and j["state"] == "completed" and j,
        timeout=60,
        what="the job to complete",
    )
    return daemon, job


def _logged(daemon: Daemon, message: str) -> list[dict[str, Any]]:
    return [r for r in daemon.log_records() if r["msg"] == message]


def test_a_job_that_completes_sends_one_message_with_its_name_and_link(
    tmp_path: Path, sandbox: str, daemons: list[Daemon]
) -> None:
    with Receiver([]) as receiver:
        daemon, job = _run_one_job(tmp_path, sandbox, daemons, receiver.url())
        wait_for(lambda: _logged(daemon, "notified"), timeout=20, what="the message")

    [message] = receiver.received
    assert message["title"] == f"{job['name']} completed"
    assert job["name"] in message["message"]
    assert f"{daemon.public_url}/jobs/{job['id']}" in message["message"]
    assert message["auth"].startswith("Basic ")  # the password was sent…
    assert PASSWORD not in daemon.logs()  # …and never logged
    [sent] = _logged(daemon, "notified")
    assert sent["job_id"] == job["id"] and sent["news"] == "completed"
    assert "****" in sent["target"]


def test_a_receiver_answering_500_is_tried_again(
    tmp_path: Path, sandbox: str, daemons: list[Daemon]
) -> None:
    with Receiver([500]) as receiver:
        daemon, job = _run_one_job(tmp_path, sandbox, daemons, receiver.url())
        wait_for(lambda: _logged(daemon, "notified"), timeout=30, what="the message")

    assert [m["title"] for m in receiver.received] == [f"{job['name']} completed"] * 2
    [retried] = _logged(daemon, "notification not sent; trying again")
    assert retried["attempt"] == 1 and retried["job_id"] == job["id"]
    assert _logged(daemon, "notified")[0]["attempt"] == 2
    assert PASSWORD not in daemon.logs()


def test_a_receiver_that_is_down_never_stops_the_job(
    tmp_path: Path, sandbox: str, daemons: list[Daemon]
) -> None:
    down = f"json://studio:{PASSWORD}@127.0.0.1:{free_port()}/hook"
    daemon, job = _run_one_job(tmp_path, sandbox, daemons, down)

    [gave_up] = wait_for(
        lambda: _logged(daemon, "notification not sent; giving up"), timeout=60, what="giving up"
    )
    assert gave_up["attempts"] == 4 and gave_up["job_id"] == job["id"]
    assert len(_logged(daemon, "notification not sent; trying again")) == 3
    assert daemon.alive() and daemon.jobs()[job["id"]]["state"] == "completed"
    assert PASSWORD not in daemon.logs()


def test_a_url_apprise_cannot_use_stops_the_start_without_showing_it(tmp_path: Path) -> None:
    env = daemon_env(
        "http://127.0.0.1:9/v1",
        f"sqlite:///{tmp_path / 'jobs.db'}",
        ORCH_NOTIFY=f"json://127.0.0.1:9/ok, nonsense://{PASSWORD}",
    )
    done = orchestrator("daemon", "--listen", f"127.0.0.1:{free_port()}", env=env, timeout=60)
    assert done.returncode == 2
    assert "ORCH_NOTIFY[1]" in done.stderr and "Apprise" in done.stderr
    assert PASSWORD not in done.stderr + done.stdout
