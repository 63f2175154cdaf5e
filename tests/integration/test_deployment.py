"""The deployment files agree with the program, and are valid for Docker Compose.

Without any Docker tool: docker-compose.yml and the Dockerfile are read and held against what
the program reads (every variable they set is one of the settings' variables), serves (each
healthcheck's path is a route, on the port the service listens on) and runs (each command
exists and takes the options given). With a compose tool installed, `docker compose config`
(v2) or `docker-compose config` (v1) also checks the file against the Compose schema and
resolves the variables, still without a Docker engine.
"""

from __future__ import annotations

import ast
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from pydantic import AliasChoices, BaseModel
from pydantic.fields import FieldInfo

from orchestrator.config import OTHER_VARIABLES, Settings
from orchestrator.workflow.services import EXIFTOOL

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "orchestrator"

SERVICE_KEYS = {
    "image", "build", "profiles", "depends_on", "user", "environment", "entrypoint", "command",
    "ports", "volumes", "healthcheck", "stop_grace_period", "restart",
}  # fmt: skip
"""The Compose service keys this file may use (a misspelt key is ignored by Compose)."""


def _compose_file() -> dict[str, Any]:
    loaded = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert isinstance(loaded, dict)
    return loaded


def _interpolated(value: str) -> str:
    """`value` as Compose reads it with none of its variables set: `${X:-d}` is d."""
    value = re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", value)
    value = re.sub(r"\$\{\w+:\?[^}]*\}", "set", value)
    assert "$" not in value, f"a variable without a default in {value!r}"
    return value


def _env_fields(model: type[BaseModel]) -> Iterator[tuple[str, FieldInfo]]:
    """(variable, field) for each environment variable the settings model reads, from its
    fields' aliases, in groups of settings too."""
    for field in model.model_fields.values():
        alias = field.validation_alias
        choices = alias.choices if isinstance(alias, AliasChoices) else [alias]
        yield from ((c, field) for c in choices if isinstance(c, str) and c.isupper())
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            yield from _env_fields(field.annotation)


SETTINGS_ENV = dict(_env_fields(Settings))


ROUTE_METHODS = {"add_get": 0, "add_post": 0, "add_put": 0, "add_delete": 0, "add_route": 1}
"""aiohttp's router methods, and where each takes the path."""


