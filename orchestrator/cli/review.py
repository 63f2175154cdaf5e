"""The review commands: a job's `keywords` (shown, changed, chosen again) and `approve`."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

from orchestrator.cli.errors import fail
from orchestrator.cli.options import JobArgument, JsonOption
from orchestrator.cli.output import continue_command, out, print_json
from orchestrator.cli.running import run_async, settings, with_store
from orchestrator.display import markup_safe
from orchestrator.words import plural

if TYPE_CHECKING:
    from orchestrator.config import Settings
    from orchestrator.service.review import Approval
    from orchestrator.service.shoot_keywords import EditedShoot
    from orchestrator.store.queries import Store


def _edit_shoot_words(
    cfg: Settings, ref: str, add: list[str], remove: list[str], json_output: bool
) -> None:
    from orchestrator.integrations.keywords import KeywordFiles
    from orchestrator.service.shoot_keywords import edit_shoot_keywords

    async def edit(store: Store) -> EditedShoot:
        files = KeywordFiles(cfg.tagging.exiftool)
        try:
            return await edit_shoot_keywords(store, files, ref, add=add, remove=remove)
        finally:
            files.close()

    edited = run_async(lambda: with_store(cfg, edit))
    if json_output:
        print_json({"shoot": edited.shoot.id, "keywords": list(edited.keywords)})
        return
    words = ", ".join(markup_safe(w) for w in edited.keywords) or "(none)"
    out.print(f"{markup_safe(edited.shoot.name)}: the shoot's keywords are {words}")
    out.print(
        f"written into {plural(edited.files, 'file')}; to update delivered photos, run "
        f"`orchestrator deliver JOB` for each delivered job of the shoot"
    )


def keywords(
    job: JobArgument,
    photo: Annotated[
        str | None, typer.Argument(help="One photo (its file name or path in the shoot).")
    ] = None,
    add: Annotated[
        list[str], typer.Option("--add", help="Add a word from the photo's suggestions.")
    ] = [],  # noqa: B006
    remove: Annotated[list[str], typer.Option("--remove", help="Remove a keyword.")] = [],  # noqa: B006
    reselect: Annotated[
        bool,
        typer.Option(
            "--reselect", help="Choose again from the kept suggestions (free) at --threshold."
        ),
    ] = False,
    threshold: Annotated[
        float | None, typer.Option(min=0, max=100, help="Confidence (0-100) for --reselect.")
    ] = None,
    shoot_add: Annotated[
        list[str],
        typer.Option(
            "--shoot-add", help="Add a keyword of the shoot itself, to every photo of the shoot."
        ),
    ] = [],  # noqa: B006
    shoot_remove: Annotated[
        list[str],
        typer.Option("--shoot-remove", help="Remove a keyword of the shoot from every photo."),
    ] = [],  # noqa: B006
    json_output: JsonOption = False,
    csv_output: Annotated[bool, typer.Option("--csv", help="Print CSV.")] = False,
) -> None:
    """Show each photo's keywords and Imagga's suggestions; review them (--add, --remove);
    edit the shoot's own keywords (--shoot-add, --shoot-remove)."""
    from orchestrator.service.keywords import keywords_command

    cfg = settings()
    if shoot_add or shoot_remove:
        if photo is not None or add or remove or reselect:
            fail("--shoot-add and --shoot-remove change every photo of the shoot: give no PHOTO")
        _edit_shoot_words(cfg, job, shoot_add, shoot_remove, json_output)
        return
    if (add or remove) and reselect:
        fail("--add/--remove and --reselect do not go together")
    if (add or remove) and photo is None:
        fail("--add and --remove need the PHOTO they change")
    if reselect and threshold is None:
        fail("--reselect needs --threshold N (0-100)")
    if threshold is not None and not reselect:
        fail("--threshold goes with --reselect")
    found = run_async(
        lambda: keywords_command(cfg, job, photo, add=add, remove=remove, reselect_at=threshold)
    )
    if json_output:
        print_json(found)
        return
    if csv_output:
        write_keyword_csv(found)
        return
    if not found:
        out.print("no tagged photos in this job yet")
        return
    for view in found:
        flag = " [red]flagged by moderation[/]" if (view["moderation"] or {}).get("flagged") else ""
        out.print(f"[bold]{markup_safe(view['photo'])}[/] ({view['source']}){flag}")
        words = [
            f"{markup_safe(w)}{'*' if view['keyword_sources'][w] == 'reviewed' else ''}"
            for w in view["keywords"]
        ]
        out.print(f"  keywords:    {', '.join(words) or '(none)'}")
        shown = ", ".join(
            f"{markup_safe(s['tag'])} {s['confidence']:.0f}" for s in view["suggestions"][:15]
        )
        out.print(f"  suggestions: {shown}")
        if view["categories"]:
            cats = ", ".join(
                f"{markup_safe(c['name'])} {c['confidence']:.0f}" for c in view["categories"][:5]
            )
            out.print(f"  categories:  {cats}")
    out.print("(* added by a person)")


