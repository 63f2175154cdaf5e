"""Where the command writes: results to stdout, progress and messages to stderr."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrator.display import make_console, markup_safe
from orchestrator.spec import JobSpec
from orchestrator.states import JobState

if TYPE_CHECKING:
    from orchestrator.cli.reporting import Reporter
    from orchestrator.service.batch import BatchResult
    from orchestrator.store.models import Job

out = make_console()
err = make_console(stderr=True)

VERBOSITY = {"level": 0}
"""-q (-1) or -v (1, 2) given before the command; read when a command builds its reporter."""


def reporter(json_output: bool) -> Reporter:
    """The progress display for this command, as quiet as -q asks."""
    from orchestrator.cli.reporting import make_reporter

    return make_reporter(json_mode=json_output, quiet=VERBOSITY["level"] < 0)


def print_json(value: Any) -> None:
    """Write JSON to stdout (results go to stdout, progress to stderr)."""
    sys.stdout.write(json.dumps(value, indent=2, default=str) + "\n")


def continue_command(job: Job) -> str:
    """The command that takes a `run` job on once its review is done."""
    return f"orchestrator run {shlex.quote(job.source)}"


def report_batch(result: BatchResult, json_output: bool) -> None:
    """Print how each job ended, where its outputs are, and every photo not done as asked
    (failed, refused or left out), each with why."""
    from orchestrator.service import jobs as job_views

    if json_output:
        print_json([view.model_dump(mode="json") for view in result.views])
        return
    for outcome in result.outcomes:
        job = outcome.job
        photos = result.failed_photos.get(job.id, [])
        counts = job_views.NotDone.of(photos).text()
        colour = {"completed": "yellow" if counts else "green", "failed": "red"}.get(
            job.state, "yellow"
        )
        state = ", ".join(part for part in (str(job.state), counts) if part)
        out.print(f"[bold]{markup_safe(job.name)}[/] [{colour}]{state}[/] (job {job.id[:8]})")
        if job.state == "completed":
            out.print(f"  edits:   {markup_safe(job.edited_dir)}")
            if JobSpec.from_stored(job.options).export:
                out.print(f"  exports: {markup_safe(job.exported_dir)}")
        if job.state == JobState.REVIEWING:
            out.print(
                f"  waiting for review: open the web page (`orchestrator ui`) or run "
                f"`orchestrator approve {job.id[:8]}`, then continue with "
                f"`{markup_safe(continue_command(job))}`"
            )
        if outcome.paused:
            out.print(f"  stopped: {markup_safe(outcome.paused)}")
            out.print("  run the same command again to continue")
        elif job.last_error and job.state == "failed":
            out.print(f"  error: {markup_safe(job.last_error)}")
            out.print(f"  after fixing it: orchestrator retry {job.id[:8]}")
        for photo in photos:
            print_not_done(photo.rel_path, photo.phase, photo.reason, photo.outcome)
    for sheet in _contact_sheets(result):
        out.print(f"contact sheet: {markup_safe(str(sheet))}")


def _contact_sheets(result: BatchResult) -> list[Path]:
    """The contact sheet of each shoot whose jobs delivered, once each."""
    delivered = [
        o.job
        for o in result.outcomes
        if o.job.state == JobState.COMPLETED and JobSpec.from_stored(o.job.options).deliver
    ]
    if not delivered:
        return []
    from orchestrator.integrations.delivery_files import CONTACT_SHEET, delivered_folder

    sheets = {delivered_folder(job.source, job.exported_dir) / CONTACT_SHEET for job in delivered}
    return sorted(sheet for sheet in sheets if sheet.exists())


def print_not_done(path: str, phase: str, reason: str, outcome: str) -> None:
    """One photo not done as asked, on its own line: failed (in which phase), refused or
    left out, and why."""
    from orchestrator.service import jobs as job_views

    if outcome == "failed":
        out.print(
            f"  [red]failed[/] {markup_safe(path)} ({job_views.phase_label(phase)}): "
            f"{markup_safe(reason)}"
        )
        return
    word, _, why = reason.partition(": ")
    out.print(f"  [yellow]{word}[/] {markup_safe(path)}: {markup_safe(why)}")
