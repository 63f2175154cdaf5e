"""The `orchestrator` command: argument parsing and output only; the work is in service/."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import signal
import sys
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from enum import StrEnum
from importlib.metadata import version as package_version
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import typer

from orchestrator.display import make_console, markup_safe, print_table
from orchestrator.errors import CredentialsRefused, OrchestratorError
from orchestrator.imagen.models import TOOLS, CropAspectRatio, HdrCompression, PhotographyType
from orchestrator.spec import JobSpec, SpecError
from orchestrator.states import JobState

if TYPE_CHECKING:
    # The rest is imported where a command needs it: `--help` and `status` start without
    # the HTTP stack, the migrations or the engine (start-up time is felt on every command).
    from orchestrator.config import Settings
    from orchestrator.reporting import Reporter
    from orchestrator.service.batch import BatchResult
    from orchestrator.store.queries import Store

T = TypeVar("T")

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

ENVIRONMENT_HELP = (
    "Settings: IMAGEN_API_KEY (your Imagen API key), IMAGEN_API_URL, ORCH_DATABASE_URL (the "
    "job database; default a SQLite file in ~/.local/share/orchestrator) and the other ORCH_* "
    "variables, or the same keys in the config file ($ORCH_CONFIG, default "
    "~/.config/orchestrator/config.toml). `orchestrator config` shows what is in effect."
)

app = typer.Typer(
    help="Take a shoot folder through Imagen's AI editing and back; resumes after any crash.",
    epilog=ENVIRONMENT_HELP,
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_enable=False,
    # Rich's boxes wrap usage errors at 80 columns in a log; plain lines stay greppable.
    rich_markup_mode="rich" if sys.stderr.isatty() else None,
)
db_app = typer.Typer(
    help="Database maintenance.",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(db_app, name="db")

out = make_console()
err = make_console(stderr=True)

JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
JobArgument = Annotated[str, typer.Argument(help="Job id (or its first characters).")]
FolderArgument = Annotated[Path, typer.Argument(help="The shoot folder (subfolders are included).")]
ProfileOption = Annotated[
    list[str],
    typer.Option(
        "--profile",
        "-p",
        help="Profile key or name (case-insensitive); give one per image type "
        "when the folder has both RAW and JPEG.",
    ),
]
ExportOption = Annotated[bool, typer.Option(help="Also export JPEGs into FOLDER/exported.")]
ReviewOption = Annotated[
    bool,
    typer.Option(
        help="Wait after keywording until the keywords are approved (the web page, "
        "`orchestrator approve`)."
    ),
]
DeliverOption = Annotated[
    bool,
    typer.Option(
        help="Deliver the exported JPEGs to imgix (IMGIX_API_KEY, IMGIX_SOURCE_ID, IMGIX_DOMAIN)."
    ),
]
DeliverPathOption = Annotated[
    str | None,
    typer.Option(
        help="Origin path template on imgix: {job_name}, {job_id}, {file_name}, {stem} "
        "(default {job_name}/{file_name})."
    ),
]
DeliverDescriptionOption = Annotated[
    str | None, typer.Option(help="Description given to each delivered asset in imgix.")
]
PhotographyTypeOption = Annotated[
    PhotographyType | None, typer.Option(case_sensitive=False, help="Genre hint for the AI.")
]


VERBOSITY = {"level": 0}
"""-q (-1) or -v (1, 2) given before the command; read when a command builds its reporter."""


def show_version(asked: bool) -> None:
    """--version: print the installed version and stop."""
    if asked:
        sys.stdout.write(f"orchestrator {package_version('orchestrator')}\n")
        raise typer.Exit()


@app.callback()
def main_options(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=show_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="Only warnings, errors and the results.")
    ] = False,
    verbose: Annotated[
        int,
        typer.Option(
            "--verbose",
            "-v",
            count=True,
            show_default=False,
            help="Log what happens (-v), with details (-vv).",
        ),
    ] = 0,
) -> None:
    """Options for every command."""
    VERBOSITY["level"] = -1 if quiet else verbose
    if verbose:
        logging.basicConfig(
            level=logging.DEBUG if verbose > 1 else logging.INFO,
            format="%(levelname)s %(name)s: %(message)s",
        )


def reporter(json_output: bool) -> Reporter:
    """The progress display for this command, as quiet as -q asks."""
    from orchestrator.reporting import make_reporter

    return make_reporter(json_mode=json_output, quiet=VERBOSITY["level"] < 0)


def known_tools(tools: list[str]) -> list[str]:
    """The --tool values, refused as a usage error unless each is a tool Imagen has."""
    unknown = [tool for tool in tools if tool not in TOOLS]
    if unknown:
        raise typer.BadParameter(f"unknown tool {unknown[0]!r}; allowed: {', '.join(TOOLS)}")
    return tools


ToolOption = Annotated[
    list[str],
    typer.Option(
        "--tool",
        callback=known_tools,
        help=f"AI tool to switch on (repeatable): {', '.join(TOOLS)}.",
    ),
]
CropOption = Annotated[CropAspectRatio | None, typer.Option(help="Aspect ratio for the crop tool.")]
SkyOption = Annotated[int | None, typer.Option(help="Sky template id for sky_replacement.")]
HdrOption = Annotated[HdrCompression | None, typer.Option(help="Compression of hdr_merge output.")]


TagOption = Annotated[
    bool,
    typer.Option(
        "--tag",
        help="Keywords from Imagga into the exported JPEGs (and edited files); RAW needs --export.",
    ),
]
TagLanguageOption = Annotated[
    list[str],
    typer.Option(
        "--tag-language", help="Keyword language(s), comma-separated or repeated (default en)."
    ),
]
TagThresholdOption = Annotated[
    float | None,
    typer.Option(min=0, max=100, help="Confidence (0-100) a tag needs to become a keyword (60)."),
]
TagMinOption = Annotated[
    int | None, typer.Option(min=0, max=200, help="Always at least this many keywords (3).")
]
TagMaxOption = Annotated[
    int | None, typer.Option(min=1, max=200, help="Never more than this many keywords (30).")
]
CategorizeOption = Annotated[
    str | None,
    typer.Option(help="Also categorize with this Imagga categorizer, e.g. personal_photos."),
]
ModerateOption = Annotated[
    bool, typer.Option("--moderate", help="Flag unsafe photos (Imagga nsfw_beta).")
]
TagLongSideOption = Annotated[
    int | None,
    typer.Option(min=128, max=4096, help="Long side in px of the copy sent to Imagga (1024)."),
]
TagAnywayOption = Annotated[
    bool,
    typer.Option("--tag-anyway", help="Tag what the month's Imagga quota allows when too small."),
]


def tag_options(
    tag: bool,
    languages: list[str],
    threshold: float | None,
    min_keywords: int | None,
    max_keywords: int | None,
    categorize: str | None,
    moderate: bool,
    long_side: int | None,
) -> dict[str, Any] | None:
    """The `tag` field of the spec from the --tag options; None without --tag."""
    given = {
        "languages": [code for item in languages for code in item.split(",")] or None,
        "threshold": threshold,
        "min_keywords": min_keywords,
        "max_keywords": max_keywords,
        "categorizer": categorize,
        "moderate": moderate or None,
        "long_side": long_side,
    }
    chosen = {key: value for key, value in given.items() if value is not None}
    if not tag:
        if chosen:
            fail(f"{TAG_FLAGS[next(iter(chosen))]} and the other tag options need --tag")
        return None
    return chosen


TAG_FLAGS = {
    "languages": "--tag-language",
    "threshold": "--tag-threshold",
    "min_keywords": "--tag-min",
    "max_keywords": "--tag-max",
    "categorizer": "--categorize",
    "moderate": "--moderate",
    "long_side": "--tag-long-side",
}
"""The command-line option of each field of the tag spec, for messages."""


class Sidecars(StrEnum):
    """Where RAW edits (.xmp sidecars) go."""

    edited = "edited"
    beside = "beside"


SidecarsOption = Annotated[
    Sidecars,
    typer.Option(
        case_sensitive=False,
        help="RAW sidecars (.xmp) under FOLDER/edited, or beside the RAWs where Lightroom "
        "reads them (an existing sidecar is kept as NAME.xmp.orig).",
    ),
]
PrefixOption = Annotated[
    bool,
    typer.Option(
        "--prefix-subfolders",
        help="Send photos of subfolders to Imagen as SUBFOLDER_NAME (two camera bodies' "
        "IMG_0001.CR2 in Card 1/ and Card 2/); the outputs keep the photos' own names.",
    ),
]
FlatOption = Annotated[
    bool,
    typer.Option(
        "--flat", help="All outputs side by side in edited/ and exported/, not in subfolders."
    ),
]


def job_spec(
    export: bool,
    photography_type: PhotographyType | None,
    tools: list[str],
    crop_aspect_ratio: CropAspectRatio | None,
    sky_template: int | None,
    hdr_compression: HdrCompression | None,
    *,
    tag: dict[str, Any] | None = None,
    review: bool = False,
    deliver: bool = False,
    deliver_path: str | None = None,
    deliver_description: str | None = None,
    sidecars: Sidecars = Sidecars.edited,
    flat: bool = False,
) -> JobSpec:
    """The job options given on the command line (`run`, `submit`, `daemon --watch`)."""
    delivery: dict[str, Any] | None = None
    if deliver:
        delivery = {"path": deliver_path} if deliver_path is not None else {}
        if deliver_description is not None:
            delivery["description"] = deliver_description
    elif deliver_path is not None or deliver_description is not None:
        fail("--deliver-path and --deliver-description go with --deliver")
    edit: dict[str, Any] = {"tools": sorted(set(tools))}
    for key, value in (
        ("photography_type", photography_type),
        ("crop_aspect_ratio", crop_aspect_ratio),
        ("sky_replacement_template_id", sky_template),
        ("hdr_output_compression", hdr_compression),
    ):
        if value is not None:
            edit[key] = value
    if review and tag is None:
        fail("--review holds the job for a person to review its keywords: add --tag")
    try:
        return JobSpec.build(
            edit=edit,
            export=export,
            tag=tag,
            review=review,
            deliver=delivery,
            outputs={"subfolders": not flat, "sidecars": sidecars.value},
        )
    except SpecError as exc:
        fail(str(exc))


def needs_services(*specs: JobSpec, cfg: Settings) -> None:
    """Refuse (exit 2) before anything is sent when a job asks for a service not configured."""
    from orchestrator.config import ConfigError
    from orchestrator.workflow.pipeline import PIPELINE

    try:
        PIPELINE.check_requirements(specs, cfg)
    except ConfigError as exc:
        fail(str(exc))


def fail(message: str, code: int = EXIT_USAGE, *, details: Sequence[str] = ()) -> NoReturn:
    """Print an error for the user (then each of `details` on a line of its own); exit `code`."""
    if len(details) == 1:
        message, details = f"{message}: {details[0]}", ()
    err.print(
        f"[bold red]error:[/] {markup_safe(message)}{':' if details else ''}",
        markup=True,
        highlight=False,
    )
    for line in details:
        err.print(f"  {markup_safe(line)}", markup=True, highlight=False)
    raise typer.Exit(code)


def settings(**overrides: Any) -> Settings:
    """Settings from env and TOML, with the command line's values on top."""
    from orchestrator.config import ConfigProblem, load_settings

    try:
        return load_settings(overrides)
    except ConfigProblem as exc:
        fail("bad configuration", details=exc.problems)


