"""Hot folders: a subfolder dropped into a watched folder becomes a job once it stops changing.

A drop is judged by a fingerprint of its files (count, total size, newest mtime): when that has
not changed for the settle time, the copy is taken as finished. Unreadable or vanished folders
and drops that cannot become jobs are logged and skipped; a refused drop is recorded (the
`refusals` table, shown by `status` and /api/jobs) and looked at again only when its content
changes.

A submitted drop is a shoot, and stays watched: when its content changes and settles again it
is planned again, as `run --add` would plan it, so every photo that lands in it is accounted
for (it joins its job before the upload; after it, it is sent in a follow-up job of the same
shoot, with the drop's options, into the same review and delivery). A drop whose jobs were all
cancelled is never planned again. A restart plans once more a drop whose jobs are still live,
or that holds a file newer than its jobs' last change; it never resubmits an old drop as a new
shoot, nor revives a cancelled one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from orchestrator.config import HotFolder
from orchestrator.imagen.errors import ImagenError
from orchestrator.spec import JobSpec
from orchestrator.states import TERMINAL_STATES, JobState
from orchestrator.store.models import Job
from orchestrator.store.queries import LeaseHeld, Store
from orchestrator.store.scheduling import database_errors
from orchestrator.workflow.planning import Plan, PlanError, RunRequest
from orchestrator.workflow.shoot import ShootError

log = logging.getLogger("orchestrator.hotfolder")


Fingerprint = tuple[int, int, int]
"""Files, total bytes and newest mtime (ns) of a drop: equal twice means nothing moved."""

Submit = Callable[[RunRequest], Awaitable[Plan]]
"""Turns a drop into daemon jobs (`submit.submit_request` with the daemon's store and client)."""


def drop_spec(spec: JobSpec, drop: Path) -> JobSpec:
    """The spec of a drop's jobs: the hot folder's, with an output folder (`--output`) given
    one subfolder per drop, named like it, so that two drops' outputs never meet."""
    layout = spec.outputs
    if layout is None or layout.folder is None:
        return spec
    own = layout.model_copy(update={"folder": str(Path(layout.folder) / drop.name)})
    return spec.model_copy(update={"outputs": own})


@dataclass
class _Drop:
    """What the watcher knows of one subfolder."""

    fingerprint: Fingerprint
    stable_since: float
    refused: bool = False


def fingerprint(folder: Path) -> Fingerprint:
    """Count, size and newest mtime of every file under `folder` (hidden ones too)."""
    files = total = newest = 0
    for root, _dirs, names in os.walk(folder, onerror=_raise):
        for name in names:
            info = os.stat(os.path.join(root, name), follow_symlinks=False)
            files += 1
            total += info.st_size
            newest = max(newest, info.st_mtime_ns)
    return files, total, newest


def _raise(error: OSError) -> None:
    raise error


def _nothing_since(jobs: Sequence[Job], now_print: Fingerprint) -> bool:
    """Whether the drop's jobs all ended after its newest file was written: nothing came
    since (while the daemon was down, say) that a follow-up should send."""
    newest_file = now_print[2] / 1e9
    return all(job.state in TERMINAL_STATES for job in jobs) and all(
        job.updated_at.timestamp() >= newest_file for job in jobs
    )


def subfolders(folder: Path) -> list[Path]:
    """The visible direct subfolders of a watched folder."""
    with os.scandir(folder) as entries:
        return sorted(
            Path(e.path)
            for e in entries
            if e.is_dir(follow_symlinks=False) and not e.name.startswith(".")
        )


class HotFolders:
    """Watches the configured folders and submits settled drops."""

    def __init__(
        self,
        folders: list[HotFolder],
        *,
        store: Store,
        submit: Submit,
        settle_seconds: float,
        scan_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        # Drops are then named by absolute paths, as `jobs.source` records them.
        self._folders = [h.model_copy(update={"path": h.path.resolve()}) for h in folders]
        self._store = store
        self._submit = submit
        self._settle = settle_seconds
        self._scan_seconds = scan_seconds
        self._clock = clock
        self._drops: dict[Path, _Drop] = {}
        self._watched: dict[Path, Fingerprint] = {}
        """Submitted drops whose jobs may still take photos, each with its content when it
        was last planned."""
        self._done: set[Path] = set()
        """Drops whose jobs were all cancelled: never planned again."""
        self._ended: set[Path] = set()
        """Watched drops whose jobs all ended: the database is not asked again about them
        until their content changes."""
        self._unreadable: dict[Path, str] = {}

    async def run(self, stop: asyncio.Event) -> None:
        """Scan every `scan_seconds` until `stop` is set."""
        while not stop.is_set():
            await self.scan()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self._scan_seconds)

    async def scan(self) -> None:
        """Look once at every watched folder and submit the drops that have settled."""
        for hot in self._folders:
            try:
                found = await asyncio.to_thread(subfolders, hot.path)
            except OSError as exc:
                self._complain(hot.path, f"watched folder unreadable: {exc.strerror or exc}")
                continue
            self._unreadable.pop(hot.path, None)
            for folder in found:
                if folder in self._done:
                    continue
                try:
                    if folder in self._watched:
                        await self._follow(hot, folder)
                    else:
                        await self._consider(hot, folder)
                except Exception:
                    # A bug must not stop the watcher (nor the daemon): skip this drop for now.
                    log.exception("drop could not be handled", extra={"folder": str(folder)})
            for gone in [d for d in self._drops if d.parent == hot.path and d not in found]:
                if self._drops.pop(gone).refused:
                    await self._note_refusal(gone, None)  # a refused drop taken away
            for gone in [d for d in self._watched if d.parent == hot.path and d not in found]:
                del self._watched[gone]  # a submitted drop taken away: its jobs say the rest
                self._ended.discard(gone)

    async def _consider(self, hot: HotFolder, folder: Path) -> None:
        try:
            now_print = await asyncio.to_thread(fingerprint, folder)
        except OSError as exc:
            # Vanished or unreadable mid-copy: forget it; it is looked at anew if it comes back.
            self._drops.pop(folder, None)
            self._complain(folder, f"drop unreadable: {exc.strerror or exc}")
            return
        self._unreadable.pop(folder, None)
        if (drop := self._settled(folder, now_print)) is not None:
            await self._submit_drop(hot, folder, drop)

    def _settled(self, folder: Path, now_print: Fingerprint) -> _Drop | None:
        """The drop, once its content has stayed as it is for the settle time (else None)."""
        now = self._clock()
        drop = self._drops.get(folder)
        if drop is None or drop.fingerprint != now_print:
            self._drops[folder] = _Drop(now_print, now)
            return None
        if drop.refused or now - drop.stable_since < self._settle:
            return None
        return drop

    async def _follow(self, hot: HotFolder, folder: Path) -> None:
        """Look again at a submitted drop: plan it again (late photos: a follow-up job) once a
        change has settled; stop watching it once its jobs were all cancelled."""
        try:
            now_print = await asyncio.to_thread(fingerprint, folder)
        except OSError as exc:
            self._complain(folder, f"drop unreadable: {exc.strerror or exc}")
            return
        self._unreadable.pop(folder, None)
        if now_print == self._watched[folder]:
            self._drops.pop(folder, None)
            if folder in self._ended:
                return
            try:
                jobs = await self._store.jobs_for_source(str(folder))
            except database_errors():
                return
            if jobs and all(job.state == JobState.CANCELLED for job in jobs):
                del self._watched[folder]
                self._done.add(folder)
            elif all(job.state in TERMINAL_STATES for job in jobs):
                self._ended.add(folder)  # only a change of its content is news now
            return
        if (drop := self._settled(folder, now_print)) is not None:
            await self._submit_drop(hot, folder, drop, again=True)

    async def _submit_drop(
        self, hot: HotFolder, folder: Path, drop: _Drop, *, again: bool = False
    ) -> None:
        try:
            jobs = await self._store.jobs_for_source(str(folder))
            if jobs and all(job.state == JobState.CANCELLED for job in jobs):
                self._watched.pop(folder, None)
                self._done.add(folder)
                return
            if not again:
                if jobs and _nothing_since(jobs, drop.fingerprint):
                    self._watched[folder] = drop.fingerprint  # an old drop, as it was left
                    del self._drops[folder]
                    return
                again = bool(jobs)  # a restart: the drop's shoot hears of any change
            submitted = await self._submit(
                RunRequest(
                    source=folder,
                    profiles=hot.profiles,
                    spec=drop_spec(hot.spec(), folder),
                    prefix_subfolders=hot.prefix_subfolders,
                    add=again,
                )
            )
        except (PlanError, ShootError) as exc:
            drop.refused = True
            log.error(
                "drop refused; it is looked at again when its content changes",
                extra={"folder": str(folder), "reason": str(exc)},
            )
            await self._note_refusal(folder, str(exc))
            return
        except database_errors(ImagenError, LeaseHeld) as exc:  # of the moment: try later
            log.warning(
                "drop not submitted yet; trying again",
                extra={"folder": str(folder), "error": str(exc) or type(exc).__name__},
            )
            return
        self._watched[folder] = drop.fingerprint
        self._ended.discard(folder)
        del self._drops[folder]
        await self._note_refusal(folder, None)
        extra = {
            "folder": str(folder),
            "notes": submitted.notes,
            "jobs": [job.id for job in submitted.jobs],
        }
        if not again:
            log.info("drop submitted", extra=extra)
        elif submitted.notes:
            # Photos that came too late for their job, changed or vanished: said where the
            # operator looks, beside the job's own history.
            log.warning(
                "drop changed after it was submitted: " + "; ".join(submitted.notes), extra=extra
            )
        else:
            log.info("drop changed after it was submitted", extra=extra)

    async def _note_refusal(self, folder: Path, reason: str | None) -> None:
        """Record (or, with None, clear) a drop's refusal where `status` and /api/jobs show it."""
        try:
            if reason is None:
                await self._store.clear_refusal(str(folder))
            else:
                await self._store.record_refusal(str(folder), reason)
        except database_errors():
            log.warning("drop refusal not recorded: the database does not answer")

    def _complain(self, path: Path, message: str) -> None:
        """Log a folder problem once, not at every scan."""
        if self._unreadable.get(path) != message:
            self._unreadable[path] = message
            log.warning(message, extra={"folder": str(path)})
