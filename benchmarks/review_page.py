"""What the review page of a 3,000-photo job costs a browser, beside baselines measured in the
same run: a plain static file of the same size, and (with `--before DIR`) the review page of an
earlier checkout over the same database.

Two jobs are made straight in the store (tests/review_scale_support.py: 3,000 tagged photos in
three folders, each with a real 900x600 JPEG export on disk). One is made the way the pipeline
now makes a job to review: each photo's thumbnail and capture time made ahead by the keywording
stage's own code (`workflow/review_previews.ReviewPreviews.make`, 2 at a time, timed as
`previews_seconds`), the capture times in the `tag` phase's details. The other has nothing
made ahead (a job from before, or one whose previews a crash lost): the page reads the capture
times from the 3,000 JPEGs and makes the thumbnails on demand. `orchestrator ui` serves each
as a process on a real port, started afresh for each job; Debian's chromium (Playwright) loads
the page: "first screen" is the moment the grid is drawn and every thumbnail on screen has
arrived, measured by the page's own clock (`performance.now()`); bytes are the bodies' as the
browser decoded them. "cold" is the first load after the server starts; "warm" is the median
of the next `--loads`. The static baseline is the review page's own HTML saved to a file and
served with its script and styles by Python's `http.server` (its thumbnails are not there, and
its script finds no list: a page of the same size, nothing behind it).

    PYTHONPATH=. python benchmarks/review_page.py [--photos 3000] [--loads 5]
        [--before /tmp/review-before]   # e.g. `git archive ea5a886 | tar -x -C /tmp/review-before`
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from playwright.sync_api import Page, sync_playwright

from orchestrator.store.migrate import upgrade
from orchestrator.store.queries import Store
from tests.review_scale_support import big_review

HERE = Path(__file__).resolve().parent.parent
FIRST_SCREEN = """() => {
  const nav = performance.getEntriesByType("navigation")[0];
  const resources = performance.getEntriesByType("resource");
  const sum = (test) => resources.filter((r) => test(r.name))
    .reduce((total, r) => total + r.decodedBodySize, 0);
  return {
    html: nav.decodedBodySize,
    scripts: sum((n) => n.endsWith(".js")),
    styles: sum((n) => n.endsWith(".css")),
    index_json: sum((n) => n.includes("/review/index")),
    thumbnails: sum((n) => n.includes("/thumb")),
    thumbnail_count: resources.filter((r) => r.name.includes("/thumb")).length,
    full_images: sum((n) => n.includes("/image")),
    html_ms: nav.responseEnd,
    first_paint_ms: (performance.getEntriesByName("first-contentful-paint")[0] || {}).startTime,
    screen_ms: performance.now(),
  };
}"""
ON_SCREEN_LOADED = """() => Array.from(document.querySelectorAll(".tile img, .photo-review img"))
  .filter((i) => i.getBoundingClientRect().top < innerHeight).every((i) => i.complete)"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def _ui(checkout: Path, db_url: str, log: Path) -> Iterator[str]:
    """`orchestrator ui` of `checkout` on a free port; its base URL."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ORCH_", "IMAGEN_"))}
    env.update(ORCH_DATABASE_URL=db_url, ORCH_CONFIG=os.devnull, PYTHONPATH=str(checkout))
    with log.open("a") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "orchestrator", "ui", "--listen", f"127.0.0.1:{port}"],
            env=env,
            cwd=checkout,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{url}/healthz", timeout=2):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"ui did not start: {log.read_text()[-2000:]}") from None
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


class _Quiet(SimpleHTTPRequestHandler):
    """Python's file handler, without a line per request."""

    def log_message(self, *_: Any) -> None:
        """Say nothing."""


class _QuietServer(ThreadingHTTPServer):
    """A plain file server that does not print the browser's dropped connections."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Say nothing: a browser closing a connection early is no news here."""


@contextmanager
def _static(folder: Path) -> Iterator[str]:
    """Python's plain file server over `folder`; its base URL."""
    handler = functools.partial(_Quiet, directory=str(folder))
    server = _QuietServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