def run_async(make: Callable[[], Coroutine[Any, Any, T]], *, display: Reporter | None = None) -> T:
    """Run a coroutine; Ctrl-C/SIGTERM cancel it cleanly and exit 130; errors become messages.

    A live `display` is stopped as soon as the coroutine ends, so that the message printed
    after it (how to resume, what failed) is not drawn over by the bars.
    """

    from orchestrator.service.signals import EXIT_INTERRUPTED, graceful_interrupts

    async def guarded() -> T:
        task = asyncio.ensure_future(make())
        try:
            with graceful_interrupts(task):
                return await task
        finally:
            if display is not None:
                display.close()

    # What the imports made lives as long as the process: the collector need not go through it
    # again each time it looks at everything (~50 ms a look, twice before a resumed 10,000-photo
    # job sends its first byte). Once: a second run in the process may follow garbage of the first.
    if not gc.get_freeze_count():
        gc.freeze()
    try:
        return asyncio.run(guarded())
    except (asyncio.CancelledError, KeyboardInterrupt):
        err.print(
            "interrupted: every finished step is saved; run the same command again to resume."
        )
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except Exception as exc:
        explain(exc)


def explain(exc: Exception) -> NoReturn:
    """Exit with a message and the code that fits `exc`; re-raise what is not ours to explain."""
    from sqlalchemy.exc import DBAPIError

    from orchestrator.config import ConfigError, ConfigProblem
    from orchestrator.listening import CannotListen
    from orchestrator.service import review as review_actions
    from orchestrator.service.database import database_problem
    from orchestrator.store.queries import JobNotFound, LeaseHeld, StateConflict
    from orchestrator.workflow.planning import PlanError
    from orchestrator.workflow.shoot import ShootError

    if isinstance(exc, CredentialsRefused):
        fail(str(exc))
    if isinstance(exc, ConfigProblem):
        fail("bad configuration", details=exc.problems)
    usage = (
        ConfigError,
        CannotListen,
        PlanError,
        ShootError,
        JobNotFound,
        StateConflict,
        review_actions.ReviewRefused,
    )
    if isinstance(exc, usage):
        fail(str(exc))
    if isinstance(exc, LeaseHeld | OrchestratorError):
        fail(str(exc), EXIT_FAILED)
    if isinstance(exc, DBAPIError):
        fail(
            f"the job database failed: {database_problem(exc)}. Every finished step is "
            "saved; run the same command again once the database is back",
            EXIT_FAILED,
        )
    raise exc


