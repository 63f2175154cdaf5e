"""Telling the studio when a daemon job needs a person or has ended, through Apprise.

Apprise speaks to Slack, e-mail, Telegram, Discord, Teams, ntfy, plain webhooks and a hundred
more from one URL each (`ORCH_NOTIFY`, and a hot folder's `notify`), so the daemon writes no
sender of its own. A job is news when one of its drives moves it into a state a person cares
about: waiting for review, completed, failed, or paused for an outside cause (the Imagga quota,
refused credentials, a full disk), each said once: the state before the drive is compared with
the outcome, so a job re-driven while it waits, or paused again for the same reason, is not
news twice.

Messages go out in the background: a receiver that is slow, wrong or down never holds a job.
Each target is tried `NOTIFY_RETRY.maximum_attempts` times with backoff, and every failure is
logged with the target shown as Apprise masks it (its secrets, such as a bot token or a mail
password, never reach a log line).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import SecretStr

from orchestrator.config import ConfigError, HotFolder
from orchestrator.retry import RetryPolicy
from orchestrator.states import JobState
from orchestrator.store.models import Job
from orchestrator.store.queries import Lease
from orchestrator.workflow.engine import Engine, Outcome

if TYPE_CHECKING:
    import apprise

log = logging.getLogger("orchestrator.notify")

NOTIFY_RETRY = RetryPolicy(initial_interval=1.0, maximum_interval=30.0, maximum_attempts=4)
"""How often a message is tried on one target, and how patiently (about 1 + 2 + 4 s at most
between the four tries)."""
SEND_TIMEOUT_SECONDS = 30.0
"""Longest one attempt on one target may take."""
DRAIN_SECONDS = 5.0
"""How long a stopping daemon lets messages under way finish."""
QUIET_LOGGERS = ("apprise", "urllib3", "requests_oauthlib")
"""Loggers of Apprise and its HTTP stack, which at DEBUG print request URLs (a Telegram bot's
token is in its URL): held at WARNING whatever the log level."""


@dataclass(frozen=True)
class Notice:
    """One piece of news about a job, as it is sent."""

    title: str
    body: str


class Target:
    """One Apprise URL: the service that sends, and how it may be named in logs."""

    def __init__(self, url: SecretStr, where: str) -> None:
        import apprise

        service = apprise.Apprise.instantiate(url.get_secret_value())
        if service is None:
            raise ConfigError(
                f"{where}: not an Apprise URL Apprise can use (see "
                "https://github.com/caronc/apprise/wiki for the forms, e.g. "
                "tgram://BOT_TOKEN/CHAT_ID, mailtos://user:password@example.com, "
                "slack://TOKEN_A/TOKEN_B/TOKEN_C, json://host/path)"
            )
        self.service: apprise.NotifyBase = service
        self.shown: str = str(service.url(privacy=True))  # type: ignore[no-untyped-call]
        """The URL with its secrets masked, for logs."""

    async def send(self, notice: Notice) -> bool:
        """One attempt; whether the service took the message."""
        return bool(
            await asyncio.wait_for(
                asyncio.to_thread(self.service.notify, body=notice.body, title=notice.title),
                SEND_TIMEOUT_SECONDS,
            )
        )


def _targets(urls: Sequence[SecretStr], where: str) -> list[Target]:
    return [Target(url, f"{where}[{index}]") for index, url in enumerate(urls)]


def news(before: Job, outcome: Outcome) -> tuple[str, str] | None:
    """What happened to the job in this drive that a person must hear (what, and more), if
    anything: (what happened, the detail)."""
    job = outcome.job
    if outcome.paused is not None:
        if before.last_error == outcome.paused and before.state == job.state:
            return None  # paused again for the same reason: said already
        return "paused", outcome.paused
    if before.state == job.state:
        return None
    if job.state == JobState.REVIEWING:
        return "waits for review", "its keywords wait for a person to approve them"
    if job.state == JobState.COMPLETED:
        return "completed", "every photo was done as asked"
    if job.state == JobState.FAILED:
        return "failed", job.last_error or "no reason recorded"
    return None


class Notifier:
    """Sends each job's news to the studio's targets and the job's hot folder's, in the
    background."""

    def __init__(
        self,
        urls: Sequence[SecretStr],
        hot_folders: Sequence[HotFolder],
        *,
        retry: RetryPolicy = NOTIFY_RETRY,
    ) -> None:
        """Refuses (`ConfigError`) a URL Apprise cannot use, naming where it is, not what."""
        for name in QUIET_LOGGERS:
            logger = logging.getLogger(name)
            logger.setLevel(max(logger.getEffectiveLevel(), logging.WARNING))
        self._everyone = _targets(urls, "ORCH_NOTIFY")
        self._by_folder = [
            (Path(hot.path).resolve(), _targets(hot.notify, f"hot_folders[{index}].notify"))
            for index, hot in enumerate(hot_folders)
            if hot.notify
        ]
        self.page_url = ""
        """Where the job pages are (the public URL, else the listen address): set once known."""
        self._retry = retry
        self._sending: set[asyncio.Task[None]] = set()

    @property
    def active(self) -> bool:
        """Whether any target is configured."""
        return bool(self._everyone or self._by_folder)

    def targets_for(self, job: Job) -> list[Target]:
        """The studio's targets and those of the hot folder the job was dropped into."""
        source = Path(job.source).resolve()
        found = list(self._everyone)
        for folder, targets in self._by_folder:
            if source.parent == folder:
                found += targets
        return found

    def observe(self, before: Job, outcome: Outcome) -> None:
        """Send the news of one drive, if there is any (in the background)."""
        happened = news(before, outcome)
        if happened is None:
            return
        job = outcome.job
        targets = self.targets_for(job)
        if not targets:
            return
        what, detail = happened
        page = f"/jobs/{job.id}/review" if job.state == JobState.REVIEWING else f"/jobs/{job.id}"
        notice = Notice(
            title=f"{job.name} {what}",
            body=f"{job.name} {what}: {detail}\n{self.page_url.rstrip('/')}{page}",
        )
        for target in targets:
            task = asyncio.create_task(self._deliver(target, notice, job.id, what))
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)

    async def _deliver(self, target: Target, notice: Notice, job_id: str, what: str) -> None:
        fields = {"job_id": job_id, "news": what, "target": target.shown}
        attempt = 0
        while True:
            attempt += 1
            try:
                sent = await target.send(notice)
                problem = "the service did not take it"
            except TimeoutError:
                sent, problem = False, f"no answer within {SEND_TIMEOUT_SECONDS:g} s"
            except Exception as exc:  # a plugin's bug must not reach the daemon
                sent, problem = False, type(exc).__name__
            if sent:
                log.info("notified", extra={**fields, "attempt": attempt})
                return
            if not self._retry.allows(attempt):
                log.error(
                    "notification not sent; giving up",
                    extra={**fields, "attempts": attempt, "problem": problem},
                )
                return
            delay = self._retry.backoff(attempt)
            log.warning(
                "notification not sent; trying again",
                extra={**fields, "attempt": attempt, "problem": problem, "retry_in": delay},
            )
            await asyncio.sleep(delay)

    async def drain(self) -> None:
        """Let messages under way finish, briefly; then drop them (the daemon is stopping)."""
        pending = list(self._sending)
        if not pending:
            return
        _, late = await asyncio.wait(pending, timeout=DRAIN_SECONDS)
        for task in late:
            task.cancel()
        for task in late:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if late:
            log.warning("notifications dropped at shutdown", extra={"count": len(late)})


class NotifyingEngine(Engine):
    """The engine, telling the studio what each drive came to (the daemon's)."""

    def __init__(self, *, notifier: Notifier, **engine: Any) -> None:
        super().__init__(**engine)
        self.notifier = notifier

    async def drive(self, job_id: str, *, lease: Lease | None = None) -> Outcome:
        """Drive as the engine does; the state before and the outcome make the news."""
        if not self.notifier.active:
            return await super().drive(job_id, lease=lease)
        before = await self.store.get_job(job_id)
        outcome = await super().drive(job_id, lease=lease)
        self.notifier.observe(before, outcome)
        return outcome
