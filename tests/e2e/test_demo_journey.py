"""`orchestrator demo --keep` as a real process: the whole journey on the in-process sandbox,
each stage's product printed, the exports carrying keywords, colour words and face regions
(read back with exiftool), a contact sheet of the kept exports cropped on their focal points,
and the database the review page reads."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from tests.e2e.test_analyses import as_list, exif
from tests.tagging_support import needs_exiftool

pytestmark = needs_exiftool


def test_the_demo_shows_the_whole_journey_and_keeps_what_is_worth_opening(tmp_path: Path) -> None:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("IMAGEN_", "IMAGGA_", "ORCH_", "IMGIX_"))
    }
    env["ORCH_CONFIG"] = os.devnull
    kept = tmp_path / "demo"
    done = subprocess.run(
        [sys.executable, "-m", "orchestrator", "demo", "--keep", str(kept)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    text = " ".join(done.stdout.split())
    for stage in (
        "edit and export:",
        "keywords:",
        "colours:",
        "faces:",
        "smart crops:",
        "delivery:",
    ):
        assert stage in text, stage
    asked = re.search(r"Imagga requests: (\d+) tags, (\d+) colours, (\d+) faces, (\d+) crops", text)
    assert asked is not None and len(set(asked.groups())) == 1  # one of each per photo
    assert "crop=focalpoint" in text
    sheet = (kept / "contact-sheet.html").read_text()
    assert sheet.count("<figure>") == 10 and "object-position:" in sheet
    assert (kept / "demo.db").exists()
    raw_exports = sorted((kept / "shoot" / "exported" / "RAW").glob("*.jpg"))
    regions = 0
    for path in raw_exports:
        tags = exif(path)
        assert any(h.startswith("Colors|") for h in as_list(tags.get("XMP-lr:HierarchicalSubject")))
        regions += len((tags.get("XMP-mwg-rs:RegionInfo") or {}).get("RegionList", []))
    assert regions > 0, "the RAW scenes show people"
    records = json.loads((kept / "shoot" / "delivered" / "delivery.json").read_text())
    assert all(set(r["crops"]) == {"1:1", "4:5", "9:16"} for r in records)
