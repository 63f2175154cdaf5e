"""A stand-in for the keywording stage, so jobs reach the review gate with keywords to review.

`seed_tags` sits after the exports' download and records, per photo, the `"tag"` phase as the
keywording stage does (`{"keywords", "source", "suggestions", "categories", "moderation",
"content_md5"}`), from the file name: a name holding "flag" is flagged by moderation. Run as a
module it is `orchestrator run SHOOT --profile … --export --review` with this stage in the
pipeline: `python -m tests.review_support SHOOT` (IMAGEN_* and ORCH_* from the env), printing
the outcomes as JSON.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from orchestrator.config import load_settings
from orchestrator.progress import NullProgress
from orchestrator.service.batch import run_batch
from orchestrator.spec import JobSpec
from orchestrator.store.queries import PhaseDone, PhotoRecord
from orchestrator.workflow.context import JobContext
from orchestrator.workflow.journey import PIPELINE
from orchestrator.workflow.photos import photo_run
from orchestrator.workflow.planning import RunRequest
from orchestrator.workflow.stage import Stage
from orchestrator.workflow.tag_details import TAG_PHASE

SEEDING = "seeding_tags"
KEYWORDS = ["beach", "sunset", "sea"]
SUGGESTIONS = [
    {"tag": "beach", "confidence": 91.0},
    {"tag": "sunset", "confidence": 84.5},
    {"tag": "sea", "confidence": 70.2},
    {"tag": "ocean", "confidence": 55.0},
    {"tag": "sand", "confidence": 41.3},
    {"tag": "people", "confidence": 22.8},
]
CATEGORIES = [{"name": "beaches seaside", "confidence": 88.0}]


def tag_details(file_name: str) -> dict[str, Any]:
    """What the keywording stage would record for a photo of this name."""
    flagged = "flag" in file_name
    return {
        "keywords": list(KEYWORDS),
        "source": "auto",
        "suggestions": [dict(s) for s in SUGGESTIONS],
        "categories": [dict(c) for c in CATEGORIES],
        "moderation": {"flagged": flagged, "score": 0.93 if flagged else 0.02},
        "content_md5": "0" * 32,
    }


async def seed_tags(ctx: JobContext) -> None:
    """Record the tag phase of every photo not tagged yet, then finish the stage."""
    photos = [p for p in await ctx.store.photos(ctx.job.id) if not p.done(TAG_PHASE)]

    async def tag(photo: PhotoRecord) -> PhaseDone:
        return PhaseDone(TAG_PHASE, details=tag_details(photo.file_name))

    async with photo_run(
        ctx, phase=TAG_PHASE, progress_stage="tag", photo_id=_photo_id, describe=_describe
    ) as run:
        await run.run(photos, tag)
    await ctx.finish_stage("keywords seeded")


def _photo_id(photo: PhotoRecord) -> int:
    return photo.id


def _describe(photo: PhotoRecord) -> str:
    return photo.rel_path


STAGE = Stage(name="tag", states=(SEEDING,), step=seed_tags, phase=TAG_PHASE)
REVIEW_PIPELINE = PIPELINE.with_stage(STAGE, after="download_exports")


def main(shoot: str) -> int:
    """`orchestrator run SHOOT --export --review` with seeded keywords; the exit code."""
    request = RunRequest(
        source=Path(shoot), profiles=["1001", "2001"], spec=JobSpec(export=True, review=True)
    )
    result = asyncio.run(
        run_batch(request, load_settings(), NullProgress(), pipeline=REVIEW_PIPELINE)
    )
    outcomes = [{"id": o.job.id, "state": o.job.state} for o in result.outcomes]
    sys.stdout.write(json.dumps(outcomes) + "\n")
    return result.exit_code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
