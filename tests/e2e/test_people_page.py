"""The people page in a real browser (Debian's chromium through Playwright) against a real
`orchestrator ui` process, over a job a real `orchestrator run --people` made against the
sandbox: the persons shown with their photos, a name given once going into every file of that
person (read back with exiftool), hostile names shown as text, forged posts refused."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from orchestrator.store.migrate import upgrade
from tests.e2e.test_analyses import as_list, exif, make_people_shoot
from tests.e2e.test_tagging import env_for
from tests.helpers import orchestrator, sandbox_process, status_jobs
from tests.tagging_support import needs_exiftool
from tests.web_support import Ui, browser, forged_post, in_thread

__all__ = ["browser"]  # the fixture, used by name
pytestmark = needs_exiftool

HOSTILE = "<b>Anna</b> & co"


@pytest.fixture
def env(tmp_path: Path) -> Any:
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    in_thread(lambda: upgrade(url))
    with sandbox_process("--edit-seconds", "0.2") as base:
        yield env_for(base, url)


def test_the_people_page_names_a_person_in_every_file_once(
    browser: Any, env: dict[str, str], tmp_path: Path
) -> None:
    shoot = tmp_path / "shoot"
    make_people_shoot(shoot, 8)
    done = orchestrator(
        "run", str(shoot), "--profile", "2001", "--tag", "--people", "--json", env=env, timeout=180
    )
    assert done.returncode == 0, done.stderr[-3000:]
    listed = orchestrator("people", str(shoot), "--json", env=env)
    persons = json.loads(listed.stdout)
    twice = max(persons, key=lambda p: len(p["photos"]))
    [job] = status_jobs(env, str(shoot))
    job_id = job["id"]

    with Ui(env, tmp_path) as ui:
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.goto(f"{ui.url}/jobs/{job_id}")
        with page.expect_navigation() as opened:
            page.get_by_role("link", name="People").click()
        answer = opened.value
        assert answer is not None and answer.url == f"{ui.url}/jobs/{job_id}/people"
        assert answer.status == 200
        assert "script-src 'self'" in answer.headers["content-security-policy"]
        sections = page.locator("section.person")
        assert sections.count() == len(persons)
        person = page.locator(f"#person-{twice['group']}")
        images = person.locator("img")
        assert images.count() == len(twice["photos"])
        for i in range(images.count()):  # lazy: each arrives once on screen, and is a picture
            image = images.nth(i)
            image.scroll_into_view_if_needed()
            page.wait_for_function(
                "img => img.complete && img.naturalWidth > 0", arg=image.element_handle()
            )
        person.locator("input[name=name]").fill(HOSTILE)
        with page.expect_navigation():
            person.locator("button").click()
        person = page.locator(f"#person-{twice['group']}")
        assert person.locator(".person-name").inner_text() == HOSTILE
        assert person.locator("b").count() == 0  # shown as text, never as markup
        page.screenshot(path=str(tmp_path / "people.png"), full_page=True)

        # A post without the page's CSRF field is refused, and names nobody.
        assert (
            forged_post(f"{ui.url}/jobs/{job_id}/people/{twice['group']}/name", b"name=Mallory")
            == 403
        )
        page.close()

    named = orchestrator("people", str(shoot), "--json", env=env)
    assert [p["name"] for p in json.loads(named.stdout) if p["group"] == twice["group"]] == [
        HOSTILE
    ]
    for photo in twice["photos"]:
        tags = exif(shoot / "edited" / photo)
        assert HOSTILE in as_list(tags.get("XMP-dc:Subject"))
        assert f"People|{HOSTILE}" in as_list(tags.get("XMP-lr:HierarchicalSubject"))
        regions = tags["XMP-mwg-rs:RegionInfo"]["RegionList"]
        assert any(r.get("Name") == HOSTILE for r in regions)
