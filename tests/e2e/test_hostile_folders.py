"""`orchestrator run` on a shoot folder someone filled with traps: each is named and refused
before anything is sent, the run carries on with the real photos, and nothing hangs."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.sandbox.samples import make_sample_shoot
from tests.helpers import cli_env, ledger, orchestrator, photo_bytes, sandbox_process


@pytest.fixture(scope="module")
def sandbox_url() -> Iterator[str]:
    with sandbox_process("--edit-seconds", "0.2") as url:
        yield url


def test_traps_in_the_folder_are_listed_and_refused_and_the_real_photos_go_through(
    sandbox_url: str, migrated_db_url: str, tmp_path: Path
) -> None:
    secret = tmp_path / "daemon-home" / "id_ed25519.jpg"
    secret.parent.mkdir()
    secret.write_bytes(photo_bytes("x.jpg", b"PRIVATE KEY"))
    shoot = tmp_path / "drop"
    real = {p.name for p in make_sample_shoot(shoot, raw=0, jpeg=2)}
    (shoot / "passwd.jpg").symlink_to("/etc/passwd")
    (shoot / "key.jpg").symlink_to(secret)
    (shoot / "home").symlink_to(secret.parent, target_is_directory=True)
    os.mkfifo(shoot / "pipe.jpg")
    (shoot / "empty.jpg").write_bytes(b"")
    (shoot / "notes.jpg").write_text("not a photo at all\n")
    (shoot / os.fsdecode(b"caf\xe9.jpg")).write_bytes(photo_bytes("x.jpg"))
    env = cli_env(f"{sandbox_url}/v1", migrated_db_url)

    done = orchestrator("run", str(shoot), "--profile", "2001", "--json", env=env, timeout=90)
    # Done, but not every file was sent: exit 3, each refused file named on the job.
    assert done.returncode == 3, done.stderr[-3000:]
    [job] = json.loads(done.stdout)
    assert (job["state"], job["refused"]) == ("completed", 7)
    assert {p["path"] for p in job["failed_photos"] if p["outcome"] == "refused"} == {
        "passwd.jpg",
        "key.jpg",
        "home",
        "pipe.jpg",
        "empty.jpg",
        "notes.jpg",
        "caf\\xe9.jpg",
    }
    said = [event.get("message") or "" for event in map(json.loads, done.stderr.splitlines())]
    for name, why in [
        ("passwd.jpg", "outside the shoot"),
        ("key.jpg", "outside the shoot"),
        ("home", "a link to a folder outside the shoot"),
        ("pipe.jpg", "a named pipe"),
        ("empty.jpg", "empty (0 bytes)"),
        ("notes.jpg", "not a JPG photo but text"),
        ("caf\\xe9.jpg", "not valid UTF-8"),
    ]:
        assert any(f"refused {name}, not sent: " in line and why in line for line in said), (
            name,
            said,
        )
    [project] = [
        p for p in ledger(sandbox_url)["projects"] if p["project_uuid"] == job["project_uuid"]
    ]
    assert sorted(project["files"]) == sorted(real)
