"""The journey every job makes: the product's stages, in order. The one module that knows every
stage; the engine, the planner, the wiring and the views read the pipeline from here."""

from __future__ import annotations

from orchestrator.workflow import deliver, download, processing, project, review, tag, upload
from orchestrator.workflow.pipeline import Pipeline

PIPELINE = Pipeline(
    [
        project.STAGE,
        upload.STAGE,
        processing.EDIT_STAGE,
        download.EDITS_STAGE,
        processing.EXPORT_STAGE,
        download.EXPORTS_STAGE,
        tag.STAGE,
        review.STAGE,
        deliver.STAGE,
    ]
)
"""The product's stages, in order."""
