"""The studio's page's views of jobs: the jobs list (live and recent jobs, or a page of them)
and a job's page (its stages, its history, grouped counts per phase and one page of photos),
each read from grouped counts and the rows shown, whatever the size of the season or the job."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from orchestrator.errors import OperatorRefusal
from orchestrator.service.jobs import (
    RECENT_FINISHED,
    JobView,
    cursor_of,
    event_record,
    job_summary,
    job_view,
    not_done_counts,
    read_cursor,
    refused_views,
)
from orchestrator.spec import JobSpec
from orchestrator.states import TERMINAL_STATES, JobState
from orchestrator.store import tallies
from orchestrator.store.models import Event, Job, utcnow
from orchestrator.store.queries import PhotoRecord, Store
from orchestrator.store.tallies import PhaseCount, PhaseTally
from orchestrator.words import plural
from orchestrator.workflow.journey import PIPELINE
from orchestrator.workflow.outputs import output_file
from orchestrator.workflow.stage import Stage

RATE_WINDOW_SECONDS = 30.0
"""The rate shown is that of the photos finished in this last stretch."""


@dataclass(frozen=True)
class StageProgress:
    """How far the current stage of a job got over its photos, from what they recorded."""

    stage: str
    files_done: int
    files_total: int
    files_failed: int
    bytes_done: int | None
    bytes_total: int | None
    """Known for uploads (the sources' sizes); downloads learn theirs as they go."""
    bytes_per_second: float | None
    seconds_left: float | None
    counted: str = "files"
    """What `files_done` counts: "files", or "decided" for a review."""


@dataclass(frozen=True)
class JobOverview:
    """A job as the jobs page shows it: `status --json`'s summary, its stage and progress."""

    summary: dict[str, Any]
    stage: str | None
    progress: StageProgress | None
    waiting: str | None = None
    """What a live job waits for when its stage has no per-photo count (Imagen at work,
    the queue), said in words; the page shows it beside an indeterminate bar."""

    @property
    def activity(self) -> str:
        """Who drives the job, as `status` says it after the state: "running (by host:pid)",
        "stopped", "waiting for review"; or what a finished job left out."""
        state, text = str(self.summary["state"]), str(self.summary.get("state_text") or "")
        return text.removeprefix(state).removeprefix(", ")

    @property
    def error(self) -> str:
        """The job's last error while it is its state (live or failed); a completed or
        cancelled job keeps its old errors in its history, not in its row."""
        if self.summary["state"] in (JobState.COMPLETED, JobState.CANCELLED):
            return ""
        return str(self.summary.get("last_error") or "")


@dataclass(frozen=True)
class StageMark:
    """One stage on a job's timeline."""

    stage: str
    status: str
    """done, running, waiting, failed, cancelled or pending."""
    entered_at: datetime | None


def current_stage(job: Job) -> Stage | None:
    """The stage a live job is in (None once it ended)."""
    if job.state in TERMINAL_STATES:
        return None
    try:
        return PIPELINE.stage_of(job.state)
    except KeyError:
        return None


REVIEW_STAGE = "review"
"""The stage whose progress is the reviewer's decisions over the tagged photos."""
TAG_PHASE = "tag"

WAITING_WORDS = {
    JobState.QUEUED: "waiting to start",
    JobState.UPLOADED: "asking Imagen to edit",
    JobState.EDIT_REQUESTED: "asking Imagen to edit",
    JobState.EDITING: "Imagen is editing",
    JobState.EXPORT_REQUESTED: "asking Imagen to export",
    JobState.EXPORTING: "Imagen is exporting",
}
"""What a live job in a state without per-photo progress is doing, in words."""


def stage_progress(
    stage: Stage, tally: PhaseTally, photos: int, now: datetime, *, counted: str = "files"
) -> StageProgress:
    """Files (and bytes, where known) done of the stage's phase, the recent rate, time left,
    from the grouped counts of `Store.phase_tallies`."""
    rate = files_rate = None
    if tally.recent and tally.first_recent_at is not None:
        span = max(1.0, (now - tally.first_recent_at).total_seconds())
        rate, files_rate = tally.recent_bytes / span, tally.recent / span
    left = None
    if tally.bytes_total is not None and rate:
        left = max(0.0, (tally.bytes_total - tally.bytes_done) / rate)
    elif files_rate:
        left = max(0, photos - tally.done - tally.failed) / files_rate
    return StageProgress(
        stage=stage.name,
        files_done=tally.done,
        files_total=photos,
        files_failed=tally.failed,
        bytes_done=tally.bytes_done,
        bytes_total=tally.bytes_total,
        bytes_per_second=rate,
        seconds_left=left,
        counted=counted,
    )


async def overviews(store: Store, found: Sequence[tuple[Job, int]]) -> list[JobOverview]:
    """The listed jobs with the progress of the stage each is in: grouped counts over the
    live ones' photos (two queries in all), never their rows."""
    now = utcnow()
    stages = {job.id: current_stage(job) for job, _ in found}
    phases = {}
    for job_id, stage in stages.items():
        if stage is not None and stage.phase is not None:
            phases[job_id] = stage.phase
        elif stage is not None and stage.name == REVIEW_STAGE:
            phases[job_id] = TAG_PHASE
    tallied = await tallies.phase_tallies(
        store, phases, recent_since=now - timedelta(seconds=RATE_WINDOW_SECONDS)
    )
    counts = await not_done_counts(store, list(stages))
    rows = []
    for job, photos in found:
        stage = stages[job.id]
        progress = waiting = None
        if stage is not None and stage.name == REVIEW_STAGE:
            tagged = tallied[job.id]
            progress = StageProgress(
                stage=stage.name,
                files_done=tagged.decided,
                files_total=tagged.done,
                files_failed=0,
                bytes_done=None,
                bytes_total=None,
                bytes_per_second=None,
                seconds_left=None,
                counted="decided",
            )
        elif stage is not None and stage.phase is not None:
            progress = stage_progress(stage, tallied[job.id], photos, now)
        elif stage is not None:
            waiting = (
                f"{WAITING_WORDS.get(JobState(job.state), job.state)}: {plural(photos, 'photo')}"
            )
        rows.append(
            JobOverview(
                job_summary(job, photos, counts[job.id]),
                stage.name if stage else None,
                progress,
                waiting,
            )
        )
    return rows


LIST_PAGE = 50
"""Jobs one page of the jobs list shows when it pages through every job or one state."""
LIVE_ON_PAGE = 100
"""Live jobs the jobs list shows at most on its first page (beside the newest finished)."""
LIST_FILTERS = ("", "all", "live", *(state.value for state in JobState))
"""What the jobs list can show: "" live and recent, every job, the live ones, one state."""


@dataclass(frozen=True)
class JobList:
    """A page of the jobs list: its rows, newest first, and where the next page starts."""

    rows: list[JobOverview]
    next: str | None
    """The cursor of the page of older jobs, if any."""
    live: int | None
    finished: int | None
    """How many jobs are live and finished in all (None when not `counted`)."""
    refused: list[dict[str, Any]] = field(default_factory=list)
    """Hot-folder drops that could not become jobs (as `status` lists them), on the first
    page of live and recent jobs."""


async def job_list(
    store: Store, *, show: str = "", cursor: str | None = None, counted: bool = True
) -> JobList:
    """What the jobs list shows: by default every live job (up to `LIVE_ON_PAGE`) and the
    `RECENT_FINISHED` newest finished ones; with `show` "all", "live" or a state, a page of
    `LIST_PAGE` of those, older than `cursor`; how many jobs are live and finished if
    `counted`. Reads only the rows shown."""
    if show not in LIST_FILTERS:
        raise BadFilter(
            f"the jobs list shows {', '.join(f for f in LIST_FILTERS if f)}, not {show!r}"
        )
    before = read_cursor(cursor) if cursor else None
    if show == "" and before is None:
        live = await store.list_jobs(live=True, limit=LIVE_ON_PAGE + 1)
        finished = await store.list_jobs(live=False, limit=RECENT_FINISHED + 1)
        shown = sorted(live[:LIVE_ON_PAGE] + finished[:RECENT_FINISHED], key=_newest)[::-1]
        more = len(live) > LIVE_ON_PAGE or len(finished) > RECENT_FINISHED
    else:
        state = show if show in {s.value for s in JobState} else None
        live_only = True if show == "live" else None
        found = await store.list_jobs(
            state=state, live=live_only, limit=LIST_PAGE + 1, before=before
        )
        shown, more = found[:LIST_PAGE], len(found) > LIST_PAGE
    return JobList(
        rows=await overviews(store, shown),
        next=cursor_of(shown[-1][0]) if more and shown else None,
        live=await store.count_jobs(live=True) if counted else None,
        finished=await store.count_jobs(live=False) if counted else None,
        refused=await refused_views(store) if show == "" and before is None else [],
    )


class BadFilter(OperatorRefusal):
    """A jobs list filter this page does not know."""

    http_status = 400


def _newest(row: tuple[Job, int]) -> tuple[datetime, str]:
    return row[0].created_at, row[0].id


OUTPUT_PHASES = ("edit", "export")
"""The phases whose outputs are files the job page points to."""
PHOTOS_PAGE = 100
"""Photos one page of a job's page lists."""


@dataclass(frozen=True)
class JobPage:
    """A job as its page shows it: summary, stages, history, counts and one page of photos."""

    job: Job
    view: JobView
    events: list[dict[str, Any]]
    stages: list[StageMark]
    phases: list[str]
    """The phases of the stages the job asked for (and any other its photos recorded)."""
    counts: dict[str, PhaseCount]
    failed: int
    """Photos with a phase failed for good (at most one per photo and phase)."""
    photos: list[PhotoRecord]
    showing: str
    """"failed" or "all": which photos the page lists."""
    next_after: int | None
    """The photo id the next page starts after, if there are more."""
    outputs: dict[int, dict[str, str]] = field(default_factory=dict)
    """Where each listed photo's downloaded outputs are on disk, by phase (edit, export): in
    the job's layout (subfolders mirrored, `--prefix-subfolders`, `--output`)."""


async def job_page(
    store: Store, ref: str, *, show: str | None = None, after: int | None = None
) -> JobPage:
    """The job named by `ref`, with a page of `PHOTOS_PAGE` photos after the photo id
    `after`: those that failed first (`show` "failed", the default when any did), or all.
    Grouped counts and one page of rows: its cost does not grow with the job's photos."""
    job = await store.resolve_job(ref)
    events = await store.events(job.id)
    [(_, photo_count)] = await store.list_jobs(job_id=job.id)
    counts = await tallies.phase_counts(store, job.id)
    failed = sum(count.failed for count in counts.values())
    showing = show if show in ("failed", "all") else ("failed" if failed else "all")
    found = await store.photo_page(
        job.id, after=after, limit=PHOTOS_PAGE + 1, failed=showing == "failed"
    )
    photos = found[:PHOTOS_PAGE]
    spec = PIPELINE.spec_model.from_stored(job.options)
    asked = [s.phase for s in PIPELINE.applying(spec) if s.phase is not None]
    recorded = {name for name, count in counts.items() if count.done or count.failed}
    phases = asked + sorted(recorded - set(asked))
    view = job_view(
        job,
        photo_count,
        {name: count.done for name, count in counts.items() if count.done},
        not_done=(await not_done_counts(store, [job.id]))[job.id],
    )
    return JobPage(
        job=job,
        view=view,
        events=[event_record(event) for event in events],
        stages=timeline(job, events),
        phases=phases,
        counts=counts,
        failed=failed,
        photos=photos,
        showing=showing,
        next_after=photos[-1].id if len(found) > PHOTOS_PAGE else None,
        outputs=_output_paths(job, photos),
    )


def _output_paths(job: Job, photos: Sequence[PhotoRecord]) -> dict[int, dict[str, str]]:
    spec = JobSpec.from_stored(job.options)
    found: dict[int, dict[str, str]] = {}
    for photo in photos:
        for phase in OUTPUT_PHASES:
            path = output_file(job, spec, photo, phase)
            if path is not None:
                found.setdefault(photo.id, {})[phase] = str(path)
    return found


def timeline(job: Job, events: list[Event]) -> list[StageMark]:
    """The stages the job asked for, in order, each with where the job stands with it."""
    spec = PIPELINE.spec_model.from_stored(job.options)
    stages = [s for s in PIPELINE.stages if s.applies is None or s.applies(spec)]
    owner = {state: stage.name for stage in stages for state in stage.states}
    entered: dict[str, datetime] = {}
    for event in events:
        if event.to_state in owner:
            entered.setdefault(owner[event.to_state], event.at)
    where: str | None = job.state
    if job.state == JobState.FAILED:
        where = job.state_before_failure
    elif job.state == JobState.CANCELLED:
        where = next(
            (e.from_state for e in reversed(events) if e.to_state == JobState.CANCELLED), None
        )
    names = [s.name for s in stages]
    at = names.index(owner[where]) if where in owner else len(stages)
    if job.state == JobState.COMPLETED:
        at = len(stages)
    if job.state in (JobState.FAILED, JobState.CANCELLED):
        now_status = str(job.state)
    else:
        now_status = "waiting" if job.state in PIPELINE.waiting_states else "running"
    marks = []
    for index, stage in enumerate(stages):
        status = "done" if index < at else now_status if index == at else "pending"
        marks.append(StageMark(stage.name, status, entered.get(stage.name)))
    return marks
