"""The review page as a culling tool, in a real browser (Debian's chromium driven by
Playwright) against a real `orchestrator ui` process over a real database.

A 3,000-photo review is made straight in the store, with real small JPEG exports on disk
(tests/review_scale_support.py): the first screen's bytes and time are measured (printed; the
byte budget asserted, the time only printed: benchmarks/review_page.py compares it), the grid
stays a bounded number of elements wherever it is scrolled, the filters and the capture order
hold, and two pages on one job see each other's decisions. A keyboard-only pass runs on a job
driven through the sandbox with real keywording, and is read back from the database and from
the files (exiftool) once the job has gone on. Screenshots go under each test's tmp dir (the
path is printed).
"""

from __future__ import annotations

import concurrent.futures
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from orchestrator.store.migrate import upgrade
from orchestrator.store.queries import Store
from tests.helpers import cli_env, orchestrator, sandbox_process
from tests.resume_support import stored_jobs
from tests.review_scale_support import big_review
from tests.tagging_support import IMAGGA_ENV, iptc_keywords, make_tag_shoot, xmp_list, xmp_of
from tests.web_support import Ui, browser, in_thread, with_store

__all__ = ["browser"]  # the fixture, used by name

FIRST_SCREEN_BUDGET = 300_000
"""Bytes of HTML, scripts and styles the first screen of a 3,000-photo review may take."""
DOM_TILES_BOUND = 400
"""Tiles the grid may hold at once, wherever it is scrolled (3,000 photos in the job)."""


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    in_thread(lambda: upgrade(url))
    return url


@pytest.fixture
def ui_env(db_url: str) -> dict[str, str]:
    return cli_env("http://127.0.0.1:9/v1", db_url)


def _tags(db_url: str, job_id: str) -> dict[str, dict[str, Any]]:
    async def read(store: Store) -> dict[str, dict[str, Any]]:
        return {
            p.rel_path: dict(p.phases["tag"].details or {})
            for p in await store.photos(job_id)
            if "tag" in p.phases
        }

    return with_store(db_url, read)


def _page(browser: Any, width: int = 1400, height: int = 900) -> Any:
    page = browser.new_page(viewport={"width": width, "height": height})
    page.on("dialog", lambda dialog: dialog.accept())
    return page


def _until(page: Any, predicate: str, arg: Any = None, timeout: float = 60.0) -> None:
    """Wait until the page's `predicate` (a JS function of `arg`) holds. Playwright's own
    `wait_for_function` evaluates with `eval`, which the page's CSP refuses."""
    deadline = time.monotonic() + timeout
    while not page.evaluate(predicate, arg):
        assert time.monotonic() < deadline, f"still not true after {timeout} s: {predicate}"
        page.wait_for_timeout(50)


def _loupe_shows_current(page: Any) -> None:
    """Wait until the loupe shows the current photo's keywords (after a move it shows the
    previous photo's until the next one's arrive)."""
    _until(
        page,
        "() => { const l = document.getElementById('loupe-live'); return Boolean(l && "
        "l.dataset.shown === l.dataset.photo && l.querySelector('.chip .word')); }",
    )


def _ready(page: Any) -> None:
    page.wait_for_selector("#grid[data-ready]", state="attached")


def _first_screen(page: Any) -> dict[str, float]:
    """What the page took to its first screen: bytes by kind, and when it was ready (ms)."""
    _until(
        page,
        "() => Array.from(document.querySelectorAll('.tile img')).filter(i => "
        "i.getBoundingClientRect().top < innerHeight).every(i => i.complete)",
    )
    measured: dict[str, float] = page.evaluate(
        """() => {
        const nav = performance.getEntriesByType("navigation")[0];
        const sum = (test) => performance.getEntriesByType("resource")
          .filter((r) => test(r.name)).reduce((total, r) => total + r.decodedBodySize, 0);
        const sent = (test) => performance.getEntriesByType("resource")
          .filter((r) => test(r.name)).reduce((total, r) => total + r.transferSize, 0);
        return {
          html: nav.decodedBodySize,
          scripts: sum((n) => n.endsWith(".js")),
          styles: sum((n) => n.endsWith(".css")),
          index_json: sum((n) => n.includes("/review/index")),
          index_sent: sent((n) => n.includes("/review/index")),
          thumbnails: sum((n) => n.includes("/thumb")),
          thumbnail_count: performance.getEntriesByType("resource")
            .filter((r) => r.name.includes("/thumb")).length,
          html_ms: nav.responseEnd,
          first_paint_ms: (performance.getEntriesByName("first-contentful-paint")[0] || {})
            .startTime,
          grid_ms: Number(document.getElementById("grid").dataset.readyAt),
          screen_ms: performance.now(),
        };
    }"""
    )
    return measured


