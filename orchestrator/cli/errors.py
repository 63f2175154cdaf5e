"""How the command ends when something is refused: a message on stderr and an exit code.

An operator refusal (errors.OperatorRefusal) carries its own exit code; the rest is mapped here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NoReturn

import typer

from orchestrator.cli.output import err
from orchestrator.display import markup_safe
from orchestrator.errors import CredentialsRefused, OperatorRefusal, OrchestratorError

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def fail(message: str, code: int = EXIT_USAGE, *, details: Sequence[str] = ()) -> NoReturn:
    """Print an error for the user (then each of `details` on a line of its own); exit `code`.

    A message of several lines (a list of photos) is printed as its lines, each made visible
    on its own: the line breaks are ours, whatever else in it is spelled out.
    """
    if len(details) == 1:
        message, details = f"{message}: {details[0]}", ()
    first, *more = message.split("\n")
    err.print(
        f"[bold red]error:[/] {markup_safe(first)}{':' if details else ''}",
        markup=True,
        highlight=False,
    )
    for line in more:
        err.print(markup_safe(line), markup=True, highlight=False)
    for line in details:
        err.print(f"  {markup_safe(line)}", markup=True, highlight=False)
    raise typer.Exit(code)


def explain(exc: Exception) -> NoReturn:
    """Exit with a message and the code that fits `exc`; re-raise what is not ours to explain."""
    from sqlalchemy.exc import DBAPIError

    from orchestrator.config import ConfigProblem
    from orchestrator.service.database import database_problem

    if isinstance(exc, CredentialsRefused):
        fail(str(exc))
    if isinstance(exc, ConfigProblem):
        fail("bad configuration", details=exc.problems)
    if isinstance(exc, OperatorRefusal):
        fail(str(exc), exc.exit_code)
    if isinstance(exc, OrchestratorError):
        fail(str(exc), EXIT_FAILED)
    if isinstance(exc, DBAPIError):
        fail(
            f"the job database failed: {database_problem(exc)}. Every finished step is "
            "saved; run the same command again once the database is back",
            EXIT_FAILED,
        )
    raise exc
