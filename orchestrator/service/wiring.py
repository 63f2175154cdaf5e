"""The wiring every command shares: settings to engine pacing and transfer limits, and the
process's one HTTP session with Imagen, the transfers and the services the stages declare over
it. Built once here for `run`, `retry`, `demo`, `submit`, `profiles` and the daemon."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import aiohttp

from orchestrator.config import ConfigError, ImagenSettings, Settings, TransferLimits
from orchestrator.imagen.client import ImagenClient
from orchestrator.progress import ProgressSink
from orchestrator.store.queries import Store, process_owner
from orchestrator.transfer.attempts import RetryReporter
from orchestrator.transfer.manager import (
    TRANSFER_RETRY,
    Transfers,
    TransferSettings,
    make_session,
)
from orchestrator.workflow.context import EngineConfig, Services
from orchestrator.workflow.engine import Engine
from orchestrator.workflow.journey import PIPELINE
from orchestrator.workflow.pipeline import Pipeline
from orchestrator.workflow.services import IMGIX
from orchestrator.workflow.stage import Connection, Service


def engine_config(settings: Settings) -> EngineConfig:
    """The engine's pacing from the user's settings."""
    imagen = settings.imagen
    return EngineConfig(
        poll_initial=imagen.poll_initial_seconds,
        poll_max=imagen.poll_max_seconds,
        wait_deadline=imagen.wait_deadline_hours * 3600,
        link_batch_size=imagen.link_batch_size,
        workers=settings.transfers.concurrency,
        lease_ttl=settings.daemon.lease_ttl_seconds,
    )


def transfer_settings(limits: TransferLimits) -> TransferSettings:
    """The transfers' settings from the user's limits."""
    return TransferSettings(
        concurrency=limits.concurrency,
        bwlimit=limits.bwlimit,
        retry=dataclasses.replace(TRANSFER_RETRY, maximum_attempts=limits.photo_attempts),
    )


NO_IMAGEN_KEY = "no API key: set IMAGEN_API_KEY (or try `orchestrator demo`, which needs none)"


def imagen_client(
    imagen: ImagenSettings, session: aiohttp.ClientSession, on_retry: RetryReporter | None
) -> ImagenClient:
    """The Imagen client over the session; ConfigError without an API key."""
    key = imagen.key()
    if not key:
        raise ConfigError(NO_IMAGEN_KEY)
    return ImagenClient(session, base_url=imagen.api_url, api_key=key, on_retry=on_retry)


@asynccontextmanager
async def connected(
    settings: Settings,
    *,
    pipeline: Pipeline = PIPELINE,
    on_api_retry: RetryReporter | None = None,
    on_transfer_retry: RetryReporter | None = None,
) -> AsyncIterator[Services]:
    """The process's one HTTP session, with Imagen, the transfers and every service the
    pipeline's stages declare that the settings configure, over it; all closed afterwards."""
    tsettings = transfer_settings(settings.transfers)
    async with AsyncExitStack() as closing:
        session = make_session(tsettings)
        closing.push_async_callback(session.close)
        imagen = imagen_client(settings.imagen, session, on_api_retry)
        connection = Connection(session, on_api_retry, closing)
        yield Services(
            imagen=imagen,
            transfers=Transfers(session, tsettings, on_retry=on_transfer_retry),
            built=_configured(settings, pipeline, connection),
        )


def _configured(
    settings: Settings, pipeline: Pipeline, connection: Connection
) -> dict[Service[Any, Any], object]:
    """Every service the pipeline's stages declare that the settings configure, built."""
    return {
        service: service.build(service.settings(settings), connection)
        for service in pipeline.services()
        if service.refusal(settings) is None
    }


@asynccontextmanager
async def services_only(
    settings: Settings, pipeline: Pipeline = PIPELINE
) -> AsyncIterator[Services]:
    """The configured services the stages declare, without Imagen or the transfers, over a
    session of their own: what the check before sending asks when Imagen has no key."""
    async with AsyncExitStack() as closing:
        session = make_session(transfer_settings(settings.transfers))
        closing.push_async_callback(session.close)
        yield Services(built=_configured(settings, pipeline, Connection(session, None, closing)))


@asynccontextmanager
async def delivery_only(settings: Settings) -> AsyncIterator[Services]:
    """Only the imgix Source's client, over a session of its own: what `deliver` and `purge`
    use on a finished job, so they need imgix's settings and nothing else."""
    async with AsyncExitStack() as closing:
        session = make_session(transfer_settings(settings.transfers))
        closing.push_async_callback(session.close)
        connection = Connection(session, None, closing)
        yield Services(built={IMGIX: IMGIX.build(settings.imgix, connection)})


def make_engine(
    store: Store,
    services: Services,
    progress: ProgressSink,
    config: EngineConfig,
    pipeline: Pipeline = PIPELINE,
) -> Engine:
    """An engine over the store and services, driving under this process's lease name."""
    return Engine(
        store=store,
        services=services,
        progress=progress,
        config=config,
        owner=process_owner(),
        pipeline=pipeline,
    )