def test_a_3000_photo_review_first_screen_order_filters_and_bounded_grid(
    browser: Any, db_url: str, ui_env: dict[str, str], tmp_path: Path
) -> None:
    job = with_store(db_url, lambda store: big_review(store, tmp_path / "wedding", 3000))
    with Ui(ui_env, tmp_path) as ui:
        url = f"{ui.url}/jobs/{job.id}/review"
        cold = _page(browser)
        cold.goto(url)
        _ready(cold)
        cold_figures = _first_screen(cold)
        cold.close()

        page = _page(browser)
        page.goto(url)
        _ready(page)
        figures = _first_screen(page)
        sys.stdout.write(f"\n3,000-photo review, first load: {json.dumps(cold_figures)}\n")
        sys.stdout.write(f"3,000-photo review, next load: {json.dumps(figures)}\n")
        shot = tmp_path / "review-grid.png"
        page.screenshot(path=str(shot))
        page.keyboard.press("ArrowRight")
        page.keyboard.press("Space")
        page.wait_for_selector("#loupe-live .chip")
        _until(page, "() => document.querySelector('#loupe-live img').complete")
        page.screenshot(path=str(tmp_path / "review-loupe.png"))
        page.keyboard.press("Escape")
        sys.stdout.write(f"screenshots: {shot} and review-loupe.png beside it\n")
        for measured in (cold_figures, figures):
            first = measured["html"] + measured["scripts"] + measured["styles"]
            assert 0 < first <= FIRST_SCREEN_BUDGET, measured
        assert figures["thumbnail_count"] < 100  # the screen's, not the job's

        # Capture order, the folders as sections: "Getting Ready" (11:00) before "Ceremony".
        assert page.locator(".vrow.section").first.inner_text() == "Getting Ready"
        names = page.locator(".tile .name").all_inner_texts()
        assert names[:3] == ["IMG_2999.jpg", "IMG_2998.jpg", "IMG_2997.jpg"]
        assert page.get_attribute("#grid", "data-count") == "3000"

        # Wherever the grid goes, it holds only the rows around the screen.
        page.keyboard.press("End")
        page.wait_for_selector(".tile.current .name >> text=IMG_3000.jpg")
        tiles = page.locator(".tile").count()
        assert 0 < tiles <= DOM_TILES_BOUND, tiles
        heap = page.evaluate("performance.memory ? performance.memory.usedJSHeapSize : 0")
        sys.stdout.write(
            f"at the end of the grid: {tiles} tiles in the page, JS heap {heap} bytes\n"
        )
        page.keyboard.press("Home")
        page.wait_for_selector(".tile.current .name >> text=IMG_2999.jpg")

        # Filters, counted as the store holds the photos.
        tags = _tags(db_url, job.id)
        flagged = sum(t["moderation"]["flagged"] for t in tags.values())
        bare = sum(not t["keywords"] for t in tags.values())
        page.click(".review-filters a[data-show=flagged]")
        _ready(page)
        assert page.get_attribute("#grid", "data-count") == str(flagged) != "0"
        assert page.locator(".tile.flagged").count() == page.locator(".tile").count()
        page.click(".review-filters a[data-show=nokeywords]")
        _ready(page)
        assert page.get_attribute("#grid", "data-count") == str(bare) != "0"
        page.goto(f"{url}?keyword=flowers")
        _ready(page)
        with_flowers = sum("flowers" in t["keywords"] for t in tags.values())
        assert page.get_attribute("#grid", "data-count") == str(with_flowers) == "2925"
        page.goto(f"{url}?category=events+parties")
        _ready(page)
        in_category = sum(t["categories"][0]["name"] == "events parties" for t in tags.values())
        assert page.get_attribute("#grid", "data-count") == str(in_category) == "1000"
        page.goto(f"{url}?show=approved")
        _ready(page)
        assert page.get_attribute("#grid", "data-count") == "0"


