"""The tag phase's details: one typed model reads what every release stored and writes it back."""

from __future__ import annotations

from typing import Any

from orchestrator.integrations.imagga_models import Category, Suggestion
from orchestrator.workflow.journey import PIPELINE
from orchestrator.workflow.tag_details import TAG_PHASE, FileRef, Moderation, TagDetails

STORED: dict[str, Any] = {
    "keywords": ["beach", "sunset"],
    "source": "auto",
    "suggestions": [{"tag": "beach", "confidence": 91.5}, {"tag": "sunset", "confidence": 80}],
    "categories": [{"name": "beaches seaside", "confidence": 88.0}],
    "moderation": {"flagged": True, "score": 0.93},
    "image_md5": "a" * 32,
    "files": [{"kind": "export", "name": "a.jpg"}, {"kind": "edit", "name": "a.xmp"}],
    "file_keywords": ["theirs"],
    "content_md5": "b" * 32,
}


def test_what_the_stage_stores_reads_typed_and_writes_back_unchanged() -> None:
    details = TagDetails.model_validate(STORED)
    assert details.suggestions[1] == Suggestion("sunset", 80.0)
    assert details.categories == (Category("beaches seaside", 88.0),)
    assert details.moderation == Moderation(flagged=True, score=0.93)
    assert details.files[0] == FileRef(kind="export", name="a.jpg")
    assert details.flagged and details.approved is None and details.written_keywords is None
    stored = details.stored()
    assert {k: v for k, v in stored.items() if k != "reviewed_words"} == STORED
    assert "approved" not in stored and "written_keywords" not in stored


def test_an_older_row_without_files_or_source_reads_as_not_there() -> None:
    details = TagDetails.model_validate({"keywords": ["sky"], "moderation": None})
    assert (details.keywords, details.source, details.files) == (("sky",), "auto", ())
    assert details.categories is None and not details.flagged and details.content_md5 is None


def test_malformed_entries_are_left_out_and_unknown_keys_kept() -> None:
    details = TagDetails.model_validate(
        {
            "keywords": ["sky", 3, None],
            "suggestions": [{"tag": "sky"}, {"tag": 5}, "sea", {"tag": "sea", "confidence": "x"}],
            "moderation": {"flagged": "yes", "score": "high"},
            "approved": "yes",
            "files": [{"kind": "elsewhere", "name": "x"}, {"kind": "edit"}],
            "kept_by_a_later_release": 1,
        }
    )
    assert details.keywords == ("sky",)
    assert details.suggestions == (Suggestion("sky", 0.0), Suggestion("sea", 0.0))
    assert details.moderation == Moderation(flagged=False, score=None) and not details.flagged
    assert details.approved is None and details.files == ()
    assert details.stored()["kept_by_a_later_release"] == 1


def test_a_review_is_recorded_in_the_same_shape() -> None:
    details = TagDetails.model_validate(STORED).model_copy(
        update={"keywords": ("beach",), "written_keywords": ("beach", "sunset"), "approved": True}
    )
    stored = TagDetails.model_validate(details.stored())
    assert stored == details
    assert details.stored()["written_keywords"] == ["beach", "sunset"]
    assert details.addable == ["sunset"]


def test_the_tag_stage_declares_its_details() -> None:
    assert PIPELINE.details_model(TAG_PHASE) is TagDetails
