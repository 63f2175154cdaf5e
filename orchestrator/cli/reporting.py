"""How the CLI shows the engine's progress: Rich bars on a terminal, plain lines, or JSON lines.

Each reporter implements `ProgressSink` plus `waiting` (for stages that wait on Imagen rather than
move bytes) and is a context manager that starts and stops any live display. `make_reporter`
picks the right one for the output stream.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import sys
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, ParamSpec, Self, TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TaskProgressColumn,
    TextColumn,
)
from rich.text import Text

from orchestrator.display import visible

_log = logging.getLogger(__name__)

P = ParamSpec("P")

PLAIN_INTERVAL = 5.0
"""Default seconds between two progress lines of one stage in plain output."""
JSON_INTERVAL = 1.0
"""Default seconds between two progress events of one stage in JSON output."""

_BYTE_SUFFIXES = ("B", "KB", "MB", "GB", "TB", "PB")
FIRST_READING = 1.0
"""Seconds a bar runs before it shows a rate: the first chunks fill buffers at memory speed,
and a reading from them (271 MB/s under a 10 MB/s cap) says nothing about the line."""


# --- formatting helpers -------------------------------------------------------------------------


def _byte_unit(n: float) -> tuple[float, str]:
    """The decimal divisor and suffix that show `n` bytes with at most three integer digits."""
    divisor = 1.0
    for suffix in _BYTE_SUFFIXES[:-1]:
        # 999.95 rather than 1000 so that rounding to one decimal never prints "1000.0 KB".
        if abs(n) / divisor < 999.95:
            return divisor, suffix
        divisor *= 1000
    return divisor, _BYTE_SUFFIXES[-1]


def _scaled(n: float, divisor: float) -> str:
    """`n` divided by `divisor`: whole bytes without decimals, larger units with one."""
    return f"{n:.0f}" if divisor == 1 else f"{n / divisor:.1f}"


def format_bytes(n: float) -> str:
    """A byte count for humans, in decimal units: "512 B", "3.1 KB", "10.2 GB"."""
    divisor, suffix = _byte_unit(n)
    return f"{_scaled(n, divisor)} {suffix}"


def format_byte_progress(done: float, total: float) -> str:
    """Bytes done out of a total, sharing the total's unit: "3.1/10.2 GB"."""
    divisor, suffix = _byte_unit(max(done, total))
    return f"{_scaled(done, divisor)}/{_scaled(total, divisor)} {suffix}"


def format_rate(bytes_per_second: float) -> str:
    """A transfer rate for humans: "48.2 MB/s"."""
    return f"{format_bytes(bytes_per_second)}/s"


def count_files(n: int, total: int | None = None) -> str:
    """A file count that reads right: "1 file", "3 files", and done of a total: "2/40 files"."""
    if total is not None:
        return f"{n}/{total} files"
    return "1 file" if n == 1 else f"{n} files"


def format_duration(seconds: float) -> str:
    """A duration for humans: "45s", "2m31s", "1h02m"; "?" if it is not a finite number."""
    if not math.isfinite(seconds):
        return "?"
    whole = max(0, round(seconds))
    if whole < 60:
        return f"{whole}s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


# --- shared machinery ---------------------------------------------------------------------------


def _never_raises(method: Callable[P, None]) -> Callable[P, None]:
    """Wrap a reporter method so that a display failure can never break the transfer calling it."""

    @functools.wraps(method)
    def guarded(*args: P.args, **kwargs: P.kwargs) -> None:
        try:
            method(*args, **kwargs)
        except Exception:
            # A closed or broken stream must not fail an upload; the details are only for debugging.
            _log.debug("progress reporting failed", exc_info=True)

    return guarded


@dataclass(frozen=True)
class _Measure:
    """Rate and remaining time of a stage, as measured at one moment."""

    rate_bps: float | None
    eta_seconds: float | None


