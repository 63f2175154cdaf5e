"""Settings from flags, the environment and an optional TOML file; secrets are never printed.

`load_settings` turns every mistake into one `ConfigProblem` that names where the bad value came
from (the flag, the variable, or the file and key) and what is allowed.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import SplitResult, urlsplit

from annotated_types import Ge, Gt, Le, Lt
from pydantic import (
    AliasChoices,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    InitSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from orchestrator.errors import OperatorRefusal
from orchestrator.rules.database import default_database_path
from orchestrator.rules.delivery import check_domain
from orchestrator.rules.rates import parse_rate
from orchestrator.spec import JobSpec
from orchestrator.words import plural

PRODUCTION_API_URL = "https://api.imagen-ai.com/v1"
IMAGGA_PRODUCTION_URL = "https://api.imagga.com/v2"
IMGIX_PRODUCTION_API_URL = "https://api.imgix.com/api/v1"


class ConfigError(OperatorRefusal, ValueError):
    """The settings cannot work (no API key, bad database URL, bad rate); exit code 2."""


class ConfigProblem(ValueError):
    """Settings that cannot work, described for the user: where each mistake is, what is allowed.

    `problems` has one line per mistake.
    """

    def __init__(self, *problems: str) -> None:
        super().__init__("; ".join(problems))
        self.problems = list(problems)


def config_file_path() -> Path:
    """The TOML file read for settings: $ORCH_CONFIG, else ~/.config/orchestrator/config.toml."""
    explicit = os.environ.get("ORCH_CONFIG")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "orchestrator" / "config.toml"


def _env(name: str, key: str) -> AliasChoices:
    return AliasChoices(name, key)


def _without_credentials(url: str) -> str:
    """The URL as it may be shown: any user name or password replaced by "…"."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "(not a URL)"
    if "@" not in parts.netloc:
        return url
    return parts._replace(netloc="…@" + parts.netloc.rpartition("@")[2]).geturl()


def _http_url(value: str, example: str) -> SplitResult:
    """The parts of an http(s) URL with a host and no credentials; ValueError saying the fix."""
    try:
        parts = urlsplit(value.strip())
        _ = parts.port  # raises on a port that is not a number
    except ValueError:
        raise ValueError(f"not a URL; write it like {example}") from None
    if parts.scheme not in ("http", "https"):
        raise ValueError(
            f"must start with https:// (or http:// for a local sandbox), like {example}"
        )
    if not parts.hostname:
        raise ValueError(f"has no host name; write it like {example}")
    if parts.username is not None or parts.password is not None:
        raise ValueError(
            "must not hold a user name or password (the API key goes in "
            "IMAGEN_API_KEY); remove the part before '@'"
        )
    return parts


def check_api_url(value: str) -> str:
    """An Imagen API base URL: http(s), a host, no credentials, ending in the version path /v1."""
    parts = _http_url(value, PRODUCTION_API_URL)
    path = parts.path.rstrip("/")
    if not path.endswith("/v1"):
        # Another version is replaced, anything else (nothing, a proxy's prefix) extended.
        wanted = re.sub(r"/v\d+$", "", path) + "/v1"
        suggestion = parts._replace(path=wanted, query="", fragment="").geturl()
        raise ValueError(
            f"must end in /v1, the API version this orchestrator speaks: did you mean {suggestion}?"
        )
    return parts._replace(path=path).geturl()


class HotFolder(JobSpec, frozen=True, extra="forbid"):
    """A watched folder: each new subfolder dropped into it becomes a job with this spec
    (every job option, as `run` takes them: `export`, `edit = {tools = [...], ...}`, ...)."""

    path: Path
    """The folder watched; its direct subfolders are the shoots."""
    profiles: list[str] = Field(min_length=1)
    """Profile keys or names, one per image type the drops may hold."""
    prefix_subfolders: bool = False
    """Send the photos of a drop's subfolders under names prefixed with their subfolder, as
    `run --prefix-subfolders` does (two camera bodies' IMG_0001.CR2 in one drop)."""
    notify: list[SecretStr] = Field(default_factory=list)
    """Apprise URLs told about this folder's jobs, beside ORCH_NOTIFY's (they may hold
    secrets: kept in the daemon's memory, never in the job's stored spec)."""

    def spec(self) -> JobSpec:
        """What each drop's jobs are asked to do."""
        return JobSpec.model_validate(
            self.model_dump(exclude={"path", "profiles", "prefix_subfolders", "notify"})
        )


