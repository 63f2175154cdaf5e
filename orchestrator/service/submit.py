"""`orchestrator submit` and hot-folder drops: a shoot folder becomes jobs for the daemons."""

from __future__ import annotations

from orchestrator.config import Settings
from orchestrator.imagen.client import ImagenClient
from orchestrator.service.database import open_store
from orchestrator.service.preflight import ready_check, refuse_without_imagen
from orchestrator.service.wiring import connected
from orchestrator.store.queries import Store
from orchestrator.store.scheduling import planning_lock, queue_for_daemon
from orchestrator.workflow.planning import Plan, ReadyCheck, RunRequest, plan_jobs


async def submit_request(
    store: Store, client: ImagenClient, request: RunRequest, *, ready: ReadyCheck | None = None
) -> Plan:
    """Plan the folder's jobs exactly as `run` does, then hand them to the daemons (the plan
    with the jobs as they are now, the daemons').

    A folder submitted again gets its existing jobs back (and any photos added before the
    upload), never twins. The output folders are always checked first; `ready` checks the
    services too (`submit` does; a hot-folder drop leaves that to the jobs, which pause with
    the reason when a service refuses them).
    """
    async with planning_lock(store, str(request.source.resolve())):
        plan = await plan_jobs(store, client, request, ready=ready)
        await queue_for_daemon(store, [job.id for job in plan.jobs])
    return Plan([await store.get_job(job.id) for job in plan.jobs], plan.notes)


async def submit_folder(request: RunRequest, settings: Settings) -> Plan:
    """`orchestrator submit`: open the database and Imagen (to resolve the profile), submit."""
    await refuse_without_imagen(settings, request.spec)
    store = await open_store(settings)
    try:
        async with connected(settings) as services:
            return await submit_request(
                store, services.imagen, request, ready=ready_check(settings, services)
            )
    finally:
        await store.close()