@dataclass(kw_only=True)
class _Stage:
    """Running totals of one (job, stage) and the window its current rate is measured over."""

    files_total: int
    bytes_total: int | None
    started_at: float
    files_done: int = 0
    bytes_done: int = 0
    saw_bytes: bool = False
    """Whether any bytes moved, so that stages counting only files show no byte rate."""
    percent: float | None = None
    status: str | None = None
    """Set once the engine reports the stage as waiting on Imagen."""
    reported_waiting: tuple[float | None, str | None] | None = None
    """The waiting state last shown, so an unchanged one is not repeated."""
    window_at: float = field(init=False)
    window_bytes: int = 0
    window_files: int = 0

    def __post_init__(self) -> None:
        self.window_at = self.started_at

    @property
    def tracks_bytes(self) -> bool:
        """Whether byte counts mean anything for this stage."""
        return self.bytes_total is not None or self.saw_bytes

    def add(self, files: int, nbytes: int) -> None:
        """Count work done; negative `nbytes` undo a failed attempt's bytes."""
        self.files_done += files
        self.bytes_done += nbytes
        self.saw_bytes = self.saw_bytes or nbytes != 0

    def due(self, now: float, interval: float) -> bool:
        """Whether `interval` has passed since the stage was last reported."""
        return now - self.window_at >= interval

    def measure(self, now: float) -> _Measure:
        """Rate over the window since the last report, and the ETA at that rate; restarts it."""
        elapsed = now - self.window_at
        rate_bps = file_rate = None
        if elapsed > 0:
            # Rolled-back bytes can make the net progress of a window negative; that is a stall.
            file_rate = max(0, self.files_done - self.window_files) / elapsed
            if self.tracks_bytes:
                rate_bps = max(0, self.bytes_done - self.window_bytes) / elapsed
        self.window_at, self.window_bytes, self.window_files = now, self.bytes_done, self.files_done
        return _Measure(rate_bps, self._eta(rate_bps, file_rate))

    def overall(self, now: float) -> _Measure:
        """Average rate over the whole stage, for its final report."""
        elapsed = now - self.started_at
        rate_bps = max(0, self.bytes_done) / elapsed if elapsed > 0 and self.tracks_bytes else None
        return _Measure(rate_bps, 0.0)

    def _eta(self, rate_bps: float | None, file_rate: float | None) -> float | None:
        """Seconds left at the given rates: by bytes when their total is known, else by files."""
        if self.bytes_total is not None:
            remaining, rate = self.bytes_total - self.bytes_done, rate_bps
        elif self.files_total > 0:
            remaining, rate = self.files_total - self.files_done, file_rate
        else:
            return None
        if remaining <= 0:
            return 0.0
        if not rate:
            return None
        eta = remaining / rate
        return eta if math.isfinite(eta) else None


def _counts(state: _Stage) -> list[str]:
    """The files and bytes parts of a human-readable stage line."""
    parts = []
    files_done = max(0, state.files_done)
    if state.files_total > 0:
        parts.append(count_files(files_done, state.files_total))
    elif files_done:
        parts.append(count_files(files_done))
    bytes_done = max(0, state.bytes_done)
    if state.bytes_total is not None:
        parts.append(format_byte_progress(bytes_done, state.bytes_total))
    elif state.saw_bytes:
        parts.append(format_bytes(bytes_done))
    return parts


def _waiting_text(percent: float | None, status: str) -> str:
    """How a waiting stage reads: "45% (processing)" or just the status."""
    return status if percent is None else f"{percent:.0f}% ({status})"


def _clamp_percent(percent: float | None) -> float | None:
    """A percentage within 0-100, so a server's odd value cannot break a bar."""
    return None if percent is None else min(100.0, max(0.0, float(percent)))


# --- the reporters ------------------------------------------------------------------------------


