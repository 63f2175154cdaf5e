"""The sandbox on one port: Imagen under /v1, its storage, Imagga, imgix and the ledger.

Routes: `/v1/...` (Imagen), `/_storage/...` (presigned links), `/imagga/v2/...`,
`/imgix/api/v1/...`, and the control routes `GET /_sandbox/ledger` and `PUT /_sandbox/faults`
(no auth, never faulted).
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Middleware
from yarl import URL

from orchestrator.listening import start_site
from orchestrator.sandbox import (
    imagen_api,
    imagen_jobs_api,
    imagga,
    imagga_recognition,
    imgix,
    storage,
)
from orchestrator.sandbox.callbacks import CallbackDispatcher
from orchestrator.sandbox.config import SandboxConfig, check_faults
from orchestrator.sandbox.context import IMAGEN, ImagenContext
from orchestrator.sandbox.faults import FAULTS, FaultInjector, fault_middleware, faults_route
from orchestrator.sandbox.ledger import build_ledger, ledger_route
from orchestrator.sandbox.responses import error_middleware
from orchestrator.sandbox.signing import LinkSigner
from orchestrator.sandbox.state import ProjectStore

MAX_API_BODY = 16 * 1024 * 1024  # a links request for thousands of files; storage streams anyway
SHUTDOWN_SECONDS = 1.0
WILDCARD_HOSTS = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}


async def _lifecycle(app: web.Application) -> AsyncIterator[None]:
    context = app[IMAGEN]
    await context.callbacks.start()
    yield
    await context.tasks.close()
    await context.callbacks.close()


def build_app(config: SandboxConfig, data_dir: Path) -> web.Application:
    """The sandbox application, storing bodies under `data_dir`."""
    faults = FaultInjector(config.faults, seed=config.seed, slow_seconds=config.slow_seconds)
    app = web.Application(
        middlewares=[fault_middleware, error_middleware, imagen_api.imagen_middleware],
        client_max_size=MAX_API_BODY,
    )
    app[FAULTS] = faults
    app[IMAGEN] = ImagenContext(
        config=config,
        projects=ProjectStore(data_dir),
        signer=LinkSigner(config.link_ttl_seconds),
        # A reordered callback waits for the next one at most about as long as a whole run.
        callbacks=CallbackDispatcher(faults, hold_seconds=max(1.0, 2 * config.edit_seconds)),
    )
    app[imagga.IMAGGA] = imagga.ImaggaState()
    app[imgix.IMGIX] = imgix.ImgixState(rate_scale=config.imgix_rate_scale, api_key=config.api_key)
    imagen_api.add_routes(app.router)
    imagen_jobs_api.add_routes(app.router)
    storage.add_routes(app.router)
    imagga.add_routes(app.router)
    imagga_recognition.add_routes(app.router)
    imgix.add_routes(app.router)
    app.router.add_get("/_sandbox/ledger", ledger_route)
    app.router.add_put("/_sandbox/faults", faults_route)
    app.on_response_prepare.append(storage.before_send_hook)
    app.cleanup_ctx.append(_lifecycle)
    return app


async def _remove(folder: Path | None) -> None:
    if folder is not None:
        await asyncio.to_thread(shutil.rmtree, folder, True)


class RunningSandbox:
    """A started sandbox: where it listens, what it recorded, and how to stop it."""

    def __init__(
        self, runner: web.AppRunner, app: web.Application, base_url: str, temp_dir: Path | None
    ) -> None:
        self._runner = runner
        self._app = app
        self._temp_dir = temp_dir
        self._closed = False
        self.base_url = base_url
        self.api_url = base_url + "/v1"

    def ledger(self) -> dict[str, Any]:
        """The same JSON as `GET /_sandbox/ledger`."""
        return build_ledger(self._app)

    def set_faults(self, faults: Mapping[str, float]) -> None:
        """Switch faults while running, as `PUT /_sandbox/faults` does; ValueError if invalid."""
        self._app[FAULTS].set_probabilities(check_faults(faults))

    async def close(self) -> None:
        """Stop serving, cancel pending work, remove the temporary data folder; idempotent."""
        if self._closed:
            return
        self._closed = True
        await self._runner.cleanup()
        await _remove(self._temp_dir)


async def start_sandbox(
    config: SandboxConfig, *, observers: Sequence[Middleware] = ()
) -> RunningSandbox:
    """Start a sandbox on `config.host:config.port` (port 0: a free one) and return it.

    `observers` are extra middlewares, run after the sandbox's own (benchmarks time requests).
    """
    temp_dir = None
    data_dir = config.data_dir
    if data_dir is None:
        temp_dir = data_dir = Path(
            await asyncio.to_thread(tempfile.mkdtemp, prefix="imagen-sandbox-")
        )
    else:
        await asyncio.to_thread(data_dir.mkdir, parents=True, exist_ok=True)
    app = build_app(config, data_dir)
    app.middlewares.extend(observers)
    runner = web.AppRunner(app, shutdown_timeout=SHUTDOWN_SECONDS)
    await runner.setup()
    try:
        await start_site(runner, config.host, config.port, flag="--port")
    except BaseException:
        await runner.cleanup()
        await _remove(temp_dir)
        raise
    port = runner.addresses[0][1]
    host = WILDCARD_HOSTS.get(config.host, config.host)
    base_url = str(URL.build(scheme="http", host=host, port=port))
    return RunningSandbox(runner, app, base_url, temp_dir)


async def serve_forever(
    config: SandboxConfig, *, on_ready: Callable[[RunningSandbox], None]
) -> None:
    """Run a sandbox until cancelled, calling `on_ready` once it listens."""
    sandbox = await start_sandbox(config)
    try:
        on_ready(sandbox)
        await asyncio.Event().wait()
    finally:
        await sandbox.close()