async def with_store(cfg: Settings, use: Callable[[Store], Awaitable[T]]) -> T:
    """Open the job database, use it, close it."""
    from orchestrator.service.database import open_store

    store = await open_store(cfg)
    try:
        return await use(store)
    finally:
        await store.close()


def print_json(value: Any) -> None:
    """Write JSON to stdout (results go to stdout, progress to stderr)."""
    sys.stdout.write(json.dumps(value, indent=2, default=str) + "\n")


@app.command()
def run(
    folder: FolderArgument,
    profile: ProfileOption = [],  # noqa: B006
    export: ExportOption = False,
    photography_type: PhotographyTypeOption = None,
    tool: ToolOption = [],  # noqa: B006
    crop_aspect_ratio: CropOption = None,
    sky_template: SkyOption = None,
    hdr_compression: HdrOption = None,
    tag: TagOption = False,
    tag_language: TagLanguageOption = [],  # noqa: B006
    tag_threshold: TagThresholdOption = None,
    tag_min: TagMinOption = None,
    tag_max: TagMaxOption = None,
    categorize: CategorizeOption = None,
    moderate: ModerateOption = False,
    tag_long_side: TagLongSideOption = None,
    tag_anyway: TagAnywayOption = False,
    review: ReviewOption = False,
    deliver: DeliverOption = False,
    deliver_path: DeliverPathOption = None,
    deliver_description: DeliverDescriptionOption = None,
    concurrency: Annotated[
        int | None, typer.Option(help="Transfers in flight at once (default 8).", min=1, max=256)
    ] = None,
    bwlimit: Annotated[str | None, typer.Option(help="Bandwidth cap in bytes/s, e.g. 20M.")] = None,
    sidecars: SidecarsOption = Sidecars.edited,
    flat: FlatOption = False,
    prefix_subfolders: PrefixOption = False,
    again: Annotated[
        bool,
        typer.Option(
            "--again",
            help="Edit a folder whose jobs finished once more, with the options given now "
            "(a new job and Imagen project; its outputs replace the earlier ones).",
        ),
    ] = False,
    json_output: JsonOption = False,
) -> None:
    """Edit (and export) a shoot folder; run it again to resume after any interruption."""
    from orchestrator.service.batch import run_batch
    from orchestrator.workflow.planning import RunRequest

    cfg = settings(concurrency=concurrency, bwlimit=bwlimit, tag_anyway=tag_anyway or None)
    spec = job_spec(
        export,
        photography_type,
        tool,
        crop_aspect_ratio,
        sky_template,
        hdr_compression,
        tag=tag_options(
            tag,
            tag_language,
            tag_threshold,
            tag_min,
            tag_max,
            categorize,
            moderate,
            tag_long_side,
        ),
        review=review,
        deliver=deliver,
        deliver_path=deliver_path,
        deliver_description=deliver_description,
        sidecars=sidecars,
        flat=flat,
    )
    request = RunRequest(
        source=folder,
        profiles=profile,
        spec=spec,
        again=again,
        prefix_subfolders=prefix_subfolders,
        # Anything asked beyond the defaults is news to a job that exists: the planner says
        # which of it that job will not apply.
        options_given=bool(profile)
        or spec.to_stored() != job_spec(False, None, [], None, None, None).to_stored(),
    )
    needs_services(request.spec, cfg=cfg)
    with reporter(json_output) as display:
        result = run_async(lambda: run_batch(request, cfg, display), display=display)
    report_batch(result, json_output)
    raise typer.Exit(result.exit_code)


