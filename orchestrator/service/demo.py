"""`orchestrator demo`: the whole journey against an in-process sandbox, with no API key: edit,
export, keywords with colours, faces, people and smart crops (when exiftool is there to write
them), and delivery to the sandbox's imgix; then what each stage produced, and with `--keep`
a contact sheet of the crops on their focal points (local files: it opens offline) and the
database the web page's review shows."""

from __future__ import annotations

import asyncio
import hashlib
import html
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.config import Settings
from orchestrator.progress import ProgressSink
from orchestrator.sandbox.config import SandboxConfig
from orchestrator.sandbox.samples import make_sample_shoot
from orchestrator.sandbox.server import start_sandbox
from orchestrator.service.batch import BatchResult, run_batch
from orchestrator.spec import DeliverSpec, JobSpec, TagSpec
from orchestrator.store.queries import Store
from orchestrator.words import plural
from orchestrator.workflow.deliver import delivery_record
from orchestrator.workflow.people import people_of
from orchestrator.workflow.planning import RunRequest
from orchestrator.workflow.tag_details import TagDetails

DEMO_EDIT_SECONDS = 2.0
DEMO_PROFILES = ("1001", "2001")
"""The sandbox's RAW and JPEG profiles used by the demo."""
DEMO_SOURCE = "demo-source"
DEMO_DOMAIN = "demo.imgix.net"
CONTACT_SHEET = "contact-sheet.html"
"""The demo's own contact sheet (of the local exports), beside the shoot when kept."""


@dataclass
class DemoReport:
    """What each stage produced, as the demo prints it, and the files worth opening."""

    lines: list[str] = field(default_factory=list)
    contact_sheet: Path | None = None
    database_url: str = ""


class DemoMismatch(RuntimeError):
    """A downloaded file differs from what the sandbox served: a bug worth reporting."""


async def run_demo(
    progress: ProgressSink, *, keep: Path | None = None
) -> tuple[BatchResult, int, DemoReport]:
    """Make a sample shoot, run its whole journey against the sandbox, verify every output
    and say what each stage produced."""
    with tempfile.TemporaryDirectory(prefix="orchestrator-demo-") as scratch:
        base, shoot = _prepare_shoot(keep or Path(scratch))
        sandbox = await start_sandbox(SandboxConfig(edit_seconds=DEMO_EDIT_SECONDS))
        try:
            exiftool = shutil.which("exiftool") is not None
            settings = Settings(
                imagen_api_key="demo-key",
                imagen_api_url=sandbox.api_url,
                database_url=f"sqlite:///{base / 'demo.db'}",
                poll_initial_seconds=0.5,
                poll_max_seconds=1.0,
                imagga_api_key="demo-imagga-key",
                imagga_api_secret="demo-imagga-secret",
                imagga_api_url=f"{sandbox.base_url}/imagga/v2",
                imgix_api_key="demo-imgix-key",
                imgix_source_id=DEMO_SOURCE,
                imgix_domain=DEMO_DOMAIN,
                imgix_api_url=f"{sandbox.base_url}/imgix/api/v1",
            )
            request = RunRequest(source=shoot, profiles=DEMO_PROFILES, spec=demo_spec(exiftool))
            result = await run_batch(request, settings, progress)
            downloaded = await _downloaded(result, settings)
            verified = verify_against_ledger(result, sandbox.ledger(), downloaded)
            report = await _report(result, settings, sandbox.ledger(), exiftool)
            if keep is not None:
                report.contact_sheet = await _contact_sheet(result, settings, base)
        finally:
            await sandbox.close()
        return result, verified, report


def demo_spec(exiftool: bool) -> JobSpec:
    """The whole journey; without exiftool (nothing could write the keywords) edit and export."""
    if not exiftool:
        return JobSpec(export=True)
    return JobSpec(
        export=True,
        tag=TagSpec(colors=True, faces=True, people=True, smart_crops=True),
        deliver=DeliverSpec(),
    )


