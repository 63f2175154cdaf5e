"""Settings from the environment and an optional TOML file; secrets are never printed."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from orchestrator.spec import JobSpec
from orchestrator.store.db import default_database_path

PRODUCTION_API_URL = "https://api.imagen-ai.com/v1"


def config_file_path() -> Path:
    """The TOML file read for settings: $ORCH_CONFIG, else ~/.config/orchestrator/config.toml."""
    explicit = os.environ.get("ORCH_CONFIG")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "orchestrator" / "config.toml"


def _env(name: str, key: str) -> AliasChoices:
    return AliasChoices(name, key)


class HotFolder(JobSpec, frozen=True, extra="forbid"):
    """A watched folder: each new subfolder dropped into it becomes a job with this spec
    (every job option, as `run` takes them: `export`, `edit = {tools = [...], ...}`, ...)."""

    path: Path
    """The folder watched; its direct subfolders are the shoots."""
    profiles: list[str] = Field(min_length=1)
    """Profile keys or names, one per image type the drops may hold."""

    def spec(self) -> JobSpec:
        """What each drop's jobs are asked to do."""
        return JobSpec.model_validate(self.model_dump(exclude={"path", "profiles"}))


class Settings(BaseSettings):
    """Everything configurable; environment variables win over the TOML file."""

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    imagen_api_key: SecretStr | None = Field(
        default=None, validation_alias=_env("IMAGEN_API_KEY", "imagen_api_key"))
    """The Imagen API key (sent only to the Imagen API, never stored or printed)."""
    imagen_api_url: str = Field(
        default=PRODUCTION_API_URL, validation_alias=_env("IMAGEN_API_URL", "imagen_api_url"))
    """Base URL of the Imagen API, ending in /v1."""
    database_url: str | None = Field(
        default=None, validation_alias=_env("ORCH_DATABASE_URL", "database_url"))
    """Where jobs are checkpointed; default SQLite in the user data folder."""
    concurrency: int = Field(
        default=8, ge=1, le=256, validation_alias=_env("ORCH_CONCURRENCY", "concurrency"))
    """Transfers in flight at once, across all jobs of the process."""
    bwlimit: str | None = Field(default=None, validation_alias=_env("ORCH_BWLIMIT", "bwlimit"))
    """Global bandwidth cap such as 20M (bytes per second); none by default."""
    poll_initial_seconds: float = Field(
        default=10.0, gt=0, validation_alias=_env("ORCH_POLL_INITIAL", "poll_initial_seconds"))
    """First wait between status polls of an edit or export (the official SDK uses 10 s)."""
    poll_max_seconds: float = Field(
        default=60.0, gt=0, validation_alias=_env("ORCH_POLL_MAX", "poll_max_seconds"))
    """Longest wait between status polls."""
    wait_deadline_hours: float = Field(
        default=20.0, gt=0, validation_alias=_env("ORCH_WAIT_DEADLINE_HOURS",
                                                  "wait_deadline_hours"))
    """How long an edit or export may take before the job fails (the SDK waits 20 h)."""
    link_batch_size: int = Field(
        default=200, ge=1, le=1000, validation_alias=_env("ORCH_LINK_BATCH", "link_batch_size"))
    """File names per request for presigned upload links."""
    photo_attempts: int = Field(
        default=8, ge=1, validation_alias=_env("ORCH_PHOTO_ATTEMPTS", "photo_attempts"))
    """Attempts a photo's transfer gets (backing off from 1 s to 60 s) before it is marked
    failed; a link that expired is renewed without using one up."""
    listen: str = Field(default="127.0.0.1:8750", validation_alias=_env("ORCH_LISTEN", "listen"))
    """HOST:PORT the daemon serves callbacks, health, metrics and the jobs API on."""
    public_url: str | None = Field(
        default=None, validation_alias=_env("ORCH_PUBLIC_URL", "public_url"))
    """The URL under which Imagen reaches this daemon (or the balancer before several); without
    it the daemon only polls."""
    max_jobs_in_progress: int = Field(
        default=4, ge=1, le=1000, validation_alias=_env("ORCH_MAX_JOBS", "max_jobs_in_progress"))
    """Jobs one daemon drives at once; waiting jobs do not count."""
    lease_ttl_seconds: float = Field(
        default=60.0, ge=1.0, validation_alias=_env("ORCH_LEASE_TTL", "lease_ttl_seconds"))
    """How long a job's lease outlives its daemon's last heartbeat before another may take it."""
    scheduler_idle_seconds: float = Field(
        default=2.0, gt=0, validation_alias=_env("ORCH_SCHEDULER_IDLE", "scheduler_idle_seconds"))
    """Longest the scheduler sleeps without a wake-up (catches jobs queued by other commands)."""
    pause_retry_seconds: float = Field(
        default=60.0, gt=0, validation_alias=_env("ORCH_PAUSE_RETRY", "pause_retry_seconds"))
    """When the daemon tries again a job stopped by an outside cause (Imagen down, key refused)."""
    hot_folders: list[HotFolder] = Field(
        default_factory=list, validation_alias=_env("ORCH_HOT_FOLDERS", "hot_folders"))
    """Folders the daemon watches for new shoots (TOML `[[hot_folders]]`, or JSON in env)."""
    hot_folder_settle_seconds: float = Field(
        default=30.0, ge=0, validation_alias=_env("ORCH_HOT_FOLDER_SETTLE",
                                                  "hot_folder_settle_seconds"))
    """How long a dropped folder must stay unchanged before it becomes a job."""
    hot_folder_scan_seconds: float = Field(
        default=5.0, gt=0, validation_alias=_env("ORCH_HOT_FOLDER_SCAN", "hot_folder_scan_seconds"))
    """Seconds between two looks at the watched folders."""
    log_level: str = Field(default="INFO", validation_alias=_env("ORCH_LOG_LEVEL", "log_level"))
    """Threshold of the daemon's JSON log lines on stderr (DEBUG, INFO, WARNING, ERROR)."""

    @field_validator("imagen_api_url")
    @classmethod
    def _strip_slash(cls, value: str) -> str:
        return value.rstrip("/")

    @field_validator("public_url")
    @classmethod
    def _strip_public_slash(cls, value: str | None) -> str | None:
        return value.rstrip("/") if value else None

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        level = value.strip().upper()
        if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise ValueError(f"log_level must be DEBUG, INFO, WARNING or ERROR, not {value!r}")
        return level

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings,
                TomlConfigSettingsSource(settings_cls, toml_file=config_file_path()))

    def resolved_database_url(self) -> str:
        """The database URL to use, falling back to the SQLite file in the data folder."""
        return self.database_url or f"sqlite:///{default_database_path()}"

    def api_key(self) -> str | None:
        """The API key's value, for the one place that sends it."""
        return self.imagen_api_key.get_secret_value() if self.imagen_api_key else None