def write_keyword_csv(found: list[dict[str, Any]]) -> None:
    """One CSV row per keyword and per unused suggestion of each photo."""
    import csv

    writer = csv.writer(sys.stdout)
    writer.writerow(["photo", "word", "confidence", "keyword", "origin", "flagged"])
    for view in found:
        confidences = {s["tag"]: s["confidence"] for s in view["suggestions"]}
        flagged = bool((view["moderation"] or {}).get("flagged"))
        for word in view["keywords"]:
            writer.writerow(
                [
                    view["photo"],
                    word,
                    confidences.get(word, ""),
                    "yes",
                    view["keyword_sources"][word],
                    flagged,
                ]
            )
        for suggestion in view["suggestions"]:
            if suggestion["tag"] not in view["keywords"]:
                writer.writerow(
                    [view["photo"], suggestion["tag"], suggestion["confidence"], "no", "", flagged]
                )


def approve(
    job: JobArgument,
    photo: Annotated[
        list[str],
        typer.Argument(
            help="Photos to approve, by file name (moderation-flagged ones need this); "
            "none: every photo not flagged, the flagged ones held back."
        ),
    ] = [],  # noqa: B006
    json_output: JsonOption = False,
) -> None:
    """Approve a shoot waiting for review (every job of it), a job, or some of its photos, so
    they go on to delivery."""
    from orchestrator.service import review as review_actions

    cfg = settings()
    if not photo:
        from orchestrator.service.shoots import approve_shoot

        several = run_async(lambda: with_store(cfg, lambda s: approve_shoot(s, job)))
        if len(several) > 1:
            _print_approvals(several, json_output)
            return
        [done] = several
    else:
        done = run_async(lambda: with_store(cfg, lambda s: review_actions.approve(s, job, photo)))
    _print_approvals([done], json_output)


def _print_approvals(approvals: list[Approval], json_output: bool) -> None:
    """Each approval: the JSON of one (a list for a shoot of several jobs), or lines."""
    if json_output:
        found = [
            {
                "job": done.job.id,
                "approved": done.approved,
                "held_back": done.held_back,
                "remaining": done.remaining,
                "complete": done.complete,
            }
            for done in approvals
        ]
        print_json(found[0] if len(found) == 1 else found)
        return
    for done in approvals:
        _print_approval(done)


def _print_approval(done: Approval) -> None:
    """What one job's approval did, and what comes next."""
    out.print(f"{markup_safe(done.job.name)}: {plural(len(done.approved), 'photo')} approved")
    for name in done.held_back:
        out.print(f"  held back (flagged by moderation): {markup_safe(name)}")
    if done.held_back:
        out.print(f"  to deliver one anyway: orchestrator approve {done.job.id[:8]} PHOTO")
    if not done.complete:
        out.print(f"  {plural(len(done.remaining), 'photo')} still to decide")
    elif done.job.queued_for_daemon:
        out.print("  review done: the daemon takes the job on")
    else:
        out.print(f"  review done: continue with `{markup_safe(continue_command(done.job))}`")
