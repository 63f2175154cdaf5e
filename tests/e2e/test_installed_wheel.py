"""Installed as users install it: a wheel built from the checkout, in a virtual environment of
its own, run from outside the checkout. Every command answers, the database is built from the
migrations the wheel carries, and the demo runs end to end.

The wheel's dependencies are this environment's (a path file points at them), so the test
needs no download beyond pip's own build requirements.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from orchestrator import DISTRIBUTION
from orchestrator.cli.app import app

REPO = Path(__file__).resolve().parents[2]

# One wheel for the module's tests, built once, on one worker.
pytestmark = pytest.mark.xdist_group("installed_wheel")


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The built wheel, and the bin folder of the environment it is installed in."""
    root = tmp_path_factory.mktemp("installed")
    # Built from a copy of what a release holds: pip builds in the source folder, and the
    # checkout (or another test run) is not its to write in.
    source = root / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, source / name)
    for name in ("orchestrator", "migrations"):
        shutil.copytree(REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    dist = root / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(source)],
        check=True,
        timeout=600,
        capture_output=True,
    )
    [wheel] = dist.glob(f"{DISTRIBUTION.replace('-', '_')}-*.whl")
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    done = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", str(wheel)],
        timeout=300,
        capture_output=True,
        text=True,
        env=_env(root),
        check=False,
    )
    assert (venv / "bin" / "orchestrator").exists(), done.stdout + done.stderr
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    Path(site, "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return wheel, venv / "bin"


def _env(tmp_path: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("IMAGEN_", "ORCH_", "IMAGGA_", "IMGIX_", "PYTHON"))
    }
    env.update(ORCH_CONFIG=os.devnull, ORCH_DATABASE_URL=f"sqlite:///{tmp_path / 'jobs.db'}")
    return env


def _run(bin_dir: Path, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(bin_dir / "orchestrator"), *args],
        cwd=tmp_path,
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_the_wheel_carries_the_page_and_the_migrations(installed: tuple[Path, Path]) -> None:
    wheel, _ = installed
    names = zipfile.ZipFile(wheel).namelist()
    for wanted in ("orchestrator/web/templates/", "orchestrator/web/static/"):
        assert any(name.startswith(wanted) for name in names), wanted
    migrations = {Path(name).name for name in names if "/migrations/versions/" in name}
    assert migrations == {path.name for path in (REPO / "migrations" / "versions").glob("*.py")}


def test_every_command_answers_outside_the_checkout(
    installed: tuple[Path, Path], tmp_path: Path
) -> None:
    _, bin_dir = installed
    where = subprocess.run(
        [str(bin_dir / "python"), "-c", "import orchestrator; print(orchestrator.__file__)"],
        cwd=tmp_path,
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert str(REPO) not in where and str(bin_dir.parent) in where
    version = _run(bin_dir, tmp_path, "--version")
    assert version.returncode == 0 and version.stdout.startswith("orchestrator "), version.stderr
    commands = [c.name or c.callback.__name__ for c in app.registered_commands if c.callback]
    for command in [*commands, "db upgrade"]:
        shown = _run(bin_dir, tmp_path, *command.split(), "--help")
        assert shown.returncode == 0, (command, shown.stderr)
        assert "Usage:" in shown.stdout, command


def test_the_database_is_built_from_the_wheels_migrations_and_the_demo_runs(
    installed: tuple[Path, Path], tmp_path: Path
) -> None:
    _, bin_dir = installed
    upgraded = _run(bin_dir, tmp_path, "db", "upgrade", "--json")
    assert upgraded.returncode == 0, upgraded.stderr
    newest = max(p.name.split("_")[0] for p in (REPO / "migrations" / "versions").glob("*.py"))
    assert json.loads(upgraded.stdout) == {"revision": newest}
    demo = _run(bin_dir, tmp_path, "demo", "--json")
    assert demo.returncode == 0, demo.stderr[-2000:]
