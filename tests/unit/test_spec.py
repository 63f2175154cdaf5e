"""The one job spec: built from input with readable errors, stored versioned, read back, and the
same fields for a hot folder as for `run`."""

from __future__ import annotations

import pytest

from orchestrator.config import HotFolder
from orchestrator.spec import JobSpec, OutputLayout, SpecError


def test_a_spec_round_trips_through_its_stored_form() -> None:
    spec = JobSpec.build(
        export=True, edit={"tools": ["crop", "straighten"], "crop_aspect_ratio": "4X5"}
    )
    stored = spec.to_stored()
    assert stored == {
        "version": 1,
        "export": True,
        "edit": {"tools": ["crop", "straighten"], "crop_aspect_ratio": "4X5"},
    }
    assert JobSpec.from_stored(stored) == spec


def test_the_unversioned_options_of_older_releases_are_read_as_version_0() -> None:
    legacy = {"export": True, "edit": {"tools": ["crop"]}, "profile_name": "LOVE & LIGHT"}
    assert JobSpec.from_stored(legacy) == JobSpec.build(export=True, edit={"tools": ["crop"]})


def test_bad_options_are_one_readable_line_each() -> None:
    with pytest.raises(SpecError) as refused:
        JobSpec.build(edit={"tools": ["bogus"], "colour": "red"})
    message = str(refused.value)
    assert "unknown tool(s): bogus" in message and "colour" in message
    assert "pydantic" not in message and "\n" not in message


def test_a_hot_folder_takes_every_job_option_run_takes() -> None:
    hot = HotFolder.model_validate(
        {
            "path": "/drops",
            "profiles": ["1001"],
            "export": True,
            "edit": {
                "tools": ["crop", "sky_replacement", "hdr_merge"],
                "crop_aspect_ratio": "4X5",
                "sky_replacement_template_id": 12,
                "hdr_output_compression": "LOSSY",
                "photography_type": "WEDDING",
            },
            "outputs": {"subfolders": False, "sidecars": "beside"},
            "prefix_subfolders": True,
        }
    )
    spec = hot.spec()
    assert set(JobSpec.model_fields) <= set(HotFolder.model_fields)
    assert spec.export and spec.edit.sky_replacement_template_id == 12
    assert spec.edit.tools == {"crop", "sky_replacement", "hdr_merge"}
    assert spec.outputs == OutputLayout(subfolders=False, sidecars="beside")
    assert hot.prefix_subfolders  # how the drop is scanned, not what its jobs do
