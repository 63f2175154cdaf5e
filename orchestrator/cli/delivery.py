"""The delivery commands, for a shoot (every job of it) or one job: `deliveries` on imgix,
`deliver` again (or `--verify` against imgix), `purge` caches."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from orchestrator.cli.errors import EXIT_FAILED, EXIT_OK
from orchestrator.cli.options import JsonOption, ShootArgument
from orchestrator.cli.output import out, print_json
from orchestrator.cli.running import run_async, settings, with_store
from orchestrator.config import Settings
from orchestrator.display import markup_safe, print_table
from orchestrator.words import plural

if TYPE_CHECKING:
    from orchestrator.service.delivery_verify import Reconciliation


def deliveries(job: ShootArgument, json_output: JsonOption = False) -> None:
    """List a shoot's (or a job's) photos on imgix: origin path, URL, keywords; and those
    held back."""
    from orchestrator.service import deliveries as delivery_views

    cfg = settings()
    found = run_async(lambda: with_store(cfg, lambda s: delivery_views.deliveries(s, job)))
    if json_output:
        print_json([{**p.to_json(), "job": each.id} for each, photos in found for p in photos])
        return
    for each, photos in found:
        out.print(f"[bold]{markup_safe(each.name)}[/] (job {each.id}) is {each.state}")
        print_table(
            out,
            ("photo", "status", "url", "keywords"),
            [
                (
                    p.photo,
                    p.status if p.reason is None else f"{p.status}: {p.reason}",
                    p.url or "",
                    ", ".join(p.keywords),
                )
                for p in photos
            ],
        )


def deliver(
    job: ShootArgument,
    json_output: JsonOption = False,
    verify: Annotated[
        bool,
        typer.Option(
            "--verify",
            help="Reconcile the delivery with what imgix holds (missing, extra, other size) "
            "and deliver again what is missing or differs.",
        ),
    ] = False,
) -> None:
    """Deliver again the photos of a completed shoot (or job) whose file or keywords changed
    (and the flagged ones approved since); unchanged photos are skipped."""
    from orchestrator.cli.reporting import make_reporter
    from orchestrator.service.deliveries import redeliver

    cfg = settings()
    if verify:
        _verify(job, cfg, json_output=json_output)
        return
    with make_reporter(json_mode=json_output) as reporter:
        outcome = run_async(lambda: redeliver(job, cfg, reporter))
    if json_output:
        print_json(
            {
                "delivered": outcome.delivered,
                "unchanged": outcome.unchanged,
                "held": outcome.held,
                "failed": outcome.failures,
                "skipped": outcome.skipped,
                "jobs": [
                    {
                        "job": each.id,
                        "delivered": done.delivered,
                        "unchanged": done.unchanged,
                        "held": dict(done.held),
                        "failed": list(done.failures),
                    }
                    for each, done in outcome.jobs
                ],
            }
        )
    else:
        out.print(
            f"{outcome.delivered} delivered, {outcome.unchanged} unchanged, "
            f"{len(outcome.held)} held back, {len(outcome.failures)} failed"
            + (f" ({plural(len(outcome.jobs), 'job')})" if len(outcome.jobs) > 1 else "")
        )
        held = (f"{p}: {r}" for p, r in outcome.held.items())
        for line in [*outcome.failures, *held, *outcome.skipped]:
            out.print(f"  {markup_safe(line)}")
    raise typer.Exit(EXIT_FAILED if outcome.failures else EXIT_OK)


def purge(
    job: ShootArgument,
    photo: Annotated[
        str | None, typer.Argument(help="Only this photo (its path in the shoot or file name).")
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """Purge a shoot's (or a job's) delivered URLs, or one photo's, from imgix's caches."""
    from orchestrator.service.deliveries import purge as purge_urls

    cfg = settings()
    urls = run_async(lambda: purge_urls(job, cfg, photo))
    if json_output:
        print_json({"purged": urls})
        return
    for url in urls:
        out.print(f"purged {markup_safe(url)}")


def _verify(job: str, cfg: Settings, *, json_output: bool) -> None:
    """`deliver --verify`: what imgix holds against the delivery, repaired; exit 1 if a
    repair failed."""
    from orchestrator.cli.reporting import make_reporter
    from orchestrator.service.deliveries import verify

    with make_reporter(json_mode=json_output) as reporter:
        found = run_async(lambda: verify(job, cfg, reporter))
    several = len(found.jobs) > 1
    if json_output:
        print_json(found.to_json())
    else:
        for each, job_found in found.jobs:
            if several:
                out.print(f"[bold]{markup_safe(each.name)}[/] (job {each.id[:8]})")
            _print_reconciliation(job_found, "  " if several else "")
        for line in found.skipped:
            out.print(f"  {markup_safe(line)}")
    raise typer.Exit(EXIT_FAILED if found.failures else EXIT_OK)


def _print_reconciliation(found: Reconciliation, indent: str) -> None:
    out.print(
        f"{indent}{found.checked} delivered, {found.listed} at imgix: "
        f"{len(found.missing)} missing, {len(found.extra)} extra, "
        f"{len(found.different)} of another size"
        + (f"; {found.repair.delivered} delivered again" if found.repair else "")
    )
    for path in found.missing:
        out.print(f"{indent}  missing: {markup_safe(path)}")
    for path in found.extra:
        out.print(f"{indent}  extra (left in place): {markup_safe(path)}")
    for entry in found.different:
        out.print(
            f"{indent}  other size: {markup_safe(str(entry['origin_path']))} "
            f"({entry['delivered']} bytes sent, {entry['at_imgix']} at imgix)"
        )
    for line in found.repair.failures if found.repair else ():
        out.print(f"{indent}  failed: {markup_safe(line)}")