async def _report(
    result: BatchResult, settings: Settings, ledger: dict[str, Any], exiftool: bool
) -> DemoReport:
    """What each stage produced, job by job, from the database and the sandbox's ledger."""
    assert settings.database_url is not None
    report = DemoReport(database_url=settings.database_url)
    if not exiftool:
        report.lines.append(
            "keywords, colours, faces, people and delivery were left out: they need the "
            "exiftool program (apt-get install libimage-exiftool-perl)"
        )
    store = Store.open(settings.database_url)
    try:
        for outcome in result.outcomes:
            job = outcome.job
            photos = await store.photos(job.id)
            tagged = [d for p in photos if (d := TagDetails.of(p)) is not None]
            delivered = [r for p in photos if (r := delivery_record(p)) is not None]
            lines = report.lines
            lines.append(f"{job.name} ({plural(len(photos), 'photo')}, {job.state}):")
            lines.append(
                f"  edit and export: {sum(p.done('edit') for p in photos)} edited, "
                f"{sum(p.done('export') for p in photos)} exported into {job.exported_dir}"
            )
            if tagged:
                first = tagged[0]
                lines.append(
                    f"  keywords: {plural(len(tagged), 'photo')} tagged, e.g. "
                    f"{', '.join(first.keywords[:6])}"
                )
                colours = sorted({w for d in tagged for w in d.color_words})
                lines.append(f"  colours: {', '.join(colours[:10])} (as Colors|… keywords)")
                faces = sum(len(d.faces or ()) for d in tagged)
                persons = people_of(photos)
                hint = (
                    f" (name them with `orchestrator people {job.id[:8]} 1 --name Anna`)"
                    if persons
                    else ""
                )
                lines.append(
                    f"  faces: {plural(faces, 'face')} written as MWG regions; "
                    f"{plural(len(persons), 'person')} grouped{hint}"
                )
                points = sum(d.focal_point is not None for d in tagged)
                lines.append(f"  smart crops: {plural(points, 'focal point')} for 1:1, 4:5, 9:16")
            if delivered:
                crops = delivered[0].crops
                lines.append(
                    f"  delivery: {plural(len(delivered), 'photo')} on imgix "
                    f"(the sandbox's), e.g. {crops.get('4:5') or delivered[0].url}"
                )
        imagga = ledger["imagga"]
        if exiftool:
            report.lines.append(
                f"Imagga requests: {imagga['tag_requests']} tags, {imagga['colors_requests']} "
                f"colours, {imagga['faces_requests']} faces, {imagga['croppings_requests']} "
                f"crops, {imagga['groupings_requests']} groupings (one per photo per analysis)"
            )
    finally:
        await store.close()
    return report


async def _contact_sheet(result: BatchResult, settings: Settings, base: Path) -> Path | None:
    """A contact sheet of the local exports, each cropped 1:1 and 4:5 on its focal point, with
    its keywords (the delivered one links to imgix URLs, which the sandbox does not serve)."""
    assert settings.database_url is not None
    store = Store.open(settings.database_url)
    cards: list[str] = []
    try:
        for outcome in result.outcomes:
            job = outcome.job
            for photo in await store.photos(job.id):
                export = photo.phase("export")
                details = TagDetails.of(photo)
                if export is None or export.output is None:
                    continue
                image = Path(job.exported_dir) / export.output
                if not image.exists():
                    continue
                cards.append(_card(image, base, photo.rel_path, details))
    finally:
        await store.close()
    if not cards:
        return None
    path = base / CONTACT_SHEET
    await asyncio.to_thread(path.write_text, _sheet(cards), "utf-8")
    return path


