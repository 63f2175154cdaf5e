"""The check before anything is sent: every setting the jobs need is there, and every service
they will use says yes to a cheap authenticated call (Imagen lists the profiles; each declared
service runs its `probe`: Imagga's key and quota, imgix's key and Source). Every problem is
gathered, so that one run names them all; planning adds the output folders' and refuses the
lot before a job is made (`planning.NotReady`)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence
from typing import Any

from orchestrator.config import Settings
from orchestrator.errors import OrchestratorError
from orchestrator.imagen.client import ImagenClient
from orchestrator.service.wiring import NO_IMAGEN_KEY, services_only
from orchestrator.spec import JobSpec
from orchestrator.workflow.context import Services
from orchestrator.workflow.journey import PIPELINE
from orchestrator.workflow.pipeline import Pipeline
from orchestrator.workflow.planning import NotReady, ReadyCheck
from orchestrator.workflow.stage import Demand, Service


def ready_check(
    settings: Settings, services: Services, pipeline: Pipeline = PIPELINE
) -> ReadyCheck:
    """The check planning runs once before it makes a job: what is missing, what is refused."""

    async def check(demands: Sequence[Demand]) -> list[str]:
        return await problems(settings, services, demands, pipeline, imagen=services.imagen)

    return check


async def problems(
    settings: Settings,
    services: Services,
    demands: Sequence[Demand],
    pipeline: Pipeline,
    *,
    imagen: ImagenClient | None,
) -> list[str]:
    """Why the jobs cannot be served, one line each: settings missing, then what each service
    (asked all at once) refuses. Nothing is asked when no job has anything left to do."""
    if not demands:
        return []
    found = pipeline.refusals([demand.spec for demand in demands], settings)
    asked: list[Awaitable[str | None]] = [_imagen(imagen)] if imagen is not None else []
    for service in pipeline.services():
        theirs = [d for d in demands if service in pipeline.services_of(d.spec)]
        client = services.find(service)
        if theirs and client is not None and service.probe is not None:
            asked.append(_probe(service, client, theirs))
    found += [answer for answer in await asyncio.gather(*asked) if answer]
    return found


async def refuse_without_imagen(
    settings: Settings, spec: JobSpec, pipeline: Pipeline = PIPELINE
) -> None:
    """NotReady naming the missing Imagen key with every other problem of the services the
    spec asks for, when Imagen has no key (planning cannot even start)."""
    if settings.imagen.key():
        return
    async with services_only(settings, pipeline) as services:
        found = await problems(settings, services, [Demand(spec, 0)], pipeline, imagen=None)
    raise NotReady([NO_IMAGEN_KEY, *found])


async def _imagen(client: ImagenClient) -> str | None:
    try:
        await client.list_profiles()
    except OrchestratorError as exc:
        return str(exc)
    return None


async def _probe(service: Service[Any, Any], client: object, demands: list[Demand]) -> str | None:
    assert service.probe is not None
    try:
        return await service.probe(client, demands)
    except OrchestratorError as exc:
        return str(exc)
