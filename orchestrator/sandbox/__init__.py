"""A faithful local fake of Imagen (with its presigned storage), Imagga and imgix, with faults."""

from __future__ import annotations

from orchestrator.sandbox.config import DEFAULT_PROFILES, FAULT_NAMES, SandboxConfig, parse_faults
from orchestrator.sandbox.samples import make_sample_shoot
from orchestrator.sandbox.server import RunningSandbox, serve_forever, start_sandbox

__all__ = [
    "DEFAULT_PROFILES",
    "FAULT_NAMES",
    "RunningSandbox",
    "SandboxConfig",
    "make_sample_shoot",
    "parse_faults",
    "serve_forever",
    "start_sandbox",
]
