"""The Imagen wire models: tolerant parsing of answers, strict checking of edit options."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from orchestrator.imagen.errors import EditOptionsError
from orchestrator.imagen.models import (
    TOOLS,
    CropAspectRatio,
    DownloadLink,
    EditChoices,
    EditOptions,
    HdrCompression,
    ImageType,
    PhotographyType,
    Profile,
    ProjectInfo,
    TaskStatus,
)
from orchestrator.workflow.planning import PlanError, check_edit


@pytest.mark.parametrize(
    ("spelled", "expected"),
    [
        ("JPG", ImageType.JPG),
        ("JPEG", ImageType.JPG),
        ("jpg", ImageType.JPG),
        ("jpeg", ImageType.JPG),
        ("RAW", ImageType.RAW),
        ("raw", ImageType.RAW),
    ],
)
def test_profile_image_type_spellings(spelled: str, expected: ImageType) -> None:
    profile = Profile.model_validate(
        {"profile_key": 5700, "profile_name": "Wedding", "image_type": spelled}
    )
    assert profile.image_type is expected
    assert profile.profile_type is None


def test_profile_ignores_extra_fields_and_rejects_unknown_image_type() -> None:
    profile = Profile.model_validate(
        {
            "profile_key": 1,
            "profile_name": "P",
            "profile_type": "Talent",
            "image_type": "RAW",
            "brand_new_field": [1, 2],
        }
    )
    assert profile.profile_type == "Talent"
    with pytest.raises(ValidationError):
        Profile.model_validate({"profile_key": 1, "profile_name": "P", "image_type": "PNG"})


def test_project_info_needs_only_the_uuid_and_accepts_numeric_reference() -> None:
    assert ProjectInfo.model_validate({"project_uuid": "p1"}).name is None
    info = ProjectInfo.model_validate(
        {"project_uuid": "p1", "customer_reference_id": 42, "number_of_images": 3, "x": 1}
    )
    assert info.customer_reference_id == "42"
    assert info.number_of_images == 3


def test_download_link_accepts_upload_link_label_as_fallback() -> None:
    old = DownloadLink.model_validate({"file_name": "A.xmp", "upload_link": "https://s3/a"})
    assert old.download_link == "https://s3/a"
    both = DownloadLink.model_validate(
        {"file_name": "A.xmp", "download_link": "https://s3/right", "upload_link": "https://s3/x"}
    )
    assert both.download_link == "https://s3/right"
    with pytest.raises(ValidationError):
        DownloadLink.model_validate({"file_name": "A.xmp"})


@pytest.mark.parametrize(
    ("status", "completed", "failed"),
    [
        ("Completed", True, False),
        ("COMPLETED", True, False),
        ("completed", True, False),
        (" Completed ", True, False),
        ("Failed", False, True),
        ("FAILED", False, True),
        ("Pending", False, False),
        ("In Progress", False, False),
        ("IN_PROGRESS", False, False),
        ("Processing", False, False),
        ("Queued", False, False),
        ("Something New", False, False),
    ],
)
def test_task_status_is_case_insensitive(status: str, completed: bool, failed: bool) -> None:
    task = TaskStatus.model_validate({"status": status, "progress": 40})
    assert task.is_completed is completed
    assert task.is_failed is failed
    assert task.is_terminal is (completed or failed)


def test_edit_options_rejects_unknown_tools_naming_the_valid_ones() -> None:
    with pytest.raises(ValidationError) as caught:
        EditOptions(profile_key=1, tools=frozenset({"crop", "make_it_pop"}))
    text = str(caught.value)
    assert "make_it_pop" in text
    assert all(tool in text for tool in TOOLS)


def test_edit_options_is_frozen_and_refuses_unknown_fields() -> None:
    options = EditOptions.model_validate({"profile_key": 1, "tools": ["crop", "crop"]})
    assert options.tools == frozenset({"crop"})
    with pytest.raises(ValidationError):
        options.profile_key = 2  # type: ignore[misc]
    with pytest.raises(ValidationError):
        EditOptions.model_validate({"profile_key": 1, "tool": ["crop"]})


def _options(**fields: Any) -> EditOptions:
    return EditOptions.model_validate({"profile_key": 7, **fields})


@pytest.mark.parametrize(
    ("fields", "image_type", "complaint"),
    [
        ({"tools": ["crop", "portrait_crop"]}, ImageType.RAW, "one crop tool"),
        ({"tools": ["crop", "headshot_crop"]}, ImageType.RAW, "one crop tool"),
        ({"tools": ["portrait_crop", "headshot_crop"]}, ImageType.JPG, "one crop tool"),
        ({"tools": ["straighten", "perspective_correction"]}, ImageType.RAW, "straighten"),
        ({"tools": ["hdr_merge"]}, ImageType.JPG, "hdr_merge works on RAW"),
        ({"hdr_output_compression": "LOSSY"}, ImageType.RAW, "hdr_output_compression"),
        (
            {"tools": ["hdr_merge"], "hdr_output_compression": "LOSSLESS"},
            ImageType.JPG,
            "hdr_output_compression",
        ),
        ({"crop_aspect_ratio": "2X3"}, ImageType.RAW, "crop_aspect_ratio needs a crop tool"),
        ({"tools": ["straighten"], "crop_aspect_ratio": "4X5"}, ImageType.JPG, "crop_aspect_ratio"),
        ({"sky_replacement_template_id": 3}, ImageType.RAW, "sky_replacement tool"),
    ],
)
def test_check_for_refuses_each_bad_combination(
    fields: dict[str, Any], image_type: ImageType, complaint: str
) -> None:
    with pytest.raises(EditOptionsError, match=complaint):
        _options(**fields).check_for(image_type)


@pytest.mark.parametrize(
    ("fields", "image_type"),
    [
        ({}, ImageType.JPG),
        ({"tools": ["crop", "straighten", "subject_mask", "smooth_skin"]}, ImageType.JPG),
        ({"tools": ["hdr_merge"], "hdr_output_compression": "LOSSLESS"}, ImageType.RAW),
        ({"tools": ["portrait_crop"], "crop_aspect_ratio": "5X7"}, ImageType.RAW),
        ({"tools": ["headshot_crop", "perspective_correction"]}, ImageType.JPG),
        (
            {"tools": ["sky_replacement", "window_pull"], "sky_replacement_template_id": 2},
            ImageType.RAW,
        ),
    ],
)
def test_check_for_accepts_valid_combinations(
    fields: dict[str, Any], image_type: ImageType
) -> None:
    _options(**fields).check_for(image_type)


def test_check_for_names_every_problem_at_once() -> None:
    options = _options(tools=["crop", "portrait_crop", "hdr_merge"], sky_replacement_template_id=1)
    with pytest.raises(EditOptionsError) as caught:
        options.check_for(ImageType.JPG)
    message = str(caught.value)
    assert "crop" in message and "hdr_merge" in message and "sky_replacement" in message


def test_planning_refuses_options_that_do_not_suit_the_photos() -> None:
    """What a run does with EditOptionsError: a PlanError (exit 2) before anything is sent."""
    check_edit(EditChoices(tools=frozenset({"crop"})), ImageType.JPG)
    with pytest.raises(PlanError, match="hdr_merge") as caught:
        check_edit(EditChoices(tools=frozenset({"hdr_merge", "crop"})), ImageType.JPG)
    assert isinstance(caught.value.__cause__, EditOptionsError)


def test_to_request_minimal_sends_only_the_profile() -> None:
    assert EditOptions(profile_key=5700).to_request() == {"profile_key": 5700}


def test_to_request_sends_set_fields_flat_with_tools_as_true() -> None:
    options = EditOptions(
        profile_key=5700,
        photography_type=PhotographyType.WEDDING,
        tools=frozenset({"hdr_merge", "crop", "sky_replacement"}),
        sky_replacement_template_id=4,
        crop_aspect_ratio=CropAspectRatio.R4X5,
        hdr_output_compression=HdrCompression.LOSSY,
        callback_url="http://host/cb/secret",
    )
    assert options.to_request() == {
        "profile_key": 5700,
        "photography_type": "WEDDING",
        "crop": True,
        "hdr_merge": True,
        "sky_replacement": True,
        "sky_replacement_template_id": 4,
        "crop_aspect_ratio": "4X5",
        "hdr_output_compression": "LOSSY",
        "callback_url": "http://host/cb/secret",
    }


def test_enum_values_match_the_wire() -> None:
    assert [r.value for r in CropAspectRatio] == ["2X3", "4X5", "5X7"]
    assert len(PhotographyType) == 11
    assert PhotographyType.LANDSCAPE_NATURE == "LANDSCAPE_NATURE"
