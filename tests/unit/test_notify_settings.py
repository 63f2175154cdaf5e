"""The notify URLs are settings that hold secrets: read from the environment or the file,
masked by `orchestrator config`, refused by `run` and `submit`, and their news said once."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from orchestrator.cli.app import app
from orchestrator.config import effective_settings, load_settings

SECRET = "123456:bot-token-of-the-studio"


def test_orchestrator_config_masks_the_notify_urls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ORCH_CONFIG", raising=False)
    monkeypatch.setenv("ORCH_NOTIFY", f"tgram://{SECRET}/42, json://127.0.0.1:9/hook")
    settings = load_settings()
    assert [u.get_secret_value() for u in settings.notify][1] == "json://127.0.0.1:9/hook"
    shown = effective_settings(settings)
    [row] = [r for r in shown["settings"] if r["name"] == "notify"]
    assert row["value"] == "**** (2 URLs, masked)"
    assert SECRET not in str(shown)


@pytest.mark.parametrize("command", ["run", "submit"])
def test_run_and_submit_refuse_notify(command: str, tmp_path: Path) -> None:
    done = CliRunner().invoke(
        app, [command, str(tmp_path), "--profile", "1", "--notify", f"tgram://{SECRET}/1"]
    )
    assert done.exit_code == 2
    assert "--notify is for `orchestrator daemon --watch`" in done.output
    assert SECRET not in done.output
