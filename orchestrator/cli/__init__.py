"""The `orchestrator` command: argument parsing and output only; the work is in service/.

`app` holds the command and its list of commands; one module per family of commands (`jobs`,
`review`, `delivery`, `processes`, `configuration`); `options` declares the shared parameters
and every job option once; `errors` maps what is refused to a message and an exit code;
`running`, `output` and `reporting` are what every command runs and prints with.
"""

from orchestrator.cli.app import main

__all__ = ["main"]
