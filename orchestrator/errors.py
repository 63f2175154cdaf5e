"""The product's one root error, with the two meanings the engine acts on.

Every client (Imagen, Imagga, imgix), the transfers and the stages raise subclasses of these,
so the engine decides what to do with a failure without knowing which service it came from.
`str()` of any of them is written for people and never carries a secret.
"""

from __future__ import annotations

from typing import ClassVar


class OrchestratorError(Exception):
    """Root of every failure the product reports; one that is neither kind below is refused."""


class Transient(OrchestratorError):
    """The world is in the way (a service unreachable or throttling, a full disk).

    The job keeps its state and pauses; running it again (or the daemon, later) continues.
    """


class Refused(OrchestratorError):
    """Something was refused and asking again will not help: the job fails with this reason.

    The message says what the user must do; `orchestrator retry` resumes the job afterwards.
    """


class CredentialsRefused(Transient):
    """A service refused our credentials: `run` stops at once (exit 2); a daemon pauses the job
    until the account is put right."""


class Ambiguous(Transient):
    """A call that changes something failed in a way that leaves unknown whether it took effect.

    Retrying blindly could do it twice (a second project, a second edit): the caller asks the
    service what happened before calling again.
    """


class OperatorRefusal(OrchestratorError):
    """An operator's request that is refused before anything changes: an unknown job, settings
    that cannot work, a job in the wrong state for it. The message says what to do instead.

    Each surface answers it from the class: the command exits with `exit_code`, the web page
    and /api answer `http_status`. It never reaches a job's record (the engine lets it through).
    """

    exit_code: ClassVar[int] = 2
    """The command's exit code: a usage error, like a bad option."""
    http_status: ClassVar[int] = 409
    """What the page and /api answer: the request conflicts with how things stand."""