def report_batch(result: BatchResult, json_output: bool) -> None:
    """Print how each job ended, where its outputs are, and every failed photo."""
    from orchestrator.service import jobs as job_views

    if json_output:
        print_json([view.model_dump(mode="json") for view in result.views])
        return
    for outcome in result.outcomes:
        job = outcome.job
        colour = {"completed": "green", "failed": "red"}.get(job.state, "yellow")
        out.print(f"[bold]{markup_safe(job.name)}[/] [{colour}]{job.state}[/] (job {job.id[:8]})")
        if job.state == "completed":
            out.print(f"  edits:   {markup_safe(job.edited_dir)}")
            if JobSpec.from_stored(job.options).export:
                out.print(f"  exports: {markup_safe(job.exported_dir)}")
        if job.state == JobState.REVIEWING:
            out.print(
                f"  waiting for review: open the web page (`orchestrator ui`) or run "
                f"`orchestrator approve {job.id[:8]}`, then run the same command again"
            )
        if outcome.paused:
            out.print(f"  stopped: {markup_safe(outcome.paused)}")
            out.print("  run the same command again to continue")
        elif job.last_error and job.state == "failed":
            out.print(f"  error: {markup_safe(job.last_error)}")
            out.print(f"  after fixing it: orchestrator retry {job.id[:8]}")
        for photo in result.failed_photos.get(job.id, []):
            out.print(
                f"  [red]failed[/] {markup_safe(photo.rel_path)} "
                f"({job_views.phase_label(photo.phase)}): "
                f"{markup_safe(photo.reason)}"
            )


