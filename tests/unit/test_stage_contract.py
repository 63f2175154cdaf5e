"""What a stage declares is all the pipeline needs: its requirements are checked, its service
built, its labels shown and its crash points walked, for the product's stages and for a stage
that `orchestrator/` never names (`tests/extra_stage.py`, with a service of its own)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from orchestrator.config import ConfigError, Settings
from orchestrator.service.wiring import connected
from orchestrator.spec import DeliverSpec, JobSpec, TagSpec
from orchestrator.workflow.journey import PIPELINE
from orchestrator.workflow.services import IMGIX, PHOTO_METADATA, TAGGING, TAGGING_NOT_CONFIGURED
from tests.extra_stage import (
    CHECKSUM_PIPELINE,
    CHECKSUMMING,
    LEDGER,
    NOT_CONFIGURED,
    PHASE,
    ChecksumDetails,
    ChecksumSpec,
)
from tests.extra_stage_client import LOG_ENV, CheckLedger

PACKAGE = Path(__file__).resolve().parents[2] / "orchestrator"
WANTS_CHECKSUM = ChecksumSpec(export=True, checksum=True)


@pytest.fixture
def bare(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Settings:
    """Settings with an Imagen key and nothing else configured."""
    for name in ("IMAGGA_API_KEY", "IMAGGA_API_SECRET", "IMGIX_API_KEY", LOG_ENV):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ORCH_CONFIG", str(tmp_path / "config.toml"))
    (tmp_path / "config.toml").write_text("")
    return Settings(imagen_api_key="key", imgix_source_id="src", imgix_domain="a.imgix.net")


def test_orchestrator_never_names_the_extra_stage() -> None:
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text()
        assert CHECKSUMMING not in text and LOG_ENV not in text, path


def test_a_missing_service_is_refused_in_its_own_words(
    bare: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError, match=re.escape(NOT_CONFIGURED)):
        CHECKSUM_PIPELINE.check_requirements([WANTS_CHECKSUM], bare)
    CHECKSUM_PIPELINE.check_requirements([ChecksumSpec(export=True)], bare)  # not asked for
    monkeypatch.setenv(LOG_ENV, str(tmp_path / "log"))
    CHECKSUM_PIPELINE.check_requirements([WANTS_CHECKSUM], bare)


def test_every_requirement_a_job_lacks_is_named_once(bare: Settings) -> None:
    specs = [
        JobSpec(export=True, tag=TagSpec(), deliver=DeliverSpec()),
        JobSpec(export=True, deliver=DeliverSpec()),
    ]
    refusals = PIPELINE.refusals(specs, bare)
    assert refusals[0] == TAGGING_NOT_CONFIGURED
    assert refusals[-1].startswith("--deliver needs IMGIX_API_KEY (")
    assert len(refusals) == len(set(refusals))
    assert PIPELINE.refusals([JobSpec(export=True)], bare) == []


async def test_the_wiring_builds_what_the_stages_declare_and_is_configured(
    bare: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(LOG_ENV, str(tmp_path / "log"))
    async with connected(bare, pipeline=CHECKSUM_PIPELINE) as services:
        assert isinstance(services.find(LEDGER), CheckLedger)
        assert services.find(TAGGING) is None and services.find(IMGIX) is None
    async with connected(bare) as services:
        assert services.find(LEDGER) is None  # the product's pipeline does not declare it
    assert CHECKSUM_PIPELINE.services() == [PHOTO_METADATA, LEDGER, TAGGING, IMGIX]


def test_labels_crash_points_and_details_come_from_the_declaration() -> None:
    assert CHECKSUM_PIPELINE.done_label(PHASE) == "checked"
    assert CHECKSUM_PIPELINE.phase_label(PHASE) == "edit check"
    assert CHECKSUM_PIPELINE.phases.index(PHASE) == CHECKSUM_PIPELINE.phases.index("edit") + 1
    assert "after_checksum" in CHECKSUM_PIPELINE.crash_points
    assert CHECKSUM_PIPELINE.details_model(PHASE) is ChecksumDetails
    assert [PIPELINE.done_label(p) for p in ("upload", "edit", "export", "tag")] == [
        "uploaded",
        "edited",
        "exported",
        "tag done",
    ]
    assert PIPELINE.phase_label("edit") == "edit download"