def test_the_review_pages_without_scripts_and_keeps_the_place_after_an_action(
    browser: Any, db_url: str, ui_env: dict[str, str], tmp_path: Path
) -> None:
    job = with_store(db_url, lambda store: big_review(store, tmp_path / "wedding", 300))
    context = browser.new_context(
        java_script_enabled=False, viewport={"width": 1280, "height": 900}
    )
    page = context.new_page()
    with Ui(ui_env, tmp_path) as ui:
        page.goto(f"{ui.url}/jobs/{job.id}/review?show=undecided")
        assert page.locator("li.tile").count() == 120  # a page of the grid
        page.click("a[rel=next]")
        assert "page=1" in page.url
        tile = page.locator("li.tile").nth(5)
        name = tile.locator(".name").inner_text()
        tile.locator("a").click()
        assert page.locator("#loupe h2.name").inner_text().endswith(name)
        page.locator("#loupe li.chip").first.locator("button").click()
        # Back where it was: the same filter, page and photo.
        assert "show=undecided" in page.url and "page=1" in page.url and "photo=" in page.url
        assert len(page.locator("#loupe li.chip").all()) == 2
        page.locator("#loupe form.approve-photo button").click()
        assert page.locator("#loupe .decision .approved").count() == 1
        # Two ticked photos, a keyword added to both.
        page.goto(f"{ui.url}/jobs/{job.id}/review")
        boxes = page.locator("li.tile input[type=checkbox]")
        boxes.nth(0).check()
        boxes.nth(1).check()
        page.fill("#bulk input[name=word]", "cake")
        page.click("#bulk button.bulk-add")
        page.screenshot(path=str(tmp_path / "review-without-scripts.png"), full_page=False)
    tags = _tags(db_url, job.id)
    first_two = [t for t in tags.values() if "cake" in t["keywords"]]
    assert len(first_two) == 2 and all(t["source"] == "reviewed" for t in first_two)
    assert sum(t.get("approved") is True for t in tags.values()) == 1


def test_two_reviewers_on_one_job_see_each_others_decisions(
    browser: Any, db_url: str, ui_env: dict[str, str], tmp_path: Path
) -> None:
    job = with_store(db_url, lambda store: big_review(store, tmp_path / "wedding", 60))
    with Ui(ui_env, tmp_path) as ui:
        url = f"{ui.url}/jobs/{job.id}/review"
        one, two = _page(browser, 1200, 800), _page(browser, 1200, 800)
        for page in (one, two):
            page.goto(url)
            _ready(page)
        first = one.locator(".tile").nth(0).get_attribute("data-photo")
        second = one.locator(".tile").nth(1).get_attribute("data-photo")
        # One approves the first photo; two, at the same time, rejects a keyword of the second.
        one.keyboard.press("a")
        two.keyboard.press("ArrowRight")
        two.keyboard.press("Space")
        two.wait_for_selector("#loupe-live .chip")
        two.keyboard.press("1")
        one.wait_for_selector(f".tile.d-approved[data-photo='{first}']")
        two.wait_for_selector(f".tile[data-photo='{first}'].d-approved")  # by the poll
        two.keyboard.press("Escape")
        # And on the second photo one adds a keyword while two approves it: both hold.
        one.keyboard.press("Space")
        one.wait_for_selector(f"#loupe-live[data-photo='{second}'] .chip")
        one.keyboard.press("t")
        one.keyboard.type("church")
        one.keyboard.press("Enter")
        two.keyboard.press("a")
        one.wait_for_selector(f"#loupe-live[data-photo='{second}'] .decision .approved")
        one.wait_for_selector(f"#loupe-live[data-photo='{second}'] .chip >> text=church")
    tags = {str(pid): _tags(db_url, job.id)[rel] for rel, pid in job.photo_ids.items()}
    assert tags[first]["approved"] is True
    assert tags[second]["approved"] is True
    assert tags[second]["keywords"] == ["groom", "flowers", "church"]


@pytest.fixture(scope="module")
def sandbox_url() -> Iterator[str]:
    with sandbox_process("--edit-seconds", "0.2") as url:
        yield url