@app.command()
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
        result, verified = run_async(lambda: run_demo(display, keep=keep), display=display)
    report_batch(result, json_output)
    if not json_output:
        out.print(f"verified {verified} downloaded files byte for byte against the sandbox")
        if keep is None:
            out.print(
                "the demo folder was temporary and is gone; `orchestrator demo --keep "
                "./demo` keeps the shoot, its outputs and the database"
            )
    raise typer.Exit(result.exit_code)


@app.command()
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


@app.command()
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


@app.command()
def status(
    job: Annotated[
        str | None, typer.Argument(help="Only this job (its id or first characters).")
    ] = None,
    state: Annotated[
        JobState | None, typer.Option(case_sensitive=False, help="Only jobs in this state.")
    ] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="At most this many (newest).")] = None,
    json_output: JsonOption = False,
) -> None:
    """List the jobs in the database, where each stands and how far each phase got."""
    from orchestrator.service import jobs as job_views

    cfg = settings()
    found = run_async(
        lambda: with_store(cfg, lambda s: job_views.status(s, state=state, limit=limit, ref=job))
    )
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
                view["state"],
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


@app.command()
def history(job: JobArgument, json_output: JsonOption = False) -> None:
    """Show every transition, retry, resume and error of a job."""
    from orchestrator.service import jobs as job_views

    cfg = settings()
    found, events = run_async(lambda: with_store(cfg, lambda s: job_views.history_view(s, job)))
    if json_output:
        print_json({"job": found.model_dump(mode="json"), "events": events})
        return
    out.print(f"[bold]{markup_safe(found.name)}[/] (job {found.id}) is {found.state}")
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


@app.command()
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


@app.command()
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


@app.command()
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
    """Approve a job waiting for review (or some of its photos), so it goes on to delivery."""
    from orchestrator.service import review as review_actions

    cfg = settings()
    done = run_async(lambda: with_store(cfg, lambda s: review_actions.approve(s, job, photo)))
    if json_output:
        print_json(
            {
                "job": done.job.id,
                "approved": done.approved,
                "held_back": done.held_back,
                "remaining": done.remaining,
                "complete": done.complete,
            }
        )
        return
    out.print(f"{markup_safe(done.job.name)}: {len(done.approved)} photos approved")
    for name in done.held_back:
        out.print(f"  held back (flagged by moderation): {markup_safe(name)}")
    if done.held_back:
        out.print(f"  to deliver one anyway: orchestrator approve {done.job.id[:8]} PHOTO")
    if not done.complete:
        out.print(f"  {len(done.remaining)} photos still to decide")
    elif done.job.queued_for_daemon:
        out.print("  review done: the daemon takes the job on")
    else:
        out.print("  review done: run the same command again to continue")


