"""What every command does around its work: read the settings, run the coroutine, open the
database, check the services a job needs; each failure becomes a message and an exit code."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

import typer

from orchestrator.cli.errors import explain, fail
from orchestrator.cli.output import err
from orchestrator.spec import JobSpec

if TYPE_CHECKING:
    # The rest is imported where a command needs it: `--help` and `status` start without
    # the HTTP stack, the migrations or the engine (start-up time is felt on every command).
    from orchestrator.cli.reporting import Reporter
    from orchestrator.config import Settings
    from orchestrator.store.queries import Store

T = TypeVar("T")


def settings(**overrides: Any) -> Settings:
    """Settings from env and TOML, with the command line's values on top."""
    from orchestrator.config import ConfigProblem, load_settings

    try:
        return load_settings(overrides)
    except ConfigProblem as exc:
        fail("bad configuration", details=exc.problems)


def needs_services(*specs: JobSpec, cfg: Settings) -> None:
    """Refuse (exit 2) before anything is sent when a job asks for a service not configured."""
    from orchestrator.config import ConfigError
    from orchestrator.workflow.journey import PIPELINE

    try:
        PIPELINE.check_requirements(specs, cfg)
    except ConfigError as exc:
        fail(str(exc))


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


async def with_store(cfg: Settings, use: Callable[[Store], Awaitable[T]]) -> T:
    """Open the job database, use it, close it."""
    from orchestrator.service.database import open_store

    store = await open_store(cfg)
    try:
        return await use(store)
    finally:
        await store.close()
