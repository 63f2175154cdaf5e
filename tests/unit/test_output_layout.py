"""Where `--output DIR` puts a job's outputs: the shoot folder's layout under DIR, delivered/
beside exported/, and one subfolder per hot-folder drop."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.integrations.delivery_files import delivered_folder
from orchestrator.service.hotfolder import drop_spec
from orchestrator.spec import JobSpec, OutputLayout
from orchestrator.workflow.outputs import new_job_folders


def test_the_layout_is_the_same_under_output_as_in_the_shoot(tmp_path: Path) -> None:
    shoot, out = tmp_path / "card", tmp_path / "edits"
    plain = JobSpec(outputs=OutputLayout())
    moved = JobSpec(outputs=OutputLayout(folder=str(out)))
    assert new_job_folders(shoot, plain, "RAW") == (shoot / "edited/RAW", shoot / "exported/RAW")
    assert new_job_folders(shoot, moved, "RAW") == (out / "edited/RAW", out / "exported/RAW")
    assert new_job_folders(shoot, moved, "") == (out / "edited", out / "exported")
    assert delivered_folder(str(shoot), str(out / "exported/JPG")) == out / "delivered"  # one
    assert delivered_folder(str(shoot), str(shoot / "exported")) == shoot / "delivered"


def test_a_relative_output_folder_is_kept_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert OutputLayout(folder="edits").folder == str(tmp_path.resolve() / "edits")


def test_each_hot_folder_drop_gets_its_own_output_subfolder(tmp_path: Path) -> None:
    hot = JobSpec(export=True, outputs=OutputLayout(folder=str(tmp_path / "out")))
    spec = drop_spec(hot, tmp_path / "hot" / "smith-wedding")
    assert spec.outputs is not None and spec.outputs.folder == str(tmp_path / "out/smith-wedding")
    assert spec.export
    assert drop_spec(JobSpec(), tmp_path / "hot" / "x") == JobSpec()