@dataclass(frozen=True)
class ImagenSettings:
    """Imagen's API and how a job waits for it: what the Imagen client and the engine take."""

    api_key: SecretStr | None
    """IMAGEN_API_KEY."""
    api_url: str
    """Base URL, ending in /v1."""
    poll_initial_seconds: float
    """First wait between status polls of an edit or export."""
    poll_max_seconds: float
    """Longest wait between status polls."""
    wait_deadline_hours: float
    """How long an edit or export may take before the job fails."""
    link_batch_size: int
    """File names per request for presigned upload links."""

    def key(self) -> str | None:
        """The API key's value, for the one place that sends it."""
        return self.api_key.get_secret_value() if self.api_key else None


@dataclass(frozen=True)
class TaggingSettings:
    """Imagga and the keywords chosen from its answers and written with exiftool."""

    api_key: SecretStr | None
    """IMAGGA_API_KEY."""
    api_secret: SecretStr | None
    """IMAGGA_API_SECRET."""
    api_url: str
    """Base URL of the Imagga API, ending in /v2."""
    concurrency: int | None
    """Imagga requests in flight at once; None: the account's cap."""
    allowlist: list[str]
    """When not empty, only these words may become keywords."""
    blocklist: list[str]
    """Words that never become keywords."""
    moderation_threshold: float
    """The not-safe confidence (0–100) at which --moderate flags a photo."""
    anyway: bool
    """Tag what the quota allows when it is too small for every photo."""
    exiftool: str
    """The exiftool program that writes keywords into files."""
    people_index: str | None = None
    """The studio's Imagga face recognition index (ORCH_PEOPLE_INDEX); None: none kept."""

    def credentials(self) -> tuple[str, str] | None:
        """The Imagga key and secret, for the one place that sends them; None unless both set."""
        key = self.api_key.get_secret_value() if self.api_key else ""
        secret = self.api_secret.get_secret_value() if self.api_secret else ""
        return (key, secret) if key and secret else None


@dataclass(frozen=True)
class ImgixSettings:
    """The imgix Source delivered photos go to."""

    api_key: SecretStr | None
    """IMGIX_API_KEY (Asset Manager Edit and Purge)."""
    source_id: str | None
    """The Source's id."""
    domain: str | None
    """The Source's delivery domain."""
    secure_url_token: SecretStr | None
    """Signs delivery URLs when set."""
    api_url: str
    """Base URL of the imgix Management API, ending in /api/v1."""
    rate_scale: float
    """The share of imgix's rate limits this process uses."""

    def missing(self) -> list[str]:
        """The variables delivery needs and lacks (none: imgix is configured)."""
        key = self.api_key.get_secret_value().strip() if self.api_key else ""
        return [
            name
            for name, value in (
                ("IMGIX_API_KEY", key),
                ("IMGIX_SOURCE_ID", self.source_id),
                ("IMGIX_DOMAIN", self.domain),
            )
            if not value
        ]


@dataclass(frozen=True)
class TransferLimits:
    """How much this process sends and receives at once."""

    concurrency: int
    """Transfers in flight at once, across all jobs of the process."""
    bwlimit: float | None
    """Bandwidth cap in bytes per second (the setting, such as 20M, read); None: no cap."""
    photo_attempts: int
    """Attempts a photo's transfer gets before it is marked failed."""


@dataclass(frozen=True)
class DaemonSettings:
    """The daemon: where it listens, how many jobs it drives, its leases, its hot folders."""

    listen: str
    """HOST:PORT it serves on."""
    public_url: str | None
    """The URL Imagen's callbacks reach it by; None: polling only."""
    max_jobs: int
    """Jobs driven at once."""
    lease_ttl_seconds: float
    """How long a job's lease outlives its holder's last heartbeat."""
    scheduler_idle_seconds: float
    """Longest the scheduler sleeps without a wake-up."""
    pause_retry_seconds: float
    """When a job stopped by an outside cause is tried again."""
    hot_folders: list[HotFolder]
    """Folders watched for new shoots."""
    hot_folder_settle_seconds: float
    """How long a drop must stay unchanged before it becomes a job."""
    hot_folder_scan_seconds: float
    """Seconds between two looks at the watched folders."""
    prune_after_days: float | None
    """Finished jobs older than this are pruned at start and daily; None: never."""
    notify: list[SecretStr]
    """Apprise URLs told about every job's news (hot folders may add their own)."""
    poll_budget: float
    """Safety-net status polls a second to Imagen, for every daemon on the database together."""


