"""Every configuration mistake exits 2 at once, naming its source and what is allowed.

The command runs as a real process; nothing is listening where the API URL points, so a
command that tried to reach Imagen would fail differently (exit 1, after retries).
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from orchestrator.sandbox.samples import make_sample_shoot
from tests.helpers import cli_env, orchestrator


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return cli_env("http://127.0.0.1:9/v1", f"sqlite:///{tmp_path / 'jobs.db'}")


@pytest.fixture
def shoot(tmp_path: Path) -> Path:
    folder = tmp_path / "shoot"
    folder.mkdir()
    make_sample_shoot(folder, raw=0, jpeg=1)
    return folder


def _refused(env: dict[str, str], *args: str) -> str:
    done = orchestrator(*args, env=env)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr and "pydantic" not in done.stderr
    assert "validation error" not in done.stderr
    return done.stderr


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("not a url", "IMAGEN_API_URL = 'not a url': must start with https://"),
        ("ftp://files.example.com/v1", "must start with https:// (or http:// for a local"),
        ("https://api.imagen-ai.com", "did you mean https://api.imagen-ai.com/v1?"),
        ("http://127.0.0.1:8080/", "did you mean http://127.0.0.1:8080/v1?"),
        ("https://:8080/v1", "has no host name"),
    ],
)
def test_a_bad_api_url_is_refused_before_anything_is_sent(
    env: dict[str, str], shoot: Path, url: str, expected: str
) -> None:
    text = _refused({**env, "IMAGEN_API_URL": url}, "run", str(shoot), "--profile", "2001")
    assert expected in text
    assert "seems down" not in text and "HTTP 404" not in text


def test_credentials_in_the_api_url_are_refused_and_never_printed(
    env: dict[str, str], shoot: Path, tmp_path: Path
) -> None:
    url = "https://photographer:hunter2-secret@api.imagen-ai.com/v1"
    text = _refused({**env, "IMAGEN_API_URL": url}, "run", str(shoot), "--profile", "2001")
    assert "must not hold a user name or password" in text
    assert "hunter2" not in text and "photographer" not in text
    config = tmp_path / "config.toml"
    config.write_text(f'imagen_api_url = "{url}"\n')
    from_file = {k: v for k, v in env.items() if k != "IMAGEN_API_URL"}
    text = _refused({**from_file, "ORCH_CONFIG": str(config)}, "status")
    assert f"{config}: imagen_api_url" in text and "hunter2" not in text


def test_a_bad_number_names_the_variable_or_the_file_and_key(
    env: dict[str, str], tmp_path: Path
) -> None:
    text = _refused({**env, "ORCH_CONCURRENCY": "abc"}, "status")
    assert (
        "ORCH_CONCURRENCY = 'abc': not a whole number; allowed: a whole number from 1 to 256"
        in text
    )
    config = tmp_path / "config.toml"
    config.write_text('concurrency = "lots"\n')
    text = _refused({**env, "ORCH_CONFIG": str(config)}, "status")
    assert f"{config}: concurrency = 'lots': not a whole number" in text
    assert "ORCH_CONCURRENCY" not in text


def test_every_mistake_is_listed_on_a_line_of_its_own(env: dict[str, str]) -> None:
    text = _refused({**env, "ORCH_POLL_MAX": "-1", "ORCH_LOG_LEVEL": "loud"}, "status")
    assert text.splitlines() == [
        "error: bad configuration:",
        "  ORCH_POLL_MAX = '-1': out of range; allowed: a number above 0",
        "  ORCH_LOG_LEVEL = 'loud': must be DEBUG, INFO, WARNING or ERROR, not 'loud'",
    ]


def test_a_typo_in_the_file_is_an_error_with_the_close_match(
    env: dict[str, str], tmp_path: Path
) -> None:
    config = tmp_path / "config.toml"
    config.write_text('concurency = 4\n[[hot_folders]]\npath = "/in"\nprofile = ["1001"]\n')
    text = _refused({**env, "ORCH_CONFIG": str(config)}, "status")
    assert f"{config}: unknown key 'concurency' (did you mean 'concurrency'?)" in text
    config.write_text('[[hot_folders]]\npath = "/in"\nprofile = ["1001"]\n')
    text = _refused({**env, "ORCH_CONFIG": str(config)}, "status")
    assert f"{config}: hot_folders[0].profile: unknown key 'profile' (did you mean" in text


def test_a_syntax_error_names_the_file_and_line(env: dict[str, str], tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('bwlimit = "20M"\nconcurrency = \n')
    text = _refused({**env, "ORCH_CONFIG": str(config)}, "status")
    assert f"{config} is not valid TOML" in text and "line 2" in text


def test_orch_config_naming_no_file_is_an_error(env: dict[str, str], tmp_path: Path) -> None:
    text = _refused({**env, "ORCH_CONFIG": str(tmp_path / "nonexistent.toml")}, "status")
    assert "ORCH_CONFIG names" in text and "does not exist" in text


def test_a_bad_flag_names_the_flag_and_what_is_allowed(env: dict[str, str], shoot: Path) -> None:
    text = _refused(env, "run", str(shoot), "--profile", "2001", "--tool", "bogus")
    assert "unknown tool 'bogus'; allowed: crop, portrait_crop" in text
    text = _refused(env, "daemon", "--public-url", "ftp://callbacks.example.com")
    assert "--public-url = 'ftp://callbacks.example.com': must start with https://" in text


def test_a_long_message_is_one_line_when_stderr_is_not_a_terminal(
    env: dict[str, str], tmp_path: Path
) -> None:
    unwrapped = {k: v for k, v in env.items() if k != "COLUMNS"}
    folder = tmp_path / ("a-folder-with-a-long-name-" * 4)
    text = _refused(unwrapped, "run", str(folder), "--profile", "2001")
    [line] = text.splitlines()
    assert len(line) > 100 and str(folder) in line


def test_a_port_in_use_is_a_clear_message_for_the_sandbox_and_the_daemon(
    env: dict[str, str],
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        text = _refused(env, "sandbox", "--port", str(port))
        assert f"cannot listen on 127.0.0.1:{port}: the port is in use" in text
        assert "choose another with --port" in text
        text = _refused(env, "daemon", "--listen", f"127.0.0.1:{port}")
        assert f"cannot listen on 127.0.0.1:{port}: the port is in use" in text
        assert "--listen HOST:PORT" in text


def test_a_misspelt_variable_is_an_error_with_the_close_match(env: dict[str, str]) -> None:
    env["ORCH_CONCURENCY"] = "4"
    for command in (("config",), ("status",)):
        stderr = _refused(env, *command)
        assert "ORCH_CONCURENCY: unknown variable (did you mean ORCH_CONCURRENCY?)" in stderr


def test_the_test_suites_own_variables_are_not_settings(env: dict[str, str]) -> None:
    env.update(ORCH_TEST_ANYTHING="1", ORCH_CHAOS_ROUNDS="2", ORCH_BENCH_POSTGRES_URL="x")
    done = orchestrator("config", env=env)
    assert done.returncode == 0, done.stderr


def test_a_bad_rate_is_caught_where_it_was_given(env: dict[str, str], shoot: Path) -> None:
    env["ORCH_BWLIMIT"] = "abc"
    assert "ORCH_BWLIMIT = 'abc': invalid rate" in _refused(env, "config")
    del env["ORCH_BWLIMIT"]
    stderr = _refused(env, "run", str(shoot), "--profile", "2001", "--bwlimit", "fast")
    assert "--bwlimit = 'fast': invalid rate" in stderr
