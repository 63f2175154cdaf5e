"""The shoot page in a real browser (Debian's chromium through Playwright) against a real
`orchestrator ui` process, over a RAW + JPEG shoot a real `orchestrator run --keyword` made
against the sandbox: both jobs listed under the shoot, its own words added and removed from the
page and read back from every file with exiftool, hostile words shown as text, forged posts
refused."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from orchestrator.sandbox.samples import make_sample_shoot
from orchestrator.store.migrate import upgrade
from tests.daemon_support import http
from tests.e2e.test_shoot_follow_up import JPEG_PROFILE, RAW_PROFILE, _subjects
from tests.helpers import cli_env, orchestrator, sandbox_process, status_jobs
from tests.tagging_support import needs_exiftool
from tests.web_support import Ui, browser, in_thread

__all__ = ["browser"]  # the fixture, used by name
pytestmark = needs_exiftool

HOSTILE = "<i>Villa</i> & Rosa"


@pytest.fixture
def env(tmp_path: Path) -> Any:
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    in_thread(lambda: upgrade(url))
    with sandbox_process("--edit-seconds", "0.2") as base:
        yield cli_env(f"{base}/v1", url)


def test_the_shoot_page_lists_its_jobs_and_edits_its_words_in_every_file(
    browser: Any, env: dict[str, str], tmp_path: Path
) -> None:
    shoot = tmp_path / "smith-wedding"
    make_sample_shoot(shoot / "Ceremony", raw=2, jpeg=2)
    ran = orchestrator(
        "run", str(shoot), "-p", RAW_PROFILE, "-p", JPEG_PROFILE, "--export",
        "--keyword", "Smith wedding", env=env, timeout=180,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr[-3000:]
    jobs = status_jobs(env, str(shoot))
    assert len(jobs) == 2
    outputs = sorted((shoot / "exported").rglob("*.jpg"))
    assert len(outputs) == 4

    with Ui(env, tmp_path) as ui:
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.goto(f"{ui.url}/jobs/{jobs[0]['id']}")
        with page.expect_navigation() as opened:
            page.locator("a.shoot-link").click()
        answer = opened.value
        assert answer is not None and answer.status == 200
        assert "script-src 'self'" in answer.headers["content-security-policy"]
        listed = page.locator("table.shoot-jobs tbody tr")
        assert sorted(listed.nth(i).get_attribute("data-job") for i in range(2)) == sorted(
            j["id"] for j in jobs
        )
        assert page.locator(".shoot-keywords .word").all_inner_texts() == ["Smith wedding"]

        page.locator("input[name=add]").fill(f"June 2026, {HOSTILE}")
        page.get_by_role("button", name="Add to every photo").click()
        page.wait_for_load_state()
        words = page.locator(".shoot-keywords .word")
        assert words.all_inner_texts() == ["Smith wedding", "June 2026", HOSTILE]
        assert page.locator(".shoot-keywords i").count() == 0  # text, never markup
        page.get_by_role("button", name="remove Smith wedding").click()
        page.wait_for_load_state()
        assert words.all_inner_texts() == ["June 2026", HOSTILE]
        page.screenshot(path=str(tmp_path / "shoot.png"), full_page=True)

        # A post without the page's CSRF field is refused, and changes nothing.
        status, _ = http(
            "POST",
            f"{ui.url}/jobs/{jobs[0]['id']}/shoot/keywords",
            body=b"add=Mallory",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert status == 403
        page.close()

    for path in outputs:
        assert _subjects(path) == ["June 2026", HOSTILE], path
    shown = json.loads(orchestrator("status", str(shoot), "--json", env=env).stdout)
    assert [s["keywords"] for s in shown] == [["June 2026", HOSTILE]]
