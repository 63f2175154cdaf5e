"""A shoot is what the photographer names: RAW and JPEG in one shoot, late photos joining it in
a follow-up job (`run --add`), picks sent by rating (`--min-rating`), every photo edited once
(the sandbox ledger)."""

from __future__ import annotations

import json
import signal
import struct
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from orchestrator.sandbox.samples import make_sample_shoot
from tests.daemon_support import wait_for
from tests.helpers import (
    cli_env,
    ledger,
    orchestrator,
    photo_bytes,
    sandbox_process,
    status_jobs,
)

RAW_PROFILE, JPEG_PROFILE = "1001", "2001"


def xmp_packet(rating: int) -> bytes:
    """An XMP packet holding only a rating (what a culling tool writes)."""
    return (
        '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>'
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF '
        'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description '
        f'rdf:about="" xmlns:xmp="http://ns.adobe.com/xap/1.0/" xmp:Rating="{rating}"/>'
        '</rdf:RDF></x:xmpmeta><?xpacket end="w"?>'
    ).encode()


def rated_raw(path: Path, rating: int, body: bytes = b"") -> Path:
    """A CR2 whose own first IFD carries an XMP packet with `rating` (tag 0x02BC), as a
    camera or a culling tool that writes into the RAW leaves it; exiftool reads it back."""
    packet = xmp_packet(rating)
    header = b"II*\x00" + struct.pack("<I", 16) + b"CR\x02\x00" + struct.pack("<I", 0)
    ifd = struct.pack("<H", 1) + struct.pack("<HHII", 0x02BC, 1, len(packet), 34)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(header + ifd + struct.pack("<I", 0) + packet + (body or path.name.encode()))
    return path


def _projects(sandbox: str, shoot: Path) -> list[dict[str, object]]:
    return [p for p in ledger(sandbox)["projects"] if str(p["name"]).startswith(shoot.name)]


def _uploads(sandbox: str, shoot: Path) -> dict[str, int]:
    counts: dict[str, int] = {}
    for project in _projects(sandbox, shoot):
        files = project["files"]
        assert isinstance(files, dict)
        for name, file in files.items():
            counts[name] = counts.get(name, 0) + file["uploads_completed"]
    return counts


def test_late_photos_join_the_shoot_in_a_follow_up_edited_once(tmp_path: Path) -> None:
    shoot = tmp_path / "smith-wedding"
    make_sample_shoot(shoot / "Card 1", raw=2, jpeg=2)
    with sandbox_process("--edit-seconds", "0.2") as sandbox:
        env = cli_env(f"{sandbox}/v1", f"sqlite:///{tmp_path / 'orchestrator.db'}")
        first = orchestrator(
            "run", str(shoot), "-p", RAW_PROFILE, "-p", JPEG_PROFILE, "--export", env=env
        )
        assert first.returncode == 0, first.stderr[-3000:]
        # The second shooter's card arrives after the upload.
        make_sample_shoot(shoot / "Card 2", raw=0, jpeg=3, seed=7)
        for n, path in enumerate(sorted((shoot / "Card 2").iterdir())):
            path.rename(path.with_name(f"B_{n}.jpg"))
        told = orchestrator("run", str(shoot), env=env)
        assert told.returncode == 3, told.stderr[-3000:]
        assert "--add" in told.stdout + told.stderr
        # A photo already edited is changed: reported, never sent again.
        changed = shoot / "Card 1" / "IMG_0003.jpg"
        changed.write_bytes(changed.read_bytes() + b"retouched")

        added = orchestrator("run", str(shoot), "--add", "--json", env=env)
        assert added.returncode == 0, added.stderr[-3000:]
        assert "join the shoot in this follow-up job" in added.stderr
        assert "IMG_0003.jpg" in added.stderr and "not sent again" in added.stderr
        again = orchestrator("run", str(shoot), "--add", env=env)
        assert again.returncode == 0, again.stderr[-3000:]
        assert "follow-up" not in again.stderr

        [listed] = json.loads(orchestrator("status", "--json", env=env).stdout)
        assert (listed["name"], listed["state"], listed["photos"]) == (
            "smith-wedding",
            "completed",
            7,
        )
        names = sorted(job["name"] for job in listed["jobs"])
        assert names == ["smith-wedding (JPG)", "smith-wedding (JPG) +1", "smith-wedding (RAW)"]
        follow_up = next(j for j in listed["jobs"] if j["name"].endswith("+1"))
        first_jpeg = next(j for j in listed["jobs"] if j["name"] == "smith-wedding (JPG)")
        assert follow_up["spec"] == first_jpeg["spec"]
        assert follow_up["profile_key"] == int(JPEG_PROFILE)
        assert follow_up["exported_dir"] == first_jpeg["exported_dir"]
        assert (listed["left_out"], first_jpeg["left_out"]) == (0, 0)  # sent by the follow-up
        uploads = _uploads(sandbox, shoot)
        assert uploads == {name: 1 for name in uploads} and len(uploads) == 7
        assert all(p["edit_requests"] == 1 for p in _projects(sandbox, shoot))
        assert len(_projects(sandbox, shoot)) == 3
        exported = {p.name for p in (Path(first_jpeg["exported_dir"]) / "Card 2").iterdir()}
        assert exported == {"B_0.jpg", "B_1.jpg", "B_2.jpg"}


