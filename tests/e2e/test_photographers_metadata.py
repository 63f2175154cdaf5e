"""What the photographer made of a shoot (culling ratings, colour labels, titles, their own
keywords, credit and copyright) is carried into every output, from a sidecar or from inside the
photo; Imagen's own edit settings (`crs:`) stay Imagen's. A real run against the sandbox, the
files read back with exiftool, a reader independent of the program."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import cli_env, orchestrator, sandbox_process
from tests.tagging_support import make_tag_shoot, needs_exiftool

pytestmark = needs_exiftool

SIDECAR = """<x:xmpmeta xmlns:x="adobe:ns:meta/">
 <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
  <rdf:Description rdf:about=""
    xmlns:xmp="http://ns.adobe.com/xap/1.0/"
    xmlns:dc="http://purl.org/dc/elements/1.1/"
    xmlns:photoshop="http://ns.adobe.com/photoshop/1.0/"
    xmlns:crs="http://ns.adobe.com/camera-raw-settings/1.0/"
    xmp:Rating="5" xmp:Label="Red" photoshop:Credit="Studio North" crs:Exposure2012="+3.00">
   <dc:title><rdf:Alt><rdf:li xml:lang="x-default">First kiss</rdf:li></rdf:Alt></dc:title>
   <dc:subject><rdf:Bag>
    <rdf:li>Anna and Ben</rdf:li><rdf:li>Ceremony</rdf:li>
   </rdf:Bag></dc:subject>
  </rdf:Description>
 </rdf:RDF>
</x:xmpmeta>
"""


@pytest.fixture(scope="module")
def sandbox_url() -> Iterator[str]:
    with sandbox_process("--edit-seconds", "0.2") as url:
        yield url


def _tags(path: Path) -> dict[str, Any]:
    done = subprocess.run(
        ["exiftool", "-j", "-G1", "-struct", "-charset", "iptc=UTF8", str(path)],
        capture_output=True,
        text=True,
        check=True,
    )
    found: dict[str, Any] = json.loads(done.stdout)[0]
    return found


def test_ratings_labels_and_captions_reach_the_sidecar_and_the_exports(
    sandbox_url: str, migrated_db_url: str, tmp_path: Path
) -> None:
    shoot = tmp_path / "shoot"
    make_tag_shoot(shoot, jpegs=2, raws=2)
    (shoot / "RAW_0001.xmp").write_text(SIDECAR)
    subprocess.run(
        [
            "exiftool", "-overwrite_original", "-charset", "iptc=UTF8",
            "-XMP-xmp:Rating=3", "-XMP-dc:Title=Rings",
            "-IPTC:CopyrightNotice=© Studio North", "-IPTC:CodedCharacterSet=UTF8",
            str(shoot / "IMG_0001.jpg"),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    env = cli_env(f"{sandbox_url}/v1", migrated_db_url)
    done = orchestrator(
        "run", str(shoot), "--profile", "1001", "--profile", "2001", "--export",
        "--sidecars", "beside", "--json", env=env, timeout=180,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]

    sidecar = _tags(shoot / "RAW_0001.xmp")
    assert sidecar["XMP-xmp:Rating"] == 5 and sidecar["XMP-xmp:Label"] == "Red"
    assert sidecar["XMP-dc:Title"] == "First kiss"
    assert sidecar["XMP-dc:Subject"] == ["Anna and Ben", "Ceremony"]
    assert sidecar["XMP-photoshop:Credit"] == "Studio North"
    # Imagen's edit stays Imagen's: the photographer's own develop settings are not carried.
    assert sidecar["XMP-crs:Exposure2012"] != "+3.00"
    assert "XMP-crs:ColorTemperature" in sidecar
    assert (shoot / "RAW_0001.xmp.orig").read_text() == SIDECAR

    raw_export = _tags(shoot / "exported" / "RAW" / "RAW_0001.jpg")
    assert raw_export["XMP-xmp:Rating"] == 5 and raw_export["XMP-xmp:Label"] == "Red"
    assert raw_export["XMP-dc:Title"] == "First kiss"

    for output in (
        shoot / "edited" / "JPG" / "IMG_0001.jpg",
        shoot / "exported" / "JPG" / "IMG_0001.jpg",
    ):
        carried = _tags(output)
        assert carried["XMP-xmp:Rating"] == 3, output
        assert carried["XMP-dc:Title"] == "Rings", output
        assert carried["IPTC:CopyrightNotice"] == "© Studio North", output

    # A photo the photographer left alone gets nothing invented.
    untouched = _tags(shoot / "exported" / "RAW" / "RAW_0002.jpg")
    assert "XMP-xmp:Rating" not in untouched and "XMP-dc:Title" not in untouched
