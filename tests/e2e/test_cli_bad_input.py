"""Bad input gets a clear message, the right exit code, and never leaks the API key."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from orchestrator.sandbox.samples import make_sample_shoot
from tests.helpers import cli_env, ledger, orchestrator, sandbox_process

SECRET_KEY = "sk-secret-do-not-print-4242"


@pytest.fixture(scope="module")
def sandbox_url() -> object:
    with sandbox_process("--edit-seconds", "0.3", "--api-key", SECRET_KEY) as url:
        yield url


@pytest.fixture
def env(sandbox_url: str, tmp_path: Path) -> dict[str, str]:
    return cli_env(
        f"{sandbox_url}/v1", f"sqlite:///{tmp_path / 'jobs.db'}", IMAGEN_API_KEY=SECRET_KEY
    )


def _run(env: dict[str, str], folder: Path, *extra: str) -> tuple[int, str]:
    done = orchestrator("run", str(folder), "--profile", "1001", *extra, env=env)
    assert SECRET_KEY not in done.stdout + done.stderr
    return done.returncode, done.stdout + done.stderr


def test_missing_folder(env: dict[str, str], tmp_path: Path) -> None:
    code, text = _run(env, tmp_path / "nope")
    assert code == 2
    assert "does not exist" in text


def test_empty_folder_and_only_unsupported_files(env: dict[str, str], tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    code, text = _run(env, empty)
    assert code == 2 and "no supported photos" in text
    (empty / "readme.txt").write_text("x")
    (empty / "clip.mov").write_bytes(b"x")
    code, text = _run(env, empty)
    assert code == 2 and "2 unsupported files skipped" in text


def test_same_name_in_two_subfolders_is_refused_before_anything_is_sent(
    env: dict[str, str], sandbox_url: str, tmp_path: Path
) -> None:
    shoot = tmp_path / "shoot"
    for sub in ("cam1", "cam2"):
        (shoot / sub).mkdir(parents=True)
        make_sample_shoot(shoot / sub, raw=1, jpeg=0)
    before = len(ledger(sandbox_url)["projects"])
    code, text = _run(env, shoot)
    assert code == 2
    assert "cam1/IMG_0001.CR2" in text and "cam2/IMG_0001.CR2" in text and "rename" in text
    assert len(ledger(sandbox_url)["projects"]) == before


def test_unknown_profile_and_profile_of_the_wrong_type(env: dict[str, str], tmp_path: Path) -> None:
    shoot = tmp_path / "shoot"
    shoot.mkdir()
    make_sample_shoot(shoot, raw=0, jpeg=2)
    done = orchestrator("run", str(shoot), "--profile", "no such look", env=env)
    assert done.returncode == 2 and "no profile 'no such look'" in done.stderr
    code, text = _run(env, shoot)  # 1001 is a RAW profile, the folder holds JPEGs
    assert code == 2
    assert "is not for JPG" in text and "2001" in text


def test_conflicting_tools_are_refused_before_upload(env: dict[str, str], tmp_path: Path) -> None:
    shoot = tmp_path / "shoot"
    shoot.mkdir()
    make_sample_shoot(shoot, raw=1, jpeg=0)
    code, text = _run(env, shoot, "--tool", "straighten", "--tool", "perspective_correction")
    assert code == 2 and "exclude each other" in text
    code, text = _run(env, shoot, "--tool", "teleport")
    assert code == 2 and "unknown tool" in text


def test_missing_and_rejected_api_key(env: dict[str, str], tmp_path: Path) -> None:
    shoot = tmp_path / "shoot"
    shoot.mkdir()
    make_sample_shoot(shoot, raw=1, jpeg=0)
    without = {k: v for k, v in env.items() if k != "IMAGEN_API_KEY"}
    done = orchestrator("run", str(shoot), "--profile", "1001", env=without)
    assert done.returncode == 2 and "IMAGEN_API_KEY" in done.stderr
    wrong = {**env, "IMAGEN_API_KEY": "sk-wrong-key-777"}
    done = orchestrator("run", str(shoot), "--profile", "1001", env=wrong)
    assert done.returncode == 2
    assert "API key" in done.stderr and "sk-wrong-key-777" not in done.stdout + done.stderr


def test_api_down_gives_a_clear_message(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    shoot = tmp_path / "shoot"
    shoot.mkdir()
    make_sample_shoot(shoot, raw=1, jpeg=0)
    env = cli_env(
        f"http://127.0.0.1:{port}/v1",
        f"sqlite:///{tmp_path / 'jobs.db'}",
        IMAGEN_API_KEY=SECRET_KEY,
    )
    done = orchestrator("profiles", env=env, timeout=180)
    assert done.returncode == 1
    assert f"127.0.0.1:{port}" in done.stderr and SECRET_KEY not in done.stderr


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.parametrize("database", ["not-a-database", "server-down", "no-such-database"])
def test_a_database_that_cannot_be_used_is_named_without_its_password(
    env: dict[str, str], tmp_path: Path, database: str
) -> None:
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not SQLite" * 64)
    url, says = {
        "not-a-database": (f"sqlite:///{garbage}", "file is not a database"),
        "server-down": (
            f"postgresql://ann:pw-4242@127.0.0.1:{_closed_port()}/jobs",
            "Connect call failed",
        ),
        # Answered by the test server when there is one, else refused like the one above.
        "no-such-database": ("postgresql://ann:pw-4242@127.0.0.1:5432/no_such_db_4242", ""),
    }[database]
    shoot = tmp_path / "shoot"
    make_sample_shoot(shoot, raw=1, jpeg=0)
    for args in (("run", str(shoot), "--profile", "1001"), ("status",)):
        done = orchestrator(*args, env={**env, "ORCH_DATABASE_URL": url})
        text = done.stdout + done.stderr
        assert done.returncode == 2, text
        assert "cannot use the job database" in text and says in text
        assert "Traceback" not in text and "pw-4242" not in text


def test_a_tag_option_without_tag_names_its_own_flag(env: dict[str, str], tmp_path: Path) -> None:
    make_sample_shoot(tmp_path / "shoot")
    refused = orchestrator(
        "run", str(tmp_path / "shoot"), "--profile", "2001", "--tag-threshold", "50", env=env
    )
    assert refused.returncode == 2
    assert "--tag-threshold and the other tag options need --tag" in refused.stderr
