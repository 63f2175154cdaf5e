"""The daemon's HTTP side refuses foreign Host names on /api and, beyond loopback, needs a token.

Real daemon processes on real ports; requests as a DNS-rebinding page's browser would send them
(the right address, a foreign Host) and as an operator's tools would.
"""

from __future__ import annotations

import json
import re
import stat
from http.client import HTTPConnection
from http.cookies import SimpleCookie
from pathlib import Path
from urllib.parse import urlencode

from tests.daemon_support import Daemon, daemon_env, free_port, http, wait_for
from tests.helpers import orchestrator

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


def test_beyond_loopback_a_token_is_made_up_kept_out_of_the_log_and_needed(
    tmp_path: Path, daemons: list[Daemon]
) -> None:
    daemon = Daemon(_env(tmp_path, XDG_DATA_HOME=str(tmp_path / "data")), tmp_path)
    daemon.args = ("--listen", f"0.0.0.0:{daemon.port}")
    daemons.append(daemon.start())
    [said] = wait_for(
        lambda: [r for r in daemon.log_records() if "token_file" in r],
        timeout=10,
        what="where the made-up token is",
    )
    path = Path(said["token_file"])
    assert path == tmp_path / "data" / "orchestrator" / "ui-token"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    token = path.read_text().strip()
    assert len(token) >= 32
    assert token not in daemon.logs()
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


def test_a_token_too_short_to_resist_guessing_is_refused_with_how_to_make_one(
    tmp_path: Path,
) -> None:
    for token in ("a", "x" * 31):
        env = _env(tmp_path, ORCH_UI_TOKEN=token)
        done = orchestrator("daemon", "--listen", f"127.0.0.1:{free_port()}", env=env)
        assert done.returncode == 2, done.stderr
        assert "too short" in done.stderr and "secrets.token_urlsafe(32)" in done.stderr
        assert f"={token}" not in done.stderr


class Browser:
    """A browser's side of the login, without following redirects: its cookies and the CSRF
    field of the page it was given."""

    def __init__(self, daemon: Daemon) -> None:
        self.port = daemon.port
        self.cookies: dict[str, str] = {}
        self.csrf = ""

    def request(
        self, method: str, path: str, form: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str]]:
        connection = HTTPConnection("127.0.0.1", self.port, timeout=10)
        headers = {"Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items())}
        body = None
        if form is not None:
            body = urlencode({**form, "csrf": self.csrf})
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        connection.request(method, path, body=body, headers=headers)
        answer = connection.getresponse()
        text = answer.read().decode(errors="replace")
        for header in answer.headers.get_all("Set-Cookie") or []:
            for name, morsel in SimpleCookie(header).items():
                self.cookies[name] = morsel.value
        found = re.search(r'name="csrf" value="([^"]+)"', text)
        if found:
            self.csrf = found.group(1)
        connection.close()
        return answer.status, dict(answer.headers)

    def log_in(self, token: str) -> int:
        if not self.csrf:
            self.request("GET", "/login")
        return self.request("POST", "/login", {"token": token, "next": "/"})[0]


def test_logging_out_revokes_the_session_even_for_a_copied_cookie(
    tmp_path: Path, daemons: list[Daemon]
) -> None:
    daemon = Daemon(_env(tmp_path, ORCH_UI_TOKEN=TOKEN), tmp_path)
    daemons.append(daemon.start())
    browser = Browser(daemon)
    assert browser.log_in(TOKEN) == 303
    copied = dict(browser.cookies)
    assert browser.request("GET", "/api/jobs")[0] == 200

    browser.request("GET", "/")
    assert browser.request("POST", "/logout", {})[0] == 303

    thief = Browser(daemon)
    thief.cookies = copied
    assert thief.request("GET", "/api/jobs")[0] == 401
    assert thief.request("GET", "/")[0] == 401
    other = Browser(daemon)  # another browser's session is untouched
    assert other.log_in(TOKEN) == 303 and other.request("GET", "/api/jobs")[0] == 200


def test_token_guesses_at_the_login_are_throttled_per_address(
    tmp_path: Path, daemons: list[Daemon]
) -> None:
    daemon = Daemon(_env(tmp_path, ORCH_UI_TOKEN=TOKEN, ORCH_LOGIN_WINDOW="4"), tmp_path)
    daemons.append(daemon.start())
    guesser = Browser(daemon)
    for guess in range(5):
        assert guesser.log_in(f"guess-{guess}") == 401
    status, headers = guesser.request("POST", "/login", {"token": "guess-5"})
    assert status == 429 and 1 <= int(headers["Retry-After"]) <= 4
    assert guesser.request("POST", "/login", {"token": TOKEN})[0] == 429  # even the right one
    wait_for(lambda: guesser.log_in(TOKEN) == 303, timeout=10, interval=0.5, what="the window")
    assert guesser.request("GET", "/api/jobs")[0] == 200
    assert TOKEN not in daemon.logs()
