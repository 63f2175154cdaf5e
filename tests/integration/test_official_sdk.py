"""The official Imagen Python SDK (imagen-ai-sdk), unchanged, runs its whole flow on the sandbox."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import imagen_sdk.imagen_sdk as sdk_module
import pytest
from imagen_sdk import ImagenClient, quick_edit

from orchestrator.sandbox import RunningSandbox, SandboxConfig, make_sample_shoot, start_sandbox

KEY = "sdk-key"
Starter = Callable[..., Awaitable[RunningSandbox]]


@pytest.fixture
async def start() -> AsyncIterator[Starter]:
    started: list[RunningSandbox] = []

    async def starter(**settings: Any) -> RunningSandbox:
        sandbox = await start_sandbox(SandboxConfig(**settings))
        started.append(sandbox)
        return sandbox

    yield starter
    for sandbox in started:
        await sandbox.close()


class _QuickPolling:
    """Stands in for the SDK module's `asyncio`: its status polling sleeps 10 s, this 20 ms."""

    def __getattr__(self, name: str) -> Any:
        return getattr(asyncio, name)

    @staticmethod
    async def sleep(seconds: float) -> None:
        await asyncio.sleep(min(seconds, 0.02))


def _md5s(paths: list[str]) -> dict[str, str]:
    return {Path(p).name: hashlib.md5(Path(p).read_bytes()).hexdigest() for p in paths}


@pytest.mark.parametrize(("raw", "jpeg", "profile_key"), [(0, 3, 2001), (3, 0, 1001)])
async def test_quick_edit_with_export_and_download(
    start: Starter,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    raw: int,
    jpeg: int,
    profile_key: int,
) -> None:
    monkeypatch.setattr(sdk_module, "asyncio", _QuickPolling())
    sandbox = await start(edit_seconds=0.3)
    shoot = make_sample_shoot(tmp_path / "shoot", raw=raw, jpeg=jpeg, raw_size=64 * 1024)

    result = await quick_edit(
        api_key=KEY,
        profile_key=profile_key,
        image_paths=list(shoot),
        export=True,
        download=True,
        download_dir=tmp_path / "out",
        base_url=sandbox.api_url,
    )

    assert result.upload_summary.successful == len(shoot)
    assert result.downloaded_files is not None and result.exported_files is not None
    ledger = sandbox.ledger()
    [project] = ledger["projects"]
    assert project["project_uuid"] == result.project_uuid
    assert (project["edit_requests"], project["export_requests"]) == (1, 1)
    assert _md5s(result.downloaded_files) == project["edit_outputs"]
    assert _md5s(result.exported_files) == project["export_outputs"]
    suffix = ".xmp" if raw else ".jpg"
    assert sorted(project["edit_outputs"]) == sorted(p.stem + suffix for p in shoot)
    assert {name: f["md5"] for name, f in project["files"].items()} == _md5s(
        [str(p) for p in shoot]
    )


async def test_sdk_read_calls_parse_the_sandbox_answers(start: Starter) -> None:
    sandbox = await start(edit_seconds=0)
    async with ImagenClient(KEY, sandbox.api_url) as client:
        profiles = await client.get_profiles()
        assert {p.profile_key for p in profiles} == {1001, 1002, 2001, 2002}
        project_uuid = await client.create_project("sdk-project")
        assert await client.get_project_uuid("sdk-project") == project_uuid
        listing = await client.list_projects()
        assert [p.project_uuid for p in listing.projects] == [project_uuid]
        assert (await client.get_project(project_uuid)).name == "sdk-project"
        assert any(t.is_default for t in await client.get_sky_replacement_templates())


async def test_sdk_command_line(start: Starter, tmp_path: Path) -> None:
    # The CLI cannot shorten the SDK's 10 s poll, so the edit takes no time: the first poll
    # already finds it Completed.
    sandbox = await start(edit_seconds=0)
    shoot = tmp_path / "shoot"
    make_sample_shoot(shoot, raw=0, jpeg=2)
    imagen = Path(sys.executable).with_name("imagen")
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMAGEN_")}
    process = await asyncio.create_subprocess_exec(
        imagen, "--api-key", KEY, "--base-url", sandbox.api_url, "--json",
        "edit", str(shoot), "--profile", "2001", "--export", "--out", str(tmp_path / "out"),
        env={**env, "HOME": str(tmp_path)},  # keep the CLI away from the real ~/.imagen
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=30)
    assert process.returncode == 0, stderr.decode()

    result = json.loads(stdout)
    [project] = sandbox.ledger()["projects"]
    assert result["project_uuid"] == project["project_uuid"]
    assert (project["edit_requests"], project["export_requests"]) == (1, 1)
    assert _md5s(result["downloaded_files"]) == project["edit_outputs"]
    assert _md5s(result["exported_files"]) == project["export_outputs"]
