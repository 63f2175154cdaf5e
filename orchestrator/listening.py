"""Listening on a TCP address: a taken or forbidden address becomes a message saying what to do."""

from __future__ import annotations

import errno

from aiohttp import web

from orchestrator.config import ConfigError
from orchestrator.errors import OperatorRefusal

WILDCARD_HOSTS = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}
"""Where a client reaches a server listening on a wildcard address (all of the machine's)."""


class CannotListen(OperatorRefusal, ValueError):
    """The address cannot be listened on (taken, not this machine's, privileged); exit code 2."""


def _advice(exc: OSError, host: str, flag: str) -> str:
    """Why binding failed and what to change, in words."""
    if exc.errno == errno.EADDRINUSE:
        return (
            f"the port is in use (by another program, or another copy of this one); "
            f"choose another with {flag}"
        )
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"this machine has no address {host}; use one of its own, or 0.0.0.0 for all"
    if exc.errno == errno.EACCES:
        return f"ports below 1024 need special rights; choose a higher one with {flag}"
    return f"{exc.strerror or exc}; check {flag}"


async def start_site(runner: web.AppRunner, host: str, port: int, *, flag: str) -> None:
    """Serve `runner` on host:port; CannotListen naming the address if that is impossible."""
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError as exc:
        shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        raise CannotListen(f"cannot listen on {shown}: {_advice(exc, host, flag)}") from exc


def parse_listen(listen: str) -> tuple[str, int]:
    """HOST and PORT from "HOST:PORT" ("[::1]:8750" for IPv6); ConfigError if malformed."""
    host, sep, port = listen.strip().rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"--listen wants HOST:PORT (e.g. 0.0.0.0:8750), not {listen!r}")
    return host.strip("[]"), int(port)