@app.command()
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


@app.command()
def submit(
    folder: FolderArgument,
    profile: ProfileOption = [],  # noqa: B006
    export: ExportOption = False,
    photography_type: PhotographyTypeOption = None,
    tool: ToolOption = [],  # noqa: B006
    crop_aspect_ratio: CropOption = None,
    sky_template: SkyOption = None,
    hdr_compression: HdrOption = None,
    tag: TagOption = False,
    tag_language: TagLanguageOption = [],  # noqa: B006
    tag_threshold: TagThresholdOption = None,
    tag_min: TagMinOption = None,
    tag_max: TagMaxOption = None,
    categorize: CategorizeOption = None,
    moderate: ModerateOption = False,
    tag_long_side: TagLongSideOption = None,
    review: ReviewOption = False,
    deliver: DeliverOption = False,
    deliver_path: DeliverPathOption = None,
    deliver_description: DeliverDescriptionOption = None,
    sidecars: SidecarsOption = Sidecars.edited,
    flat: FlatOption = False,
    prefix_subfolders: PrefixOption = False,
    json_output: JsonOption = False,
) -> None:
    """Queue a shoot folder for the daemons (`orchestrator daemon`); prints the job ids."""
    from orchestrator.service.submit import submit_folder
    from orchestrator.workflow.planning import RunRequest

    cfg = settings()
    request = RunRequest(
        source=folder,
        profiles=profile,
        spec=job_spec(
            export,
            photography_type,
            tool,
            crop_aspect_ratio,
            sky_template,
            hdr_compression,
            tag=tag_options(
                tag,
                tag_language,
                tag_threshold,
                tag_min,
                tag_max,
                categorize,
                moderate,
                tag_long_side,
            ),
            review=review,
            deliver=deliver,
            deliver_path=deliver_path,
            deliver_description=deliver_description,
            sidecars=sidecars,
            flat=flat,
        ),
        prefix_subfolders=prefix_subfolders,
    )
    needs_services(request.spec, cfg=cfg)
    submitted = run_async(lambda: submit_folder(request, cfg))
    for note in submitted.notes:
        err.print(f"{markup_safe(folder.name)}: {markup_safe(note)}")
    if json_output:
        print_json([job.id for job in submitted.jobs])
        return
    for job in submitted.jobs:
        out.print(f"{job.id}  {markup_safe(job.name)}  {job.state}")


