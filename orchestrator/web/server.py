"""`orchestrator ui`: the web page over the job database, without driving any job.

For jobs run with `orchestrator run` (a daemon serves the same page at `/` itself). The same
guard as the daemon's: loopback only unless told, a token beyond loopback, the Host checked.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from aiohttp import web

from orchestrator.config import Settings
from orchestrator.listening import WILDCARD_HOSTS, parse_listen, start_site
from orchestrator.service.database import open_store
from orchestrator.service.health import DatabaseHealth
from orchestrator.service.http import Access, Operations, RedactingAccessLogger, build_app
from orchestrator.service.logs import configure_logging
from orchestrator.service.metrics import Metrics
from orchestrator.service.signals import stop_on_signals
from orchestrator.web.pages import pages_for

DEFAULT_LISTEN = "127.0.0.1:8751"
"""Beside a daemon's 127.0.0.1:8750, and like it reachable from this machine only."""

log = logging.getLogger("orchestrator.ui")


async def serve_ui(settings: Settings, listen: str, *, on_ready: Callable[[str], None]) -> None:
    """Serve the page on `listen` until SIGTERM/SIGINT; `on_ready` gets the base URL."""
    configure_logging(settings.logs.level, settings.logs.library_level)
    host, port = parse_listen(listen)
    async with contextlib.AsyncExitStack() as stack:
        store = await open_store(settings)
        stack.push_async_callback(store.close)
        app = build_app(
            operations=Operations(store=store, health=DatabaseHealth(store), metrics=Metrics()),
            receiver=None,
            access=Access.for_daemon(settings, host, what="web page"),
            pages=pages_for(store, settings),
        )
        runner = web.AppRunner(
            app,
            access_log_class=RedactingAccessLogger,
            access_log=logging.getLogger("orchestrator.access"),
        )
        await runner.setup()
        stack.push_async_callback(runner.cleanup)
        await start_site(runner, host, port, flag="--listen HOST:PORT")
        base_url = f"http://{WILDCARD_HOSTS.get(host, host)}:{runner.addresses[0][1]}"
        log.info("web page ready", extra={"listen": base_url})
        on_ready(base_url)
        stop = asyncio.Event()
        with stop_on_signals(stop):
            await stop.wait()
        log.info("web page stopped")
