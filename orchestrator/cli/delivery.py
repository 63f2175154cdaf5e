"""The delivery commands: a job's `deliveries` on imgix, `deliver` again, `purge` caches."""

from __future__ import annotations

from typing import Annotated

import typer

from orchestrator.cli.errors import EXIT_FAILED, EXIT_OK
from orchestrator.cli.options import JobArgument, JsonOption
from orchestrator.cli.output import out, print_json
from orchestrator.cli.running import run_async, settings, with_store
from orchestrator.config import Settings
from orchestrator.display import markup_safe, print_table


def deliveries(job: JobArgument, json_output: JsonOption = False) -> None:
    """List a job's photos on imgix: origin path, URL, keywords; and those held back."""
    from orchestrator.service import deliveries as delivery_views

    cfg = settings()
    found, photos = run_async(lambda: with_store(cfg, lambda s: delivery_views.deliveries(s, job)))
    if json_output:
        print_json([photo.to_json() for photo in photos])
        return
    out.print(f"[bold]{markup_safe(found.name)}[/] (job {found.id}) is {found.state}")
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
    job: JobArgument,
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
    """Deliver again the photos of a completed job whose file or keywords changed (and the
    flagged ones approved since); unchanged photos are skipped."""
    from orchestrator.cli.reporting import make_reporter
    from orchestrator.service.deliveries import redeliver

    cfg = settings()
    if verify:
        _verify(job, cfg, json_output=json_output)
        return
    with make_reporter(json_mode=json_output) as reporter:
        outcome = run_async(lambda: redeliver(job, cfg, reporter))
    summary = {
        "delivered": outcome.delivered,
        "unchanged": outcome.unchanged,
        "held": dict(outcome.held),
        "failed": list(outcome.failures),
    }
    if json_output:
        print_json(summary)
    else:
        out.print(
            f"{outcome.delivered} delivered, {outcome.unchanged} unchanged, "
            f"{len(outcome.held)} held back, {len(outcome.failures)} failed"
        )
        for line in [*outcome.failures, *(f"{p}: {r}" for p, r in outcome.held.items())]:
            out.print(f"  {markup_safe(line)}")
    raise typer.Exit(EXIT_FAILED if outcome.failures else EXIT_OK)


def purge(
    job: JobArgument,
    photo: Annotated[
        str | None, typer.Argument(help="Only this photo (its path in the shoot or file name).")
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """Purge a job's delivered URLs (or one photo's) from imgix's caches."""
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
    failed = list(found.repair.failures) if found.repair else []
    if json_output:
        print_json(found.to_json())
    else:
        out.print(
            f"{found.checked} delivered, {found.listed} at imgix: {len(found.missing)} missing, "
            f"{len(found.extra)} extra, {len(found.different)} of another size"
            + (f"; {found.repair.delivered} delivered again" if found.repair else "")
        )
        for path in found.missing:
            out.print(f"  missing: {markup_safe(path)}")
        for path in found.extra:
            out.print(f"  extra (left in place): {markup_safe(path)}")
        for entry in found.different:
            out.print(
                f"  other size: {markup_safe(str(entry['origin_path']))} "
                f"({entry['delivered']} bytes sent, {entry['at_imgix']} at imgix)"
            )
        for line in failed:
            out.print(f"  failed: {markup_safe(line)}")
    raise typer.Exit(EXIT_FAILED if failed else EXIT_OK)