class Reporter(ABC):
    """A `ProgressSink` that also shows waiting stages and owns its display as a context manager.

    No method may raise or block for long: the engine calls them from inside transfers.
    """

    def __enter__(self) -> Self:
        """Start any live display."""
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop any live display, leaving its final state on screen."""
        self.close()

    def close(self) -> None:
        """Stop any live display, leaving its final state on screen; again does nothing."""
        return None

    @abstractmethod
    def stage_started(self, job: str, stage: str, *, files: int, total_bytes: int | None) -> None:
        """A stage of job `job` (its display name) begins with this much work to do."""

    @abstractmethod
    def advanced(self, job: str, stage: str, *, files: int = 0, nbytes: int = 0) -> None:
        """Work was done: `files` finished and/or `nbytes` moved (negative on a rolled-back try)."""

    @abstractmethod
    def waiting(self, job: str, stage: str, percent: float | None, status: str) -> None:
        """The stage waits on Imagen, which reports `status` and, if it knows, `percent` done."""

    @abstractmethod
    def stage_finished(self, job: str, stage: str) -> None:
        """The stage is done."""

    @abstractmethod
    def note(self, job: str, message: str, *, level: str = "info") -> None:
        """A line worth showing the user (a skipped file, a retry, a waiting edit)."""


class _CountingReporter(Reporter):
    """What the plain and JSON reporters share: per-stage totals, a clock, a stream of lines."""

    def __init__(self, stream: TextIO, *, interval: float, clock: Callable[[], float]) -> None:
        self._stream = stream
        self._interval = interval
        self._clock = clock
        self._stages: dict[tuple[str, str], _Stage] = {}

    def _start(self, job: str, stage: str, files: int, total_bytes: int | None) -> _Stage:
        """Fresh state for a starting (or restarting) stage."""
        state = _Stage(files_total=files, bytes_total=total_bytes, started_at=self._clock())
        self._stages[job, stage] = state
        return state

    def _stage(self, job: str, stage: str, now: float) -> _Stage:
        """The stage's state, created if the engine skipped `stage_started`."""
        state = self._stages.get((job, stage))
        if state is None:
            state = self._stages[job, stage] = _Stage(
                files_total=0, bytes_total=None, started_at=now
            )
        return state

    def _finish(self, job: str, stage: str, now: float) -> _Stage:
        """The finished stage's final state, which is no longer tracked."""
        return self._stages.pop((job, stage), None) or _Stage(
            files_total=0, bytes_total=None, started_at=now
        )

    def _write(self, line: str) -> None:
        """Write one line and flush, so that readers see it at once.

        Names and statuses come from outside: a newline or escape code in one must not forge
        a line or drive the terminal.
        """
        self._stream.write(visible(line) + "\n")
        self._stream.flush()


