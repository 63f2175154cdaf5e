"""Issue 15 on the real command against a sandbox process: the JSON of every command in one
typed view, `cancel` of a finished job, running a finished folder again with other options,
and names Imagen refuses stopped before anything is sent."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest

from orchestrator.sandbox.samples import make_sample_shoot
from orchestrator.service.batch import BatchResult
from orchestrator.service.demo import DemoMismatch, verify_against_ledger
from orchestrator.service.jobs import JobView
from tests.helpers import cli_env, ledger, md5_of, orchestrator, sandbox_process

JPEG_PROFILE = "2001"


@pytest.fixture(scope="module")
def sandbox_url() -> object:
    with sandbox_process("--edit-seconds", "0.2") as url:
        yield url


@pytest.fixture
def env(sandbox_url: str, migrated_db_url: str) -> dict[str, str]:
    return cli_env(f"{sandbox_url}/v1", migrated_db_url)


def _shoot(tmp_path: Path, name: str = "ceremony", jpeg: int = 3) -> Path:
    shoot = tmp_path / name
    shoot.mkdir()
    make_sample_shoot(shoot, raw=0, jpeg=jpeg)
    return shoot


def _json(*args: str, env: dict[str, str], code: int = 0) -> Any:
    done = orchestrator(*args, "--json", env=env)
    assert done.returncode == code, done.stderr
    return json.loads(done.stdout)


def _status_views(shoots: Any) -> list[JobView]:
    """The jobs of the shoots `status --json` lists."""
    return _views([job for shoot in shoots for job in shoot["jobs"]])


def _views(found: Any) -> list[JobView]:
    return [
        JobView.model_validate(item) for item in (found if isinstance(found, list) else [found])
    ]


def test_every_commands_json_is_the_one_typed_view_with_real_counts(
    env: dict[str, str], tmp_path: Path
) -> None:
    shoot = _shoot(tmp_path)
    [ran] = _views(_json("run", str(shoot), "-p", JPEG_PROFILE, env=env))
    assert ran.state == "completed" and ran.photos == 3
    assert ran.done == {"upload": 3, "edit": 3}
    assert ran.lease_owner is None  # the process that drove it has let go
    assert ran.failed_photos == []

    [listed] = _status_views(_json("status", ran.id[:8], env=env))
    assert listed.photos == 3 and listed.lease_owner is None
    history = _json("history", ran.id, env=env)
    [job] = _views(history["job"])
    assert job.photos == 3 and history["events"]

    queued = _json("submit", str(_shoot(tmp_path, "queued", jpeg=2)), "-p", JPEG_PROFILE, env=env)
    [cancelled] = _views(_json("cancel", queued[0], env=env))
    assert cancelled.state == "cancelled" and cancelled.photos == 2
    assert [v.id for v in _status_views(_json("status", "--state", "cancelled", env=env))] == queued
    assert len(_json("status", "--limit", "1", env=env)) == 1


def test_demo_json_counts_its_photos(env: dict[str, str], tmp_path: Path) -> None:
    views = _views(_json("demo", "--keep", str(tmp_path / "demo"), env=env))
    sample = make_sample_shoot(tmp_path / "sample")  # the shoot the demo makes
    by_type = {
        "RAW": [p for p in sample if p.suffix == ".CR2"],
        "JPG": [p for p in sample if p.suffix == ".jpg"],
    }
    assert {v.image_type: v.photos for v in views} == {k: len(v) for k, v in by_type.items()}
    assert all(v.state == "completed" and v.done["export"] == v.photos for v in views)


def test_the_demo_reports_an_output_that_is_not_there(tmp_path: Path) -> None:
    job = SimpleNamespace(project_uuid="p", edited_dir=str(tmp_path), exported_dir=str(tmp_path))
    (tmp_path / "a.jpg").write_bytes(b"a")
    ledger = {
        "projects": [
            {
                "project_uuid": "p",
                "edit_outputs": {"a.jpg": hashlib.md5(b"a").hexdigest()},
                "export_outputs": {"b.jpg": hashlib.md5(b"b").hexdigest()},
            }
        ]
    }
    result = cast(BatchResult, SimpleNamespace(outcomes=[SimpleNamespace(job=job)]))

    with pytest.raises(DemoMismatch, match=r"b\.jpg is missing"):
        verify_against_ledger(result, ledger)
    (tmp_path / "b.jpg").write_bytes(b"b")
    assert verify_against_ledger(result, ledger) == 2


def test_cancel_of_a_finished_job_says_so_and_exits_2(env: dict[str, str], tmp_path: Path) -> None:
    [ran] = _views(_json("run", str(_shoot(tmp_path)), "-p", JPEG_PROFILE, env=env))
    done = orchestrator("cancel", ran.id[:8], env=env)
    assert done.returncode == 2
    assert f"job {ran.id[:8]} is already completed: there is nothing to cancel" in done.stderr
    assert "cancel requested" not in done.stdout + done.stderr


def test_a_finished_folder_run_with_other_options_says_so_and_again_edits_it_anew(
    env: dict[str, str], sandbox_url: str, tmp_path: Path
) -> None:
    shoot = _shoot(tmp_path)
    [first] = _views(_json("run", str(shoot), "-p", JPEG_PROFILE, env=env))

    same = orchestrator("run", str(shoot), "-p", JPEG_PROFILE, "--export", env=env)
    assert same.returncode == 0, same.stderr
    assert "the export given now are not applied to it" in same.stderr
    assert "--again" in same.stderr
    assert not (shoot / "exported").exists()

    [again] = _views(_json("run", str(shoot), "-p", JPEG_PROFILE, "--export", "--again", env=env))
    assert again.id != first.id and again.state == "completed"
    assert again.project_uuid != first.project_uuid
    assert again.spec["export"] is True
    assert len(list((shoot / "exported").iterdir())) == 3
    projects = {p["project_uuid"] for p in ledger(sandbox_url)["projects"]}
    assert {first.project_uuid, again.project_uuid} <= projects


def test_names_imagen_refuses_stop_the_run_before_anything_is_sent(
    env: dict[str, str], tmp_path: Path
) -> None:
    shoot = _shoot(tmp_path, jpeg=7)
    first = sorted(shoot.iterdir())[0]
    os.link(first, shoot / "back\\slash.jpg")
    os.link(first, shoot / "with\ttab.jpg")
    refused = orchestrator("run", str(shoot), "-p", JPEG_PROFILE, env=env)
    assert refused.returncode == 2
    assert "Imagen refuses the names of 2 photos" in refused.stderr
    assert "back\\slash.jpg" in refused.stderr and "with\\ttab.jpg" in refused.stderr
    assert _json("status", env=env) == []  # no job, nothing sent
    (shoot / "back\\slash.jpg").rename(shoot / "backslash.jpg")
    (shoot / "with\ttab.jpg").rename(shoot / "with tab.jpg")
    [ran] = _views(_json("run", str(shoot), "-p", JPEG_PROFILE, env=env))
    assert ran.state == "completed" and ran.photos == 9


def _outputs(folder: Path) -> dict[str, str]:
    return {p.name: md5_of(p) for p in sorted(folder.iterdir()) if p.is_file()}


def test_a_new_database_does_not_silently_redo_a_shoot_and_again_does(
    env: dict[str, str], tmp_path: Path
) -> None:
    shoot = _shoot(tmp_path)
    [first] = _views(_json("run", str(shoot), "-p", JPEG_PROFILE, env=env))
    edits = _outputs(shoot / "edited")
    record = json.loads((shoot / ".orchestrator" / "jobs.json").read_text())
    assert [j["job_id"] for j in record["jobs"]] == [first.id]
    assert record["jobs"][0]["project_uuid"] == first.project_uuid

    elsewhere = {**env, "ORCH_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'new.db'}"}
    refused = orchestrator("run", str(shoot), "-p", JPEG_PROFILE, env=elsewhere)
    assert refused.returncode == 2
    assert f"this shoot was edited before by job {first.id[:8]}" in refused.stderr
    assert "--again" in refused.stderr and "ORCH_DATABASE_URL" in refused.stderr
    assert _outputs(shoot / "edited") == edits  # nothing redone, nothing overwritten
    assert _json("status", env=elsewhere) == []

    [again] = _views(_json("run", str(shoot), "-p", JPEG_PROFILE, "--again", env=elsewhere))
    assert again.state == "completed" and again.id != first.id
    assert sorted(_outputs(shoot / "edited")) == sorted(edits)


def test_an_output_that_was_there_before_the_job_is_never_overwritten(
    env: dict[str, str], tmp_path: Path
) -> None:
    shoot = _shoot(tmp_path)
    theirs = shoot / "edited" / sorted(p.name for p in shoot.iterdir())[0]
    theirs.parent.mkdir()
    theirs.write_bytes(b"the photographer's own retouch")
    failed = orchestrator("run", str(shoot), "-p", JPEG_PROFILE, env=env)
    assert failed.returncode == 1
    assert f"{theirs} was there before this job and is not replaced" in failed.stdout
    assert theirs.read_bytes() == b"the photographer's own retouch"
    [job] = _status_views(_json("status", env=env))
    theirs.rename(tmp_path / "kept.jpg")
    [retried] = _views(_json("retry", job.id[:8], env=env))
    assert retried.state == "completed" and len(_outputs(shoot / "edited")) == 3


def test_cli_conventions_version_help_completion_and_config(
    env: dict[str, str], tmp_path: Path
) -> None:
    version = orchestrator("--version", env=env)
    assert version.returncode == 0 and version.stdout.startswith("orchestrator 0.")
    short = orchestrator("-h", env=env)
    assert short.returncode == 0
    for named in ("IMAGEN_API_KEY", "ORCH_DATABASE_URL", "config.toml", "--quiet", "--verbose"):
        assert named in short.stdout
    assert orchestrator("run", "-h", env=env).stdout.count("--again") == 1
    completion = orchestrator("--show-completion", "bash", env=env)
    assert completion.returncode == 0 and "complete" in completion.stdout

    shown = orchestrator("config", "--json", env=env)
    assert shown.returncode == 0, shown.stderr
    assert env["IMAGEN_API_KEY"] not in shown.stdout  # the secret is masked
    config = json.loads(shown.stdout)
    assert config["database"] == env["ORCH_DATABASE_URL"].replace("postgres@", "…@")
    rows = {row["name"]: row for row in config["settings"]}
    assert rows["imagen_api_key"] == {
        "name": "imagen_api_key",
        "value": "**** (set)",
        "source": "env IMAGEN_API_KEY",
    }
    assert rows["concurrency"]["source"] == "default"
    table = orchestrator("config", env=env)
    assert "database:" in table.stdout and env["IMAGEN_API_KEY"] not in table.stdout


def test_quiet_shows_no_progress_only_the_result(env: dict[str, str], tmp_path: Path) -> None:
    done = orchestrator("-q", "run", str(_shoot(tmp_path)), "-p", JPEG_PROFILE, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert "completed" in done.stdout
    table = orchestrator("status", env=env)
    assert "3/3 uploaded, 3/3 edited" in table.stdout  # per-phase progress


def test_injected_faults_leave_summarised_retry_lines_in_history(
    migrated_db_url: str, tmp_path: Path
) -> None:
    shoot = _shoot(tmp_path, jpeg=6)
    with sandbox_process(
        "--edit-seconds", "0.2", "--faults", "error_5xx=0.3", "--seed", "3"
    ) as url:
        env = cli_env(f"{url}/v1", migrated_db_url)
        [ran] = _views(_json("run", str(shoot), "-p", JPEG_PROFILE, env=env))
        assert ran.state == "completed"
        events = _json("history", ran.id, env=env)["events"]
    retried = [e for e in events if e["kind"] == "retry" and "transfer retr" in e["message"]]
    assert retried, [e["message"] for e in events]
    assert len(retried) <= 2  # one line per transfer stage, not one per fault
    assert sum(sum(e["data"]["retries"].values()) for e in retried) >= len(retried)


def _nested_shoot(tmp_path: Path) -> Path:
    """A wedding from two cards: RAWs in one, JPEGs with upper-case extensions in the other."""
    staged = tmp_path / "staged"
    staged.mkdir()
    make_sample_shoot(staged, raw=2, jpeg=2)
    shoot = tmp_path / "wedding"
    for folder, pattern, rename in (
        (shoot / "Ceremony" / "Card 1", "*.CR2", lambda p: p.name),
        (shoot / "Ceremony" / "Card 2", "*.jpg", lambda p: f"DSC_{p.stem[4:]}.JPG"),
    ):
        folder.mkdir(parents=True)
        for photo in sorted(staged.glob(pattern)):
            photo.rename(folder / rename(photo))
    return shoot


def test_outputs_keep_the_shoots_subfolders_and_extension_case(
    env: dict[str, str], tmp_path: Path
) -> None:
    shoot = _nested_shoot(tmp_path)
    done = orchestrator("run", str(shoot), "-p", "1001", "-p", JPEG_PROFILE, "--export", env=env)
    assert done.returncode == 0, done.stderr
    found = sorted(str(p.relative_to(shoot)) for p in shoot.rglob("*") if p.is_file())
    outputs = [p for p in found if p.startswith(("edited/", "exported/"))]
    assert outputs == [
        "edited/JPG/Ceremony/Card 2/DSC_0003.JPG",
        "edited/JPG/Ceremony/Card 2/DSC_0004.JPG",
        "edited/RAW/Ceremony/Card 1/IMG_0001.xmp",
        "edited/RAW/Ceremony/Card 1/IMG_0002.xmp",
        "exported/JPG/Ceremony/Card 2/DSC_0003.JPG",
        "exported/JPG/Ceremony/Card 2/DSC_0004.JPG",
        "exported/RAW/Ceremony/Card 1/IMG_0001.jpg",
        "exported/RAW/Ceremony/Card 1/IMG_0002.jpg",
    ]


def test_sidecars_beside_the_raws_keep_the_one_already_there(
    env: dict[str, str], tmp_path: Path
) -> None:
    shoot = _nested_shoot(tmp_path)
    card = shoot / "Ceremony" / "Card 1"
    theirs = card / "IMG_0001.xmp"
    theirs.write_bytes(b"<x:xmpmeta>Lightroom's own</x:xmpmeta>")
    for photo in (shoot / "Ceremony" / "Card 2").iterdir():
        photo.unlink()  # a RAW-only shoot
    done = orchestrator("run", str(shoot), "-p", "1001", "--sidecars", "beside", env=env)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in card.iterdir()) == [
        "IMG_0001.CR2",
        "IMG_0001.xmp",
        "IMG_0001.xmp.orig",
        "IMG_0002.CR2",
        "IMG_0002.xmp",
    ]
    assert (card / "IMG_0001.xmp.orig").read_bytes() == b"<x:xmpmeta>Lightroom's own</x:xmpmeta>"
    assert b"imagen:SourceFile" in theirs.read_bytes()  # the edit is where Lightroom reads it
    assert not (shoot / "edited").exists()


def test_two_camera_bodies_with_one_file_name_go_through_prefixed_and_come_back_in_place(
    env: dict[str, str], sandbox_url: str, tmp_path: Path
) -> None:
    staged = tmp_path / "staged"
    staged.mkdir()
    make_sample_shoot(staged, raw=2, jpeg=0)
    shoot = tmp_path / "two bodies"
    for card, photo in zip(("Card 1", "Card 2"), sorted(staged.iterdir()), strict=True):
        (shoot / card).mkdir(parents=True)
        photo.rename(shoot / card / "IMG_0001.CR2")
    refused = orchestrator("run", str(shoot), "-p", "1001", env=env)
    assert refused.returncode == 2 and "--prefix-subfolders" in refused.stderr

    [ran] = _views(_json("run", str(shoot), "-p", "1001", "--prefix-subfolders", env=env))
    assert ran.state == "completed"
    project = next(
        p for p in ledger(sandbox_url)["projects"] if p["project_uuid"] == ran.project_uuid
    )
    assert sorted(project["files"]) == ["Card 1_IMG_0001.CR2", "Card 2_IMG_0001.CR2"]
    edits = {
        str(p.relative_to(shoot / "edited")): md5_of(p) for p in (shoot / "edited").rglob("*.xmp")
    }
    assert sorted(edits) == ["Card 1/IMG_0001.xmp", "Card 2/IMG_0001.xmp"]
    assert edits["Card 1/IMG_0001.xmp"] == project["edit_outputs"]["Card 1_IMG_0001.xmp"]
    assert edits["Card 2/IMG_0001.xmp"] == project["edit_outputs"]["Card 2_IMG_0001.xmp"]
