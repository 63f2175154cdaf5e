"""Issue 15 item 2: Ctrl-C on a real terminal (a pseudo-terminal read through a terminal
emulator) leaves the bars drawn once, the upload bar where it was, and the line saying how to
resume whole on the screen."""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path

import pexpect
import pyte

from orchestrator.sandbox.samples import make_sample_shoot
from tests.helpers import cli_env, orchestrator, sandbox_process

COLUMNS, LINES = 140, 30


class Terminal:
    """The orchestrator command on a pseudo-terminal, and the screen it draws."""

    def __init__(self, *args: str, env: dict[str, str]) -> None:
        env = {**env, "TERM": "xterm"}
        env.pop("COLUMNS", None)
        self.child = pexpect.spawn(
            sys.executable,
            ["-m", "orchestrator", *args],
            env=env,
            dimensions=(LINES, COLUMNS),
            encoding="utf-8",
            timeout=60,
        )
        self.screen = pyte.Screen(COLUMNS, LINES)
        self._stream = pyte.Stream(self.screen)

    def lines(self) -> list[str]:
        return [line.rstrip() for line in self.screen.display if line.strip()]

    def wait_for(self, seen: re.Pattern[str], deadline: float = 60) -> re.Match[str]:
        """Read output until a screen line matches `seen`; that match."""
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            for line in self.lines():
                if found := seen.search(line):
                    return found
            try:
                self._stream.feed(self.child.read_nonblocking(100_000, timeout=0.2))
            except pexpect.TIMEOUT:
                continue
        raise AssertionError(f"never saw {seen.pattern!r}; screen:\n" + "\n".join(self.lines()))

    def read_to_end(self) -> int:
        """Read until the command exits; its exit status."""
        while True:
            try:
                self._stream.feed(self.child.read_nonblocking(100_000, timeout=30))
            except pexpect.EOF:
                break
        self.child.close()
        assert self.child.exitstatus is not None
        return int(self.child.exitstatus)


def test_ctrl_c_shows_how_to_resume_under_bars_drawn_once_that_never_jump_back(
    migrated_db_url: str, tmp_path: Path
) -> None:
    shoot = tmp_path / "shoot"
    shoot.mkdir()
    make_sample_shoot(shoot, raw=6, jpeg=0, raw_size=3_000_000)
    with sandbox_process("--edit-seconds", "2") as url:
        env = cli_env(f"{url}/v1", migrated_db_url)
        args = ("run", str(shoot), "-p", "1001", "--bwlimit", "2M", "--concurrency", "2")
        term = Terminal(*args, env=env)
        before = term.wait_for(re.compile(r"shoot · upload .*?(\d+)% 0/6 files [1-9]"))
        term.child.sendintr()
        assert term.read_to_end() == 130
        screen = term.lines()
        uploads = [line for line in screen if "shoot · upload" in line]
        assert len(uploads) == 1, screen  # drawn once, not again under the message
        after = re.search(r"(\d+)%", uploads[0])
        assert after is not None and int(after.group(1)) >= int(before.group(1)), screen
        assert screen[-1] == (
            "interrupted: every finished step is saved; run the same command again to resume."
        )
        resumed = orchestrator(*args[:4], env=env, timeout=180)
        assert resumed.returncode == 0, resumed.stderr