def test_only_the_picks_are_sent_and_a_lower_rating_adds_the_rest(tmp_path: Path) -> None:
    shoot = tmp_path / "culled"
    rated_raw(shoot / "Card 1" / "DSC_0001.CR2", 5)  # rated in the RAW itself
    rated_raw(shoot / "Card 1" / "DSC_0002.CR2", 2)
    rated_raw(shoot / "Card 1" / "DSC_0003.CR2", -1)  # rejected
    rated_raw(shoot / "Card 1" / "DSC_0004.CR2", 1)
    (shoot / "Card 1" / "DSC_0004.xmp").write_bytes(xmp_packet(4))  # the sidecar wins
    (shoot / "Card 1" / "DSC_0005.CR2").write_bytes(photo_bytes("x.cr2", b"unrated"))
    with sandbox_process("--edit-seconds", "0.2") as sandbox:
        env = cli_env(f"{sandbox}/v1", f"sqlite:///{tmp_path / 'orchestrator.db'}")
        ran = orchestrator("run", str(shoot), "-p", RAW_PROFILE, "--min-rating", "3", env=env)
        assert ran.returncode == 0, ran.stderr[-3000:]  # kept back by choice: not a shortfall
        assert "kept back 3 photos by --min-rating 3" in ran.stderr
        assert sorted(_uploads(sandbox, shoot)) == ["DSC_0001.CR2", "DSC_0004.CR2"]
        [listed] = json.loads(orchestrator("status", "--json", env=env).stdout)
        assert listed["not_picked"] == 3
        history = json.loads(orchestrator("history", "culled", "--json", env=env).stdout)
        reasons = {p["path"]: p["reason"] for p in history["job"]["failed_photos"]}
        assert reasons == {
            "Card 1/DSC_0002.CR2": "not picked: rated 2, below --min-rating 3",
            "Card 1/DSC_0003.CR2": "not picked: rejected (rating -1)",
            "Card 1/DSC_0005.CR2": "not picked: unrated, below --min-rating 3",
        }

        lower = orchestrator("run", str(shoot), "--add", "--min-rating", "2", env=env)
        assert lower.returncode == 0, lower.stderr[-3000:]
        uploads = _uploads(sandbox, shoot)
        assert uploads == {"DSC_0001.CR2": 1, "DSC_0002.CR2": 1, "DSC_0004.CR2": 1}
        [listed] = json.loads(orchestrator("status", "--json", env=env).stdout)
        assert (len(listed["jobs"]), listed["not_picked"]) == (2, 2)
        assert listed["jobs"][1]["spec"]["min_rating"] == 2


def _subjects(path: Path) -> list[str]:
    """XMP dc:subject of a file, as exiftool (an independent reader) reads it."""
    found = subprocess.run(
        ["exiftool", "-j", "-XMP-dc:Subject", str(path)],
        capture_output=True,
        text=True,
        check=True,
    )
    value = json.loads(found.stdout)[0].get("Subject", [])
    return [str(v) for v in (value if isinstance(value, list) else [value])]


