"""What the keywording tests share: shoots of distinct images, and an independent reader of
the keywords written (Pillow for IPTC, the standard library's XML parser for XMP; never
exiftool, which writes them)."""

from __future__ import annotations

import random
import shutil
import struct
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, IptcImagePlugin

from orchestrator.sandbox.samples import CR2_HEADER

needs_exiftool = pytest.mark.skipif(
    shutil.which("exiftool") is None,
    reason="exiftool is not installed (apt-get install libimage-exiftool-perl; .ci/run does)",
)

NS = {
    "rdf": "http://www.w3.org/1999/02/22-rdf-syntax-ns#",
    "dc": "http://purl.org/dc/elements/1.1/",
    "lr": "http://ns.adobe.com/lightroom/1.0/",
    "crs": "http://ns.adobe.com/camera-raw-settings/1.0/",
}
XMP_HEADER = b"http://ns.adobe.com/xap/1.0/\x00"
IMAGGA_ENV = {"IMAGGA_API_KEY": "imagga-key-123", "IMAGGA_API_SECRET": "imagga-secret-456"}


def write_photo_jpeg(path: Path, seed: int, size: tuple[int, int] = (96, 64)) -> Path:
    """A real JPEG of blocks of colour that differs from every other seed."""
    rng = random.Random(seed)
    image = Image.new("RGB", size)
    for x in range(0, size[0], 16):
        for y in range(0, size[1], 16):
            colour = (rng.randrange(256), rng.randrange(256), rng.randrange(256))
            image.paste(colour, (x, y, x + 16, y + 16))
    image.save(path, format="JPEG", quality=90)
    return path


def make_tag_shoot(folder: Path, *, jpegs: int = 4, raws: int = 0, seed: int = 0) -> list[str]:
    """A shoot of `raws` CR2s and `jpegs` JPEGs of distinct images; the file names."""
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for number in range(1, raws + 1):
        path = folder / f"RAW_{number:04d}.CR2"
        path.write_bytes(CR2_HEADER + random.Random(f"{seed}:{number}").randbytes(4096))
        names.append(path.name)
    for number in range(1, jpegs + 1):
        names.append(write_photo_jpeg(folder / f"IMG_{number:04d}.jpg", seed * 1000 + number).name)
    return sorted(names)


def jpeg_segments(data: bytes) -> tuple[list[tuple[int, bytes]], bytes]:
    """The marker segments before the first scan, and everything from the scan on."""
    assert data[:2] == b"\xff\xd8", "not a JPEG"
    at, segments = 2, []
    while True:
        assert data[at] == 0xFF, f"no marker at {at}"
        marker = data[at + 1]
        if marker == 0xDA:
            return segments, data[at:]
        (length,) = struct.unpack(">H", data[at + 2 : at + 4])
        segments.append((marker, data[at + 4 : at + 2 + length]))
        at += 2 + length


def image_data(path: Path) -> tuple[list[tuple[int, bytes]], bytes]:
    """What makes the picture: every segment but APPn and COM, and the scan to the end."""
    segments, scan = jpeg_segments(path.read_bytes())
    return [(m, p) for m, p in segments if not (0xE0 <= m <= 0xEF or m == 0xFE)], scan


def xmp_of(path: Path) -> ET.Element:
    """The XMP packet of a JPEG (its APP1) or of a sidecar, parsed."""
    if path.suffix.lower() == ".xmp":
        return ET.fromstring(path.read_bytes())
    segments, _ = jpeg_segments(path.read_bytes())
    packets = [p[len(XMP_HEADER) :] for m, p in segments if m == 0xE1 and p.startswith(XMP_HEADER)]
    assert len(packets) == 1, f"{path.name} has {len(packets)} XMP packets"
    return ET.fromstring(packets[0])


def xmp_list(root: ET.Element, prop: str) -> tuple[str | None, list[str]]:
    """(container kind "Bag"/"Seq"/None, items) of an XMP list property such as dc:subject."""
    prefix, name = prop.split(":")
    found = root.findall(f".//{{{NS[prefix]}}}{name}")
    if not found:
        return None, []
    assert len(found) == 1, f"{prop} appears {len(found)} times"
    [container] = list(found[0])
    kind = container.tag.rsplit("}", 1)[1]
    return kind, [li.text or "" for li in container.findall(f"{{{NS['rdf']}}}li")]


def develop_settings(root: ET.Element) -> dict[str, str]:
    """Every crs: property, written as an attribute or as an element."""
    crs = f"{{{NS['crs']}}}"
    found: dict[str, str] = {}
    for element in root.iter():
        for key, value in element.attrib.items():
            if key.startswith(crs):
                found[key[len(crs) :]] = value
        if element.tag.startswith(crs):
            found[element.tag[len(crs) :]] = (element.text or "").strip()
    return found


def iptc_keywords(path: Path) -> tuple[bytes | None, list[str]]:
    """(coded character set, keywords) of a JPEG's IPTC, read by Pillow."""
    with Image.open(path) as image:
        info: dict[tuple[int, int], Any] = IptcImagePlugin.getiptcinfo(image) or {}
    words = info.get((2, 25), [])
    words = words if isinstance(words, list) else [words]
    return info.get((1, 90)), [w.decode("utf-8") for w in words]


def pixels(path: Path) -> bytes:
    """The decoded pixels of an image."""
    with Image.open(path) as image:
        return image.convert("RGB").tobytes()


UTF8_MARK = b"\x1b%G"