def test_a_keyboard_only_pass_reaches_the_database_and_the_files(
    browser: Any, sandbox_url: str, db_url: str, tmp_path: Path
) -> None:
    shoot = tmp_path / "shoot"
    make_tag_shoot(shoot, jpegs=60)
    env = cli_env(
        f"{sandbox_url}/v1", db_url, IMAGGA_API_URL=f"{sandbox_url}/imagga/v2", **IMAGGA_ENV
    )
    args = ("run", str(shoot), "--profile", "2001", "--tag", "--review", "--json")
    done = orchestrator(*args, env=env, timeout=300)
    assert done.returncode == 4, done.stderr[-2000:]  # waiting for a person
    [job] = _stored_jobs(db_url, shoot)
    before = _tags(db_url, job["id"])
    with Ui(env, tmp_path) as ui:
        page = _page(browser)
        page.goto(f"{ui.url}/jobs/{job['id']}/review")
        _ready(page)
        order = page.evaluate(
            "Array.from(document.querySelectorAll('.tile .name'), n => n.textContent)"
        )
        # 50 photos approved: A approves and moves on.
        for _ in range(50):
            page.keyboard.press("a")
        _until(page, "() => document.getElementById('to-decide').textContent === '10'")
        # A keyword rejected on 5: the loupe, its first keyword (1), the next photo.
        page.keyboard.press("Home")
        page.keyboard.press("Space")
        rejected = {}
        for _ in range(5):
            _loupe_shows_current(page)
            name = page.locator("#loupe-live h2.name").inner_text()
            word = page.locator("#loupe-live .chip .word").first.inner_text()
            page.keyboard.press("1")
            _until(
                page,
                "w => !Array.from(document.querySelectorAll('#loupe-live .chip .word'))"
                ".some(e => e.textContent === w)",
                arg=word,
            )
            rejected[name] = word
            page.keyboard.press("ArrowRight")
        page.screenshot(path=str(tmp_path / "review-loupe.png"))
        page.keyboard.press("Escape")
        # A keyword added to a selection of 20: Shift-→ 19 times from the 11th photo, T, Enter.
        page.keyboard.press("Home")
        for _ in range(10):
            page.keyboard.press("ArrowRight")
        for _ in range(19):
            page.keyboard.press("Shift+ArrowRight")
        assert page.inner_text("#selected-count") == "With the 20 ticked photos"
        chosen = order[10:30]
        word = _common_suggestion([before[n] for n in chosen])
        page.keyboard.press("t")
        page.keyboard.type(word)
        page.keyboard.press("Enter")
        page.wait_for_selector(f"#notice >> text=“{word}” added to 20 photos.")
        # The rest: Ctrl-A, A.
        page.keyboard.press("Control+a")
        page.keyboard.press("a")
        page.wait_for_selector("#notice >> text=Approved 60 photos.")
        _until(page, "() => document.getElementById('to-decide').textContent === '0'")
        page.screenshot(path=str(tmp_path / "review-done.png"))
    after = _tags(db_url, job["id"])
    assert all(t["approved"] is True for t in after.values())
    for name, gone in rejected.items():
        assert gone not in after[name]["keywords"] and after[name]["source"] == "reviewed"
    for name in chosen:
        assert word in after[name]["keywords"], name
    done = orchestrator(*args, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    [job] = _stored_jobs(db_url, shoot)
    for name, photo in job["photos"].items():
        file = shoot / "edited" / photo.phase("edit").output
        _kind, subject = xmp_list(xmp_of(file), "dc:subject")
        _mark, iptc = iptc_keywords(file)
        keywords = photo.phase("tag").details["keywords"]
        for words in (subject, iptc):
            assert set(keywords) <= set(words), (name, words)
            if name in rejected:
                assert rejected[name] not in words, (name, words)
            if name in chosen:
                assert word in words, (name, words)


def _stored_jobs(db_url: str, shoot: Path) -> list[dict[str, Any]]:
    """`stored_jobs`, on a thread of its own (Playwright's sync API holds this one's loop)."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(stored_jobs, db_url, shoot).result()


def _common_suggestion(details: list[dict[str, Any]]) -> str:
    """A word every one of these photos was suggested and none has yet."""
    common = None
    for found in details:
        addable = {s["tag"] for s in found["suggestions"]} - set(found["keywords"])
        common = addable if common is None else common & addable
    assert common, "the sandbox suggested no word common to the selection"
    return sorted(common)[0]
