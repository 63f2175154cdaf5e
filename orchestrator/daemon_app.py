"""`orchestrator daemon`: scheduler, callbacks, health, metrics, hot folders and the web page in
one process. It assembles the service and the page, so it sits above both.

Start as many as you like on one Postgres (one on SQLite). SIGTERM or Ctrl-C stops taking
work, stops the drives at their current checkpoint and gives their leases back, so another
daemon continues them at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import fcntl
import logging
from collections.abc import Callable, Iterator
from pathlib import Path

from aiohttp import web
from sqlalchemy.engine import make_url

from orchestrator.config import ConfigError, Settings
from orchestrator.listening import WILDCARD_HOSTS, parse_listen, start_site
from orchestrator.service.database import open_store
from orchestrator.service.health import DatabaseHealth
from orchestrator.service.hotfolder import HotFolders
from orchestrator.service.http import Access, Operations, RedactingAccessLogger, build_app
from orchestrator.service.logs import configure_logging
from orchestrator.service.maintenance import prune_daily
from orchestrator.service.metrics import Metrics, MetricsProgress
from orchestrator.service.notify import Notifier, NotifyingEngine
from orchestrator.service.receiver import Receiver
from orchestrator.service.scheduler import Scheduler, SchedulerSettings
from orchestrator.service.signals import stop_on_signals
from orchestrator.service.submit import submit_request
from orchestrator.service.wakeups import Wakeups
from orchestrator.service.wiring import connected, engine_config
from orchestrator.store.db import is_sqlite, normalize_url, open_private, sqlite_path
from orchestrator.store.inbox import inbox_store
from orchestrator.store.queries import process_owner
from orchestrator.web.pages import pages_for
from orchestrator.workflow.context import EngineConfig
from orchestrator.workflow.planning import Plan, RunRequest

log = logging.getLogger("orchestrator.daemon")

HTTP_SHUTDOWN_SECONDS = 2.0
"""How long open HTTP requests get to finish at shutdown."""


def daemon_engine_config(settings: Settings) -> EngineConfig:
    """The engine's pacing for the daemon: waiting in the database, callbacks when reachable."""
    return dataclasses.replace(
        engine_config(settings),
        wait_inline=False,
        callback_base=settings.daemon.public_url,
        pause_retry_seconds=settings.daemon.pause_retry_seconds,
    )


@contextlib.contextmanager
def single_sqlite_daemon(url: str) -> Iterator[None]:
    """Refuse a second daemon on one SQLite file: wake-ups do not cross processes there."""
    path = sqlite_path(url) if is_sqlite(url) else None
    if path is None:
        yield
        return
    with open_private(Path(f"{path}.daemon-lock")) as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConfigError(
                f"another daemon already runs on {path}; to run several, use "
                "Postgres (ORCH_DATABASE_URL=postgresql://…)"
            ) from None
        yield


async def serve(settings: Settings, *, on_ready: Callable[[str], None]) -> None:
    """Run the daemon until SIGTERM/SIGINT; `on_ready` gets the base URL once it listens."""
    configure_logging(settings.logs.level, settings.logs.library_level)
    daemon = settings.daemon
    host, port = parse_listen(daemon.listen)
    url = settings.resolved_database_url()
    try:
        normalize_url(url)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    async with contextlib.AsyncExitStack() as stack:
        stack.enter_context(single_sqlite_daemon(url))
        # On Postgres the schema is not touched: `db upgrade` is a deliberate step, and until
        # it is done /readyz stays red and no job is taken.
        store = await open_store(settings, require_current=False)
        stack.push_async_callback(store.close)
        callbacks_store = inbox_store(store)
        if callbacks_store is not store:
            stack.push_async_callback(callbacks_store.close)
        metrics = Metrics()
        wakeups = Wakeups()
        health = DatabaseHealth(store)
        services = await stack.enter_async_context(
            connected(
                settings, on_api_retry=metrics.api_retry, on_transfer_retry=metrics.transfer_retry
            )
        )
        client = services.imagen
        # Checked before listening: a URL Apprise cannot use stops the start (exit 2).
        notifier = Notifier(daemon.notify, daemon.hot_folders)
        stack.push_async_callback(notifier.drain)
        app = build_app(
            operations=Operations(store=store, health=health, metrics=metrics),
            receiver=Receiver(store=callbacks_store, wakeups=wakeups, metrics=metrics),
            access=Access.for_daemon(settings, host),
            pages=pages_for(store, settings),
        )
        runner = web.AppRunner(
            app,
            access_log_class=RedactingAccessLogger,
            access_log=logging.getLogger("orchestrator.access"),
            shutdown_timeout=HTTP_SHUTDOWN_SECONDS,
        )
        await runner.setup()
        stack.push_async_callback(runner.cleanup)
        await start_site(runner, host, port, flag="--listen HOST:PORT")
        base_url = f"http://{WILDCARD_HOSTS.get(host, host)}:{runner.addresses[0][1]}"
        notifier.page_url = daemon.public_url or base_url
        engine = NotifyingEngine(
            notifier=notifier,
            store=store,
            services=services,
            progress=MetricsProgress(metrics),
            config=daemon_engine_config(settings),
            owner=process_owner(),
        )

        async def submit(request: RunRequest) -> Plan:
            return await submit_request(
                store, client, dataclasses.replace(request, exiftool=settings.exiftool)
            )

        scheduler = Scheduler(
            store=store,
            engine=engine,
            wakeups=wakeups,
            metrics=metrics,
            health=health,
            settings=SchedulerSettings(
                max_jobs=daemon.max_jobs,
                lease_ttl=daemon.lease_ttl_seconds,
                idle_seconds=daemon.scheduler_idle_seconds,
                pause_retry_seconds=daemon.pause_retry_seconds,
                poll_budget=daemon.poll_budget,
            ),
        )
        hot_folders = HotFolders(
            daemon.hot_folders,
            store=store,
            submit=submit,
            settle_seconds=daemon.hot_folder_settle_seconds,
            scan_seconds=daemon.hot_folder_scan_seconds,
        )
        stop = asyncio.Event()
        log.info(
            "daemon ready",
            extra={
                "listen": base_url,
                "owner": engine.owner,
                "public_url": daemon.public_url,
                "database": make_url(url).render_as_string(hide_password=True),
                "hot_folders": [str(h.path) for h in daemon.hot_folders],
                "notify_targets": len(daemon.notify)
                + sum(len(h.notify) for h in daemon.hot_folders),
            },
        )
        if daemon.public_url is None:
            log.warning("no public URL: Imagen cannot call back, jobs rely on polling")
        on_ready(base_url)
        listener = None if is_sqlite(url) else asyncio.create_task(wakeups.listen(url))
        try:
            with stop_on_signals(stop):
                async with asyncio.TaskGroup() as group:
                    group.create_task(scheduler.run(stop))
                    if daemon.hot_folders:
                        group.create_task(hot_folders.run(stop))
                    if daemon.prune_after_days is not None:
                        group.create_task(prune_daily(store, daemon.prune_after_days, stop))
        finally:
            if listener is not None:
                listener.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await listener
        log.info("daemon stopped")
