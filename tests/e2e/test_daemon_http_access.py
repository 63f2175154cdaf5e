"""The daemon's HTTP side refuses foreign Host names on /api and, beyond loopback, needs a token.

Real daemon processes on real ports; requests as a DNS-rebinding page's browser would send them
(the right address, a foreign Host) and as an operator's tools would.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from tests.daemon_support import Daemon, daemon_env, http, wait_for

TOKEN = "a-token-chosen-by-the-operator-0123456789"
CALLBACK = b'{"project_uuid": "p-1", "action": "edit", "status": "Completed"}'


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return daemon_env("http://127.0.0.1:9/v1", f"sqlite:///{tmp_path / 'jobs.db'}", **extra)


def _get(daemon: Daemon, path: str, **headers: str) -> int:
    return http("GET", f"{daemon.url}{path}", headers=headers)[0]


def test_on_loopback_a_foreign_host_cannot_read_the_api(
    tmp_path: Path, daemons: list[Daemon]
) -> None:
    daemon = Daemon(_env(tmp_path), tmp_path)
    daemons.append(daemon.start())
    evil = f"rebind.attacker.example:{daemon.port}"
    assert _get(daemon, "/api/jobs", Host=evil) == 403
    assert _get(daemon, "/api/jobs/ffffffff", Host=evil) == 403
    assert _get(daemon, "/api/jobs", Host=f"localhost:{daemon.port}") == 200
    assert _get(daemon, "/api/jobs", Host=f"127.0.0.1:{daemon.port}") == 200
    assert _get(daemon, "/api/jobs") == 200  # no token needed on loopback
    # Probes and scrapers come by any name; callbacks carry their own secret.
    assert _get(daemon, "/healthz", Host=evil) == 200
    assert _get(daemon, "/readyz", Host=evil) == 200
    assert _get(daemon, "/metrics", Host=evil) == 200
    status, _ = http("POST", f"{daemon.url}/callbacks/{'x' * 40}", CALLBACK, {"Host": evil})
    assert status == 404


def test_the_public_url_and_allowed_hosts_name_the_daemon_too(
    tmp_path: Path, daemons: list[Daemon]
) -> None:
    env = _env(tmp_path, ORCH_ALLOWED_HOSTS="nas.local, studio-mac")
    daemon = Daemon(env, tmp_path, public_url="https://orchestrator.example.com")
    daemons.append(daemon.start())
    for name in ("orchestrator.example.com", "NAS.local:8750", "studio-mac"):
        assert _get(daemon, "/api/jobs", Host=name) == 200, name
    assert _get(daemon, "/api/jobs", Host="example.com") == 403


def test_a_configured_token_is_needed_and_compared_exactly(
    tmp_path: Path, daemons: list[Daemon]
) -> None:
    env = _env(tmp_path, ORCH_UI_TOKEN=TOKEN, ORCH_METRICS_NEED_TOKEN="true")
    daemon = Daemon(env, tmp_path)
    daemons.append(daemon.start())
    good = f"Bearer {TOKEN}"
    assert _get(daemon, "/api/jobs") == 401
    assert _get(daemon, "/api/jobs", Authorization=f"Bearer {TOKEN[:-1]}") == 401
    assert _get(daemon, "/api/jobs", Authorization=f"Basic {TOKEN}") == 401
    assert _get(daemon, "/api/jobs", Authorization=good) == 200
    assert _get(daemon, "/api/jobs", Authorization=good, Host="rebind.example") == 403
    assert _get(daemon, "/metrics") == 401
    assert _get(daemon, "/metrics", Authorization=good) == 200
    assert _get(daemon, "/healthz") == 200
    assert http("POST", f"{daemon.url}/callbacks/{'x' * 40}", CALLBACK)[0] == 404
    assert TOKEN not in daemon.logs()


def test_beyond_loopback_a_token_is_made_up_printed_once_and_needed(
    tmp_path: Path, daemons: list[Daemon]
) -> None:
    daemon = Daemon(_env(tmp_path), tmp_path)
    daemon.args = ("--listen", f"0.0.0.0:{daemon.port}")
    daemons.append(daemon.start())
    line = wait_for(
        lambda: re.search(r"Authorization: Bearer ([A-Za-z0-9_-]{32,})", daemon.logs()),
        timeout=10,
        what="the made-up token on stderr",
    )
    token = line.group(1)
    assert daemon.logs().count(token) == 1
    assert _get(daemon, "/api/jobs") == 401
    assert _get(daemon, "/api/jobs", Authorization=f"Bearer {token}") == 200
    assert _get(daemon, "/metrics") == 200
    assert _get(daemon, "/healthz") == 200


def test_the_job_list_is_paged_and_its_parameters_checked(
    tmp_path: Path, daemons: list[Daemon]
) -> None:
    daemon = Daemon(_env(tmp_path), tmp_path)
    daemons.append(daemon.start())
    status, body = http("GET", f"{daemon.url}/api/jobs?limit=5&state=editing")
    assert status == 200
    assert json.loads(body) == {"jobs": [], "next": None, "refused": []}
    for query in ("limit=many", "state=nowhere", "cursor=not-ours"):
        status, body = http("GET", f"{daemon.url}/api/jobs?{query}")
        assert status == 400, query
        assert json.loads(body)["error"], query