@dataclass(frozen=True)
class WebSettings:
    """Who may use the page and /api."""

    ui_token: SecretStr | None
    """The bearer token of /api and the pages."""
    metrics_need_token: bool
    """Whether /metrics needs the token too."""
    allowed_hosts: str
    """More host names (comma-separated) the daemon may be reached by."""
    login_window_seconds: float
    """The window in which an address may give 5 wrong tokens at /login."""

    def token(self) -> str | None:
        """The UI token's value, if one is set (an empty one is none)."""
        return self.ui_token.get_secret_value() or None if self.ui_token else None


@dataclass(frozen=True)
class LogSettings:
    """The thresholds of the daemon's JSON log lines."""

    level: str
    """Ours."""
    library_level: str | None
    """The libraries'; None: `level`, but never DEBUG."""


class Settings(BaseSettings):
    """Everything configurable; environment variables win over the TOML file.

    Flat, because flags, variables and file keys name settings flatly; the rest of the program
    reads it by concern, each group (`imagen`, `tagging`, `imgix`, `transfers`, `daemon`, `web`,
    `logs`, `database_url`) handed whole to what it configures.
    """

    model_config = SettingsConfigDict(extra="forbid", populate_by_name=True)

    imagen_api_key: SecretStr | None = Field(
        default=None, validation_alias=_env("IMAGEN_API_KEY", "imagen_api_key")
    )
    """The Imagen API key (sent only to the Imagen API, never stored or printed)."""
    imagen_api_url: str = Field(
        default=PRODUCTION_API_URL, validation_alias=_env("IMAGEN_API_URL", "imagen_api_url")
    )
    """Base URL of the Imagen API, ending in /v1."""
    database_url: str | None = Field(
        default=None, validation_alias=_env("ORCH_DATABASE_URL", "database_url")
    )
    """Where jobs are checkpointed; default SQLite in the user data folder."""
    concurrency: int = Field(
        default=8, ge=1, le=256, validation_alias=_env("ORCH_CONCURRENCY", "concurrency")
    )
    """Transfers in flight at once, across all jobs of the process."""
    bwlimit: str | None = Field(default=None, validation_alias=_env("ORCH_BWLIMIT", "bwlimit"))
    """Global bandwidth cap such as 20M (bytes per second); none by default."""
    poll_initial_seconds: float = Field(
        default=10.0, gt=0, validation_alias=_env("ORCH_POLL_INITIAL", "poll_initial_seconds")
    )
    """First wait between status polls of an edit or export (the official SDK uses 10 s)."""
    poll_max_seconds: float = Field(
        default=60.0, gt=0, validation_alias=_env("ORCH_POLL_MAX", "poll_max_seconds")
    )
    """Longest wait between status polls."""
    wait_deadline_hours: float = Field(
        default=20.0, gt=0, validation_alias=_env("ORCH_WAIT_DEADLINE_HOURS", "wait_deadline_hours")
    )
    """How long an edit or export may take before the job fails (the SDK waits 20 h)."""
    link_batch_size: int = Field(
        default=200, ge=1, le=1000, validation_alias=_env("ORCH_LINK_BATCH", "link_batch_size")
    )
    """File names per request for presigned upload links."""
    photo_attempts: int = Field(
        default=8, ge=1, validation_alias=_env("ORCH_PHOTO_ATTEMPTS", "photo_attempts")
    )
    """Attempts a photo's transfer gets (backing off from 1 s to 60 s) before it is marked
    failed; a link that expired is renewed without using one up."""
    listen: str = Field(default="127.0.0.1:8750", validation_alias=_env("ORCH_LISTEN", "listen"))
    """HOST:PORT the daemon serves callbacks, health, metrics and the jobs API on."""
    public_url: str | None = Field(
        default=None, validation_alias=_env("ORCH_PUBLIC_URL", "public_url")
    )
    """The URL under which Imagen reaches this daemon (or the balancer before several); without
    it the daemon only polls."""
    max_jobs_in_progress: int = Field(
        default=4, ge=1, le=1000, validation_alias=_env("ORCH_MAX_JOBS", "max_jobs_in_progress")
    )
    """Jobs one daemon drives at once; waiting jobs do not count."""
    lease_ttl_seconds: float = Field(
        default=60.0, ge=1.0, validation_alias=_env("ORCH_LEASE_TTL", "lease_ttl_seconds")
    )
    """How long a job's lease outlives its daemon's last heartbeat before another may take it."""
    scheduler_idle_seconds: float = Field(
        default=2.0, gt=0, validation_alias=_env("ORCH_SCHEDULER_IDLE", "scheduler_idle_seconds")
    )
    """Longest the scheduler sleeps without a wake-up (catches jobs queued by other commands)."""
    pause_retry_seconds: float = Field(
        default=60.0, gt=0, validation_alias=_env("ORCH_PAUSE_RETRY", "pause_retry_seconds")
    )
    """When the daemon tries again a job stopped by an outside cause (Imagen down, key refused)."""
    hot_folders: list[HotFolder] = Field(
        default_factory=list, validation_alias=_env("ORCH_HOT_FOLDERS", "hot_folders")
    )
    """Folders the daemon watches for new shoots (TOML `[[hot_folders]]`, or JSON in env)."""
    hot_folder_settle_seconds: float = Field(
        default=30.0,
        ge=0,
        validation_alias=_env("ORCH_HOT_FOLDER_SETTLE", "hot_folder_settle_seconds"),
    )
    """How long a dropped folder must stay unchanged before it becomes a job."""
    hot_folder_scan_seconds: float = Field(
        default=5.0, gt=0, validation_alias=_env("ORCH_HOT_FOLDER_SCAN", "hot_folder_scan_seconds")
    )
    """Seconds between two looks at the watched folders."""
    prune_after_days: float | None = Field(
        default=None, gt=0, validation_alias=_env("ORCH_PRUNE_AFTER_DAYS", "prune_after_days")
    )
    """The daemon removes finished jobs that ended more than this many days ago, with their
    photos and history, at start and once a day (what `orchestrator prune` does); unset: never."""
    notify: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list, validation_alias=_env("ORCH_NOTIFY", "notify")
    )
    """Apprise URLs (Slack, e-mail, Telegram, a webhook, …) the daemon tells when a job waits
    for review, completes, fails or pauses; comma-separated in the environment, a list in
    TOML. They may hold tokens and passwords: never logged, printed or stored."""
    poll_budget: float = Field(
        default=5.0, gt=0, le=1000, validation_alias=_env("ORCH_POLL_BUDGET", "poll_budget")
    )
    """Status polls a second that the daemons sharing the database send Imagen together, as
    the safety net of jobs waiting on an edit or export (callbacks get lost), longest overdue
    first: 10,000 waiting jobs at the default are each asked about every 33 minutes at worst."""
    ui_token: SecretStr | None = Field(
        default=None, validation_alias=_env("ORCH_UI_TOKEN", "ui_token")
    )
    """The token `/api` (and the pages) need as `Authorization: Bearer …`; when the daemon
    listens beyond loopback without one, it makes one up and prints it once at start."""
    metrics_need_token: bool = Field(
        default=False, validation_alias=_env("ORCH_METRICS_NEED_TOKEN", "metrics_need_token")
    )
    """Whether /metrics needs the token too (by default scrapers need none)."""
    allowed_hosts: str = Field(
        default="", validation_alias=_env("ORCH_ALLOWED_HOSTS", "allowed_hosts")
    )
    """More names (comma-separated) the daemon may be reached by, besides loopback, the
    --listen host and the --public-url host; other `Host` headers are refused on /api."""
    login_window_seconds: float = Field(
        default=300.0,
        gt=0,
        le=86400,
        validation_alias=_env("ORCH_LOGIN_WINDOW", "login_window_seconds"),
    )
    """An address that gives 5 wrong tokens at /login within this many seconds waits until
    the first of them is this old (answered 429 with Retry-After)."""
    imagga_api_key: SecretStr | None = Field(
        default=None, validation_alias=_env("IMAGGA_API_KEY", "imagga_api_key")
    )
    """The Imagga API key (with the secret, sent only to Imagga, never stored or printed)."""
    imagga_api_secret: SecretStr | None = Field(
        default=None, validation_alias=_env("IMAGGA_API_SECRET", "imagga_api_secret")
    )
    """The Imagga API secret."""
    imagga_api_url: str = Field(
        default=IMAGGA_PRODUCTION_URL, validation_alias=_env("IMAGGA_API_URL", "imagga_api_url")
    )
    """Base URL of the Imagga API, ending in /v2."""
    imagga_concurrency: int | None = Field(
        default=None,
        ge=1,
        le=100,
        validation_alias=_env("ORCH_IMAGGA_CONCURRENCY", "imagga_concurrency"),
    )
    """Imagga requests in flight at once; by default the account's cap from /usage."""
    keyword_allowlist: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        validation_alias=_env("ORCH_KEYWORD_ALLOWLIST", "keyword_allowlist"),
    )
    """When not empty, only these words may become keywords (case-insensitive)."""
    keyword_blocklist: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        validation_alias=_env("ORCH_KEYWORD_BLOCKLIST", "keyword_blocklist"),
    )
    """Words that never become keywords (case-insensitive)."""
    moderation_threshold: float = Field(
        default=50.0,
        ge=0,
        le=100,
        validation_alias=_env("ORCH_MODERATION_THRESHOLD", "moderation_threshold"),
    )
    """A photo whose not-safe confidence (0–100) reaches this is flagged by --moderate."""
    tag_anyway: bool = Field(default=False, validation_alias=_env("ORCH_TAG_ANYWAY", "tag_anyway"))
    """Tag what the month's Imagga quota allows when it is too small for every photo (and
    pause for the rest) instead of pausing before sending anything."""
    exiftool: str = Field(default="exiftool", validation_alias=_env("ORCH_EXIFTOOL", "exiftool"))
    """The exiftool program that writes keywords into files."""
    people_index: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$",
        validation_alias=_env("ORCH_PEOPLE_INDEX", "people_index"),
    )
    """The studio's Imagga face recognition index (`--people`): a person named is taught to
    it, and the persons of later shoots it recognises are named by themselves."""
    imgix_api_key: SecretStr | None = Field(
        default=None, validation_alias=_env("IMGIX_API_KEY", "imgix_api_key")
    )
    """The imgix Management API key (needs Asset Manager Edit and Purge); sent only to imgix."""
    imgix_source_id: str | None = Field(
        default=None, validation_alias=_env("IMGIX_SOURCE_ID", "imgix_source_id")
    )
    """The imgix Source delivered photos are uploaded to."""
    imgix_domain: str | None = Field(
        default=None, validation_alias=_env("IMGIX_DOMAIN", "imgix_domain")
    )
    """The Source's delivery domain, e.g. studio.imgix.net."""
    imgix_secure_url_token: SecretStr | None = Field(
        default=None, validation_alias=_env("IMGIX_SECURE_URL_TOKEN", "imgix_secure_url_token")
    )
    """The Source's secure URL token: when set, delivery URLs are signed with it."""
    imgix_api_url: str = Field(
        default=IMGIX_PRODUCTION_API_URL, validation_alias=_env("IMGIX_API_URL", "imgix_api_url")
    )
    """Base URL of the imgix Management API, ending in /api/v1."""
    imgix_rate_scale: float = Field(
        default=1.0, gt=0, le=1, validation_alias=_env("IMGIX_RATE_SCALE", "imgix_rate_scale")
    )
    """The share of imgix's per-endpoint rate limits this process uses: 1 for one process per
    API key; with N daemons delivering on one key, 1/N each."""
    log_level: str = Field(default="INFO", validation_alias=_env("ORCH_LOG_LEVEL", "log_level"))
    """Threshold of the daemon's JSON log lines on stderr (DEBUG, INFO, WARNING, ERROR)."""
    library_log_level: str | None = Field(
        default=None, validation_alias=_env("ORCH_LIBRARY_LOG_LEVEL", "library_log_level")
    )
    """The same for the libraries' lines (database drivers, aiohttp); by default log_level but
    never DEBUG, which only shows when asked for here."""

    @field_validator("imagen_api_url")
    @classmethod
    def _api_url(cls, value: str) -> str:
        return check_api_url(value)

    @field_validator("bwlimit")
    @classmethod
    def _rate(cls, value: str | None) -> str | None:
        if value is not None:
            parse_rate(value)
        return value

    @field_validator("imagga_api_url")
    @classmethod
    def _imagga_url(cls, value: str) -> str:
        return _http_url(value, IMAGGA_PRODUCTION_URL).geturl().rstrip("/")

    @field_validator("keyword_allowlist", "keyword_blocklist", mode="before")
    @classmethod
    def _word_list(cls, value: Any) -> Any:
        # The environment gives a comma-separated line; TOML gives a list.
        if isinstance(value, str):
            return [word.strip() for word in value.split(",") if word.strip()]
        return value

    @field_validator("notify", mode="before")
    @classmethod
    def _url_list(cls, value: Any) -> Any:
        # The environment gives one line: Apprise URLs separated by commas or spaces.
        if isinstance(value, str):
            return [url for url in re.split(r"[,\s]+", value) if url]
        return value

    @field_validator("imgix_api_url")
    @classmethod
    def _imgix_api_url(cls, value: str) -> str:
        return _http_url(value, IMGIX_PRODUCTION_API_URL).geturl().rstrip("/")

    @field_validator("imgix_domain")
    @classmethod
    def _imgix_domain(cls, value: str | None) -> str | None:
        return check_domain(value.strip()) if value and value.strip() else None

    @field_validator("imgix_source_id")
    @classmethod
    def _imgix_source(cls, value: str | None) -> str | None:
        if not value or not value.strip():
            return None
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", value.strip()):
            raise ValueError("must be the Source's id (letters and digits, from the dashboard)")
        return value.strip()

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str | None) -> str | None:
        if not value:
            return None
        return _http_url(value, "https://orchestrator.example.com").geturl().rstrip("/")

    @field_validator("log_level", "library_log_level")
    @classmethod
    def _known_level(cls, value: str | None) -> str | None:
        if value is None:
            return None
        level = value.strip().upper()
        if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise ValueError(f"must be DEBUG, INFO, WARNING or ERROR, not {value!r}")
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
        return (
            init_settings,
            env_settings,
            InitSettingsSource(settings_cls, init_kwargs=read_config_file()[1]),
        )

    def resolved_database_url(self) -> str:
        """The database URL to use, falling back to the SQLite file in the data folder."""
        return self.database_url or f"sqlite:///{default_database_path()}"

    @property
    def imagen(self) -> ImagenSettings:
        """Imagen's API and the waits for it."""
        return ImagenSettings(
            api_key=self.imagen_api_key,
            api_url=self.imagen_api_url,
            poll_initial_seconds=self.poll_initial_seconds,
            poll_max_seconds=self.poll_max_seconds,
            wait_deadline_hours=self.wait_deadline_hours,
            link_batch_size=self.link_batch_size,
        )

    @property
    def tagging(self) -> TaggingSettings:
        """Imagga and the keywords."""
        return TaggingSettings(
            api_key=self.imagga_api_key,
            api_secret=self.imagga_api_secret,
            api_url=self.imagga_api_url,
            concurrency=self.imagga_concurrency,
            allowlist=self.keyword_allowlist,
            blocklist=self.keyword_blocklist,
            moderation_threshold=self.moderation_threshold,
            anyway=self.tag_anyway,
            exiftool=self.exiftool,
            people_index=self.people_index,
        )

    @property
    def imgix(self) -> ImgixSettings:
        """The imgix Source."""
        return ImgixSettings(
            api_key=self.imgix_api_key,
            source_id=self.imgix_source_id,
            domain=self.imgix_domain,
            secure_url_token=self.imgix_secure_url_token,
            api_url=self.imgix_api_url,
            rate_scale=self.imgix_rate_scale,
        )

    @property
    def transfers(self) -> TransferLimits:
        """The transfers' limits."""
        return TransferLimits(
            concurrency=self.concurrency,
            bwlimit=parse_rate(self.bwlimit) if self.bwlimit else None,
            photo_attempts=self.photo_attempts,
        )

    @property
    def daemon(self) -> DaemonSettings:
        """The daemon's."""
        return DaemonSettings(
            listen=self.listen,
            public_url=self.public_url,
            max_jobs=self.max_jobs_in_progress,
            lease_ttl_seconds=self.lease_ttl_seconds,
            scheduler_idle_seconds=self.scheduler_idle_seconds,
            pause_retry_seconds=self.pause_retry_seconds,
            hot_folders=self.hot_folders,
            hot_folder_settle_seconds=self.hot_folder_settle_seconds,
            hot_folder_scan_seconds=self.hot_folder_scan_seconds,
            prune_after_days=self.prune_after_days,
            notify=self.notify,
            poll_budget=self.poll_budget,
        )

    @property
    def web(self) -> WebSettings:
        """The page's and /api's access."""
        return WebSettings(
            ui_token=self.ui_token,
            metrics_need_token=self.metrics_need_token,
            allowed_hosts=self.allowed_hosts,
            login_window_seconds=self.login_window_seconds,
        )

    @property
    def logs(self) -> LogSettings:
        """The log thresholds."""
        return LogSettings(level=self.log_level, library_level=self.library_log_level)


