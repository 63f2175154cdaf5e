"""The wiring every command shares: settings to engine pacing and transfer limits, the job
database, and the process's one HTTP session with the services over it. Built once here for
`run`, `retry`, `demo`, `submit`, `profiles` and the daemon."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager

import aiohttp

from orchestrator.config import ConfigError, Settings
from orchestrator.imagen.client import ImagenClient
from orchestrator.integrations.delivery_files import Urls
from orchestrator.integrations.imagga import ImaggaClient
from orchestrator.integrations.imgix import ImgixClient
from orchestrator.integrations.keywords import KeywordFiles
from orchestrator.integrations.tagging import Tagging
from orchestrator.progress import ProgressSink
from orchestrator.rules.keywords import KeywordRules
from orchestrator.spec import JobSpec
from orchestrator.store.queries import Store, process_owner
from orchestrator.transfer.attempts import RetryReporter
from orchestrator.transfer.limits import parse_rate
from orchestrator.transfer.manager import (
    TRANSFER_RETRY,
    Transfers,
    TransferSettings,
    make_session,
)
from orchestrator.workflow.context import Delivery, EngineConfig, Services
from orchestrator.workflow.engine import Engine
from orchestrator.workflow.pipeline import PIPELINE, Pipeline


def engine_config(settings: Settings) -> EngineConfig:
    """The engine's pacing from the user's settings."""
    return EngineConfig(
        poll_initial=settings.poll_initial_seconds,
        poll_max=settings.poll_max_seconds,
        wait_deadline=settings.wait_deadline_hours * 3600,
        link_batch_size=settings.link_batch_size,
        workers=settings.concurrency,
        lease_ttl=settings.lease_ttl_seconds,
    )


def transfer_settings(settings: Settings) -> TransferSettings:
    """The transfers' limits from the user's settings."""
    try:
        rate = parse_rate(settings.bwlimit) if settings.bwlimit else None
    except ValueError as exc:
        raise ConfigError(f"--bwlimit: {exc}") from exc
    return TransferSettings(
        concurrency=settings.concurrency,
        bwlimit=rate,
        retry=dataclasses.replace(TRANSFER_RETRY, maximum_attempts=settings.photo_attempts),
    )


@asynccontextmanager
async def connected(
    settings: Settings,
    *,
    on_api_retry: RetryReporter | None = None,
    on_transfer_retry: RetryReporter | None = None,
) -> AsyncIterator[Services]:
    """The process's one HTTP session, with every service client and the transfers over it."""
    key = settings.api_key()
    if not key:
        raise ConfigError(
            "no API key: set IMAGEN_API_KEY (or try `orchestrator demo`, which needs none)"
        )
    tsettings = transfer_settings(settings)
    session = make_session(tsettings)
    tagging = make_tagging(settings, session, on_api_retry)
    try:
        yield Services(
            imagen=ImagenClient(
                session, base_url=settings.imagen_api_url, api_key=key, on_retry=on_api_retry
            ),
            transfers=Transfers(session, tsettings, on_retry=on_transfer_retry),
            tagging=tagging,
            delivery=delivery(settings, session, on_retry=on_api_retry),
        )
    finally:
        if tagging is not None:
            tagging.files.close()
        await session.close()


@asynccontextmanager
async def delivery_only(settings: Settings) -> AsyncIterator[Services]:
    """Only the imgix Source's client, over a session of its own: what `deliver` and `purge`
    use on a finished job, so they need imgix's settings and nothing else."""
    session = make_session(transfer_settings(settings))
    try:
        yield Services(delivery=delivery(settings, session))
    finally:
        await session.close()


def make_tagging(
    settings: Settings, session: aiohttp.ClientSession, on_retry: RetryReporter | None = None
) -> Tagging | None:
    """Imagga and the keyword writer, when Imagga's key and secret are both configured."""
    credentials = settings.imagga_credentials()
    if credentials is None:
        return None
    key, secret = credentials
    return Tagging(
        imagga=ImaggaClient(
            session,
            base_url=settings.imagga_api_url,
            api_key=key,
            api_secret=secret,
            concurrency=settings.imagga_concurrency,
            on_retry=on_retry,
        ),
        files=KeywordFiles(settings.exiftool),
        rules=KeywordRules.of(
            settings.keyword_allowlist, settings.keyword_blocklist, settings.moderation_threshold
        ),
        anyway=settings.tag_anyway,
    )


def delivery(
    settings: Settings, session: aiohttp.ClientSession, *, on_retry: RetryReporter | None = None
) -> Delivery | None:
    """The imgix Source's client and URLs over the session, if IMGIX_* are all set.

    One per process: its rate limit buckets are shared by every job the process drives.
    """
    if settings.imgix_missing():
        return None
    assert settings.imgix_api_key and settings.imgix_source_id and settings.imgix_domain
    token = settings.imgix_secure_url_token
    return Delivery(
        imgix=ImgixClient(
            session,
            api_key=settings.imgix_api_key.get_secret_value().strip(),
            source_id=settings.imgix_source_id,
            base_url=settings.imgix_api_url,
            rate_scale=settings.imgix_rate_scale,
            on_retry=on_retry,
        ),
        urls=Urls(settings.imgix_domain, token.get_secret_value() if token else None),
    )


def require_settings(specs: Iterable[JobSpec], settings: Settings) -> None:
    """ConfigError naming what is missing when a job asks for a service not configured,
    before anything is sent."""
    if any(spec.deliver is not None for spec in specs) and (missing := settings.imgix_missing()):
        raise ConfigError(
            f"--deliver needs {', '.join(missing)} (the imgix API key, Source id and delivery "
            "domain): set them, or leave out --deliver"
        )


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
