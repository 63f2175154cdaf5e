"""What delivery hands the photographer: the delivery URLs (signed with the `imgix` library),
`delivery.json` and the contact sheet (origin paths are made by `rules/delivery.py`).

Nothing here talks to imgix; it only turns paths and records into URLs and files.
"""

from __future__ import annotations

import asyncio
import fcntl
import html
import json
import os
import secrets
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from imgix import UrlBuilder

SRCSET_WIDTHS = (320, 640, 960, 1280, 1920, 2560)
"""Widths offered in each photo's srcset: phone to large screen."""
SRCSET_PARAMS = {"auto": "format,compress"}
DELIVERY_JSON = "delivery.json"
CONTACT_SHEET = "index.html"


def quoted_path(path: str) -> str:
    """The origin path as it appears in URLs: each segment percent-encoded."""
    return quote(path, safe="/")


class Urls:
    """The delivery URLs of a Source's domain, signed when it has a secure URL token."""

    def __init__(self, domain: str, secure_token: str | None = None) -> None:
        self.domain = domain
        self._builder = UrlBuilder(
            domain, use_https=True, sign_key=secure_token or None, include_library_param=False
        )

    def url(self, path: str) -> str:
        """The photo as delivered."""
        return str(self._builder.create_url(quoted_path(path), {}, _ENCODED))

    def srcset(self, path: str) -> str:
        """Sizes of the photo for responsive pages, in `srcset` syntax."""
        return str(
            self._builder.create_srcset(
                quoted_path(path), dict(SRCSET_PARAMS), _ENCODED, widths=list(SRCSET_WIDTHS)
            )
        )

    def crop_url(self, path: str, ratio: str, focal_point: tuple[float, float]) -> str:
        """The photo cropped to `ratio` (`4:5`) around the focal point (x, y in 0..1)."""
        x, y = focal_point
        params = {
            "fit": "crop",
            "crop": "focalpoint",
            "fp-x": f"{x:.4f}",
            "fp-y": f"{y:.4f}",
            "ar": ratio,
            **SRCSET_PARAMS,
        }
        return str(self._builder.create_url(quoted_path(path), params, _ENCODED))

    def purge_url(self, path: str) -> str:
        """The unsigned URL imgix purges (a purge covers every rendition of the path)."""
        return f"https://{self.domain}/{quoted_path(path)}"


_ENCODED = {"disable_path_encoding": True}
"""The path is encoded by `quoted_path`, the same way for URLs, purges and the API (the
library would treat a path starting with "http" as a web proxy's)."""


@dataclass(frozen=True)
class DeliveryRecord:
    """One delivered photo, as delivery.json and the contact sheet list it."""

    photo: str
    origin_path: str
    url: str
    srcset: str
    keywords: Sequence[str]
    delivered_at: str
    md5: str
    shoot: str = ""
    """The name of the shoot the photo belongs to."""
    analyses: Mapping[str, Any] = field(default_factory=dict)
    """What Imagga's analyses found, when the job asked for them: `colors`, `faces`, `people`,
    `focal_point` and `crops` (see `analysis_record`)."""

    def to_json(self) -> dict[str, Any]:
        """The record as delivery.json holds it."""
        return {
            "shoot": self.shoot,
            "photo": self.photo,
            "origin_path": self.origin_path,
            "url": self.url,
            "srcset": self.srcset,
            "keywords": list(self.keywords),
            "delivered_at": self.delivered_at,
            "md5": self.md5,
            **self.analyses,
        }

    @property
    def crops(self) -> Mapping[str, str]:
        """The photo's crop URLs by ratio, if it has a focal point."""
        crops = self.analyses.get("crops")
        return crops if isinstance(crops, dict) else {}


def delivered_folder(source: str, exported_dir: str) -> Path:
    """The shoot's one delivered/, beside the exported/ that holds the job's exports (in the
    shoot folder, or under `--output`'s), whatever subfolder of it (RAW, JPG) the job's are."""
    exported = Path(exported_dir)
    for folder in (exported, *exported.parents):
        if folder.name == "exported":
            return folder.parent / "delivered"
    return Path(source) / "delivered"


LOCK_FILE = ".delivery.lock"
"""The file whose lock each writer of a delivered/ folder holds (the jobs of one shoot)."""


@asynccontextmanager
async def locked_folder(folder: Path) -> AsyncIterator[None]:
    """Hold the folder's delivery lock (made first if need be) while the block runs: one
    writer at a time, in this process and any other on this machine."""
    await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)
    handle = await asyncio.to_thread(os.open, folder / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        await asyncio.to_thread(fcntl.flock, handle, fcntl.LOCK_EX)
        yield
    finally:
        os.close(handle)  # closing lets the lock go


def write_delivery(
    folder: Path, title: str, records: Sequence[DeliveryRecord], held: Mapping[str, str]
) -> None:
    """Write delivery.json and index.html into `folder`, each replaced whole (atomically)."""
    folder.mkdir(parents=True, exist_ok=True)
    ordered = sorted(records, key=lambda record: record.photo)
    payload = json.dumps([record.to_json() for record in ordered], indent=2, ensure_ascii=False)
    _replace(folder / DELIVERY_JSON, payload + "\n")
    _replace(folder / CONTACT_SHEET, contact_sheet(title, ordered, held))


def contact_sheet(title: str, records: Sequence[DeliveryRecord], held: Mapping[str, str]) -> str:
    """A static page of the delivered photos: no script, no outside style, every text escaped."""
    e = _escape
    cards = "\n".join(
        f'<figure><a href="{e(r.url)}"><img src="{e(r.crops.get("1:1", r.url))}" '
        + (f'srcset="{e(r.srcset)}" ' if not r.crops else "")
        + f'sizes="(max-width: 600px) 100vw, 300px" alt="{e(r.photo)}" loading="lazy"></a>'
        f"<figcaption><b>{e(r.photo)}</b><br>{e(', '.join(r.keywords))}"
        f"{_crop_links(r.crops)}</figcaption></figure>"
        for r in records
    )
    held_list = "".join(
        f"<li>{e(photo)}: {e(reason)}</li>" for photo, reason in sorted(held.items())
    )
    held_part = f"<h2>Not delivered</h2><ul>{held_list}</ul>" if held else ""
    return (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "img-src https:; style-src 'unsafe-inline'\">"
        f"<title>{e(title)}</title><style>"
        "body{font-family:sans-serif;margin:1.5rem;background:#fafafa;color:#222}"
        "main{display:grid;grid-template-columns:repeat(auto-fill,minmax(260px,1fr));gap:1rem}"
        "figure{margin:0;background:#fff;padding:.5rem;border:1px solid #ddd}"
        "img{width:100%;height:auto;display:block}figcaption{font-size:.85rem;margin-top:.4rem}"
        f"</style></head><body><h1>{e(title)}</h1>"
        f"<p>{len(records)} photos delivered.</p><main>\n{cards}\n</main>{held_part}"
        "</body></html>\n"
    )


def _crop_links(crops: Mapping[str, str]) -> str:
    """Links to a photo's crops on its focal point, if it has them."""
    if not crops:
        return ""
    links = " · ".join(
        f'<a href="{_escape(url)}">{_escape(ratio)}</a>' for ratio, url in crops.items()
    )
    return f"<br>crops: {links}"


def _escape(text: str) -> str:
    return html.escape(text, quote=True)


def _replace(path: Path, text: str) -> None:
    """Write `text` to `path` through a temporary file renamed over it: never half a file.
    The file is meant to be shared (sent, served): made with the user's umask, as any file
    they make, not private."""
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    handle = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
