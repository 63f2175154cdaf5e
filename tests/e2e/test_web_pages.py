"""The web page in a real browser: Debian's chromium, driven by Playwright, against a real
`orchestrator ui` process over a real database; jobs driven by real processes against the
sandbox, or written by a "driver" through the store's own calls to follow them live.

Each test saves a screenshot of the pages it looks at under its tmp dir.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from orchestrator.sandbox import jpeg
from orchestrator.store.migrate import upgrade
from orchestrator.store.queries import PhaseDone, PhaseFailed, Store
from tests.daemon_support import free_port, http, wait_for
from tests.helpers import cli_env, sandbox_process
from tests.web_support import Ui, browser, in_thread, seed_job, with_store

__all__ = ["browser"]  # the fixture, used by name

HOSTILE = "<img src=x onerror=alert(1)>.jpg"
TOKEN = "the-studio-token-0123456789abcdef"


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    """A migrated SQLite file (on a thread: Playwright's sync API holds this one's loop)."""
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    in_thread(lambda: upgrade(url))
    return url


@pytest.fixture
def env(db_url: str) -> Iterator[dict[str, str]]:
    with sandbox_process("--edit-seconds", "0.2") as base:
        yield cli_env(f"{base}/v1", db_url)


def _tags(db_url: str, job_id: str) -> dict[str, dict[str, Any]]:
    async def read(store: Store) -> dict[str, dict[str, Any]]:
        return {
            p.file_name: dict(p.phases["tag"].details or {})
            for p in await store.photos(job_id)
            if "tag" in p.phases
        }

    return with_store(db_url, read)


def _state(db_url: str, job_id: str) -> str:
    async def read(store: Store) -> str:
        return (await store.get_job(job_id)).state

    return with_store(db_url, read)


def _run_to_review(env: dict[str, str], shoot: Path) -> str:
    """`run --export --review` (keywords seeded) on a shoot of three JPEGs; the job id."""
    shoot.mkdir()
    for name in ("a.jpg", "flagged.jpg", HOSTILE):
        (shoot / name).write_bytes(jpeg.with_comment(name.encode()))
    done = subprocess.run(
        [sys.executable, "-m", "tests.review_support", str(shoot)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    [job] = json.loads(done.stdout.splitlines()[-1])
    assert job["state"] == "reviewing", done.stderr
    return str(job["id"])


def _page(browser: Any) -> tuple[Any, list[str]]:
    """A fresh page, and the list its dialogs other than confirmations are noted in."""
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    dialogs: list[str] = []

    def on_dialog(dialog: Any) -> None:
        if dialog.type != "confirm":
            dialogs.append(dialog.message)
        dialog.accept()

    page.on("dialog", on_dialog)
    return page, dialogs


def test_the_jobs_page_follows_a_running_job_live(
    browser: Any, db_url: str, tmp_path: Path
) -> None:
    names = [f"IMG_{i:04d}.jpg" for i in range(4)]
    job = with_store(
        db_url, lambda store: seed_job(store, tmp_path / "wedding", names, state="uploading")
    )
    env = cli_env("http://127.0.0.1:9/v1", db_url)
    with Ui(env, tmp_path) as ui:
        page, dialogs = _page(browser)
        page.goto(ui.url)
        row = page.locator(f'tr[data-job="{job.id}"]')
        assert "uploading" in row.inner_text()
        assert "0/4 files" in row.inner_text()
        page.evaluate("window.notReloaded = true")

        for done, name in enumerate(names[:3], start=1):
            photo = job.photo_ids[name]
            with_store(db_url, lambda s, p=photo: s.checkpoint(job.lease, p, PhaseDone("upload")))
            row.filter(has_text=f"{done}/4 files").wait_for(timeout=5000)
        text = row.inner_text()
        assert "6.0 MB of 10.0 MB" in text  # the sources' sizes: 1+2+3 of 1+2+3+4 MB
        assert "/s" in text and "left" in text  # a rate and the time left
        assert page.evaluate("window.notReloaded") is True  # followed without reloading
        page.screenshot(path=str(tmp_path / "jobs.png"), full_page=True)
        assert dialogs == []


def test_the_jobs_list_is_updated_by_what_changed_and_shows_local_time(
    browser: Any, db_url: str, tmp_path: Path
) -> None:
    names = [f"IMG_{i:04d}.jpg" for i in range(4)]
    moving, still = (
        with_store(
            db_url, lambda store, n=n: seed_job(store, tmp_path / n, names, state="uploading")
        )
        for n in ("moving", "still")
    )
    env = cli_env("http://127.0.0.1:9/v1", db_url)
    with Ui(env, tmp_path) as ui:
        context = browser.new_context(
            timezone_id="Asia/Tokyo", viewport={"width": 1600, "height": 800}
        )
        page = context.new_page()
        page.goto(ui.url)
        row, other = (page.locator(f'tr[data-job="{job.id}"]') for job in (moving, still))
        assert "GMT+9" in row.locator("time").inner_text()  # the reader's zone, not UTC
        assert row.locator("time").get_attribute("datetime").endswith("+00:00")
        page.evaluate(
            "id => { document.querySelector(`tr[data-job='${id}']`).kept = true; }", still.id
        )
        page.evaluate("window.notReloaded = true")
        refreshed = page.evaluate("document.getElementById('job-rows').dataset.refreshed || ''")

        photo = moving.photo_ids[names[0]]
        with_store(db_url, lambda s: s.checkpoint(moving.lease, photo, PhaseDone("upload")))
        row.filter(has_text="1/4 files").wait_for(timeout=10000)
        assert page.evaluate("window.notReloaded") is True
        # The row that did not change is the same element: it was not sent again.
        assert page.evaluate("id => document.querySelector(`tr[data-job='${id}']`).kept", still.id)
        assert "GMT+9" in row.locator("time").inner_text()  # a row sent again shows local time
        assert other.count() == 1
        assert page.evaluate("document.getElementById('job-rows').dataset.refreshed") != refreshed
        width = page.evaluate("document.querySelector('table.jobs').getBoundingClientRect().width")
        assert width > 1400  # the list uses the screen's width
        page.screenshot(path=str(tmp_path / "jobs-local.png"), full_page=True)
        context.close()

        # Without scripts the page still lists the jobs, its moments in UTC.
        plain = browser.new_context(java_script_enabled=False)
        still_page = plain.new_page()
        still_page.goto(ui.url)
        text = still_page.locator(f'tr[data-job="{still.id}"] time').inner_text()
        assert text.endswith(" UTC")
        plain.close()


def test_the_poll_answers_nothing_when_nothing_changed_and_only_the_rows_that_did(
    db_url: str, tmp_path: Path
) -> None:
    names = ["a.jpg", "b.jpg"]
    moving, still = (
        with_store(
            db_url, lambda store, n=n: seed_job(store, tmp_path / n, names, state="uploading")
        )
        for n in ("moving", "still")
    )
    # A browser keeps its CSRF cookie, so the rows' forms (and signatures) stay the same.
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor())

    def get(path: str) -> tuple[int, bytes]:
        with opener.open(f"{ui.url}{path}", timeout=10) as answer:
            return int(answer.status), bytes(answer.read())

    with Ui(cli_env("http://127.0.0.1:9/v1", db_url), tmp_path) as ui:
        get("/")
        everything = json.loads(get("/jobs/rows")[1])
        assert set(everything["rows"]) == {moving.id, still.id}
        assert everything["order"] == [still.id, moving.id]
        stamp = everything["stamp"]
        assert get(f"/jobs/rows?since={stamp}")[0] == 204

        photo = moving.photo_ids["a.jpg"]
        with_store(db_url, lambda s: s.checkpoint(moving.lease, photo, PhaseDone("upload")))
        status, body = get(f"/jobs/rows?since={stamp}")
        assert status == 200
        delta = json.loads(body)
        assert list(delta["rows"]) == [moving.id] and delta["order"] is None
        assert "1/2 files" in delta["rows"][moving.id]
        assert get(f"/jobs/rows?since={delta['stamp']}")[0] == 204
        # A stamp this page did not give out is the stamp of nothing: every row is sent.
        assert set(json.loads(get("/jobs/rows?since=%25%25")[1])["rows"]) == {
            moving.id,
            still.id,
        }


def test_the_job_page_shows_a_photos_failure_and_hostile_names_as_text(
    browser: Any, db_url: str, tmp_path: Path
) -> None:
    async def start(store: Store) -> Any:
        job = await seed_job(store, tmp_path / "shoot", ["ok.jpg", HOSTILE], state="uploading")
        await store.checkpoint(job.lease, job.photo_ids["ok.jpg"], PhaseDone("upload"))
        await store.checkpoint(
            job.lease,
            job.photo_ids[HOSTILE],
            PhaseFailed("upload", "Imagen refused the file: <b>not a photo</b>"),
        )
        return job

    job = with_store(db_url, start)
    with Ui(cli_env("http://127.0.0.1:9/v1", db_url), tmp_path) as ui:
        page, dialogs = _page(browser)
        page.goto(f"{ui.url}/jobs/{job.id}")
        row = page.locator("tr.photo").filter(has_text=HOSTILE)
        assert "failed" in row.inner_text()
        assert "Imagen refused the file: <b>not a photo</b>" in row.inner_text()
        assert page.locator("img[src=x]").count() == 0 and page.locator("b").count() == 0
        assert "upload running" in page.locator(".timeline").inner_text()
        page.screenshot(path=str(tmp_path / "job.png"), full_page=True)
        assert dialogs == []  # no alert(1) ran


def test_the_review_removes_a_keyword_adds_a_suggestion_and_approves(
    browser: Any, env: dict[str, str], db_url: str, tmp_path: Path
) -> None:
    job_id = _run_to_review(env, tmp_path / "beach")
    with Ui(env, tmp_path) as ui:
        page, dialogs = _page(browser)
        page.goto(f"{ui.url}/jobs/{job_id}/review")
        page.locator(".tile").filter(has_text="a.jpg").first.click()  # the loupe
        photo = page.locator("#loupe-live.photo-review")
        photo.locator("h2.name >> text=a.jpg").wait_for()
        page.wait_for_selector("#loupe-live img")
        wait_for(
            lambda: photo.locator("img").evaluate("img => img.naturalWidth") > 0,
            timeout=30,
            what="the exported JPEG in the loupe",
        )

        photo.locator("li.chip").filter(has_text="sunset").locator("button").click()
        photo.locator("li.chip").filter(has_text="sunset").wait_for(state="detached")
        assert [c.strip() for c in photo.locator("li.chip .word").all_inner_texts()] == [
            "beach",
            "sea",
        ]
        photo.locator("form.add input[name=add]").fill("ocean")
        photo.locator("form.add button").click()
        photo.locator("li.chip .word >> text=ocean").wait_for()
        tags = _tags(db_url, job_id)
        assert tags["a.jpg"]["keywords"] == ["beach", "sea", "ocean"]
        assert tags["a.jpg"]["source"] == "reviewed"
        assert tags["flagged.jpg"]["keywords"] == ["beach", "sunset", "sea"]

        # A word the tagger did not suggest: the browser will not send it...
        field = photo.locator("form.add input[name=add]")
        field.fill("volcano")
        assert "suggestions" in field.evaluate("f => f.validationMessage")
        photo.locator("form.add button").click()
        assert field.input_value() == "volcano"  # not submitted
        # ...and the server refuses it when sent anyway, naming the words that may be added.
        photo.locator("form.add").evaluate("form => form.submit()")
        page.wait_for_load_state()
        assert "'volcano' is not among the suggestions for a.jpg" in page.inner_text(".error")
        assert "sunset, sand, people" in page.inner_text(".error")
        assert _tags(db_url, job_id)["a.jpg"]["keywords"] == ["beach", "sea", "ocean"]

        page.wait_for_selector("#grid[data-ready]", state="attached")
        page.locator(".tile").filter(has_text=HOSTILE).click()
        hostile = page.locator("#loupe-live.photo-review")
        hostile.locator(".chip").first.wait_for()
        assert hostile.locator("h2.name").inner_text() == HOSTILE
        page.screenshot(path=str(tmp_path / "review.png"), full_page=True)
        page.keyboard.press("Escape")

        # The flagged photo by name, then the job: everything is decided, the job goes on.
        page.locator(".tile.flagged").click()
        flagged = page.locator("#loupe-live.photo-review.flagged")
        flagged.locator(".flag").wait_for()
        assert "flagged by moderation" in flagged.inner_text()
        flagged.locator("button.approve-photo").click()
        wait_for(
            lambda: _tags(db_url, job_id)["flagged.jpg"].get("approved") is True,
            timeout=30,
            what="the flagged photo's approval",
        )
        page.keyboard.press("Escape")
        page.locator("form.approve-job button").click()
        page.wait_for_load_state()
        tags = _tags(db_url, job_id)
        assert {name: t["approved"] for name, t in tags.items()} == {
            "a.jpg": True,
            "flagged.jpg": True,
            HOSTILE: True,
        }
        assert dialogs == []
    done = subprocess.run(
        [sys.executable, "-m", "tests.review_support", str(tmp_path / "beach")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert json.loads(done.stdout.splitlines()[-1])[0]["state"] == "completed", done.stderr


def test_beyond_loopback_every_page_and_the_api_need_the_token(
    browser: Any, env: dict[str, str], db_url: str, tmp_path: Path
) -> None:
    job_id = _run_to_review(env, tmp_path / "shoot")
    with Ui({**env, "ORCH_UI_TOKEN": TOKEN}, tmp_path, host="0.0.0.0") as ui:
        paths = [
            "/",
            "/jobs/rows",
            f"/jobs/{job_id}",
            f"/jobs/{job_id}/review",
            f"/jobs/{job_id}/photos/1/image",
            f"/jobs/{job_id}/photos/1/thumb",
            f"/jobs/{job_id}/review/index?show=undecided",
            f"/jobs/{job_id}/review/photos/1",
            f"/jobs/{job_id}/review/changes?since=2026-01-01T00:00:00%2B00:00",
            "/api/jobs",
            f"/api/jobs/{job_id}",
        ]
        for path in paths:
            assert http("GET", f"{ui.url}{path}")[0] == 401, path
            forged = {"Cookie": "orch_session=1.deadbeef"}
            assert http("GET", f"{ui.url}{path}", headers=forged)[0] == 401, path
            bearer = {"Authorization": f"Bearer {TOKEN}"}
            assert http("GET", f"{ui.url}{path}", headers=bearer)[0] == 200, path
        assert http("GET", f"{ui.url}/healthz")[0] == 200

        page, _ = _page(browser)
        answer = page.goto(f"{ui.url}/jobs/{job_id}")
        assert answer.status == 401
        page.screenshot(path=str(tmp_path / "login.png"))
        page.fill("input[name=token]", "not-the-token")
        page.click("form.login button")
        assert "that is not the token" in page.inner_text("main")
        page.fill("input[name=token]", TOKEN)
        page.click("form.login button")
        page.wait_for_load_state()
        assert page.url == f"{ui.url}/jobs/{job_id}"
        assert "reviewing" in page.inner_text("h1")


def test_a_forged_cross_site_post_is_refused(
    browser: Any, env: dict[str, str], db_url: str, tmp_path: Path
) -> None:
    job_id = _run_to_review(env, tmp_path / "shoot")
    with Ui(env, tmp_path) as ui:
        evil = tmp_path / "evil"
        evil.mkdir()
        (evil / "index.html").write_text(
            f'<form id="f" method="post" action="{ui.url}/jobs/{job_id}/approve">'
            '<input name="csrf" value="guessed"></form>'
            "<script>document.getElementById('f').submit()</script>"
        )
        port = free_port()
        server = ThreadingHTTPServer(
            ("127.0.0.1", port),
            lambda *a: SimpleHTTPRequestHandler(*a, directory=str(evil)),
        )
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            page, _ = _page(browser)
            page.goto(f"{ui.url}/")  # the victim has the page open: its CSRF cookie is set
            # Another site (localhost is not 127.0.0.1 to a browser) posts to the page.
            with page.expect_navigation(url=f"{ui.url}/jobs/{job_id}/approve"):
                page.goto(f"http://localhost:{port}/index.html")
            wait_for(lambda: "refused" in page.inner_text("body"), timeout=5, what="refusal")
        finally:
            server.shutdown()
        status, _ = http("POST", f"{ui.url}/jobs/{job_id}/approve", b"csrf=x")
        assert status == 403
        bulk = b"action=approve&photo=1&photo=2&photo=3"
        assert http("POST", f"{ui.url}/jobs/{job_id}/review/bulk", bulk)[0] == 403
        scripted = {"Accept": "application/json", "X-CSRF-Token": "guessed"}
        assert http("POST", f"{ui.url}/jobs/{job_id}/review/bulk", bulk, headers=scripted)[0] == 403
        assert _state(db_url, job_id) == "reviewing"
        assert all("approved" not in t for t in _tags(db_url, job_id).values())


def test_deliver_on_the_job_page_delivers_again_through_the_clis_call(
    browser: Any, db_url: str, tmp_path: Path
) -> None:
    with sandbox_process("--edit-seconds", "0.2") as base:
        env = cli_env(
            f"{base}/v1",
            db_url,
            IMGIX_API_URL=f"{base}/imgix/api/v1",
            IMGIX_API_KEY="imgix-key-page-0123456789",
            IMGIX_SOURCE_ID="pagesource",
            IMGIX_DOMAIN="pagesource.imgix.net",
        )
        shoot = tmp_path / "shoot"
        shoot.mkdir()
        for name in ("a.jpg", "b.jpg"):
            (shoot / name).write_bytes(jpeg.with_comment(name.encode()))
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "orchestrator",
                "run",
                str(shoot),
                "--profile",
                "2001",
                "--export",
                "--deliver",
                "--json",
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        [job] = json.loads(done.stdout)
        with Ui(env, tmp_path) as ui:
            page, dialogs = _page(browser)
            page.goto(f"{ui.url}/jobs/{job['id']}")
            page.locator("button.deliver").click()
            page.wait_for_url(f"{ui.url}/jobs/{job['id']}")

            def delivered_again() -> bool:
                page.reload()
                return "delivered again: 0 photos, 2 unchanged" in page.content()

            wait_for(delivered_again, timeout=30, what="the page's delivery to finish")
            page.screenshot(path=str(tmp_path / "deliver.png"), full_page=True)
            assert dialogs == []
