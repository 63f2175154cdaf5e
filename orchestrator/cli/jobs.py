"""The job commands: `run` and `submit` a shoot folder, then `status`, `history`, `retry` and
`cancel` its jobs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from orchestrator.cli.errors import fail
from orchestrator.cli.options import (
    AddOption,
    AgainOption,
    BwlimitOption,
    ConcurrencyOption,
    FolderArgument,
    JobArgument,
    JobChoices,
    JsonOption,
    ProfileOption,
    TagAnywayOption,
    takes_job_options,
)
from orchestrator.cli.output import (
    err,
    out,
    print_json,
    print_not_done,
    report_batch,
    reporter,
)
from orchestrator.cli.running import run_async, settings, with_store
from orchestrator.display import markup_safe, print_table
from orchestrator.states import JobState
from orchestrator.words import plural

if TYPE_CHECKING:
    from pathlib import Path

    from orchestrator.store.queries import Store
    from orchestrator.workflow.planning import RunRequest


@takes_job_options
def run(
    folder: FolderArgument,
    profile: ProfileOption = [],  # noqa: B006
    *,
    job: JobChoices,
    again: AgainOption = False,
    add: AddOption = False,
    concurrency: ConcurrencyOption = None,
    bwlimit: BwlimitOption = None,
    tag_anyway: TagAnywayOption = False,
    json_output: JsonOption = False,
) -> None:
    """Edit (and export) a shoot folder; run it again to resume after any interruption."""
    from orchestrator.service.batch import run_batch

    cfg = settings(concurrency=concurrency, bwlimit=bwlimit, tag_anyway=tag_anyway or None)
    request = _request(folder, profile, job, cfg.exiftool, again=again, add=add)
    with reporter(json_output) as display:
        result = run_async(lambda: run_batch(request, cfg, display), display=display)
    report_batch(result, json_output)
    raise typer.Exit(result.exit_code)


@takes_job_options
def submit(
    folder: FolderArgument,
    profile: ProfileOption = [],  # noqa: B006
    *,
    job: JobChoices,
    again: AgainOption = False,
    add: AddOption = False,
    json_output: JsonOption = False,
) -> None:
    """Queue a shoot folder for the daemons (`orchestrator daemon`); prints the job ids."""
    from orchestrator.service.submit import submit_folder

    cfg = settings()
    request = _request(folder, profile, job, cfg.exiftool, again=again, add=add)
    submitted = run_async(lambda: submit_folder(request, cfg))
    for note in submitted.notes:
        err.print(f"{markup_safe(folder.name)}: {markup_safe(note)}")
    if json_output:
        print_json([job.id for job in submitted.jobs])
        return
    for queued in submitted.jobs:
        out.print(f"{queued.id}  {markup_safe(queued.name)}  {queued.state}")


def _request(
    folder: Path, profiles: list[str], job: JobChoices, exiftool: str, *, again: bool, add: bool
) -> RunRequest:
    """What `run` and `submit` ask of the planner."""
    from orchestrator.workflow.planning import RunRequest

    if again and add:
        fail(
            "--again edits the whole shoot anew, --add only the photos it has not sent: "
            "give one of them"
        )
    return RunRequest(
        source=folder,
        profiles=profiles,
        spec=job.spec,
        again=again,
        add=add,
        prefix_subfolders=job.prefix_subfolders,
        exiftool=exiftool,
        # Anything asked beyond the defaults is news to a job that exists: the planner says
        # which of it that job will not apply.
        options_given=bool(profiles) or job.beyond_defaults(),
    )


def status(
    job: Annotated[
        str | None,
        typer.Argument(help="Only this shoot (its id, name or folder), or the shoot of this job."),
    ] = None,
    state: Annotated[
        JobState | None, typer.Option(case_sensitive=False, help="Only jobs in this state.")
    ] = None,
    everything: Annotated[
        bool,
        typer.Option(
            "--all",
            help="Every job the database holds (default: the live ones and the newest "
            "finished ones).",
        ),
    ] = False,
    limit: Annotated[int | None, typer.Option(min=1, help="At most this many (newest).")] = None,
    json_output: JsonOption = False,
) -> None:
    """List the shoots, each with its jobs: every live one and the 20 newest finished ones,
    where each stands and how far each phase got."""
    from orchestrator.service import shoots as shoot_views

    cfg = settings()

    async def listing(store: Store) -> tuple[list[dict[str, Any]], int]:
        found = await shoot_views.status(
            store, state=state, limit=limit, ref=job, everything=everything
        )
        default = not (job or state or everything)
        hidden = await shoot_views.finished_not_shown(store, found) if default else 0
        return found, hidden

    found, hidden = run_async(lambda: with_store(cfg, listing))
    if json_output:
        print_json(found)
        return
    if not found:
        out.print(
            f"no shoots with {state} jobs"
            if state
            else "no shoots yet: `orchestrator run FOLDER --profile KEY` starts one"
        )
        return
    print_table(
        out,
        ("shoot / job", "name", "state", "photos", "progress", "updated", "last error"),
        [row for view in found for row in status_rows(view)],
    )
    if hidden:
        out.print(f"and {plural(hidden, 'older finished shoot')}: `orchestrator status --all`")


def status_rows(shoot: dict[str, Any]) -> list[tuple[Any, ...]]:
    """A shoot's line in `status`, then one line per job of it (a refused drop: its line)."""
    from orchestrator.service import jobs as job_views

    rows: list[tuple[Any, ...]] = [
        (
            (shoot["id"] or "-")[:8],
            shoot["name"],
            shoot.get("state_text") or shoot["state"],
            shoot.get("photos", ""),
            "",
            shoot["updated_at"][:19].replace("T", " "),
            shoot["last_error"] or "",
        )
    ]
    for job in shoot.get("jobs", []):
        view = job_views.JobView.model_validate(job)
        rows.append(
            (
                f"  {view.id[:8]}",
                view.name,
                view.state_text or view.state,
                view.photos,
                job_views.progress_text(view),
                job["updated_at"][:19].replace("T", " "),
                view.last_error or "",
            )
        )
    return rows