def test_the_shoots_own_keywords_are_in_every_file_and_editable_later(tmp_path: Path) -> None:
    shoot = tmp_path / "smith-wedding"
    make_sample_shoot(shoot / "Ceremony", raw=2, jpeg=2)
    with sandbox_process("--edit-seconds", "0.2") as sandbox:
        env = cli_env(f"{sandbox}/v1", f"sqlite:///{tmp_path / 'orchestrator.db'}")
        ran = orchestrator(
            "run",
            str(shoot),
            "-p",
            RAW_PROFILE,
            "-p",
            JPEG_PROFILE,
            "--export",
            "--keyword",
            "Smith wedding",
            "--keyword",
            "Villa Rosa",
            env=env,
        )
        assert ran.returncode == 0, ran.stderr[-3000:]
        outputs = sorted(p for p in (shoot / "exported").rglob("*.jpg")) + sorted(
            p for p in (shoot / "edited").rglob("*") if p.suffix in (".xmp", ".jpg")
        )
        assert len(outputs) == 8  # 4 exports, 2 sidecars, 2 edited JPEGs
        for path in outputs:
            assert _subjects(path) == ["Smith wedding", "Villa Rosa"], path
        [listed] = json.loads(orchestrator("status", "--json", env=env).stdout)
        assert listed["keywords"] == ["Smith wedding", "Villa Rosa"]

        edited = orchestrator(
            "keywords",
            "smith-wedding",
            "--shoot-add",
            "June 2026",
            "--shoot-remove",
            "Villa Rosa",
            "--json",
            env=env,
        )
        assert edited.returncode == 0, edited.stderr[-3000:]
        assert json.loads(edited.stdout)["keywords"] == ["Smith wedding", "June 2026"]
        for path in outputs:
            assert _subjects(path) == ["Smith wedding", "June 2026"], path
        [listed] = json.loads(orchestrator("status", "--json", env=env).stdout)
        assert listed["keywords"] == ["Smith wedding", "June 2026"]
        assert {tuple(job["spec"]["keywords"]) for job in listed["jobs"]} == {
            ("Smith wedding", "June 2026")
        }


