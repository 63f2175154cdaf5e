"""Listening on a TCP address: a taken or forbidden address becomes a message saying what to do."""

from __future__ import annotations

import errno

from aiohttp import web

from orchestrator.errors import OperatorRefusal


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