def _card(image: Path, base: Path, name: str, details: TagDetails | None) -> str:
    e = html.escape
    link = e(image.relative_to(base).as_posix() if image.is_relative_to(base) else image.as_uri())
    point = details.focal_point if details else None
    place = f"{point.x * 100:.1f}% {point.y * 100:.1f}%" if point else "50% 50%"
    words = ", ".join([*details.keywords, *details.analysis_words]) if details else ""
    crops = "".join(
        f'<img class="r{ratio.replace(":", "x")}" src="{link}" alt="{e(name)} {ratio}" '
        f'style="object-position:{place}">'
        for ratio in ("1:1", "4:5")
    )
    faces = len(details.faces or ()) if details else 0
    return (
        f"<figure>{crops}<figcaption><b>{e(name)}</b> · {faces} faces"
        f"{' · focal point ' + e(place) if point else ''}<br>{e(words)}</figcaption></figure>"
    )


def _sheet(cards: list[str]) -> str:
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "img-src 'self' file:; style-src 'unsafe-inline'\">"
        "<title>orchestrator demo: contact sheet</title><style>"
        "body{font-family:sans-serif;margin:1.5rem;background:#fafafa;color:#222}"
        "main{display:grid;grid-template-columns:repeat(auto-fill,minmax(320px,1fr));gap:1rem}"
        "figure{margin:0;background:#fff;padding:.5rem;border:1px solid #ddd}"
        "img{object-fit:cover;margin-right:.3rem}.r1x1{width:140px;height:140px}"
        ".r4x5{width:112px;height:140px}figcaption{font-size:.85rem;margin-top:.4rem}"
        "</style></head><body><h1>orchestrator demo</h1><p>Each export cropped 1:1 and 4:5 "
        "on the focal point Imagga's smart croppings gave, as the delivered imgix URLs crop "
        f"it.</p><main>\n{chr(10).join(cards)}\n</main></body></html>\n"
    )


def _prepare_shoot(base: Path) -> tuple[Path, Path]:
    """The demo folder and its shoot, with sample photos made on first use."""
    base = base.resolve()
    shoot = base / "shoot"
    shoot.mkdir(parents=True, exist_ok=True)
    if not any(shoot.iterdir()):
        make_sample_shoot(shoot)
    return base, shoot


async def _downloaded(result: BatchResult, settings: Settings) -> dict[Path, str]:
    """The md5 each edit and export had as downloaded (checked then), by its path, for the
    files keywords were written into since."""
    assert settings.database_url is not None
    store = Store.open(settings.database_url)
    found: dict[Path, str] = {}
    try:
        for outcome in result.outcomes:
            job = outcome.job
            for photo in await store.photos(job.id):
                if TagDetails.of(photo) is None:
                    continue
                for phase, folder in (("edit", job.edited_dir), ("export", job.exported_dir)):
                    record = photo.phase(phase)
                    if record is not None and record.output and record.md5:
                        found[Path(folder) / record.output] = record.md5
    finally:
        await store.close()
    return found


def verify_against_ledger(
    result: BatchResult, ledger: dict[str, Any], downloaded: Mapping[Path, str] | None = None
) -> int:
    """Compare every output the sandbox made with the downloaded file; count them.

    A file keywords were written into since (in `downloaded`, with the md5 it had when it was
    downloaded) is compared as it was downloaded. A missing or different file is a
    DemoMismatch."""
    by_uuid = {p["project_uuid"]: p for p in ledger["projects"]}
    verified = 0
    for outcome in result.outcomes:
        project = by_uuid.get(outcome.job.project_uuid or "")
        if project is None:
            continue
        for key, folder in (
            ("edit_outputs", outcome.job.edited_dir),
            ("export_outputs", outcome.job.exported_dir),
        ):
            for name, md5 in project[key].items():
                path = Path(folder) / name
                if not path.exists():
                    raise DemoMismatch(f"{path} is missing: the sandbox made {name}")
                if _md5(path) != md5 and (downloaded or {}).get(path) != md5:
                    raise DemoMismatch(f"{path} differs from the sandbox's {name}")
                verified += 1
    return verified


def _md5(path: Path) -> str:
    digest = hashlib.md5()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
