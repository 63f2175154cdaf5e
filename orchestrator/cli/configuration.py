"""The setting-up commands: the `config` in effect, the database (`db upgrade`, `prune`), the
Imagen account's `profiles` and the Imagga account's `usage`."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from orchestrator.cli.options import JsonOption
from orchestrator.cli.output import out, print_json
from orchestrator.cli.running import run_async, settings
from orchestrator.display import markup_safe, print_table
from orchestrator.words import plural


def show_config(json_output: JsonOption = False) -> None:
    """Show the settings in effect (secrets masked), where each came from, and the database."""
    from orchestrator.config import effective_settings

    cfg = settings()
    shown = effective_settings(cfg)
    if json_output:
        print_json(shown)
        return
    out.print(f"config file: {markup_safe(shown['config_file'])}")
    out.print(f"database:    {markup_safe(shown['database'])}")
    print_table(
        out,
        ("setting", "value", "from"),
        [(row["name"], row["value"], row["source"]) for row in shown["settings"]],
    )


def db_upgrade(json_output: JsonOption = False) -> None:
    """Create or upgrade the database schema to this version's."""
    from orchestrator.store.migrate import head_revision, upgrade

    cfg = settings()
    url = cfg.resolved_database_url()
    run_async(lambda: upgrade(url))
    if json_output:
        print_json({"revision": head_revision()})
    else:
        out.print(f"database at revision {head_revision()}")


DEFAULT_PRUNE_DAYS = 90.0


def prune(
    older_than: Annotated[
        float,
        typer.Option(
            "--older-than",
            min=0,
            metavar="DAYS",
            help="Remove finished jobs (completed, cancelled, failed) that ended more than "
            "this many days ago.",
        ),
    ] = DEFAULT_PRUNE_DAYS,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only count what would be removed.")
    ] = False,
    json_output: JsonOption = False,
) -> None:
    """Remove old finished jobs (with their photos and history) and spent callbacks from the
    database, and give the space back; live jobs are never touched."""
    from orchestrator.service.maintenance import prune_database, report_json

    cfg = settings()
    pruned = run_async(lambda: prune_database(cfg, older_than_days=older_than, dry_run=dry_run))
    if json_output:
        print_json(report_json(pruned))
        return
    report = pruned.report
    verb = "would remove" if report.dry_run else "removed"
    out.print(
        f"{verb} {plural(report.jobs, 'job')} that ended before "
        f"{report.cutoff:%Y-%m-%d %H:%M} UTC ({plural(report.photos, 'photo')}, "
        f"{plural(report.events, 'event')}) and {plural(report.callbacks, 'spent callback')}"
    )
    if report.shoots:
        out.print(f"{verb} {plural(report.shoots, 'shoot')} left without jobs")
    if report.events_folded:
        out.print(
            f"folded {plural(report.events_folded, 'repeated history line')} of the jobs kept"
        )
    if pruned.thumbnails:
        out.print(f"removed the review thumbnails of {plural(pruned.thumbnails, 'pruned job')}")
    if report.bytes_before is not None and report.bytes_after is not None and not dry_run:
        out.print(
            f"database file: {report.bytes_before / 1e6:.1f} MB → {report.bytes_after / 1e6:.1f} MB"
        )


def profiles(json_output: JsonOption = False) -> None:
    """List the AI profiles of your Imagen account."""
    from orchestrator.service.wiring import connected

    cfg = settings()

    async def fetch() -> list[dict[str, Any]]:
        async with connected(cfg) as services:
            return [p.model_dump(mode="json") for p in await services.imagen.list_profiles()]

    found = run_async(fetch)
    if json_output:
        print_json(found)
        return
    print_table(
        out,
        ("key", "name", "type", "image type"),
        [
            (
                item["profile_key"],
                item["profile_name"],
                item.get("profile_type") or "",
                item["image_type"],
            )
            for item in found
        ],
    )


def usage(json_output: JsonOption = False) -> None:
    """Show the Imagga account's monthly quota (used and left) and its concurrency cap."""
    from orchestrator.service.imagga_usage import imagga_usage

    cfg = settings()
    found = run_async(lambda: imagga_usage(cfg))
    if json_output:
        print_json(found)
        return
    out.print(
        f"Imagga: {found['monthly_processed']} of {found['monthly_limit']} requests used this "
        f"month, {found['left']} left"
        + (f" (resets {markup_safe(str(found['resets_at']))})" if found["resets_at"] else "")
    )
    if found["concurrency_max"]:
        out.print(f"  at most {found['concurrency_max']} requests at once")
