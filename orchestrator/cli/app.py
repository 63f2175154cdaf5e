"""The `orchestrator` command itself: the options for every command, and the list of commands
(in the order `--help` shows them), each from the module of its family."""

from __future__ import annotations

import logging
import sys
from importlib.metadata import version as package_version
from typing import Annotated

import typer

from orchestrator import DISTRIBUTION
from orchestrator.cli import configuration, delivery, jobs, people, processes, review
from orchestrator.cli.output import VERBOSITY

ENVIRONMENT_HELP = (
    "Settings: IMAGEN_API_KEY (your Imagen API key), IMAGEN_API_URL, ORCH_DATABASE_URL (the "
    "job database; default a SQLite file in ~/.local/share/orchestrator) and the other ORCH_* "
    "variables, or the same keys in the config file ($ORCH_CONFIG, default "
    "~/.config/orchestrator/config.toml). `orchestrator config` shows what is in effect."
)

app = typer.Typer(
    help="Take a shoot folder through Imagen's AI editing and back; resumes after any crash.",
    epilog=ENVIRONMENT_HELP,
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_enable=False,
    # Rich's boxes wrap usage errors at 80 columns in a log; plain lines stay greppable.
    rich_markup_mode="rich" if sys.stderr.isatty() else None,
)
db_app = typer.Typer(
    help="Database maintenance.",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(db_app, name="db")

for command in (
    jobs.run,
    processes.demo,
    processes.sandbox,
    configuration.profiles,
    jobs.status,
    jobs.history,
    jobs.retry,
    jobs.cancel,
    review.approve,
    processes.ui,
    jobs.submit,
    processes.daemon,
    review.keywords,
    people.people,
    configuration.usage,
    delivery.deliveries,
    delivery.deliver,
    delivery.purge,
):
    app.command()(command)
app.command("config")(configuration.show_config)
app.command()(configuration.prune)
db_app.command("upgrade")(configuration.db_upgrade)


def show_version(asked: bool) -> None:
    """--version: print the installed version and stop."""
    if asked:
        sys.stdout.write(f"orchestrator {package_version(DISTRIBUTION)}\n")
        raise typer.Exit()


@app.callback()
def main_options(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=show_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="Only warnings, errors and the results.")
    ] = False,
    verbose: Annotated[
        int,
        typer.Option(
            "--verbose",
            "-v",
            count=True,
            show_default=False,
            help="Log what happens (-v), with details (-vv).",
        ),
    ] = 0,
) -> None:
    """Options for every command."""
    VERBOSITY["level"] = -1 if quiet else verbose
    if verbose:
        logging.basicConfig(
            level=logging.DEBUG if verbose > 1 else logging.INFO,
            format="%(levelname)s %(name)s: %(message)s",
        )


def main() -> None:
    """Entry point of the `orchestrator` command."""
    app()
