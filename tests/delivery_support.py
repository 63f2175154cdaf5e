"""What the delivery tests share: a stand-in for the keywording stage, and `run` with it.

Instead of the keywording stage (whose sandbox Imagga gives every exported JPEG of a job the
same tags, the sandbox's exports all being one picture) it records the `tag` phase details the
delivery stage reads (keywords, moderation) from the file name: every photo gets keywords (one
of them full of HTML), and `IMG_0002.jpg` is flagged by moderation. Run as a module, it is
`orchestrator run SHOOT --export --deliver` with this stage before delivery:
`python -m tests.delivery_support SHOOT` (IMAGEN_*, IMGIX_*, ORCH_* from the env).
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from orchestrator.config import Settings
from orchestrator.progress import NullProgress
from orchestrator.service.batch import run_batch
from orchestrator.spec import DeliverSpec, JobSpec
from orchestrator.store.queries import PhaseDone, PhotoRecord
from orchestrator.workflow.context import JobContext
from orchestrator.workflow.journey import PIPELINE
from orchestrator.workflow.photos import photo_run
from orchestrator.workflow.planning import RunRequest
from orchestrator.workflow.stage import Stage

FLAGGED = "IMG_0002.jpg"
ODD_KEYWORD = '<script>alert("x")</script> & "quotes"'


def keywords_for(file_name: str) -> list[str]:
    """The keywords the stand-in gives a photo."""
    return ["portrait", f"frame {Path(file_name).stem}", ODD_KEYWORD]


def tag_details(file_name: str, **extra: Any) -> dict[str, Any]:
    """The `tag` phase details the keywording stage records, as the stand-in makes them."""
    flagged = file_name == FLAGGED
    return {
        "keywords": keywords_for(file_name),
        "source": "auto",
        "suggestions": [],
        "categories": None,
        "moderation": {"flagged": flagged, "score": 0.93 if flagged else 0.01},
        "content_md5": "",
        **extra,
    }


class TaggingSpec(JobSpec, frozen=True, extra="forbid"):
    """The product's spec with the stand-in's field."""

    stand_in_tags: bool = False


async def tag_photos(ctx: JobContext) -> None:
    """Record every photo's keywords and moderation, then finish the stage."""
    photos = [p for p in await ctx.store.photos(ctx.job.id) if not p.done("tag")]
    async with photo_run(
        ctx, phase="tag", progress_stage="tag", photo_id=_photo_id, describe=_describe
    ) as run:
        await run.run(photos, _tag)
    await ctx.finish_stage("keywords recorded")


async def _tag(photo: PhotoRecord) -> PhaseDone:
    return PhaseDone("tag", details=tag_details(photo.file_name))


def _photo_id(photo: PhotoRecord) -> int:
    return photo.id


def _describe(photo: PhotoRecord) -> str:
    return photo.rel_path


def _wants_tags(spec: JobSpec) -> bool:
    return isinstance(spec, TaggingSpec) and spec.stand_in_tags


STAGE = Stage(
    name="stand_in_tag",
    states=("stand_in_tagging",),
    step=tag_photos,
    phase="tag",
    applies=_wants_tags,
)
TAGGING_PIPELINE = PIPELINE.with_stage(STAGE, after="download_exports", spec_model=TaggingSpec)


def main(shoot: str, *template: str) -> int:
    """`orchestrator run SHOOT --profile 2001 --export --tag --deliver`; exit code."""
    deliver = DeliverSpec(path=template[0]) if template else DeliverSpec()
    request = RunRequest(
        source=Path(shoot),
        profiles=["2001"],
        spec=TaggingSpec(export=True, stand_in_tags=True, deliver=deliver),
    )
    result = asyncio.run(
        run_batch(request, Settings(concurrency=4), NullProgress(), pipeline=TAGGING_PIPELINE)
    )
    sys.stdout.write(
        json.dumps(
            [{"id": o.job.id, "state": o.job.state, "paused": o.paused} for o in result.outcomes]
        )
        + "\n"
    )
    return result.exit_code


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