def _routes(where: Path) -> set[str]:
    """The paths registered with the router in the modules under `where`."""
    paths = set()
    for module in where.rglob("*.py"):
        for node in ast.walk(ast.parse(module.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                at = ROUTE_METHODS.get(node.func.attr)
                if at is not None and len(node.args) > at:
                    path = node.args[at]
                    if isinstance(path, ast.Constant) and isinstance(path.value, str):
                        paths.add(path.value)
    return paths


def _daemon_routes() -> set[str]:
    """The routes of the program less the sandbox's."""
    return _routes(PACKAGE) - _routes(PACKAGE / "sandbox")


def _probe(command: list[str]) -> tuple[str, int]:
    """(path, port) of a healthcheck that opens a URL with urllib."""
    [url] = re.findall(r"urlopen\('([^']+)'", " ".join(command))
    parts = urlsplit(url)
    assert parts.hostname == "127.0.0.1" and parts.port is not None
    return parts.path, parts.port


def _help(*command: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "orchestrator", *command, "--help"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "COLUMNS": "200"},
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def _dockerfile() -> list[tuple[str, str]]:
    """The final stage's instructions, (KEYWORD, arguments), continuation lines joined."""
    text = re.sub(r"\\\n\s*", " ", (ROOT / "Dockerfile").read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and line[0] != "#"]
    final = max(i for i, line in enumerate(lines) if line.startswith("FROM "))
    return [(line.split(None, 1)[0], line.split(None, 1)[1]) for line in lines[final:]]


def test_the_compose_file_has_the_three_services_and_only_known_keys() -> None:
    compose = _compose_file()
    assert set(compose) == {"services", "volumes"}
    assert set(compose["services"]) == {"postgres", "daemon", "sandbox"}
    for name, service in compose["services"].items():
        assert set(service) <= SERVICE_KEYS, (name, set(service) - SERVICE_KEYS)
    assert compose["services"]["sandbox"]["profiles"] == ["sandbox"]


def test_every_variable_the_daemon_is_given_is_one_the_program_reads() -> None:
    environment = _compose_file()["services"]["daemon"]["environment"]
    assert environment
    assert set(environment) <= set(SETTINGS_ENV), set(environment) - set(SETTINGS_ENV)
    given = [arguments for keyword, arguments in _dockerfile() if keyword == "ENV"]
    names = {m for line in given for m in re.findall(r"(\w+)=", line)}
    assert names - {"PYTHONUNBUFFERED"} <= set(SETTINGS_ENV), names - set(SETTINGS_ENV)


def test_the_daemon_keeps_its_jobs_in_the_compose_postgres() -> None:
    """Not in the default SQLite file inside the container, which goes with it."""
    services = _compose_file()["services"]
    database = urlsplit(_interpolated(services["daemon"]["environment"]["ORCH_DATABASE_URL"]))
    postgres = {k: _interpolated(v) for k, v in services["postgres"]["environment"].items()}
    assert database.scheme == "postgresql"
    assert database.hostname == "postgres" and database.port == 5432
    assert database.username == postgres["POSTGRES_USER"]
    assert database.password == postgres["POSTGRES_PASSWORD"]
    assert database.path == f"/{postgres['POSTGRES_DB']}"
    assert services["daemon"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])
    # Its data is on a named volume, declared.
    [volume] = services["postgres"]["volumes"]
    assert volume.split(":")[0] in _compose_file()["volumes"]


def test_the_daemon_listens_where_its_port_and_healthcheck_point() -> None:
    daemon = _compose_file()["services"]["daemon"]
    listen_port = int(daemon["environment"]["ORCH_LISTEN"].rpartition(":")[2])
    default_port = int(str(SETTINGS_ENV["ORCH_LISTEN"].default).rpartition(":")[2])
    assert listen_port == default_port
    [published] = daemon["ports"]
    assert int(_interpolated(published).rpartition(":")[2]) == listen_port
    path, port = _probe(daemon["healthcheck"]["test"])
    assert port == listen_port
    assert path in _daemon_routes()


def test_the_image_listens_where_it_exposes_and_probes() -> None:
    instructions = _dockerfile()
    [env] = [arguments for keyword, arguments in instructions if keyword == "ENV"]
    [listen] = re.findall(r"ORCH_LISTEN=(\S+)", env)
    [exposed] = [int(arguments) for keyword, arguments in instructions if keyword == "EXPOSE"]
    assert int(listen.rpartition(":")[2]) == exposed
    [check] = [arguments for keyword, arguments in instructions if keyword == "HEALTHCHECK"]
    path, port = _probe([check])
    assert (port, path in _daemon_routes()) == (exposed, True)


def test_the_commands_they_run_exist_with_their_options() -> None:
    services = _compose_file()["services"]
    instructions = dict(_dockerfile())
    assert instructions["ENTRYPOINT"] == '["orchestrator"]'
    assert instructions["CMD"] == '["daemon"]'
    assert "\norchestrator = " in (ROOT / "pyproject.toml").read_text()
    [script] = services["daemon"]["entrypoint"][2:]
    for command in script.split("&&"):
        words = shlex.split(command.removeprefix(" exec"))
        assert words[0] == "orchestrator"
        _help(*words[1:])
    sandbox = services["sandbox"]["command"]
    assert sandbox[0] == "sandbox"
    offered = _help("sandbox")
    options = [word for word in sandbox if word.startswith("--")]
    for option in options:
        assert re.search(re.escape(option) + r"(?![\w-])", offered), option
    port = int(sandbox[sandbox.index("--port") + 1])
    [published] = services["sandbox"]["ports"]
    assert int(_interpolated(published).rpartition(":")[2]) == port
    path, probed = _probe(services["sandbox"]["healthcheck"]["test"])
    assert probed == port
    assert path in _routes(PACKAGE / "sandbox")


def test_the_image_can_write_keywords() -> None:
    """The keywording stage writes with exiftool: the image installs it (Debian's package)."""
    installs = [args for keyword, args in _dockerfile() if keyword == "RUN" and "apt-get" in args]
    assert any("libimage-exiftool-perl" in args for args in installs), installs
    assert EXIFTOOL.command(Settings()) == "exiftool"  # what the package puts on the PATH


def test_the_daemon_is_given_every_service_setting_from_the_shell() -> None:
    """Keywords, delivery, hot folders and pruning work in Compose: their variables pass
    through from the shell when set there (no value in the file: unset when unset)."""
    environment = _compose_file()["services"]["daemon"]["environment"]
    wanted = {
        name
        for name in SETTINGS_ENV
        if name.startswith(("IMAGGA_", "IMGIX_", "ORCH_IMAGGA_"))
        or name in {"ORCH_HOT_FOLDERS", "ORCH_PRUNE_AFTER_DAYS", "ORCH_NOTIFY"}
    }
    assert wanted <= set(environment), wanted - set(environment)
    assert all(environment[name] is None for name in wanted)


def test_the_daemon_runs_as_the_user_who_owns_the_shoots() -> None:
    user = _compose_file()["services"]["daemon"]["user"]
    assert re.fullmatch(r"\$\{ORCH_UID:-\d+\}:\$\{ORCH_GID:-\d+\}", user), user
    uid, gid = _interpolated(user).split(":")
    assert int(uid) and int(gid)


def test_the_compose_files_own_variables_do_not_stop_the_program() -> None:
    """A shell that exports the compose file's ORCH_* variables can still run `orchestrator`:
    each is a setting or one the program knows to leave alone."""
    text = (ROOT / "docker-compose.yml").read_text()
    used = set(re.findall(r"\$\{(ORCH_\w+)", text))
    assert used
    assert used <= set(SETTINGS_ENV) | OTHER_VARIABLES, used - set(SETTINGS_ENV) - OTHER_VARIABLES


def _compose() -> list[str] | None:
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True)
        if probe.returncode == 0:
            return ["docker", "compose"]
    legacy = shutil.which("docker-compose")
    return [legacy] if legacy else None


def _config(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    compose = _compose()
    if compose is None:
        pytest.skip("no docker compose / docker-compose here to check the file with")
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("IMAGEN_", "ORCH_"))}
    return subprocess.run(
        [*compose, "-f", str(ROOT / "docker-compose.yml"), *args, "config"],
        capture_output=True,
        text=True,
        env={**environment, **env},
        timeout=60,
    )


def test_the_compose_file_is_valid_with_the_sandbox_profile() -> None:
    done = _config("--profile", "sandbox", IMAGEN_API_KEY="staging")
    assert done.returncode == 0, done.stderr
    for service in ("postgres:", "daemon:", "sandbox:"):
        assert service in done.stdout
    assert "orchestrator db upgrade && exec orchestrator daemon" in done.stdout


def test_the_compose_file_refuses_to_start_without_an_api_key() -> None:
    done = _config()
    assert done.returncode != 0
    assert "set IMAGEN_API_KEY" in done.stderr