def _until(page: Page, predicate: str, timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while not page.evaluate(predicate):
        if time.monotonic() > deadline:
            raise SystemExit(f"the page did not get there: {predicate}")
        page.wait_for_timeout(20)


def _load(browser: Any, url: str, *, grid: bool) -> dict[str, float]:
    """One load of `url` in a fresh context (nothing cached): its first screen's figures."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    page.goto(url, wait_until="load", timeout=600_000)
    if grid:
        page.wait_for_selector("#grid[data-ready]", state="attached", timeout=600_000)
    _until(page, ON_SCREEN_LOADED)
    figures: dict[str, float] = page.evaluate(FIRST_SCREEN)
    context.close()
    return figures


def _median(loads: list[dict[str, float]]) -> dict[str, float]:
    return {key: statistics.median(load[key] for load in loads) for key in loads[0]}


def main() -> None:
    """Make the job, measure every side, print the figures and ratios as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=3000)
    parser.add_argument("--loads", type=int, default=5)
    parser.add_argument("--before", type=Path, help="an earlier checkout, for its review page")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="review-bench-"))
    try:
        db_url = f"sqlite:///{work / 'jobs.db'}"

        async def make() -> tuple[str, str, float]:
            await upgrade(db_url)
            store = Store.open(db_url)
            try:
                ahead = await big_review(store, work / "wedding", args.photos, ahead=True)
                old = await big_review(store, work / "old-wedding", args.photos)
                return ahead.id, old.id, ahead.previews_seconds
            finally:
                await store.close()

        ahead_id, old_id, previews_seconds = asyncio.run(make())
        results: dict[str, Any] = {"photos": args.photos, "previews_seconds": previews_seconds}
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=shutil.which("chromium") or "/usr/bin/chromium",
                args=["--no-sandbox"] if os.geteuid() == 0 else [],
            )
            for name, job_id in (("made_ahead", ahead_id), ("nothing_ahead", old_id)):
                with _ui(HERE, db_url, work / "ui.log") as url:
                    page_url = f"{url}/jobs/{job_id}/review"
                    cold = _load(browser, page_url, grid=True)
                    warm = [_load(browser, page_url, grid=True) for _ in range(args.loads)]
                    results[name] = {"cold": cold, "warm": _median(warm)}
                    with urllib.request.urlopen(page_url) as answer:
                        html = answer.read()
            static = work / "static"
            shutil.copytree(HERE / "orchestrator" / "web" / "static", static / "static")
            (static / "review.html").write_bytes(html)
            with _static(static) as base:
                plain = [
                    _load(browser, f"{base}/review.html", grid=False) for _ in range(args.loads)
                ]
                results["static_file"] = _median(plain)
            if args.before:
                with _ui(args.before.resolve(), db_url, work / "before.log") as url:
                    old = [
                        _load(browser, f"{url}/jobs/{ahead_id}/review", grid=False)
                        for _ in range(max(1, args.loads // 2))
                    ]
                    results["before"] = _median(old)
            browser.close()
        now = results["made_ahead"]
        warm_screen = now["warm"]["screen_ms"]
        results["ratios"] = {
            "warm_first_screen_to_static_file": warm_screen / results["static_file"]["screen_ms"],
            "cold_first_screen_to_warm": now["cold"]["screen_ms"] / warm_screen,
            "nothing_ahead_cold_to_made_ahead_cold": (
                results["nothing_ahead"]["cold"]["screen_ms"] / now["cold"]["screen_ms"]
            ),
        }
        if "before" in results:
            results["ratios"]["before_to_now_first_screen"] = (
                results["before"]["screen_ms"] / warm_screen
            )
            before_bytes = sum(results["before"][k] for k in ("html", "full_images", "thumbnails"))
            now_bytes = sum(now["warm"][k] for k in ("html", "scripts", "styles", "index_json"))
            now_bytes += now["warm"]["thumbnails"]
            results["ratios"]["before_to_now_bytes"] = before_bytes / now_bytes
        sys.stdout.write(json.dumps(results, indent=2) + "\n")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
