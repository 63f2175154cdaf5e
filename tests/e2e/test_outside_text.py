"""Text from outside (file names, Imagen's answers) is printed as it is: never markup, never codes.

The commands run as real processes, piped (not a terminal) and in a real pseudo-terminal.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import pty
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from orchestrator.store.queries import NewJob, NewPhoto, Store
from tests.helpers import cli_env, orchestrator

HOSTILE_NAME = "zz[/] \x1b[2Jshoot"
HOSTILE_MESSAGES = [
    "downloaded zz[/].jpg",
    "Imagen refused the key [redacted]",
    "status \x1b[2J cleared",
    "title \x1b]0;pwned\x07 set",
    "two\n[shoot] upload: 400/400 files, ETA 0s",
    "a\tb",
]
SPELLED = [
    "downloaded zz[/].jpg",
    "Imagen refused the key [redacted]",
    "status \\x1b[2J cleared",
    "title \\x1b]0;pwned\\x07 set",
    "two\\n[shoot] upload: 400/400 files, ETA 0s",
    "a\\tb",
]


async def _hostile_job(db_url: str) -> str:
    store = Store.open(db_url)
    try:
        job_id = uuid.uuid4().hex
        await store.create_job(
            NewJob(
                id=job_id,
                name=HOSTILE_NAME,
                source="/shoots/a",
                edited_dir="/shoots/a/edited",
                exported_dir="/shoots/a/exported",
                image_type="JPG",
                profile_key=2001,
                profile_name="P",
                spec={"version": 1},
                project_name=f"orchestrator-{job_id}",
            ),
            [NewPhoto("zz[/].jpg", "zz[/].jpg", 1, 1)],
        )
        for message in HOSTILE_MESSAGES:
            await store.add_event(job_id, "note", message)
        return job_id
    finally:
        await store.close()


@pytest.fixture
async def env(migrated_db_url: str) -> dict[str, str]:
    await _hostile_job(migrated_db_url)
    return cli_env("http://127.0.0.1:9/v1", migrated_db_url)


def _in_terminal(args: list[str], env: dict[str, str]) -> tuple[int, str]:
    """Run the command with stdin, stdout and stderr on a pseudo-terminal; (exit code, output)."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "orchestrator", *args],
        env=env,
        stdin=slave,
        stdout=slave,
        stderr=slave,
    )
    os.close(slave)
    chunks = []
    try:
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError as exc:  # EIO: the child closed its side
                if exc.errno != errno.EIO:
                    raise
                break
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(master)
    return proc.wait(timeout=60), b"".join(chunks).decode()


def _no_codes_but_rich_styles(text: str) -> None:
    """No control sequence reached the output other than Rich's own colours (`ESC[…m`)."""
    assert "\x1b[2J" not in text and "\x1b]" not in text and "\x07" not in text


def test_piped_history_prints_every_event_as_one_tab_separated_line(env: dict[str, str]) -> None:
    job_id = orchestrator("status", "--json", env=env).stdout.split('"id": "')[1][:8]
    done = orchestrator("history", job_id, env=env)
    assert done.returncode == 0, done.stderr
    assert "\x1b" not in done.stdout and "\x07" not in done.stdout
    title, header, *rows = done.stdout.splitlines()
    assert title.startswith("zz[/] \\x1b[2Jshoot (shoot ")
    assert header == "time (UTC)\tkind\tchange\tmessage"
    assert all(len(row.split("\t")) == 4 for row in rows)
    messages = [row.split("\t")[3] for row in rows]
    assert messages[-len(SPELLED) :] == SPELLED


def test_piped_status_is_tab_separated_and_never_wrapped(env: dict[str, str]) -> None:
    narrow = {**env, "COLUMNS": "40"}
    done = orchestrator("status", env=narrow)
    assert done.returncode == 0, done.stderr
    header, shoot, job = done.stdout.splitlines()
    assert header.split("\t") == [
        "shoot / job",
        "name",
        "state",
        "photos",
        "progress",
        "updated",
        "last error",
    ]
    assert shoot.split("\t")[1:4] == ["zz[/] \\x1b[2Jshoot", "queued, stopped", "1"]
    assert job.split("\t")[1:4] == ["zz[/] \\x1b[2Jshoot", "queued, stopped", "1"]


def test_history_on_a_terminal_is_a_table_without_forged_codes(env: dict[str, str]) -> None:
    job_id = orchestrator("status", "--json", env=env).stdout.split('"id": "')[1][:8]
    code, text = _in_terminal(["history", job_id], {**env, "COLUMNS": "220", "TERM": "xterm"})
    assert code == 0, text
    _no_codes_but_rich_styles(text)
    assert "┃" in text or "│" in text  # a Rich table, not tab-separated lines
    for spelled in SPELLED:
        assert spelled in text
    assert "zz[/] \\x1b[2Jshoot" in text


@contextlib.asynccontextmanager
async def _imagen_answering(body: str, status: int, content_type: str) -> AsyncIterator[str]:
    async def answer(_request: web.Request) -> web.Response:
        return web.Response(text=body, status=status, content_type=content_type)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/v1"
    finally:
        await runner.cleanup()


@pytest.mark.parametrize(
    ("body", "status", "content_type", "shown"),
    [
        (
            '{"detail": "bad [/] thing \\u001b[2J"}',
            400,
            "application/json",
            "bad [/] thing \\x1b[2J",
        ),
        (
            "<html><body>[/] [bold]maintenance[/bold]</body></html>",
            200,
            "text/html",
            "[/] [bold]maintenance[/bold]",
        ),
    ],
)
async def test_an_error_body_with_markup_is_shown_as_sent(
    body: str, status: int, content_type: str, shown: str, tmp_path: Path
) -> None:
    async with _imagen_answering(body, status, content_type) as api_url:
        env = cli_env(api_url, f"sqlite:///{tmp_path / 'jobs.db'}")
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "orchestrator",
            "profiles",
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        _, stderr = await asyncio.wait_for(proc.communicate(), timeout=60)
    text = stderr.decode()
    assert proc.returncode in (1, 2), text
    assert "Traceback" not in text and "MarkupError" not in text
    assert shown in text and "\x1b" not in text
