"""The jobs list in a real browser (Debian's chromium driven by Playwright) over a real
`orchestrator ui`: it uses the screen's width, shows times in the reader's zone (UTC, said so,
without scripts), a progress for every live state, who drives each job, the refused hot-folder
drops, no old error on a completed job; a failed job's page shows only the columns it asked
for. A screenshot of the list is saved under the test's tmp dir (the path is printed)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from orchestrator.spec import JobSpec
from orchestrator.store.migrate import upgrade
from orchestrator.store.queries import Store
from tests.helpers import cli_env
from tests.store_support import stored_job
from tests.web_support import Ui, browser, in_thread, with_store

__all__ = ["browser"]  # the fixture, used by name


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    in_thread(lambda: upgrade(url))
    return url


async def _season(store: Store) -> dict[str, str]:
    """Jobs in the states a studio's list holds at once, and a refused drop."""
    export = JobSpec(export=True).to_stored()
    jobs = {
        "exporting": await stored_job(
            store, name="smith-wedding", photos=40, state="exporting", options=export
        ),
        "uploading": await stored_job(store, name="jones-portraits", photos=12, state="uploading"),
        "stopped": await stored_job(store, name="lee-engagement", photos=8, state="uploading"),
        "completed": await stored_job(
            store,
            name="garcia-party",
            photos=30,
            state="completed",
            last_error="imgix answered 503 (retried, then delivered)",
        ),
        "failed": await stored_job(
            store,
            name="patel-baptism",
            photos=5,
            state="failed",
            state_before_failure="editing",
            last_error="Imagen refused the project: the profile is gone",
            options=export,
        ),
    }
    await store.claim(jobs["uploading"], "studio-mac:4242:ab12", 600)
    await store.record_refusal("/hot/scans-2019", "scans-2019 holds no photo this tool can send")
    return jobs


def test_the_jobs_list_says_what_every_job_does_in_the_readers_time(
    browser: Any, db_url: str, tmp_path: Path
) -> None:
    jobs = with_store(db_url, _season)
    env = cli_env("http://127.0.0.1:9/v1", db_url)
    with Ui(env, tmp_path) as ui:
        context = browser.new_context(
            viewport={"width": 1600, "height": 700}, timezone_id="America/New_York"
        )
        page = context.new_page()
        page.goto(ui.url)
        table = page.locator("table.jobs")
        assert table.bounding_box()["width"] > 1500  # the screen's width, not a column of it

        def row(key: str) -> Any:
            return page.locator(f"tr[data-job='{jobs[key]}']")

        moment = row("completed").locator("td.moment time")
        page.wait_for_selector("td.moment time[title]")  # localised by the script
        shown = moment.inner_text()
        assert "UTC" not in shown and ("EST" in shown or "EDT" in shown), shown
        assert "Imagen is exporting" in row("exporting").locator("td.progress").inner_text()
        assert row("exporting").locator("td.progress progress").count() == 1
        assert "running (by studio-mac:4242:ab12)" in row("uploading").inner_text()
        assert "stopped" in row("stopped").locator(".activity").inner_text()
        assert row("completed").locator("td.last-error").inner_text() == ""
        assert "profile is gone" in row("failed").locator("td.last-error").inner_text()
        refused = page.locator("tr.refused")
        assert "scans-2019" in refused.inner_text() and "no photo" in refused.inner_text()
        shot = tmp_path / "jobs-list.png"
        page.screenshot(path=str(shot))
        sys.stdout.write(f"\nscreenshot: {shot}\n")

        page.goto(f"{ui.url}/jobs/{jobs['failed']}")
        headers = page.locator("table.photos thead th").all_inner_texts()
        assert [h.split("\n")[0] for h in headers if h.strip()] == [
            "Photo",
            "upload",
            "edit",
            "export",
        ]
        assert page.locator("p.last-error").count() == 1
        page.goto(f"{ui.url}/jobs/{jobs['completed']}")
        assert page.locator("p.last-error").count() == 0  # kept in its history

        bare = browser.new_context(java_script_enabled=False, timezone_id="America/New_York")
        plain = bare.new_page()
        plain.goto(ui.url)
        text = plain.locator(f"tr[data-job='{jobs['completed']}'] td.moment").inner_text()
        assert text.endswith(" UTC"), text
