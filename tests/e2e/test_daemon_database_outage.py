"""The database goes away under a running daemon: /readyz goes red, it retries, nothing is lost.

The daemon reaches Postgres through a TCP proxy of the test's, which is cut (every connection
dropped, nothing accepted) while a job waits for its edit, then restored.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from orchestrator.sandbox.samples import make_sample_shoot
from tests.daemon_support import (
    Daemon,
    daemon_env,
    free_port,
    http,
    md5_matches_ledger,
    migrated,
    wait_for,
)
from tests.helpers import ledger, orchestrator, sandbox_process

pytestmark = pytest.mark.postgres


class TcpProxy:
    """Forwards a local port to Postgres, in a thread of its own; can be cut and restored."""

    def __init__(self, host: str, port: int) -> None:
        self.port = free_port()
        self._target = (host, port)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()

    def __enter__(self) -> TcpProxy:
        self._thread.start()
        self.restore()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.cut()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)

    def restore(self) -> None:
        """Accept connections again."""
        asyncio.run_coroutine_threadsafe(self._listen(), self._loop).result(timeout=5)

    def cut(self) -> None:
        """Stop accepting and drop every open connection, as a dead network would."""
        asyncio.run_coroutine_threadsafe(self._cut(), self._loop).result(timeout=5)

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._forward, "127.0.0.1", self.port)

    async def _cut(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._open):
            writer.transport.abort()
        self._open.clear()

    async def _forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._target)
        except OSError:
            writer.transport.abort()
            return
        self._open |= {writer, up_writer}

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError):
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            sink.transport.abort()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


def test_a_database_outage_turns_readyz_red_and_loses_nothing(
    pg_url: str, tmp_path: Path, daemons: list[Daemon]
) -> None:
    migrated(pg_url)
    direct = make_url(pg_url)
    with (
        TcpProxy(direct.host or "127.0.0.1", direct.port or 5432) as proxy,
        sandbox_process("--edit-seconds", "2") as sandbox,
    ):
        proxied = direct.set(port=proxy.port).render_as_string(hide_password=False)
        env = daemon_env(f"{sandbox}/v1", proxied, ORCH_POLL_INITIAL="0.5", ORCH_POLL_MAX="1")
        shoot = tmp_path / "shoot"
        shoot.mkdir()
        make_sample_shoot(shoot, raw=0, jpeg=2)
        submitted = orchestrator(
            "submit",
            str(shoot),
            "--profile",
            "2001",
            "--export",
            "--json",
            env={**env, "ORCH_DATABASE_URL": pg_url},
        )
        [job_id] = json.loads(submitted.stdout)
        daemon = Daemon(env, tmp_path)
        daemons.append(daemon.start())
        wait_for(
            lambda: daemon.jobs()[job_id]["state"] == "editing",
            timeout=20,
            what="the job to wait for its edit",
        )

        proxy.cut()
        wait_for(
            lambda: http("GET", f"{daemon.url}/readyz")[0] == 503,
            timeout=10,
            what="/readyz to go red",
        )
        assert http("GET", f"{daemon.url}/healthz")[0] == 200
        assert http("GET", f"{daemon.url}/api/jobs")[0] == 503
        # The edit ends meanwhile; its callback cannot be stored.
        metrics = wait_for(
            lambda: (
                (m := http("GET", f"{daemon.url}/metrics")[1].decode())
                and 'orchestrator_callbacks_total{outcome="database_down"} 1.0' in m
                and m
            ),
            timeout=30,
            what="the callback to be refused for now",
        )
        assert "orchestrator_database_up 0.0" in metrics

        proxy.restore()
        wait_for(
            lambda: http("GET", f"{daemon.url}/readyz")[0] == 200,
            timeout=20,
            what="/readyz to go green again",
        )
        job = wait_for(
            lambda: (j := daemon.jobs()[job_id])["state"] == "completed" and j,
            timeout=60,
            what="the job to finish after the outage",
        )
        [project] = ledger(sandbox)["projects"]
        assert (project["edit_requests"], project["export_requests"]) == (1, 1)
        assert md5_matches_ledger(project, job) == 4
        assert daemon.alive()
        assert daemon.terminate() == 0


def test_a_drive_cut_by_an_outage_goes_on_as_soon_as_the_database_answers(
    pg_url: str, tmp_path: Path, daemons: list[Daemon]
) -> None:
    """The database goes away while the daemon holds a job's lease (uploading, slowly): the
    drive ends without giving the lease back; once the database answers, the daemon gives its
    stranded lease back and drives the job on at once, not a lease TTL (10 minutes) later."""
    migrated(pg_url)
    direct = make_url(pg_url)
    with (
        TcpProxy(direct.host or "127.0.0.1", direct.port or 5432) as proxy,
        sandbox_process(
            "--edit-seconds", "1", "--faults", "slow=1", "--slow-seconds", "0.3"
        ) as sandbox,
    ):
        proxied = direct.set(port=proxy.port).render_as_string(hide_password=False)
        env = daemon_env(
            f"{sandbox}/v1",
            proxied,
            ORCH_LEASE_TTL="600",
            ORCH_CONCURRENCY="1",
            ORCH_POLL_INITIAL="0.5",
            ORCH_POLL_MAX="1",
        )
        shoot = tmp_path / "shoot"
        shoot.mkdir()
        make_sample_shoot(shoot, raw=0, jpeg=12)
        submitted = orchestrator(
            "submit",
            str(shoot),
            "--profile",
            "2001",
            "--json",
            env={**env, "ORCH_DATABASE_URL": pg_url},
        )
        [job_id] = json.loads(submitted.stdout)
        daemon = Daemon(env, tmp_path)
        daemons.append(daemon.start())
        wait_for(
            lambda: daemon.jobs()[job_id]["state"] == "uploading",
            timeout=30,
            what="the job to be uploading under the daemon's lease",
        )

        proxy.cut()
        ended = {
            "the database went away while driving the job; it goes on when it answers",
            "driving the job failed",  # how a daemon that parks it as a bug says so
        }
        wait_for(
            lambda: any(
                r["msg"] in ended and r.get("job_id") == job_id for r in daemon.log_records()
            ),
            timeout=60,
            what="the drive to end for want of the database",
        )
        proxy.restore()
        # Far below the lease's 600 s: the job did not wait for its own lease to run out.
        job = wait_for(
            lambda: (j := daemon.jobs()[job_id])["state"] == "completed" and j,
            timeout=120,
            what="the job to finish after the outage",
        )
        messages = [r["msg"] for r in daemon.log_records()]
        assert "gave back leases stranded by a database outage; their jobs go on now" in messages
        assert "driving the job failed" not in messages  # an outage is not parked as a bug
        detail = daemon.job(job_id)
        assert not [e for e in detail["events"] if e["kind"] == "lease"]  # nobody took it over
        [project] = ledger(sandbox)["projects"]
        assert project["edit_requests"] == 1
        assert md5_matches_ledger(project, job) == 12
        assert daemon.alive()
        assert daemon.terminate() == 0
