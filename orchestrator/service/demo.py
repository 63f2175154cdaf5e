"""`orchestrator demo`: the whole flow against an in-process sandbox, with no API key."""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path
from typing import Any

from orchestrator.config import Settings
from orchestrator.progress import ProgressSink
from orchestrator.sandbox.config import SandboxConfig
from orchestrator.sandbox.samples import make_sample_shoot
from orchestrator.sandbox.server import start_sandbox
from orchestrator.service.batch import BatchResult, run_batch
from orchestrator.spec import JobSpec
from orchestrator.workflow.planning import RunRequest

DEMO_EDIT_SECONDS = 2.0
DEMO_PROFILES = ("1001", "2001")
"""The sandbox's RAW and JPEG profiles used by the demo."""


class DemoMismatch(RuntimeError):
    """A downloaded file differs from what the sandbox served: a bug worth reporting."""


async def run_demo(progress: ProgressSink, *, keep: Path | None = None) -> tuple[BatchResult, int]:
    """Make a sample shoot, run it with export against the sandbox, verify every output."""
    with tempfile.TemporaryDirectory(prefix="orchestrator-demo-") as scratch:
        base, shoot = _prepare_shoot(keep or Path(scratch))
        sandbox = await start_sandbox(SandboxConfig(edit_seconds=DEMO_EDIT_SECONDS))
        try:
            settings = Settings(
                imagen_api_key="demo-key",
                imagen_api_url=sandbox.api_url,
                database_url=f"sqlite:///{base / 'demo.db'}",
                poll_initial_seconds=0.5,
                poll_max_seconds=1.0,
            )
            request = RunRequest(source=shoot, profiles=DEMO_PROFILES, spec=JobSpec(export=True))
            result = await run_batch(request, settings, progress)
            verified = verify_against_ledger(result, sandbox.ledger())
        finally:
            await sandbox.close()
        return result, verified


def _prepare_shoot(base: Path) -> tuple[Path, Path]:
    """The demo folder and its shoot, with sample photos made on first use."""
    base = base.resolve()
    shoot = base / "shoot"
    shoot.mkdir(parents=True, exist_ok=True)
    if not any(shoot.iterdir()):
        make_sample_shoot(shoot)
    return base, shoot


def verify_against_ledger(result: BatchResult, ledger: dict[str, Any]) -> int:
    """Compare every output the sandbox made with the downloaded file; count them.

    A missing or different file is a DemoMismatch."""
    by_uuid = {p["project_uuid"]: p for p in ledger["projects"]}
    verified = 0
    for outcome in result.outcomes:
        project = by_uuid.get(outcome.job.project_uuid or "")
        if project is None:
            continue
        for key, folder in (
            ("edit_outputs", outcome.job.edited_dir),
            ("export_outputs", outcome.job.exported_dir),
        ):
            for name, md5 in project[key].items():
                path = Path(folder) / name
                if not path.exists():
                    raise DemoMismatch(f"{path} is missing: the sandbox made {name}")
                if _md5(path) != md5:
                    raise DemoMismatch(f"{path} differs from the sandbox's {name}")
                verified += 1
    return verified


def _md5(path: Path) -> str:
    digest = hashlib.md5()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
