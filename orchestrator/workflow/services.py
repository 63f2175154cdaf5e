"""The services the product's later stages share besides Imagen and the transfers, each
declared once: its settings group, what it lacks (in the words that name the variable to
set), and how it is built. Stages name them in `requires` and find them in `Services`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from orchestrator.config import ImgixSettings, Settings, TaggingSettings
from orchestrator.integrations.imagga_models import quota_spent
from orchestrator.integrations.keywords import INSTALL_HINT
from orchestrator.words import plural
from orchestrator.workflow.stage import Connection, Demand, Program, Service

if TYPE_CHECKING:
    # Types only: a stage's declaration loads no HTTP stack.
    from orchestrator.integrations.delivery_files import Urls
    from orchestrator.integrations.imgix import ImgixClient
    from orchestrator.integrations.keywords import KeywordFiles
    from orchestrator.integrations.tagging import Tagging

TAGGING_NOT_CONFIGURED = (
    "--tag needs Imagga credentials: set IMAGGA_API_KEY and IMAGGA_API_SECRET "
    "(and IMAGGA_API_URL for the sandbox)"
)


@dataclass(frozen=True)
class Delivery:
    """Where delivered photos go: the imgix Source's client and its delivery URLs."""

    imgix: ImgixClient
    urls: Urls


def _tagging_missing(group: TaggingSettings) -> str | None:
    return None if group.credentials() else TAGGING_NOT_CONFIGURED


def build_tagging(group: TaggingSettings, connection: Connection) -> Tagging:
    """Imagga and the keyword writer (closed with the connection)."""
    from orchestrator.integrations.imagga import ImaggaClient
    from orchestrator.integrations.keywords import KeywordFiles
    from orchestrator.integrations.tagging import Tagging
    from orchestrator.rules.keywords import KeywordRules

    credentials = group.credentials()
    assert credentials is not None  # built only when configured
    key, secret = credentials
    files = KeywordFiles(group.exiftool)
    connection.closing.callback(files.close)
    return Tagging(
        imagga=ImaggaClient(
            connection.session,
            base_url=group.api_url,
            api_key=key,
            api_secret=secret,
            concurrency=group.concurrency,
            on_retry=connection.on_retry,
        ),
        files=files,
        rules=KeywordRules.of(group.allowlist, group.blocklist, group.moderation_threshold),
        anyway=group.anyway,
        people_index=group.people_index,
    )


async def probe_tagging(tagging: Tagging, demands: Sequence[Demand]) -> str | None:
    """The key and the month's quota (`/usage`): enough requests left for every photo still
    to be tagged, unless `--tag-anyway` takes what there is."""
    usage = await tagging.imagga.usage()
    photos = sum(d.left("tag") for d in demands if d.spec.tag is not None)
    needed = sum(d.left("tag") * d.spec.tag.analyses_per_photo for d in demands if d.spec.tag)
    if needed <= usage.left or (tagging.anyway and usage.left):
        return None
    return f"{quota_spent(usage, needed)} for {plural(photos, 'photo')}: run once it has reset" + (
        ", or add --tag-anyway to tag what it allows" if usage.left else ""
    )


def _imgix_missing(group: ImgixSettings) -> str | None:
    missing = group.missing()
    if not missing:
        return None
    return (
        f"--deliver needs {', '.join(missing)} (the imgix API key, Source id and delivery "
        "domain): set them, or leave out --deliver"
    )


def build_delivery(group: ImgixSettings, connection: Connection) -> Delivery:
    """The imgix Source's client and URLs. One per process: its rate limit buckets are shared
    by every job the process drives."""
    from orchestrator.integrations.delivery_files import Urls
    from orchestrator.integrations.imgix import ImgixClient

    assert group.api_key and group.source_id and group.domain  # built only when configured
    token = group.secure_url_token
    return Delivery(
        imgix=ImgixClient(
            connection.session,
            api_key=group.api_key.get_secret_value().strip(),
            source_id=group.source_id,
            base_url=group.api_url,
            rate_scale=group.rate_scale,
            on_retry=connection.on_retry,
        ),
        urls=Urls(group.domain, token.get_secret_value() if token else None),
    )


def _never_missing(command: str) -> str | None:
    return None


def build_photo_metadata(command: str, connection: Connection) -> KeywordFiles:
    """An exiftool of its own for carrying what the photographer made into the outputs
    (started on first use, closed with the connection)."""
    from orchestrator.integrations.keywords import KeywordFiles

    files = KeywordFiles(command)
    connection.closing.callback(files.close)
    return files


async def probe_delivery(delivery: Delivery, demands: Sequence[Demand]) -> str | None:
    """The key and the Source: one asset of it read."""
    await delivery.imgix.check_source()
    return None


def _tagging_settings(settings: Settings) -> TaggingSettings:
    return settings.tagging


def _imgix_settings(settings: Settings) -> ImgixSettings:
    return settings.imgix


def _exiftool(settings: Settings) -> str:
    return settings.tagging.exiftool


TAGGING: Service[TaggingSettings, Tagging] = Service(
    name="Imagga",
    settings=_tagging_settings,
    missing=_tagging_missing,
    build=build_tagging,
    probe=probe_tagging,
)
"""Imagga and the keyword writer (IMAGGA_*, ORCH_KEYWORD_*, ORCH_EXIFTOOL)."""
EXIFTOOL = Program(command=_exiftool, hint=INSTALL_HINT)
"""The program keywords are written with (ORCH_EXIFTOOL)."""
IMGIX: Service[ImgixSettings, Delivery] = Service(
    name="imgix",
    settings=_imgix_settings,
    missing=_imgix_missing,
    build=build_delivery,
    probe=probe_delivery,
)
"""The imgix Source (IMGIX_*)."""
PHOTO_METADATA: Service[str, KeywordFiles] = Service(
    name="exiftool", settings=_exiftool, missing=_never_missing, build=build_photo_metadata
)
"""exiftool for the downloads, which carry a shoot's ratings, labels and captions into its
outputs. Never a requirement: a shoot that has none needs no exiftool, and one that has some
without exiftool gets its outputs all the same, with a note (ORCH_EXIFTOOL)."""
