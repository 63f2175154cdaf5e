"""The commands that run as a process: the `daemon`, the web page (`ui`), the `sandbox` of
fake services, and the `demo` against it."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from pathlib import Path
from typing import Annotated

import typer

from orchestrator.cli.errors import fail
from orchestrator.cli.options import (
    PROCESS_PANEL,
    BwlimitOption,
    ConcurrencyOption,
    JobChoices,
    JsonOption,
    TagAnywayOption,
    takes_job_options,
)
from orchestrator.cli.output import err, out, report_batch, reporter
from orchestrator.cli.running import needs_services, run_async, settings
from orchestrator.display import markup_safe


@takes_job_options
def daemon(
    listen: Annotated[
        str | None,
        typer.Option(
            help="HOST:PORT for callbacks, /healthz, /readyz, /metrics and /api/jobs "
            "(default 127.0.0.1:8750).",
            rich_help_panel=PROCESS_PANEL,
        ),
    ] = None,
    public_url: Annotated[
        str | None,
        typer.Option(
            help="URL under which Imagen reaches --listen (or the balancer in front of several "
            "daemons); without it jobs are only polled.",
            rich_help_panel=PROCESS_PANEL,
        ),
    ] = None,
    watch: Annotated[
        list[Path],
        typer.Option(
            "--watch",
            help="Hot folder (repeatable): each new subfolder that stops changing "
            "becomes a job with --profile and the job options given here (--export, --tool, …).",
        ),
    ] = [],  # noqa: B006
    profile: Annotated[
        list[str],
        typer.Option("--profile", "-p", help="Profile key or name for the --watch folders."),
    ] = [],  # noqa: B006
    *,
    job: JobChoices,
    max_jobs: Annotated[
        int | None,
        typer.Option(
            help="Jobs this daemon drives at once (default 4); waiting jobs do not count.",
            min=1,
            rich_help_panel=PROCESS_PANEL,
        ),
    ] = None,
    lease_ttl: Annotated[
        float | None,
        typer.Option(
            help="Seconds before a silent daemon's jobs go to another (default 60).",
            min=1.0,
            rich_help_panel=PROCESS_PANEL,
        ),
    ] = None,
    settle: Annotated[
        float | None,
        typer.Option(
            help="Seconds a dropped folder must stay unchanged (default 30).",
            min=0.0,
            rich_help_panel=PROCESS_PANEL,
        ),
    ] = None,
    concurrency: ConcurrencyOption = None,
    bwlimit: BwlimitOption = None,
    tag_anyway: TagAnywayOption = False,
) -> None:
    """Run queued jobs and hot-folder drops, receive Imagen's callbacks, until SIGTERM."""
    from orchestrator.config import HotFolder
    from orchestrator.daemon_app import serve

    if watch and not profile:
        fail("--watch needs --profile: the profile its drops are edited with")
    if job.notify and not watch:
        fail("--notify goes with --watch (for every job the daemon drives: ORCH_NOTIFY)")
    spec = job.spec
    cfg = settings(
        listen=listen,
        public_url=public_url,
        max_jobs_in_progress=max_jobs,
        lease_ttl_seconds=lease_ttl,
        hot_folder_settle_seconds=settle,
        concurrency=concurrency,
        bwlimit=bwlimit,
        tag_anyway=tag_anyway or None,
    )
    watched = [
        HotFolder(
            path=path,
            profiles=profile,
            prefix_subfolders=job.prefix_subfolders,
            notify=job.notify,
            **spec.model_dump(),
        )
        for path in watch
    ]
    cfg = cfg.model_copy(update={"hot_folders": [*cfg.daemon.hot_folders, *watched]})
    needs_services(*(folder.spec() for folder in cfg.daemon.hot_folders), cfg=cfg)

    def ready(base_url: str) -> None:
        sys.stdout.write(f"{base_url}\n")
        sys.stdout.flush()

    run_async(lambda: serve(cfg, on_ready=ready))