def history(job: JobArgument, json_output: JsonOption = False) -> None:
    """Show every transition, retry, resume and error of a shoot's jobs (or of the shoot of
    the job named)."""
    from orchestrator.service import jobs as job_views
    from orchestrator.service import shoots as shoot_views

    cfg = settings()
    found = run_async(lambda: with_store(cfg, lambda s: shoot_views.history_view(s, job)))
    shoot, events = found.shoot, found.events
    if json_output:
        print_json(
            {
                "shoot": shoot.model_dump(mode="json"),
                "job": found.job.model_dump(mode="json") if found.job else None,
                "events": events,
            }
        )
        return
    out.print(f"[bold]{markup_safe(shoot.name)}[/] (shoot {shoot.id}) is {shoot.state_text}")
    several = len(shoot.jobs) > 1
    for view in shoot.jobs if several else ():
        out.print(f"  job {view.id[:8]} {markup_safe(view.name)}: {view.state_text}")
    print_table(
        out,
        ("time (UTC)", *(("job",) if several else ()), "kind", "change", "message"),
        [
            (
                e["at"][:19].replace("T", " "),
                *((e["job"][:8],) if several else ()),
                e["kind"],
                f"{e['from_state'] or ''} → {e['to_state']}" if e["to_state"] else "",
                e["message"],
            )
            for e in events
        ],
    )
    for view in shoot.jobs:
        if view.failed_photos:
            counts = job_views.NotDone(view.failed, view.refused, view.left_out)
            prefix = f"{view.name}: " if several else ""
            out.print(f"{markup_safe(prefix)}not done as asked: {counts.text()}")
        for photo in view.failed_photos:
            print_not_done(photo.path, photo.phase, photo.reason, photo.outcome)


def retry(
    job: JobArgument,
    reset_only: Annotated[
        bool,
        typer.Option(
            "--reset-only", help="Only send the job back; a daemon (or `run`) continues it."
        ),
    ] = False,
    json_output: JsonOption = False,
) -> None:
    """Retry a failed job: only its failed photos and steps are done again."""
    from orchestrator.service import jobs as job_views
    from orchestrator.service.batch import retry_and_drive

    cfg = settings()
    if reset_only:
        found = run_async(lambda: with_store(cfg, lambda s: job_views.retry_view(s, job)))
        if json_output:
            print_json(found.model_dump(mode="json"))
        else:
            out.print(f"{markup_safe(found.name)} is back in state {found.state}")
        return
    with reporter(json_output) as display:
        result = run_async(lambda: retry_and_drive(job, cfg, display), display=display)
    report_batch(result, json_output)
    raise typer.Exit(result.exit_code)


def cancel(job: JobArgument, json_output: JsonOption = False) -> None:
    """Stop a job for good (a running driver stops at its next heartbeat)."""
    from orchestrator.service import jobs as job_views

    cfg = settings()
    found = run_async(lambda: with_store(cfg, lambda s: job_views.cancel_view(s, job)))
    if json_output:
        print_json(found.model_dump(mode="json"))
        return
    if found.state == "cancelled":
        out.print(f"{markup_safe(found.name)} is cancelled")
    else:
        out.print(f"{markup_safe(found.name)}: cancel requested; its driver stops within seconds")
