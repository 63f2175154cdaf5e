"""The deployment files are valid for Docker Compose (checked when a compose tool is installed).

`docker compose config` (v2) or `docker-compose config` (v1) parses the file, checks it against
the Compose schema and resolves the variables, without a Docker engine.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _compose() -> list[str] | None:
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True)
        if probe.returncode == 0:
            return ["docker", "compose"]
    legacy = shutil.which("docker-compose")
    return [legacy] if legacy else None


def _config(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    compose = _compose()
    if compose is None:
        pytest.skip("no docker compose / docker-compose here to check the file with")
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("IMAGEN_", "ORCH_"))}
    return subprocess.run(
        [*compose, "-f", str(ROOT / "docker-compose.yml"), *args, "config"],
        capture_output=True,
        text=True,
        env={**environment, **env},
        timeout=60,
    )


def test_the_compose_file_is_valid_with_the_sandbox_profile() -> None:
    done = _config("--profile", "sandbox", IMAGEN_API_KEY="staging")
    assert done.returncode == 0, done.stderr
    for service in ("postgres:", "daemon:", "sandbox:"):
        assert service in done.stdout
    assert "orchestrator db upgrade && exec orchestrator daemon" in done.stdout


def test_the_compose_file_refuses_to_start_without_an_api_key() -> None:
    done = _config()
    assert done.returncode != 0
    assert "set IMAGEN_API_KEY" in done.stderr