def ui(
    listen: Annotated[
        str | None,
        typer.Option(
            help="HOST:PORT to serve the web page on (default 127.0.0.1:8751); beyond "
            "loopback it needs a token (ORCH_UI_TOKEN, or one made up and printed)."
        ),
    ] = None,
) -> None:
    """Serve the web page (jobs, one job, the review) over the job database."""
    from orchestrator.web.server import DEFAULT_LISTEN, serve_ui

    cfg = settings()

    def ready(base_url: str) -> None:
        sys.stdout.write(f"{base_url}\n")
        sys.stdout.flush()

    run_async(lambda: serve_ui(cfg, listen or DEFAULT_LISTEN, on_ready=ready))


def sandbox(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port (0 picks a free one).")] = 8080,
    edit_seconds: Annotated[float, typer.Option(help="How long an edit or export takes.")] = 5.0,
    faults: Annotated[
        str,
        typer.Option(
            help="Faults to inject, e.g. 'error_5xx=0.05,reset=0.02' (names: error_5xx, "
            "throttle_429, reset, slow, expire_link, lose_callback, duplicate_callback, "
            "reorder_callback)."
        ),
    ] = "",
    seed: Annotated[int, typer.Option(help="Seed of the fault generator.")] = 0,
    slow_seconds: Annotated[float, typer.Option(help="Delay added by the `slow` fault.")] = 1.0,
    link_ttl_seconds: Annotated[
        float, typer.Option(help="Lifetime of presigned upload and download links.")
    ] = 3600.0,
    api_key: Annotated[
        str | None, typer.Option(help="Accept only this API key (default: any non-empty key).")
    ] = None,
    imgix_rate_scale: Annotated[
        float, typer.Option(help="imgix's per-endpoint rate limits, times this (lower: stricter).")
    ] = 1.0,
) -> None:
    """Serve fakes of Imagen, its storage, Imagga and imgix on one port."""
    from orchestrator.listening import CannotListen
    from orchestrator.sandbox.config import SandboxConfig, parse_faults
    from orchestrator.sandbox.server import RunningSandbox, serve_forever

    try:
        config = SandboxConfig(
            host=host,
            port=port,
            edit_seconds=edit_seconds,
            faults=parse_faults(faults),
            seed=seed,
            api_key=api_key,
            slow_seconds=slow_seconds,
            link_ttl_seconds=link_ttl_seconds,
            imgix_rate_scale=imgix_rate_scale,
        )
    except ValueError as exc:
        fail(str(exc))

    def ready(running: RunningSandbox) -> None:
        sys.stdout.write(f"{running.base_url}\n")
        sys.stdout.flush()
        err.print(
            f"sandbox ready: IMAGEN_API_URL={running.api_url}  "
            f"ledger: {running.base_url}/_sandbox/ledger"
        )

    async def serve() -> None:
        main_task = asyncio.current_task()
        assert main_task is not None
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main_task.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await serve_forever(config, on_ready=ready)

    try:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(serve())
    except CannotListen as exc:
        fail(str(exc))
    err.print("sandbox stopped")


def demo(
    keep: Annotated[
        Path | None,
        typer.Option(
            help="Keep the demo shoot and database in this folder instead of a temporary one."
        ),
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """Run the whole flow against the built-in sandbox with sample photos (no API key)."""
    from orchestrator.service.demo import run_demo

    with reporter(json_output) as display:
        result, verified, produced = run_async(
            lambda: run_demo(display, keep=keep), display=display
        )
    report_batch(result, json_output)
    if not json_output:
        out.print(
            f"verified {verified} downloaded files against what the sandbox served "
            "(keyworded files by the checksum taken as they arrived)"
        )
        for line in produced.lines:
            out.print(markup_safe(line))
        if produced.contact_sheet is not None:
            out.print(f"contact sheet: {markup_safe(str(produced.contact_sheet))}")
        if keep is not None:
            out.print(
                "the review page: ORCH_DATABASE_URL="
                f"{markup_safe(produced.database_url)} orchestrator ui, then a job's Review"
            )
        if keep is None:
            out.print(
                "the demo folder was temporary and is gone; `orchestrator demo --keep "
                "./demo` keeps the shoot, its outputs and the database"
            )
    raise typer.Exit(result.exit_code)
