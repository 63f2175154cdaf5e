"""Issue 15 item 18: a run without Postgres says at its end that the Postgres half was skipped
and how to run it."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import POSTGRES_ENV
from tests.helpers import REPO


def test_a_run_without_postgres_says_its_postgres_half_was_skipped() -> None:
    env = {k: v for k, v in os.environ.items() if k != POSTGRES_ENV}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "tests/integration/test_project_names.py",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout
    assert f"1 Postgres test was skipped: set {POSTGRES_ENV}" in done.stdout
