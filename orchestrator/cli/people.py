"""`orchestrator people`: a job's persons (its faces grouped with --people), and naming one."""

from __future__ import annotations

from typing import Annotated

import typer

from orchestrator.cli.errors import fail
from orchestrator.cli.options import JobArgument, JsonOption
from orchestrator.cli.output import out, print_json
from orchestrator.cli.running import run_async, settings
from orchestrator.display import markup_safe, print_table
from orchestrator.states import JobState


def people(
    job: JobArgument,
    group: Annotated[
        str | None, typer.Argument(help="One person: their group number as listed.")
    ] = None,
    name: Annotated[
        str | None,
        typer.Option("--name", help="Name the person in every photo they are in (e.g. Anna)."),
    ] = None,
    unname: Annotated[
        bool, typer.Option("--unname", help="Take the person's name away again.")
    ] = False,
    json_output: JsonOption = False,
) -> None:
    """List the people of a job (its faces grouped by Imagga); name one with GROUP --name."""
    from orchestrator.service.people import people_command

    cfg = settings()
    if (name is not None or unname) and group is None:
        fail("--name and --unname need the GROUP they name")
    if name is not None and unname:
        fail("--name and --unname do not go together")
    if group is not None and name is None and not unname:
        fail("give --name NAME (or --unname) for the GROUP")
    found, persons = run_async(lambda: people_command(cfg, job, group, name, unname=unname))
    if json_output:
        print_json([person.to_json() for person in persons])
        return
    if not persons:
        out.print("no people yet: the faces are grouped once every photo is tagged")
        return
    print_table(
        out,
        ("group", "name", "faces", "photos"),
        [
            (
                p.label,
                p.name or "",
                str(p.faces),
                ", ".join(p.photos[:6]) + (" …" if len(p.photos) > 6 else ""),
            )
            for p in persons
        ],
    )
    if (
        group is not None
        and found.state == JobState.COMPLETED
        and found.options.get("deliver") is not None
    ):
        out.print(
            f"the files are renamed; `orchestrator deliver {markup_safe(found.id[:8])}` "
            "delivers the changed photos again"
        )
