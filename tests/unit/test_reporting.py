"""Tests for the CLI's progress reporters and the human-friendly formatting helpers."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest
from rich.text import Text

from orchestrator.cli.reporting import (
    JsonReporter,
    PlainReporter,
    Reporter,
    RichReporter,
    format_byte_progress,
    format_bytes,
    format_duration,
    format_rate,
    make_reporter,
)
from orchestrator.progress import ProgressSink

JOB = "shoot (RAW)"
GB = 1_000_000_000


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class TtyStringIO(io.StringIO):
    """An in-memory stream that claims to be a terminal."""

    def isatty(self) -> bool:
        return True


class BrokenStream(io.StringIO):
    """A stream whose every write fails, like a closed pipe; it counts the writes tried."""

    def __init__(self) -> None:
        super().__init__()
        self.tried = 0

    def write(self, s: str) -> int:
        self.tried += 1
        raise BrokenPipeError("gone")


def lines(stream: io.StringIO) -> list[str]:
    return stream.getvalue().splitlines()


def events(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in lines(stream)]


# --- formatting helpers -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "text"),
    [
        (0, "0 B"),
        (512, "512 B"),
        (3_100, "3.1 KB"),
        (999_949, "999.9 KB"),
        (999_960, "1.0 MB"),
        (48_200_000, "48.2 MB"),
        (10_200_000_000, "10.2 GB"),
        (2_500_000_000_000, "2.5 TB"),
        (7_000_000_000_000_000_000, "7000.0 PB"),
    ],
)
def test_format_bytes_uses_decimal_units(n: int, text: str) -> None:
    assert format_bytes(n) == text


def test_format_byte_progress_shares_the_totals_unit() -> None:
    assert format_byte_progress(3_100_000_000, 10_200_000_000) == "3.1/10.2 GB"
    assert format_byte_progress(500_000, 10_200_000_000) == "0.0/10.2 GB"
    assert format_byte_progress(12, 800) == "12/800 B"


def test_format_rate() -> None:
    assert format_rate(48_200_000) == "48.2 MB/s"
    assert format_rate(12.4) == "12 B/s"


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (-3, "0s"),
        (45.2, "45s"),
        (59.6, "1m00s"),
        (151, "2m31s"),
        (3_720, "1h02m"),
        (100 * 3_600 + 5 * 60, "100h05m"),
        (float("inf"), "?"),
        (float("nan"), "?"),
    ],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


# --- plain lines --------------------------------------------------------------------------------


def make_plain(interval: float = 5.0) -> tuple[PlainReporter, io.StringIO, FakeClock]:
    stream, clock = io.StringIO(), FakeClock()
    return PlainReporter(stream, interval=interval, clock=clock), stream, clock


def test_plain_reports_start_progress_and_finish_with_rate_and_eta() -> None:
    reporter, stream, clock = make_plain()
    with reporter:
        reporter.stage_started(JOB, "upload", files=400, total_bytes=10_200_000_000)
        clock.now = 2.0
        reporter.advanced(JOB, "upload", files=100, nbytes=2 * GB)
        clock.now = 10.0
        reporter.advanced(JOB, "upload", files=20, nbytes=1_100_000_000)
        clock.now = 20.0
        reporter.stage_finished(JOB, "upload")

    assert lines(stream) == [
        f"[{JOB}] upload: started, 400 files, 10.2 GB",
        # 3.1 GB over 10 s is 310 MB/s; the 7.1 GB left take about 23 s at that rate.
        f"[{JOB}] upload: 120/400 files, 3.1/10.2 GB, 310.0 MB/s, ETA 23s",
        f"[{JOB}] upload: finished in 20s, 120/400 files, 3.1/10.2 GB, 155.0 MB/s average",
    ]


def test_plain_throttles_to_one_line_per_interval() -> None:
    reporter, stream, clock = make_plain(interval=5.0)
    reporter.stage_started(JOB, "upload", files=10, total_bytes=100 * GB)
    for step in range(1, 41):
        clock.now = step * 0.5
        reporter.advanced(JOB, "upload", nbytes=GB)
    progress = lines(stream)[1:]
    assert len(progress) == 4  # at 5, 10, 15 and 20 s
    # Each line measures the rate over its own window: 10 GB per 5 s.
    assert all("2.0 GB/s" in line for line in progress)
    assert progress[-1] == f"[{JOB}] upload: 0/10 files, 40.0/100.0 GB, 2.0 GB/s, ETA 30s"


def test_plain_rolled_back_bytes_count_as_a_stall_not_a_negative_rate() -> None:
    reporter, stream, clock = make_plain()
    reporter.stage_started(JOB, "download_edits", files=2, total_bytes=4 * GB)
    clock.now = 5.0
    reporter.advanced(JOB, "download_edits", nbytes=GB)
    clock.now = 6.0
    reporter.advanced(JOB, "download_edits", nbytes=-GB)  # the attempt failed and restarts
    clock.now = 10.0
    reporter.advanced(JOB, "download_edits", nbytes=0)
    assert lines(stream)[1:] == [
        f"[{JOB}] download_edits: 0/2 files, 1.0/4.0 GB, 200.0 MB/s, ETA 15s",
        f"[{JOB}] download_edits: 0/2 files, 0.0/4.0 GB, 0 B/s, ETA ?",
    ]


def test_plain_never_shows_negative_totals() -> None:
    reporter, stream, clock = make_plain()
    reporter.stage_started(JOB, "upload", files=1, total_bytes=1_000)
    reporter.advanced(JOB, "upload", nbytes=-500)
    clock.now = 5.0
    reporter.advanced(JOB, "upload")
    assert lines(stream)[-1] == f"[{JOB}] upload: 0/1 files, 0.0/1.0 KB, 0 B/s, ETA ?"


def test_plain_reports_a_stalled_stage_when_another_one_moves() -> None:
    reporter, stream, clock = make_plain()
    reporter.stage_started("a", "upload", files=2, total_bytes=2_000)
    reporter.stage_started("b", "upload", files=2, total_bytes=2_000)
    clock.now = 5.0
    reporter.advanced("b", "upload", files=1, nbytes=1_000)
    assert lines(stream)[2:] == [
        "[a] upload: 0/2 files, 0.0/2.0 KB, 0 B/s, ETA ?",
        "[b] upload: 1/2 files, 1.0/2.0 KB, 200 B/s, ETA 5s",
    ]


def test_plain_eta_from_files_when_bytes_are_unknown() -> None:
    reporter, stream, clock = make_plain()
    reporter.stage_started(JOB, "download_exports", files=30, total_bytes=None)
    clock.now = 5.0
    reporter.advanced(JOB, "download_exports", files=10, nbytes=50_000_000)
    assert lines(stream)[-1] == (
        f"[{JOB}] download_exports: 10/30 files, 50.0 MB, 10.0 MB/s, ETA 10s"
    )


def test_plain_waiting_lines_are_throttled_and_not_repeated() -> None:
    reporter, stream, clock = make_plain()
    reporter.stage_started(JOB, "edit", files=0, total_bytes=None)
    clock.now = 1.0
    reporter.waiting(JOB, "edit", 10.0, "processing")  # not due yet
    clock.now = 5.0
    reporter.waiting(JOB, "edit", 45.0, "processing")
    clock.now = 10.0
    reporter.waiting(JOB, "edit", 45.0, "processing")  # unchanged: stays quiet
    clock.now = 15.0
    reporter.waiting(JOB, "edit", None, "finalizing")
    clock.now = 16.0
    reporter.stage_finished(JOB, "edit")
    assert lines(stream) == [
        f"[{JOB}] edit: started",
        f"[{JOB}] edit: 45% (processing)",
        f"[{JOB}] edit: finalizing",
        f"[{JOB}] edit: finished in 16s",
    ]


def test_plain_notes_are_immediate_and_labelled_by_level() -> None:
    reporter, stream, _ = make_plain()
    reporter.note(JOB, "skipped IMG_1.CR3 (unreadable)")
    reporter.note(JOB, "retrying upload in 2s", level="warn")
    reporter.note(JOB, "edit failed", level="error")
    assert lines(stream) == [
        f"[{JOB}] skipped IMG_1.CR3 (unreadable)",
        f"[{JOB}] warn: retrying upload in 2s",
        f"[{JOB}] error: edit failed",
    ]
    assert "\x1b" not in stream.getvalue()


def test_plain_copes_with_calls_for_a_stage_never_started() -> None:
    reporter, stream, clock = make_plain()
    clock.now = 5.0
    reporter.advanced(JOB, "upload", files=1, nbytes=10)
    clock.now = 10.0
    reporter.advanced(JOB, "upload", files=1, nbytes=10)
    reporter.stage_finished(JOB, "export")
    assert lines(stream) == [
        # The stage is born at the first call, with those bytes already in its first window.
        f"[{JOB}] upload: 2 files, 20 B, 4 B/s",
        f"[{JOB}] export: finished in 0s",
    ]


# --- JSON lines ---------------------------------------------------------------------------------

KEYS = {
    "event",
    "ts",
    "job",
    "stage",
    "files_done",
    "files_total",
    "bytes_done",
    "bytes_total",
    "rate_bps",
    "eta_seconds",
    "percent",
    "status",
    "message",
    "level",
}


def make_json(interval: float = 1.0) -> tuple[JsonReporter, io.StringIO, FakeClock]:
    stream, clock = io.StringIO(), FakeClock()
    return JsonReporter(stream, interval=interval, clock=clock), stream, clock


def test_json_events_carry_every_field() -> None:
    reporter, stream, clock = make_json()
    reporter.stage_started(JOB, "upload", files=4, total_bytes=4_000)
    clock.now = 2.0
    reporter.advanced(JOB, "upload", files=1, nbytes=1_000)
    reporter.note(JOB, "retrying", level="warn")
    clock.now = 4.0
    reporter.stage_finished(JOB, "upload")

    got = events(stream)
    assert [e["event"] for e in got] == [
        "stage_started",
        "progress",
        "note",
        "progress",
        "stage_finished",
    ]
    assert all(set(e) == KEYS for e in got)
    assert all(datetime.fromisoformat(e["ts"]).utcoffset() is not None for e in got)
    started, progress, note, final, finished = got
    assert started | {"ts": None} == {
        "event": "stage_started",
        "ts": None,
        "job": JOB,
        "stage": "upload",
        "files_done": 0,
        "files_total": 4,
        "bytes_done": 0,
        "bytes_total": 4_000,
        "rate_bps": None,
        "eta_seconds": None,
        "percent": None,
        "status": None,
        "message": None,
        "level": None,
    }
    assert (progress["files_done"], progress["bytes_done"]) == (1, 1_000)
    assert (progress["rate_bps"], progress["eta_seconds"]) == (500.0, 6.0)
    assert (note["message"], note["level"], note["stage"]) == ("retrying", "warn", None)
    # The final progress averages over the whole stage and has nothing left to wait for.
    assert (final["rate_bps"], final["eta_seconds"]) == (250.0, 0.0)
    assert finished["bytes_done"] == 1_000


def test_json_progress_is_throttled_per_stage_with_a_final_event() -> None:
    reporter, stream, clock = make_json(interval=1.0)
    reporter.stage_started(JOB, "upload", files=0, total_bytes=None)
    reporter.stage_started(JOB, "download_edits", files=0, total_bytes=None)
    for step in range(1, 31):
        clock.now = step * 0.1
        reporter.advanced(JOB, "upload", nbytes=100)
        reporter.advanced(JOB, "download_edits", nbytes=100)
    reporter.stage_finished(JOB, "upload")

    progress = [e for e in events(stream) if e["event"] == "progress"]
    uploads = [e for e in progress if e["stage"] == "upload"]
    downloads = [e for e in progress if e["stage"] == "download_edits"]
    assert [e["bytes_done"] for e in downloads] == [1_000, 2_000, 3_000]
    assert [e["bytes_done"] for e in uploads] == [1_000, 2_000, 3_000, 3_000]
    assert downloads[0]["rate_bps"] == pytest.approx(1_000.0)
    assert downloads[0]["eta_seconds"] is None  # no total, no ETA


def test_json_rolled_back_bytes_never_give_a_negative_rate() -> None:
    reporter, stream, clock = make_json()
    reporter.stage_started(JOB, "upload", files=1, total_bytes=1_000)
    clock.now = 0.5
    reporter.advanced(JOB, "upload", nbytes=400)
    clock.now = 1.0
    reporter.advanced(JOB, "upload", nbytes=-400)
    (progress,) = [e for e in events(stream) if e["event"] == "progress"]
    assert (progress["bytes_done"], progress["rate_bps"], progress["eta_seconds"]) == (0, 0.0, None)


def test_json_waiting_on_status_change_or_interval() -> None:
    reporter, stream, clock = make_json(interval=1.0)
    reporter.stage_started(JOB, "edit", files=0, total_bytes=None)
    reporter.waiting(JOB, "edit", None, "queued")
    clock.now = 0.2
    reporter.waiting(JOB, "edit", 5.0, "processing")
    clock.now = 0.4
    reporter.waiting(JOB, "edit", 8.0, "processing")  # same status, too soon
    clock.now = 1.5
    reporter.waiting(JOB, "edit", 250.0, "processing")  # an odd percent is clamped
    waiting = [e for e in events(stream) if e["event"] == "waiting"]
    assert [(e["percent"], e["status"]) for e in waiting] == [
        (None, "queued"),
        (5.0, "processing"),
        (100.0, "processing"),
    ]


def test_json_is_ascii_whatever_the_job_name() -> None:
    reporter, stream, _ = make_json()
    reporter.note("Hochzeit Müller · 東京", "ok")
    assert stream.getvalue().isascii()
    assert events(stream)[0]["job"] == "Hochzeit Müller · 東京"


# --- Rich bars ----------------------------------------------------------------------------------


def make_rich(stream: io.StringIO) -> RichReporter:
    return RichReporter(stream, force_terminal=True, width=160)


def rich_console_text(stream: io.StringIO) -> str:
    """What the terminal output reads as, without escape codes."""
    return Text.from_ansi(stream.getvalue()).plain


def test_rich_renders_bars_and_notes() -> None:
    stream = io.StringIO()
    reporter = make_rich(stream)
    with reporter:
        reporter.stage_started("[shoot] RAW", "upload", files=4, total_bytes=10_000_000)
        reporter.advanced("[shoot] RAW", "upload", files=1, nbytes=3_000_000)
        reporter.advanced("[shoot] RAW", "upload", nbytes=-1_000_000)
        reporter.note("[shoot] RAW", "retrying IMG_2.CR3", level="warn")
        reporter.stage_started("[shoot] RAW", "edit", files=0, total_bytes=None)
        reporter.waiting("[shoot] RAW", "edit", 40.0, "processing")
        reporter.stage_started("[shoot] RAW", "export", files=3, total_bytes=None)
        reporter.advanced("[shoot] RAW", "export", files=1)
        reporter.waiting("[shoot] RAW", "export", None, "exporting")
        reporter.stage_finished("[shoot] RAW", "upload")

    out = rich_console_text(stream)
    # The job name is shown literally, not read as Rich markup.
    assert "[shoot] RAW · upload" in out
    assert "[shoot] RAW · edit" in out
    assert "[shoot] RAW · export" in out
    assert "[[shoot] RAW] warn: retrying IMG_2.CR3" in out
    assert "processing" in out
    assert "exporting" in out
    assert "10.0/10.0 MB" in out  # the finished stage stays, completed
    assert "done in" in out
    assert "1/4 files" in out


def test_rich_restarted_stage_and_unstarted_stage() -> None:
    stream = io.StringIO()
    reporter = make_rich(stream)
    with reporter:
        reporter.stage_started(JOB, "upload", files=2, total_bytes=2_000)
        reporter.stage_started(JOB, "upload", files=2, total_bytes=4_000)
        reporter.advanced(JOB, "download_exports", files=1, nbytes=500)
        reporter.stage_finished(JOB, "download_exports")
    out = rich_console_text(stream)
    assert "0.0/4.0 KB" in out
    assert f"{JOB} · download_exports" in out


# --- the factory and the contract ---------------------------------------------------------------


def test_make_reporter_picks_by_mode_and_terminal() -> None:
    assert isinstance(make_reporter(json_mode=True, stream=TtyStringIO()), JsonReporter)
    assert isinstance(make_reporter(json_mode=False, stream=TtyStringIO()), RichReporter)
    assert isinstance(make_reporter(json_mode=False, stream=io.StringIO()), PlainReporter)


def test_make_reporter_defaults_the_interval_per_mode() -> None:
    stream = io.StringIO()
    assert make_reporter(json_mode=True, stream=stream)._interval == 1.0  # type: ignore[attr-defined]
    assert make_reporter(json_mode=False, stream=stream)._interval == 5.0  # type: ignore[attr-defined]
    reporter = make_reporter(json_mode=False, stream=stream, interval=2.0)
    assert reporter._interval == 2.0  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "make",
    [
        PlainReporter,
        JsonReporter,
        lambda stream: RichReporter(stream, force_terminal=True),
    ],
    ids=["plain", "json", "rich"],
)
def test_no_method_raises_even_on_a_broken_stream(
    make: Callable[[io.StringIO], Reporter], caplog: pytest.LogCaptureFixture
) -> None:
    stream = BrokenStream()
    reporter = make(stream)
    sink: ProgressSink = reporter
    with caplog.at_level(logging.DEBUG, logger="orchestrator.cli.reporting"), reporter:
        sink.stage_started(JOB, "upload", files=1, total_bytes=10)
        sink.advanced(JOB, "upload", files=1, nbytes=10)
        reporter.waiting(JOB, "edit", 50.0, "processing")
        sink.note(JOB, "hello", level="error")
        sink.stage_finished(JOB, "upload")
    # Writes were tried, and failed: the test went through the broken pipe, not around it.
    assert stream.tried >= 1
    if not isinstance(reporter, RichReporter):  # Rich's console falls silent by itself
        assert "progress reporting failed" in caplog.messages


# --- outside text -------------------------------------------------------------------------------

HOSTILE_JOB = "zz[/] [bold]x\x1b[2J"
HOSTILE_STATUS = "Processing\x1b]0;pwned\x07\n[other] upload: done"
HOSTILE_NOTE = "key [redacted] refused for zz[/].jpg\x1b[1A\r"


def drive_with_hostile_text(reporter: Reporter) -> None:
    """Every entry point of a reporter, each given markup and control codes from outside."""
    with reporter:
        reporter.stage_started(HOSTILE_JOB, "upload\x1b[2K", files=2, total_bytes=10)
        reporter.advanced(HOSTILE_JOB, "upload\x1b[2K", files=1, nbytes=5)
        reporter.waiting(HOSTILE_JOB, "edit", 50.0, HOSTILE_STATUS)
        reporter.note(HOSTILE_JOB, HOSTILE_NOTE, level="warn")
        reporter.stage_finished(HOSTILE_JOB, "upload\x1b[2K")


def test_plain_lines_show_outside_text_literally_and_never_forge_a_line() -> None:
    clock = FakeClock()
    stream = io.StringIO()
    reporter = PlainReporter(stream, interval=0.0, clock=clock)
    drive_with_hostile_text(reporter)
    out = stream.getvalue()
    assert "\x1b" not in out and "\x07" not in out and "\r" not in out
    assert all(line.startswith("[zz[/] [bold]x\\x1b[2J] ") for line in lines(stream))
    assert "Processing\\x1b]0;pwned\\x07\\n[other] upload: done" in out
    assert "warn: key [redacted] refused for zz[/].jpg\\x1b[1A\\r" in out


def test_json_keeps_outside_text_exact_and_escaped_by_json() -> None:
    stream = io.StringIO()
    drive_with_hostile_text(JsonReporter(stream, interval=0.0, clock=FakeClock()))
    assert "\x1b" not in stream.getvalue()
    got = events(stream)
    assert {e["job"] for e in got} == {HOSTILE_JOB}
    assert HOSTILE_STATUS in {e["status"] for e in got}
    assert HOSTILE_NOTE in {e["message"] for e in got}


def test_rich_shows_outside_text_literally_and_sends_no_code_of_its_own() -> None:
    stream = io.StringIO()
    drive_with_hostile_text(make_rich(stream))
    raw = stream.getvalue()
    assert "\x1b[2J" not in raw and "\x1b]0;" not in raw and "\x07" not in raw
    out = rich_console_text(stream)
    assert "zz[/] [bold]x\\x1b[2J · upload\\x1b[2K" in out
    assert "Processing\\x1b]0;pwned\\x07\\n[other] upload: done" in out
    assert "warn: key [redacted] refused for zz[/].jpg\\x1b[1A\\r" in out


def test_rich_download_bars_show_bytes_and_rate_and_no_rate_from_the_first_burst() -> None:
    """Issue 15 item 11: download bars count files yet show bytes and rate; a bar's first
    instants (buffers filling at memory speed) show no rate rather than 271 MB/s."""
    now = [0.0]
    stream = io.StringIO()
    reporter = RichReporter(stream, force_terminal=True, width=160, clock=lambda: now[0])
    with reporter:
        reporter.stage_started("shoot", "download_edits", files=1, total_bytes=None)
        reporter.stage_started("shoot", "upload", files=2, total_bytes=100_000_000)
        now[0] = 0.01
        reporter.advanced("shoot", "upload", nbytes=2_700_000)
        columns = reporter._progress.columns
        tasks = {task.description: task for task in reporter._progress.tasks}
        rate = next(c for c in columns if type(c).__name__ == "_RateColumn")
        assert rate.render(tasks["shoot · upload"]).plain == "?"
        now[0] = 2.0
        reporter.advanced("shoot", "download_edits", nbytes=4_000_000)
        shown = " ".join(c.render(tasks["shoot · download_edits"]).plain for c in columns[3:])
        assert "0/1 files" in shown and "4.0 MB" in shown and "2.0 MB/s" in shown


def test_counts_of_one_file_read_right() -> None:
    stream = io.StringIO()
    reporter = PlainReporter(stream)
    reporter.stage_started("shoot", "upload", files=1, total_bytes=None)
    assert "upload: started, 1 file" in stream.getvalue()
    assert "1 files" not in stream.getvalue()