class PlainReporter(_CountingReporter):
    """Plain lines for logs and pipes: stage starts and ends, notes, and periodic progress.

    Progress lines are printed from within the engine's calls, at most one per stage every
    `interval` seconds, so no timer thread or task is needed.
    """

    def __init__(
        self,
        stream: TextIO,
        *,
        interval: float = PLAIN_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(stream, interval=interval, clock=clock)

    @_never_raises
    def stage_started(self, job: str, stage: str, *, files: int, total_bytes: int | None) -> None:
        """Print that the stage started and how much work it has."""
        self._start(job, stage, files, total_bytes)
        amounts = []
        if files > 0:
            amounts.append(count_files(files))
        if total_bytes is not None:
            amounts.append(format_bytes(total_bytes))
        self._write(", ".join([f"[{job}] {stage}: started", *amounts]))

    @_never_raises
    def advanced(self, job: str, stage: str, *, files: int = 0, nbytes: int = 0) -> None:
        """Count the work and print any progress lines that are due."""
        now = self._clock()
        self._stage(job, stage, now).add(files, nbytes)
        self._report_due(now)

    @_never_raises
    def waiting(self, job: str, stage: str, percent: float | None, status: str) -> None:
        """Remember Imagen's status and print any progress lines that are due."""
        now = self._clock()
        state = self._stage(job, stage, now)
        state.percent, state.status = _clamp_percent(percent), status
        self._report_due(now)

    @_never_raises
    def stage_finished(self, job: str, stage: str) -> None:
        """Print the stage's totals, duration and average rate."""
        now = self._clock()
        state = self._finish(job, stage, now)
        parts = [f"[{job}] {stage}: finished in {format_duration(now - state.started_at)}"]
        parts += _counts(state)
        rate = state.overall(now).rate_bps
        if rate is not None:
            parts.append(f"{format_rate(rate)} average")
        self._write(", ".join(parts))

    @_never_raises
    def note(self, job: str, message: str, *, level: str = "info") -> None:
        """Print the note at once, prefixed with its level unless it is plain information."""
        prefix = "" if level == "info" else f"{level}: "
        self._write(f"[{job}] {prefix}{message}")

    def _report_due(self, now: float) -> None:
        """Print a line for every stage not reported for `interval` seconds."""
        # Checking all stages on any call lets a stalled transfer be reported while others move.
        for (job, stage), state in self._stages.items():
            if not state.due(now, self._interval):
                continue
            measure = state.measure(now)
            if state.status is not None:
                # A long wait would otherwise repeat the same line every interval.
                shown = (state.percent, state.status)
                if shown != state.reported_waiting:
                    state.reported_waiting = shown
                    self._write(f"[{job}] {stage}: {_waiting_text(state.percent, state.status)}")
                continue
            parts = _counts(state)
            if measure.rate_bps is not None:
                parts.append(format_rate(measure.rate_bps))
            if state.bytes_total is not None or state.files_total > 0:
                eta = measure.eta_seconds
                parts.append(f"ETA {'?' if eta is None else format_duration(eta)}")
            self._write(f"[{job}] {stage}: " + ", ".join(parts or ["working"]))


class JsonReporter(_CountingReporter):
    """One JSON object per line, for programs driving the CLI.

    Every event carries the same keys (null where they do not apply): event, ts, job, stage,
    files_done, files_total, bytes_done, bytes_total, rate_bps, eta_seconds, percent, status,
    message, level. Progress events come at most once per `interval` per stage, plus a final
    one when the stage finishes.
    """

    def __init__(
        self,
        stream: TextIO,
        *,
        interval: float = JSON_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(stream, interval=interval, clock=clock)

    @_never_raises
    def stage_started(self, job: str, stage: str, *, files: int, total_bytes: int | None) -> None:
        """Emit `stage_started` with the stage's totals."""
        state = self._start(job, stage, files, total_bytes)
        self._emit("stage_started", job, stage, state)

    @_never_raises
    def advanced(self, job: str, stage: str, *, files: int = 0, nbytes: int = 0) -> None:
        """Count the work; emit `progress` if the stage's interval has passed."""
        now = self._clock()
        state = self._stage(job, stage, now)
        state.add(files, nbytes)
        if state.due(now, self._interval):
            self._emit("progress", job, stage, state, state.measure(now))

    @_never_raises
    def waiting(self, job: str, stage: str, percent: float | None, status: str) -> None:
        """Emit `waiting` when Imagen's status changes or the stage's interval has passed."""
        now = self._clock()
        state = self._stage(job, stage, now)
        changed = status != state.status
        state.percent, state.status = _clamp_percent(percent), status
        if changed or state.due(now, self._interval):
            self._emit("waiting", job, stage, state, state.measure(now))

    @_never_raises
    def stage_finished(self, job: str, stage: str) -> None:
        """Emit a final `progress` with whole-stage averages, then `stage_finished`."""
        now = self._clock()
        state = self._finish(job, stage, now)
        measure = state.overall(now)
        self._emit("progress", job, stage, state, measure)
        self._emit("stage_finished", job, stage, state, measure)

    @_never_raises
    def note(self, job: str, message: str, *, level: str = "info") -> None:
        """Emit `note` at once."""
        self._emit("note", job, None, None, message=message, level=level)

    def _emit(
        self,
        event: str,
        job: str,
        stage: str | None,
        state: _Stage | None,
        measure: _Measure | None = None,
        *,
        message: str | None = None,
        level: str | None = None,
    ) -> None:
        """Write one event with the full set of keys."""
        record: dict[str, Any] = {
            "event": event,
            "ts": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "job": job,
            "stage": stage,
            # Clamped like the human output: a rollback may briefly undo more than was counted.
            "files_done": None if state is None else max(0, state.files_done),
            "files_total": None if state is None else state.files_total,
            "bytes_done": None if state is None else max(0, state.bytes_done),
            "bytes_total": None if state is None else state.bytes_total,
            "rate_bps": _rounded(None if measure is None else measure.rate_bps),
            "eta_seconds": _rounded(None if measure is None else measure.eta_seconds),
            "percent": None if state is None else state.percent,
            "status": None if state is None else state.status,
            "message": message,
            "level": level,
        }
        # ASCII escapes keep the line writable whatever the stream's encoding.
        self._write(json.dumps(record))


def _rounded(value: float | None) -> float | None:
    """A measurement rounded to a tenth, which is all the precision it has."""
    return None if value is None else round(value, 1)


class _FilesColumn(ProgressColumn):
    """Files done out of the stage's total; Imagen's status for waiting stages."""

    def render(self, task: Task) -> Text:
        """Render the column for one task."""
        if task.fields["kind"] == "waiting":
            return Text(visible(task.fields["status"]), style="progress.description")
        total = task.fields["files_total"]
        return Text(count_files(task.fields["files_done"], total) if total else "")


class _BytesColumn(ProgressColumn):
    """Bytes done out of the total, for stages that move a known amount of bytes."""

    def render(self, task: Task) -> Text:
        """Render the column for one task."""
        if task.fields["kind"] == "files" and task.fields["nbytes"] > 0:
            # Downloads count files (output sizes are not known beforehand), yet move bytes.
            return Text(format_bytes(task.fields["nbytes"]), style="progress.download")
        if task.fields["kind"] != "bytes" or task.total is None:
            return Text("")
        # Our own formatting rather than DownloadColumn's, so bars and log lines use the same units.
        text = format_byte_progress(max(0.0, task.completed), task.total)
        return Text(text, style="progress.download")


class _RateColumn(ProgressColumn):
    """Transfer rate, for stages that move bytes."""

    def render(self, task: Task) -> Text:
        """Render the column for one task."""
        kind, elapsed = task.fields["kind"], task.elapsed or 0.0
        if kind == "files" and task.fields["nbytes"] > 0:
            moved = float(task.fields["nbytes"])
            speed: float | None = moved / elapsed if elapsed >= FIRST_READING else None
            return Text("?" if speed is None else format_rate(speed), style="progress.data.speed")
        if kind != "bytes":
            return Text("")
        if task.finished and task.finished_time:
            speed = task.completed / task.finished_time
        elif elapsed < FIRST_READING:
            speed = None  # the first chunks fill buffers at memory speed, not the line's
        else:
            speed = task.speed
        text = "?" if speed is None else format_rate(speed)
        return Text(text, style="progress.data.speed")


class _EtaColumn(ProgressColumn):
    """Time left at the current rate, or how long the stage took once it is done."""

    def render(self, task: Task) -> Text:
        """Render the column for one task."""
        if task.finished:
            return Text(f"done in {format_duration(task.finished_time or 0.0)}", style="green")
        if task.fields["kind"] == "waiting":
            return Text("")
        speed, remaining = task.speed, task.remaining
        if not speed or remaining is None:
            return Text("ETA ?", style="progress.remaining")
        eta = format_duration(max(0.0, remaining) / speed)
        return Text(f"ETA {eta}", style="progress.remaining")


_NOTE_STYLES = {"warn": "yellow", "warning": "yellow", "error": "bold red"}


@dataclass(kw_only=True)
class _Bar:
    """One stage's Rich task and what its bar counts."""

    task_id: TaskID
    kind: str
    """"bytes", "files" or "waiting": what the bar's units are and which columns show."""
    total: float | None
    files_done: int = 0
    nbytes: int = 0
    """Bytes moved, shown with their rate even on a bar that counts files (downloads)."""
    counted: float = 0.0
    """Net units counted: an attempt rolled back (a retry, an interrupt) takes its bytes off."""
    shown: float = 0.0
    """Where the bar stands: the most ever counted, so that a rollback never moves it back;
    the bytes sent again after one fill the gap before the bar moves on."""


class _QuietConsole(Console):
    """A Rich console that falls silent when its pipe breaks instead of exiting the program."""

    def on_broken_pipe(self) -> None:
        """Stop writing; Rich's default would redirect stdout and raise SystemExit."""
        self.quiet = True


class RichReporter(Reporter):
    """Live Rich bars on a terminal: one per (job, stage), with notes printed above them.

    `force_terminal` and `width` pass through to the Rich console (tests draw into a StringIO),
    `clock` to the bars' timing.
    """

    def __init__(
        self,
        stream: TextIO,
        *,
        force_terminal: bool | None = None,
        width: int | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        console = _QuietConsole(file=stream, force_terminal=force_terminal, width=width)
        self._progress = Progress(
            # Job names are user data; read as markup, a "[" in one would break the display.
            TextColumn("{task.description}", markup=False),
            BarColumn(),
            TaskProgressColumn(),
            _FilesColumn(),
            _BytesColumn(),
            _RateColumn(),
            _EtaColumn(),
            console=console,
            get_time=clock,
        )
        self._bars: dict[tuple[str, str], _Bar] = {}

    def __enter__(self) -> Self:
        """Start drawing the bars."""
        self._start()
        return self

    @_never_raises
    def _start(self) -> None:
        """Start the live display."""
        self._progress.start()

    @_never_raises
    def close(self) -> None:
        """Stop drawing, leaving the final bars on screen once (a second call does nothing)."""
        self._progress.stop()

    @_never_raises
    def stage_started(self, job: str, stage: str, *, files: int, total_bytes: int | None) -> None:
        """Add a bar for the stage, counting bytes if their total is known, else files."""
        old = self._bars.pop((job, stage), None)
        if old is not None:
            # A restarted stage gets a fresh bar rather than one carrying the old rate samples.
            self._progress.remove_task(old.task_id)
        total: float | None
        if total_bytes:
            kind, total = "bytes", float(total_bytes)
        else:
            # No bytes to count: the bar counts files, or pulses when there are none to count.
            kind, total = "files", (float(files) if files > 0 else None)
        self._bars[job, stage] = self._new_bar(job, stage, kind, total, files)

    @_never_raises
    def advanced(self, job: str, stage: str, *, files: int = 0, nbytes: int = 0) -> None:
        """Move the stage's bar by the bytes (or files) done."""
        bar = self._bar(job, stage)
        bar.files_done += files
        bar.nbytes += nbytes
        step = {"bytes": nbytes, "files": files}.get(bar.kind)
        if step is None:  # a waiting bar shows Imagen's percent, not our counts
            self._progress.update(bar.task_id, files_done=max(0, bar.files_done))
            return
        bar.counted += step
        bar.shown = max(bar.shown, bar.counted)
        self._progress.update(
            bar.task_id,
            completed=bar.shown,
            files_done=max(0, bar.files_done),
            nbytes=max(0, bar.nbytes),
        )

    @_never_raises
    def waiting(self, job: str, stage: str, percent: float | None, status: str) -> None:
        """Turn the stage's bar into Imagen's percent done, with its status."""
        bar = self._bar(job, stage)
        bar.kind = "waiting"
        percent = _clamp_percent(percent)
        if percent is None:
            # Rich cannot turn a bar back into a pulse, so an unknown percent keeps the last one.
            self._progress.update(bar.task_id, kind=bar.kind, status=status)
        else:
            bar.total = 100.0
            self._progress.update(
                bar.task_id, total=bar.total, completed=percent, kind=bar.kind, status=status
            )

    @_never_raises
    def stage_finished(self, job: str, stage: str) -> None:
        """Fill the stage's bar and keep it on screen."""
        bar = self._bar(job, stage)
        # A finished stage is complete even if some work was skipped rather than counted.
        bar.total = bar.total or 1.0
        self._progress.update(bar.task_id, total=bar.total, completed=bar.total)

    @_never_raises
    def note(self, job: str, message: str, *, level: str = "info") -> None:
        """Print the note above the bars, coloured by level."""
        prefix = "" if level == "info" else f"{level}: "
        text = Text(visible(f"[{job}] {prefix}{message}"), style=_NOTE_STYLES.get(level, ""))
        self._progress.console.print(text, highlight=False)

    def _bar(self, job: str, stage: str) -> _Bar:
        """The stage's bar, created if the engine skipped `stage_started`."""
        bar = self._bars.get((job, stage))
        if bar is None:
            bar = self._bars[job, stage] = self._new_bar(job, stage, "files", None, 0)
        return bar

    def _new_bar(self, job: str, stage: str, kind: str, total: float | None, files: int) -> _Bar:
        """Add a Rich task for the stage; its fields feed the custom columns."""
        task_id = self._progress.add_task(
            visible(f"{job} · {stage}"),
            total=total,
            kind=kind,
            files_done=0,
            files_total=files,
            nbytes=0,
            status="",
        )
        return _Bar(task_id=task_id, kind=kind, total=total)


class QuietReporter(Reporter):
    """For `-q`: no progress at all, only the warnings and errors among the notes."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def stage_started(self, job: str, stage: str, *, files: int, total_bytes: int | None) -> None:
        """Show nothing."""

    def advanced(self, job: str, stage: str, *, files: int = 0, nbytes: int = 0) -> None:
        """Show nothing."""

    def waiting(self, job: str, stage: str, percent: float | None, status: str) -> None:
        """Show nothing."""

    def stage_finished(self, job: str, stage: str) -> None:
        """Show nothing."""

    @_never_raises
    def note(self, job: str, message: str, *, level: str = "info") -> None:
        """Print warnings and errors; drop plain information."""
        if level != "info":
            self._stream.write(visible(f"[{job}] {level}: {message}") + "\n")
            self._stream.flush()


def make_reporter(
    *,
    json_mode: bool,
    stream: TextIO | None = None,
    interval: float | None = None,
    quiet: bool = False,
) -> Reporter:
    """The reporter for this output: JSON lines if asked, Rich bars on a terminal, else plain lines.

    `stream` defaults to the current `sys.stderr`; `interval` to 1 s for JSON and 5 s for plain
    lines (Rich redraws on its own schedule); `quiet` (and not JSON) shows only warnings and
    errors.
    """
    out = sys.stderr if stream is None else stream
    if quiet and not json_mode:
        return QuietReporter(out)
    if json_mode:
        return JsonReporter(out, interval=JSON_INTERVAL if interval is None else interval)
    if out.isatty():
        return RichReporter(out)
    return PlainReporter(out, interval=PLAIN_INTERVAL if interval is None else interval)
