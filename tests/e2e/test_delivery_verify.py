"""`deliver --verify` end to end: a delivered shoot whose imgix Source then changed behind its
back (an asset deleted in the dashboard, another overwritten with other bytes, one of this
job's put at a path the delivery does not list) is reconciled from the Source's asset listing,
what is missing or differs delivered again, the extra one reported and left alone."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from urllib.parse import quote

from tests.e2e.test_analyses import delivery_env, make_people_shoot, run
from tests.e2e.test_delivery import imgix_assets, sandbox_url
from tests.helpers import md5_of, orchestrator, status_jobs

__all__ = ["sandbox_url"]  # the fixture, used by name


def imgix_call(env: dict[str, str], method: str, path: str, body: bytes, kind: str) -> None:
    request = urllib.request.Request(
        f"{env['IMGIX_API_URL']}/sources/{env['IMGIX_SOURCE_ID']}/{path}",
        data=body,
        method=method,
        headers={"Authorization": f"Bearer {env['IMGIX_API_KEY']}", "Content-Type": kind},
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert answer.status in (200, 201)


def test_verify_finds_missing_extra_and_resized_assets_and_repairs_what_it_delivered(
    sandbox_url: str, migrated_db_url: str, tmp_path: Path
) -> None:
    shoot = tmp_path / "shoot"
    names = make_people_shoot(shoot, 4, seed="verify")
    env = delivery_env(sandbox_url, migrated_db_url)
    assert run(shoot, env, "--deliver").returncode == 0
    [job] = status_jobs(env, str(shoot))
    gone, resized = "shoot/IMG_0001.jpg", "shoot/IMG_0003.jpg"

    forget = urllib.request.Request(
        f"{sandbox_url}/_sandbox/imgix/assets/{env['IMGIX_SOURCE_ID']}/{quote(gone)}",
        method="DELETE",
    )
    with urllib.request.urlopen(forget, timeout=10) as answer:
        assert answer.status == 200
    imgix_call(env, "POST", f"upload/{resized}?overwrite=true", b"not the photo", "image/jpeg")
    imgix_call(env, "POST", "upload/shoot/stray.jpg", b"stray", "image/jpeg")
    marker = {"orchestrator_job": job["id"]}
    document = {
        "data": {
            "id": f"{env['IMGIX_SOURCE_ID']}/shoot/stray.jpg",
            "type": "assets",
            "attributes": {"custom_fields": marker},
        }
    }
    imgix_call(
        env,
        "PATCH",
        "assets/shoot/stray.jpg",
        json.dumps(document).encode(),
        "application/vnd.api+json",
    )

    checked = orchestrator("deliver", str(shoot), "--verify", "--json", env=env)
    assert checked.returncode == 0, checked.stderr[-3000:]
    found = json.loads(checked.stdout)
    assert found["checked"] == len(names)
    assert found["missing"] == [gone]
    assert found["extra"] == ["shoot/stray.jpg"]
    assert [d["origin_path"] for d in found["different"]] == [resized]
    assert found["different"][0]["at_imgix"] == len(b"not the photo")
    assert (found["repaired"], found["failed"]) == (2, [])
    assets = imgix_assets(sandbox_url, env)
    for name in names:
        assert assets[f"shoot/{name}"]["md5"] == md5_of(shoot / "exported" / name)
    assert "shoot/stray.jpg" in assets  # reported, never deleted

    again = orchestrator("deliver", str(shoot), "--verify", env=env)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"{len(names)} delivered, {len(names) + 1} at imgix: 0 missing, 1 extra" in again.stdout
    assert "extra (left in place): shoot/stray.jpg" in again.stdout
