"""`deliver --verify`: a job's delivery reconciled with what imgix holds, from the Source's
asset listing (`GET /sources/{id}/assets`, page after page, under the delivery's common path):
photos delivered but missing at imgix, assets of this job imgix holds that the delivery does
not list (extra), and assets whose size differs from what was sent. What is missing or differs
is delivered again, as it now stands; what is extra is only reported (it is never deleted)."""

from __future__ import annotations

import posixpath
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from orchestrator.store.queries import PhotoRecord
from orchestrator.words import plural
from orchestrator.workflow.context import JobContext
from orchestrator.workflow.deliver import JOB_FIELD, PHASE, DeliveryOutcome, deliver_photos
from orchestrator.workflow.services import Delivery


@dataclass(frozen=True)
class Reconciliation:
    """What a verification found, and what its repair did."""

    checked: int
    """Photos the delivery lists."""
    missing: Sequence[str] = ()
    """Origin paths delivered but not at imgix."""
    extra: Sequence[str] = ()
    """Origin paths imgix holds for this job that the delivery does not list."""
    different: Sequence[dict[str, Any]] = ()
    """{"origin_path", "delivered", "at_imgix"}: sizes in bytes that differ."""
    repair: DeliveryOutcome | None = None
    """The delivery of what was missing or different, if anything was."""
    listed: int = 0
    """Assets the listing held under the delivery's path."""

    @property
    def clean(self) -> bool:
        """Whether imgix held exactly the delivery (before any repair)."""
        return not (self.missing or self.extra or self.different)

    def to_json(self) -> dict[str, Any]:
        """As `deliver --verify --json` prints it."""
        repair = self.repair
        return {
            "checked": self.checked,
            "listed": self.listed,
            "missing": list(self.missing),
            "extra": list(self.extra),
            "different": list(self.different),
            "repaired": repair.delivered if repair else 0,
            "failed": list(repair.failures) if repair else [],
        }


def _delivered(photos: Sequence[PhotoRecord]) -> dict[str, int | None]:
    """Each delivered photo's origin path, with the size it was sent at."""
    found: dict[str, int | None] = {}
    for photo in photos:
        done = photo.phase(PHASE)
        if done is not None and done.done_at is not None and done.output:
            found[done.output] = done.size
    return found


def common_folder(paths: Sequence[str]) -> str:
    """The folder every path is under (`shoot/`), "" when they share none."""
    if not paths:
        return ""
    folder = posixpath.commonpath([posixpath.dirname(p) or "." for p in paths])
    return "" if folder in ("", ".") else folder.rstrip("/") + "/"


async def reconcile(ctx: JobContext, delivery: Delivery) -> Reconciliation:
    """Compare the job's delivery with imgix's listing, then deliver again what is missing or
    of another size."""
    photos = await ctx.store.photos(ctx.job.id)
    ours = _delivered(photos)
    under = common_folder(sorted(ours))
    assets = {asset.origin_path: asset for asset in await delivery.imgix.list_assets(under)}
    missing = sorted(path for path in ours if path not in assets)
    different = [
        {"origin_path": path, "delivered": size, "at_imgix": assets[path].file_size}
        for path, size in sorted(ours.items())
        if path in assets and size is not None and assets[path].file_size != size
    ]
    extra = sorted(
        path
        for path, asset in assets.items()
        if path not in ours and asset.custom_fields.get(JOB_FIELD) == ctx.job.id
    )
    again = [*missing, *(str(d["origin_path"]) for d in different)]
    repair = await deliver_photos(ctx, delivery, force=again) if again else None
    await ctx.event(
        "deliver",
        f"verified at imgix: {plural(len(ours), 'photo')}, {len(missing)} missing, "
        f"{len(extra)} extra, {len(different)} of another size"
        + (f"; {repair.delivered} delivered again" if repair else ""),
        missing=missing,
        extra=extra,
    )
    return Reconciliation(
        checked=len(ours),
        missing=missing,
        extra=extra,
        different=different,
        repair=repair,
        listed=len(assets),
    )