@app.command()
def daemon(
    listen: Annotated[
        str | None,
        typer.Option(
            help="HOST:PORT for callbacks, /healthz, /readyz, /metrics and /api/jobs "
            "(default 127.0.0.1:8750)."
        ),
    ] = None,
    public_url: Annotated[
        str | None,
        typer.Option(
            help="URL under which Imagen reaches --listen (or the balancer in front of several "
            "daemons); without it jobs are only polled."
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
    export: ExportOption = False,
    photography_type: PhotographyTypeOption = None,
    tool: ToolOption = [],  # noqa: B006
    crop_aspect_ratio: CropOption = None,
    sky_template: SkyOption = None,
    hdr_compression: HdrOption = None,
    tag: TagOption = False,
    tag_language: TagLanguageOption = [],  # noqa: B006
    tag_threshold: TagThresholdOption = None,
    tag_min: TagMinOption = None,
    tag_max: TagMaxOption = None,
    categorize: CategorizeOption = None,
    moderate: ModerateOption = False,
    tag_long_side: TagLongSideOption = None,
    tag_anyway: TagAnywayOption = False,
    review: ReviewOption = False,
    deliver: DeliverOption = False,
    deliver_path: DeliverPathOption = None,
    deliver_description: DeliverDescriptionOption = None,
    sidecars: SidecarsOption = Sidecars.edited,
    flat: FlatOption = False,
    prefix_subfolders: PrefixOption = False,
    max_jobs: Annotated[
        int | None,
        typer.Option(
            help="Jobs this daemon drives at once (default 4); waiting jobs do not count.", min=1
        ),
    ] = None,
    lease_ttl: Annotated[
        float | None,
        typer.Option(
            help="Seconds before a silent daemon's jobs go to another (default 60).", min=1.0
        ),
    ] = None,
    settle: Annotated[
        float | None,
        typer.Option(help="Seconds a dropped folder must stay unchanged (default 30).", min=0.0),
    ] = None,
    concurrency: Annotated[
        int | None,
        typer.Option(
            help="Transfers in flight at once, over all jobs (default 8).", min=1, max=256
        ),
    ] = None,
    bwlimit: Annotated[
        str | None, typer.Option(help="Bandwidth cap in bytes/s over all jobs, e.g. 20M.")
    ] = None,
) -> None:
    """Run queued jobs and hot-folder drops, receive Imagen's callbacks, until SIGTERM."""
    from orchestrator.config import HotFolder
    from orchestrator.service.daemon import serve

    if watch and not profile:
        fail("--watch needs --profile: the profile its drops are edited with")
    spec = job_spec(
        export,
        photography_type,
        tool,
        crop_aspect_ratio,
        sky_template,
        hdr_compression,
        tag=tag_options(
            tag,
            tag_language,
            tag_threshold,
            tag_min,
            tag_max,
            categorize,
            moderate,
            tag_long_side,
        ),
        review=review,
        deliver=deliver,
        deliver_path=deliver_path,
        deliver_description=deliver_description,
        sidecars=sidecars,
        flat=flat,
    )
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
    cfg = cfg.model_copy(
        update={
            "hot_folders": [
                *cfg.daemon.hot_folders,
                *(
                    HotFolder(
                        path=path,
                        profiles=profile,
                        prefix_subfolders=prefix_subfolders,
                        **spec.model_dump(),
                    )
                    for path in watch
                ),
            ]
        }
    )

    needs_services(*(folder.spec() for folder in cfg.daemon.hot_folders), cfg=cfg)

    def ready(base_url: str) -> None:
        sys.stdout.write(f"{base_url}\n")
        sys.stdout.flush()

    run_async(lambda: serve(cfg, on_ready=ready))


@app.command()
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
    json_output: JsonOption = False,
    csv_output: Annotated[bool, typer.Option("--csv", help="Print CSV.")] = False,
) -> None:
    """Show each photo's keywords and Imagga's suggestions; review them (--add, --remove)."""
    from orchestrator.integrations.keywords import KeywordFiles
    from orchestrator.integrations.tagging import KeywordRules
    from orchestrator.service import keywords as keyword_views

    cfg = settings()
    files = KeywordFiles(cfg.tagging.exiftool)
    if (add or remove) and reselect:
        fail("--add/--remove and --reselect do not go together")
    if (add or remove) and photo is None:
        fail("--add and --remove need the PHOTO they change")
    if reselect and threshold is None:
        fail("--reselect needs --threshold N (0-100)")
    if threshold is not None and not reselect:
        fail("--threshold goes with --reselect")

    async def work(store: Store) -> list[dict[str, Any]]:
        if add or remove:
            assert photo is not None
            return [await keyword_views.review(store, files, job, photo, add=add, remove=remove)]
        if reselect:
            assert threshold is not None
            rules = KeywordRules.of(
                cfg.tagging.allowlist, cfg.tagging.blocklist, cfg.tagging.moderation_threshold
            )
            return await keyword_views.reselect(
                store, files, rules, job, photo, threshold=threshold
            )
        return (await keyword_views.keyword_views(store, job, photo))[1]

    try:
        found = run_async(lambda: with_store(cfg, work))
    finally:
        files.close()
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


@app.command()
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


@app.command()
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


@app.command()
def deliver(job: JobArgument, json_output: JsonOption = False) -> None:
    """Deliver again the photos of a completed job whose file or keywords changed (and the
    flagged ones approved since); unchanged photos are skipped."""
    from orchestrator.reporting import make_reporter
    from orchestrator.service.deliveries import redeliver

    cfg = settings()
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


@app.command()
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


@app.command("config")
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


@db_app.command("upgrade")
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


def main() -> None:
    """Entry point of the `orchestrator` command."""
    app()