_FLAGS = {
    "max_jobs_in_progress": "--max-jobs",
    "lease_ttl_seconds": "--lease-ttl",
    "hot_folder_settle_seconds": "--settle",
}
"""Command-line flags whose name is not the setting's (`--public-url` is `public_url`)."""
_URL_FIELDS = frozenset(
    {"imagen_api_url", "imagga_api_url", "public_url", "database_url", "imgix_api_url"}
)
"""Settings whose value may hold a password: shown without it."""
_SECRET_FIELDS = frozenset(
    {
        "imagen_api_key",
        "imagga_api_key",
        "imagga_api_secret",
        "ui_token",
        "imgix_api_key",
        "imgix_secure_url_token",
        "notify",
    }
)


def read_config_file() -> tuple[Path, dict[str, Any]]:
    """The TOML file's path and settings; ConfigProblem if it is unreadable, invalid or unknown.

    A missing file is no settings, unless $ORCH_CONFIG names it: then it is a mistake.
    """
    path = config_file_path()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        if os.environ.get("ORCH_CONFIG"):
            raise ConfigProblem(
                f"ORCH_CONFIG names {path}, which does not exist: create it, or unset ORCH_CONFIG"
            ) from None
        return path, {}
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigProblem(f"cannot read the configuration file {path}: {exc}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigProblem(f"{path} is not valid TOML: {exc}") from None
    unknown = [key for key in data if key not in Settings.model_fields]
    if unknown:
        raise ConfigProblem(
            *(f"{path}: {_unknown_key(key, Settings.model_fields)}" for key in unknown)
        )
    return path, data


OTHER_VARIABLES = frozenset(
    {"ORCH_CONFIG", "ORCH_CRASH_AT", "ORCH_PORT", "ORCH_SHOOTS", "ORCH_UID", "ORCH_GID"}
)
"""The ORCH_* variables read outside the settings: the file's path, the crash tests' kill, and
those docker-compose.yml reads (published port, shoots folder, the user the daemon runs as)."""
DEVELOPER_PREFIXES = ("ORCH_TEST_", "ORCH_CHAOS_", "ORCH_BENCH_")
"""Variables of the test suite and the benchmarks (a test database, kill rounds): not settings."""


def setting_variables() -> dict[str, str]:
    """Each environment variable a setting is read from, by its name, with the setting's."""
    found: dict[str, str] = {}
    for field, info in Settings.model_fields.items():
        aliases = info.validation_alias
        if isinstance(aliases, AliasChoices):
            found.update((c, field) for c in aliases.choices if isinstance(c, str) and c.isupper())
    return found


def unknown_variables(environ: Mapping[str, str]) -> list[str]:
    """A line for each ORCH_* variable set that nothing reads (a misspelt setting is otherwise
    silently ignored), with the closest known name."""
    known = set(setting_variables()) | OTHER_VARIABLES
    return [
        f"{name}: unknown variable"
        + (
            f" (did you mean {close[0]}?)"
            if (close := difflib.get_close_matches(name.upper(), sorted(known), n=1))
            else ""
        )
        for name in sorted(environ)
        if name.upper().startswith("ORCH_")
        and not name.upper().startswith(DEVELOPER_PREFIXES)
        and name.upper() not in known
    ]


def load_settings(flags: Mapping[str, Any] | None = None) -> Settings:
    """Settings from the flags given (None: not given), the environment and the TOML file.

    Raises ConfigProblem with one line per mistake.
    """
    given = {k: v for k, v in (flags or {}).items() if v is not None}
    unknown = unknown_variables(os.environ)
    if unknown:
        raise ConfigProblem(*unknown)
    try:
        return Settings(**given)
    except SettingsError as exc:
        # Only the environment's JSON values (ORCH_HOT_FOLDERS) fail to parse this way.
        field = next((name for name in Settings.model_fields if f'"{name}"' in str(exc)), "")
        raise ConfigProblem(f"{_env_name(field) or field}: not valid JSON") from None
    except ValidationError as exc:
        path, toml = read_config_file()
        raise ConfigProblem(
            *(_describe(error, given, path, toml) for error in exc.errors())
        ) from None


def _field_of(name: object) -> str:
    """The setting a validation error's first location names (an alias or the field's name)."""
    for field, info in Settings.model_fields.items():
        aliases = info.validation_alias
        if name == field or (isinstance(aliases, AliasChoices) and name in aliases.choices):
            return field
    return str(name)


def _env_name(field: str) -> str | None:
    """The environment variable that set `field` now, if one did (matched like pydantic does)."""
    info = Settings.model_fields.get(field)
    if info is None or not isinstance(info.validation_alias, AliasChoices):
        return None
    by_lower = {name.lower(): name for name in os.environ}
    for choice in info.validation_alias.choices:
        if isinstance(choice, str) and choice.lower() in by_lower:
            return by_lower[choice.lower()]
    return None


def _describe(error: Any, flags: Mapping[str, Any], path: Path, toml: Mapping[str, Any]) -> str:
    """One validation error as "where = value: what is wrong; allowed: …"."""
    field, *inner = error["loc"] or ("",)
    field = _field_of(field)
    env = _env_name(field)
    if field in flags:
        where = _FLAGS.get(field, "--" + field.replace("_", "-"))
    elif env is not None:
        where = env
    elif field in toml:
        where = f"{path}: {field}"
    else:
        where = field
    where += "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in inner)
    if error["type"] == "extra_forbidden" and inner:
        return f"{where}: {_unknown_key(str(inner[-1]), _nested_fields(field))}"
    shown = _shown(field, error.get("input")) if not inner else ""
    info = Settings.model_fields.get(field)
    allowed = _allowed(info) if info is not None and not inner else None
    return f"{where}{shown}: {_problem(error)}" + (f"; allowed: {allowed}" if allowed else "")


def _shown(field: str, value: Any) -> str:
    """ " = 'value'" for a message, with URLs' passwords removed and secrets left out."""
    if field in _SECRET_FIELDS or isinstance(value, dict | list):
        return ""
    if field in _URL_FIELDS and isinstance(value, str):
        value = _without_credentials(value)
    return f" = {value!r}"


_PROBLEMS = {
    "int_parsing": "not a whole number",
    "int_from_float": "not a whole number",
    "float_parsing": "not a number",
    "bool_parsing": "not true or false",
    "missing": "missing",
    "string_type": "not text",
    "list_type": "not a list",
    "greater_than": "out of range",
    "greater_than_equal": "out of range",
    "less_than": "out of range",
    "less_than_equal": "out of range",
}


def _problem(error: Any) -> str:
    """What is wrong with the value, in words; our validators' own messages as they are."""
    if error["type"] in _PROBLEMS:
        return _PROBLEMS[error["type"]]
    message = str(error["msg"]).removeprefix("Value error, ")
    return message[:1].lower() + message[1:]


def _allowed(info: FieldInfo) -> str | None:
    """What a numeric setting accepts, from its bounds: "a whole number from 1 to 256"."""
    if info.annotation is int:
        kind = "a whole number"
    elif info.annotation is float:
        kind = "a number"
    else:
        return None
    bounds = {type(m): m for m in info.metadata if isinstance(m, Ge | Gt | Le | Lt)}
    ge, le = bounds.get(Ge), bounds.get(Le)
    if isinstance(ge, Ge) and isinstance(le, Le):
        return f"{kind} from {ge.ge} to {le.le}"
    words = {
        Ge: ("at least", "ge"),
        Gt: ("above", "gt"),
        Le: ("at most", "le"),
        Lt: ("below", "lt"),
    }
    limits = [f"{words[type(m)][0]} {getattr(m, words[type(m)][1])}" for m in bounds.values()]
    return " ".join([kind, " and ".join(limits)]).strip()


def _nested_fields(field: str) -> Iterable[str]:
    """The keys allowed inside a setting made of tables (hot folders)."""
    return HotFolder.model_fields if field == "hot_folders" else ()


def _unknown_key(key: str, known: Iterable[str]) -> str:
    """ "unknown key 'x'", with the closest known key as a suggestion."""
    close = difflib.get_close_matches(key, list(known), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown key {key!r}{hint}"


def effective_settings(settings: Settings) -> dict[str, Any]:
    """The settings in effect for `orchestrator config`: each value (secrets masked, URLs
    without their passwords) with where it came from, the config file and the database."""
    path, toml = read_config_file()
    rows = []
    for field in Settings.model_fields:
        value = getattr(settings, field)
        if field in _SECRET_FIELDS:
            shown = (
                "(not set)"
                if value is None or value == []
                else f"**** ({plural(len(value), 'URL')}, masked)"
                if isinstance(value, list)
                else "**** (set)"
            )
        elif field in _URL_FIELDS and isinstance(value, str):
            shown = _without_credentials(value)
        elif isinstance(value, list):
            shown = json.dumps([v.model_dump(mode="json") for v in value])
        else:
            shown = "" if value is None else str(value)
        env = _env_name(field)
        source = f"env {env}" if env else f"file {path}" if field in toml else "default"
        rows.append({"name": field, "value": shown, "source": source})
    return {
        "config_file": str(path) if path.exists() else f"{path} (none)",
        "database": _without_credentials(settings.resolved_database_url()),
        "settings": rows,
    }
