"""The per-photo stage runner: a worker pool over a stage's photos, each holding a photo slot
until its checkpoint is committed, checkpoints group-committed, failures recorded per photo.

Upload, the downloads and every per-photo stage to come run on it; a stage only says what to do
with one photo and what to record when it is done.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Generic, TypeVar

from orchestrator.retry import RetriesExhausted
from orchestrator.store.queries import PhaseDone, PhaseFailed
from orchestrator.transfer.errors import TransferError, TransferFailed
from orchestrator.workflow.checkpoints import PhotoCheckpoints, photo_checkpoints
from orchestrator.workflow.context import JobContext
from orchestrator.workflow.pool import ItemFailed, run_pool

T = TypeVar("T")


class PhotoFailed(ItemFailed):
    """One photo's phase failed for good, for this reason; the stage goes on with the others."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason

    @classmethod
    def of_transfer(cls, exc: TransferError | RetriesExhausted) -> PhotoFailed:
        """A transfer's failure as its photo's: the reason alone, without the file's name,
        which the stage runner puts before every reason."""
        return cls(exc.reason if isinstance(exc, TransferFailed) else str(exc))


class PhotoRun(Generic[T]):
    """One stage's pass over its photos (`T`: what the stage knows of one photo's work)."""

    def __init__(
        self,
        ctx: JobContext,
        checkpoints: PhotoCheckpoints,
        *,
        phase: str,
        progress_stage: str,
        photo_id: Callable[[T], int],
        describe: Callable[[T], str],
    ) -> None:
        self._ctx = ctx
        self.checkpoints = checkpoints
        """The stage's group-committed checkpoints (for what it records besides phases)."""
        self.phase = phase
        self._progress_stage = progress_stage
        self._photo_id = photo_id
        self._describe = describe

    async def run(self, items: Sequence[T], work: Callable[[T], Awaitable[PhaseDone]]) -> list[str]:
        """Do `work` for every item, `workers` at once; why each failed photo failed.

        `work` returns what to record once its photo is done, or raises PhotoFailed; anything
        else (Imagen down, a full disk) stops the whole pass.
        """
        ctx = self._ctx

        async def one(item: T) -> None:
            # The slot is held until the checkpoint is committed: a crash finds at most
            # `workers` photos done but not recorded, the only ones repeated.
            async with ctx.photo_slots:
                try:
                    done = await work(item)
                except PhotoFailed as exc:
                    await self.failed(item, exc.reason)
                    raise PhotoFailed(f"{self._describe(item)}: {exc.reason}") from None
                await self.checkpoints.commit(self._photo_id(item), done)
                ctx.progress.advanced(ctx.label, self._progress_stage, files=1)

        return await run_pool(items, one, workers=ctx.config.workers)

    async def failed(self, item: T, reason: str) -> None:
        """Record that the item's photo failed this phase for good, in the photo and history."""
        what = f"{self.phase} of {self._describe(item)}"
        await self.checkpoints.commit(self._photo_id(item), PhaseFailed(self.phase, reason))
        await self._ctx.event("error", f"{what} failed: {reason}")
        self._ctx.note(f"{what} failed: {reason}", level="error")


@asynccontextmanager
async def photo_run(
    ctx: JobContext,
    *,
    phase: str,
    progress_stage: str,
    photo_id: Callable[[T], int],
    describe: Callable[[T], str],
) -> AsyncIterator[PhotoRun[T]]:
    """A pass over a stage's photos, its checkpoints open (and drained) around the block."""
    async with photo_checkpoints(ctx.store, ctx.lease) as checkpoints:
        yield PhotoRun(
            ctx,
            checkpoints,
            phase=phase,
            progress_stage=progress_stage,
            photo_id=photo_id,
            describe=describe,
        )
