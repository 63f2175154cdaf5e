"""The kept answers of Imagga, by image hash and analysis: read before paying, written at once."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select

from orchestrator.store.db import upsert_into
from orchestrator.store.models import TagResult
from orchestrator.store.queries import Store


async def kept_result(store: Store, image_md5: str, analysis: str) -> list[Any] | None:
    """The answer kept for this image and analysis, if Imagga was ever asked."""
    async with store.engine.connect() as conn:
        found = await conn.scalar(
            select(TagResult.result).where(
                TagResult.image_md5 == image_md5, TagResult.analysis == analysis
            )
        )
    return list(found) if found is not None else None


async def keep_result(store: Store, image_md5: str, analysis: str, result: list[Any]) -> None:
    """Keep an answer (committed before anything else is done with it); the first one wins."""
    statement = (
        upsert_into(store.engine.dialect.name, TagResult)
        .values(image_md5=image_md5, analysis=analysis, result=result)
        .on_conflict_do_nothing(index_elements=["image_md5", "analysis"])
    )
    async with store.engine.begin() as conn:
        await conn.execute(statement)


async def kept_at(store: Store, image_md5: str, analysis: str) -> datetime | None:
    """When the answer for this image and analysis was kept, if it was."""
    async with store.engine.connect() as conn:
        found: datetime | None = await conn.scalar(
            select(TagResult.created_at).where(
                TagResult.image_md5 == image_md5, TagResult.analysis == analysis
            )
        )
    return found
