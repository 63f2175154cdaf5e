"""The shoot page in a real browser (Debian's chromium through Playwright) against a real
`orchestrator ui` process, over a RAW + JPEG shoot a real `orchestrator run --keyword` made
against the sandbox: both jobs listed under the shoot, its own words added and removed from the
page and read back from every file with exiftool, hostile words shown as text, forged posts
refused; and the shoot's one review: its jobs waiting for review approved by one button, and
once they completed, delivered again by another."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from orchestrator.sandbox.samples import make_sample_shoot
from orchestrator.store.migrate import upgrade
from tests.daemon_support import wait_for
from tests.e2e.test_shoot_follow_up import JPEG_PROFILE, RAW_PROFILE, _subjects
from tests.helpers import cli_env, orchestrator, sandbox_process, status_jobs
from tests.tagging_support import IMAGGA_ENV, needs_exiftool
from tests.web_support import Ui, browser, forged_post, in_thread

__all__ = ["browser"]  # the fixture, used by name
pytestmark = needs_exiftool

HOSTILE = "<i>Villa</i> & Rosa"


@pytest.fixture
def env(tmp_path: Path) -> Any:
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    in_thread(lambda: upgrade(url))
    with sandbox_process("--edit-seconds", "0.2") as base:
        yield cli_env(f"{base}/v1", url, IMAGGA_API_URL=f"{base}/imagga/v2", **IMAGGA_ENV)


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
    refused = orchestrator("deliver", shoot.name, env=env)
    assert refused.returncode == 2
    assert f"no job of {shoot.name} was asked to deliver to imgix" in refused.stderr
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
        with page.expect_navigation():
            page.get_by_role("button", name="Add to every photo").click()
        words = page.locator(".shoot-keywords .word")
        assert words.all_inner_texts() == ["Smith wedding", "June 2026", HOSTILE]
        assert page.locator(".shoot-keywords i").count() == 0  # text, never markup
        with page.expect_navigation():
            page.get_by_role("button", name="remove Smith wedding").click()
        assert words.all_inner_texts() == ["June 2026", HOSTILE]
        page.screenshot(path=str(tmp_path / "shoot.png"), full_page=True)

        # A post without the page's CSRF field is refused, and changes nothing.
        assert forged_post(f"{ui.url}/jobs/{jobs[0]['id']}/shoot/keywords", b"add=Mallory") == 403
        page.close()

    for path in outputs:
        assert _subjects(path) == ["June 2026", HOSTILE], path
    shown = json.loads(orchestrator("status", str(shoot), "--json", env=env).stdout)
    assert [s["keywords"] for s in shown] == [["June 2026", HOSTILE]]


def test_one_button_approves_every_job_of_the_shoot_waiting_for_review(
    browser: Any, env: dict[str, str], tmp_path: Path
) -> None:
    shoot = tmp_path / "jones-wedding"
    make_sample_shoot(shoot / "Reception", raw=2, jpeg=2)
    args = (
        "run", str(shoot), "-p", RAW_PROFILE, "-p", JPEG_PROFILE, "--export", "--tag", "--review",
    )  # fmt: skip
    waiting = orchestrator(*args, env=env, timeout=180)
    assert waiting.returncode == 4, waiting.stderr[-3000:]  # waiting for a person
    jobs = status_jobs(env, str(shoot))
    assert sorted(j["state"] for j in jobs) == ["reviewing", "reviewing"]

    with Ui(env, tmp_path) as ui:
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.goto(f"{ui.url}/jobs/{jobs[0]['id']}/shoot")
        links = page.locator("table.shoot-jobs a.review-link")
        assert sorted(links.nth(i).get_attribute("href") for i in range(links.count())) == sorted(
            f"/jobs/{j['id']}/review" for j in jobs
        )
        # A post without the page's CSRF field is refused and approves nothing.
        assert forged_post(f"{ui.url}/jobs/{jobs[0]['id']}/shoot/approve", b"") == 403
        page.reload()
        assert (
            "2 jobs of this shoot wait for review"
            in page.locator("form.approve-shoot").inner_text()
        )
        with page.expect_navigation() as approved:
            page.get_by_role("button", name="Approve the whole shoot").click()
        answer = approved.value
        assert answer is not None and answer.url == f"{ui.url}/jobs/{jobs[0]['id']}/shoot"
        assert page.locator("form.approve-shoot").count() == 0
        assert page.locator("a.review-link").count() == 0
        assert page.locator(".reviewed").count() == 2

        page.close()

    done = orchestrator(*args, env=env, timeout=180)  # approved: it goes on, no longer waits
    assert done.returncode == 0, done.stderr[-3000:]
    assert sorted(j["state"] for j in status_jobs(env, str(shoot))) == ["completed", "completed"]


def test_one_button_delivers_every_completed_job_of_the_shoot_again(
    browser: Any, env: dict[str, str], tmp_path: Path
) -> None:
    base = env["IMAGEN_API_URL"].removesuffix("/v1")
    env = {
        **env,
        "IMGIX_API_URL": f"{base}/imgix/api/v1",
        "IMGIX_API_KEY": "imgix-key-shoot-0123456789",
        "IMGIX_SOURCE_ID": "shootsource",
        "IMGIX_DOMAIN": "shootsource.imgix.net",
    }
    shoot = tmp_path / "brown-wedding"
    make_sample_shoot(shoot / "Ceremony", raw=2, jpeg=2)
    ran = orchestrator(
        "run", str(shoot), "-p", RAW_PROFILE, "-p", JPEG_PROFILE, "--export", "--deliver",
        env=env, timeout=180,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr[-3000:]
    jobs = status_jobs(env, str(shoot))
    assert sorted(j["state"] for j in jobs) == ["completed", "completed"]

    def delivered_again() -> dict[str, list[str]]:
        shown = json.loads(orchestrator("history", str(shoot), "--json", env=env).stdout)
        found: dict[str, list[str]] = {}
        for event in shown["events"]:
            if event["message"].startswith("delivered again"):
                found.setdefault(event["job"], []).append(event["message"])
        return found

    with Ui(env, tmp_path) as ui:
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.on("dialog", lambda dialog: dialog.accept())
        page.goto(f"{ui.url}/jobs/{jobs[0]['id']}/shoot")
        # A post without the page's CSRF field is refused and delivers nothing.
        assert forged_post(f"{ui.url}/jobs/{jobs[0]['id']}/shoot/deliver", b"") == 403
        assert delivered_again() == {}
        with page.expect_navigation() as posted:
            page.get_by_role("button", name="Deliver the shoot again").click()
        answer = posted.value
        assert answer is not None and answer.url == f"{ui.url}/jobs/{jobs[0]['id']}/shoot"
        found = wait_for(
            lambda: len(done := delivered_again()) == 2 and done,
            timeout=60,
            what="both jobs to be delivered again",
        )
        page.close()
    assert found == {j["id"]: ["delivered again: 0 photos, 2 unchanged, 0 failed"] for j in jobs}