def test_a_photo_added_during_a_runs_edit_is_reported_then_added(tmp_path: Path) -> None:
    """Issue 24: `run` did not see photos that landed in the folder during its own run."""
    shoot = tmp_path / "shoot"
    make_sample_shoot(shoot, raw=0, jpeg=2)
    # The edit lasts long enough that the photo lands while the run waits for it.
    with sandbox_process("--edit-seconds", "20") as sandbox:
        env = cli_env(f"{sandbox}/v1", f"sqlite:///{tmp_path / 'orchestrator.db'}")
        running = subprocess.Popen(
            [sys.executable, "-m", "orchestrator", "run", str(shoot), "-p", JPEG_PROFILE],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            wait_for(
                lambda: any(j["done"].get("upload") == 2 for j in status_jobs(env)),
                timeout=60,
                what="the run to finish its upload",
            )
            late = shoot / "IMG_0099.jpg"
            late.write_bytes((shoot / "IMG_0001.jpg").read_bytes() + b"late")
            _, err = running.communicate(timeout=120)
        finally:
            running.kill()
        assert running.returncode == 3, err[-3000:]
        assert "IMG_0099.jpg" in err and "--add" in err
        [job] = status_jobs(env)
        assert (job["left_out"], job["photos"]) == (1, 2)
        first = _uploads(sandbox, shoot)
    # The follow-up's edit need not wait: an Imagen (sandbox) of quick edits takes it.
    with sandbox_process("--edit-seconds", "0.2") as quick:
        env = cli_env(f"{quick}/v1", f"sqlite:///{tmp_path / 'orchestrator.db'}")
        added = orchestrator("run", str(shoot), "--add", env=env)
        assert added.returncode == 0, added.stderr[-3000:]
        assert sorted(first.values()) == [1, 1]
        assert _uploads(quick, shoot) == {"IMG_0099.jpg": 1}
        assert all(j["left_out"] == 0 for j in status_jobs(env))


FOLLOW_UP_POINTS = (
    "before_create_project",
    "after_create_project",
    "after_upload:1",
    "after_edit_request",
    "after_download:1",
    "after_checkpoint:3",
)
"""Where the follow-up's run is killed (SIGKILL): around its project, its upload, its edit
request, its downloads and a committed move."""


def _killed_in_the_follow_up(root: Path, sandbox: str, env: dict[str, str], point: str) -> None:
    shoot = root / point.replace(":", "-")
    make_sample_shoot(shoot / "Card 1", raw=0, jpeg=3)
    first = orchestrator("run", str(shoot), "-p", JPEG_PROFILE, env=env)
    assert first.returncode == 0, first.stderr[-3000:]
    for n, path in enumerate(make_sample_shoot(shoot / "Card 2", raw=0, jpeg=3, seed=11)):
        path.rename(path.with_name(f"DSC_{n}.JPG"))  # the second shooter's camera
    killed = orchestrator("run", str(shoot), "--add", env={**env, "ORCH_CRASH_AT": point})
    assert killed.returncode == -signal.SIGKILL, (point, killed.stderr[-3000:])
    resumed = orchestrator("run", str(shoot), env=env)  # the follow-up is the shoot's now
    assert resumed.returncode == 0, (point, resumed.stderr[-3000:])
    again = orchestrator("run", str(shoot), "--add", env=env)
    assert again.returncode == 0 and "follow-up" not in again.stderr, again.stderr[-3000:]
    projects = _projects(sandbox, shoot)
    assert len(projects) == 2, point
    assert all(p["edit_requests"] == 1 for p in projects), point
    files = [name for p in projects for name in p["files"]]
    assert sorted(files) == sorted(set(files)) and len(files) == 6, point  # each photo once
    shoots = json.loads(orchestrator("status", "--json", env=env).stdout)
    [listed] = [s for s in shoots if s["name"] == shoot.name]
    assert (listed["state"], listed["photos"], len(listed["jobs"])) == ("completed", 6, 2)
    edited = sorted(p.name for p in (shoot / "edited" / "Card 2").iterdir())
    assert edited == ["DSC_0.JPG", "DSC_1.JPG", "DSC_2.JPG"], point


def test_a_follow_up_killed_at_its_crash_points_resumes_with_nothing_twice(
    tmp_path: Path,
) -> None:
    with sandbox_process("--edit-seconds", "0.2") as sandbox:
        env = cli_env(f"{sandbox}/v1", f"sqlite:///{tmp_path / 'orchestrator.db'}")
        with ThreadPoolExecutor(max_workers=2) as pool:
            list(
                pool.map(
                    lambda point: _killed_in_the_follow_up(tmp_path, sandbox, env, point),
                    FOLLOW_UP_POINTS,
                )
            )


def test_again_starts_a_new_shoot_of_the_folder_named_by_its_folder(tmp_path: Path) -> None:
    shoot = tmp_path / "jones"
    make_sample_shoot(shoot, raw=0, jpeg=2)
    with sandbox_process("--edit-seconds", "0.2") as sandbox:
        env = cli_env(f"{sandbox}/v1", f"sqlite:///{tmp_path / 'orchestrator.db'}")
        assert orchestrator("run", str(shoot), "-p", JPEG_PROFILE, env=env).returncode == 0
        again = orchestrator("run", str(shoot), "-p", JPEG_PROFILE, "--again", env=env)
        assert again.returncode == 0, again.stderr[-3000:]
        newest, first = json.loads(orchestrator("status", "--json", env=env).stdout)
        assert newest["source"] == first["source"] == str(shoot.resolve())
        assert newest["id"] != first["id"] and newest["created_at"] >= first["created_at"]
        [named] = json.loads(orchestrator("status", str(shoot), "--json", env=env).stdout)
        assert named["id"] == newest["id"]
        [older] = json.loads(orchestrator("status", first["id"][:8], "--json", env=env).stdout)
        assert older["id"] == first["id"]


def test_picks_and_shoot_words_use_the_exiftool_the_settings_name(tmp_path: Path) -> None:
    """ORCH_EXIFTOOL is the program that reads ratings and writes shoot words: one that cannot
    run refuses the run before anything is sent; one that can is the one used."""
    shoot = tmp_path / "culled"
    rated_raw(shoot / "DSC_0001.CR2", 5)
    rated_raw(shoot / "DSC_0002.CR2", 1)
    marker = tmp_path / "called"
    wrapper = tmp_path / "bin" / "studio-exiftool"
    wrapper.parent.mkdir()
    wrapper.write_text(f'#!/bin/sh\ntouch "{marker}"\nexec exiftool "$@"\n')
    wrapper.chmod(0o755)
    with sandbox_process("--edit-seconds", "0.2") as sandbox:
        env = cli_env(f"{sandbox}/v1", f"sqlite:///{tmp_path / 'orchestrator.db'}")
        missing = {**env, "ORCH_EXIFTOOL": str(tmp_path / "no-such-exiftool")}
        for option in (["--min-rating", "3"], ["--keyword", "Smith wedding"]):
            refused = orchestrator("run", str(shoot), "-p", RAW_PROFILE, *option, env=missing)
            assert refused.returncode == 2, refused.stderr[-3000:]
            assert "no-such-exiftool" in refused.stderr
        assert _uploads(sandbox, shoot) == {}

        env["ORCH_EXIFTOOL"] = str(wrapper)
        ran = orchestrator("run", str(shoot), "-p", RAW_PROFILE, "--min-rating", "3", env=env)
        assert ran.returncode == 0, ran.stderr[-3000:]
        assert marker.exists()
        assert sorted(_uploads(sandbox, shoot)) == ["DSC_0001.CR2"]
