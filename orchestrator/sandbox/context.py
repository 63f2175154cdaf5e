"""What the fake Imagen's routes share: settings, projects, link signing, callbacks, tasks."""

from __future__ import annotations

from dataclasses import dataclass, field

from aiohttp import web

from orchestrator.sandbox.background import BackgroundTasks
from orchestrator.sandbox.callbacks import CallbackDispatcher
from orchestrator.sandbox.config import Profile, SandboxConfig
from orchestrator.sandbox.signing import LinkSigner
from orchestrator.sandbox.state import ProjectStore

SKY_TEMPLATES: dict[int, bool] = {1: True, 2: False, 3: False}
"""Sky replacement templates: id -> is_default."""


@dataclass(frozen=True, kw_only=True)
class ImagenContext:
    """The fake Imagen's shared state, stored on the app."""

    config: SandboxConfig
    projects: ProjectStore
    signer: LinkSigner
    callbacks: CallbackDispatcher
    tasks: BackgroundTasks = field(default_factory=BackgroundTasks)

    @property
    def profiles(self) -> dict[int, Profile]:
        """Profiles by key."""
        return {profile.key: profile for profile in self.config.profiles}


IMAGEN = web.AppKey("sandbox_imagen", ImagenContext)
