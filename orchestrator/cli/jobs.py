"""The job commands: `run` and `submit` a shoot folder, then `status`, `history`, `retry` and
`cancel` its jobs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from orchestrator.cli.options import (
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
    from orchestrator.store.queries import Store


@takes_job_options
def run(
    folder: FolderArgument,
    profile: ProfileOption = [],  # noqa: B006
    *,
    job: JobChoices,
    again: Annotated[
        bool,
        typer.Option(
            "--again",
            help="Edit a folder whose jobs finished once more, with the options given now "
            "(a new job and Imagen project; its outputs replace the earlier ones).",
        ),
    ] = False,
    concurrency: ConcurrencyOption = None,
    bwlimit: BwlimitOption = None,
    tag_anyway: TagAnywayOption = False,
    json_output: JsonOption = False,
) -> None:
    """Edit (and export) a shoot folder; run it again to resume after any interruption."""
    from orchestrator.service.batch import run_batch
    from orchestrator.workflow.planning import RunRequest

    cfg = settings(concurrency=concurrency, bwlimit=bwlimit, tag_anyway=tag_anyway or None)
    request = RunRequest(
        source=folder,
        profiles=profile,
        spec=job.spec,
        again=again,
        prefix_subfolders=job.prefix_subfolders,
        # Anything asked beyond the defaults is news to a job that exists: the planner says
        # which of it that job will not apply.
        options_given=bool(profile) or job.beyond_defaults(),
    )
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
    json_output: JsonOption = False,
) -> None:
    """Queue a shoot folder for the daemons (`orchestrator daemon`); prints the job ids."""
    from orchestrator.service.submit import submit_folder
    from orchestrator.workflow.planning import RunRequest

    cfg = settings()
    request = RunRequest(
        source=folder,
        profiles=profile,
        spec=job.spec,
        prefix_subfolders=job.prefix_subfolders,
    )
    submitted = run_async(lambda: submit_folder(request, cfg))
    for note in submitted.notes:
        err.print(f"{markup_safe(folder.name)}: {markup_safe(note)}")
    if json_output:
        print_json([job.id for job in submitted.jobs])
        return
    for queued in submitted.jobs:
        out.print(f"{queued.id}  {markup_safe(queued.name)}  {queued.state}")


def status(
    job: Annotated[
        str | None,
        typer.Argument(help="Only this job: its id (or first characters), name or folder."),
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
    """List the jobs: every live one and the 20 newest finished ones, where each stands and how
    far each phase got."""
    from orchestrator.service import jobs as job_views

    cfg = settings()

    async def listing(store: Store) -> tuple[list[dict[str, Any]], int]:
        found = await job_views.status(
            store, state=state, limit=limit, ref=job, everything=everything
        )
        default = not (job or state or everything)
        hidden = await job_views.finished_not_shown(store, found) if default else 0
        return found, hidden

    found, hidden = run_async(lambda: with_store(cfg, listing))
    if json_output:
        print_json(found)
        return
    if not found:
        out.print(
            f"no {state} jobs"
            if state
            else "no jobs yet: `orchestrator run FOLDER --profile KEY` starts one"
        )
        return
    print_table(
        out,
        ("job", "name", "state", "photos", "progress", "updated", "last error"),
        [
            (
                (view["id"] or "-")[:8],
                view["name"],
                view.get("state_text") or view["state"],
                view.get("photos", ""),
                ""
                if view["state"] == "refused"
                else job_views.progress_text(job_views.JobView.model_validate(view)),
                view["updated_at"][:19].replace("T", " "),
                view["last_error"] or "",
            )
            for view in found
        ],
    )
    if hidden:
        out.print(f"and {plural(hidden, 'older finished job')}: `orchestrator status --all`")


def history(job: JobArgument, json_output: JsonOption = False) -> None:
    """Show every transition, retry, resume and error of a job."""
    from orchestrator.service import jobs as job_views

    cfg = settings()
    found, events = run_async(lambda: with_store(cfg, lambda s: job_views.history_view(s, job)))
    if json_output:
        print_json({"job": found.model_dump(mode="json"), "events": events})
        return
    out.print(f"[bold]{markup_safe(found.name)}[/] (job {found.id}) is {found.state_text}")
    print_table(
        out,
        ("time (UTC)", "kind", "change", "message"),
        [
            (
                e["at"][:19].replace("T", " "),
                e["kind"],
                f"{e['from_state'] or ''} → {e['to_state']}" if e["to_state"] else "",
                e["message"],
            )
            for e in events
        ],
    )
    if found.failed_photos:
        counts = job_views.NotDone(found.failed, found.refused, found.left_out)
        out.print(f"not done as asked: {counts.text()}")
    for photo in found.failed_photos:
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
