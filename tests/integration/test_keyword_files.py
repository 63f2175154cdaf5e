"""Keywords written into exported JPEGs, edited JPEGs and Imagen's `.xmp` sidecars, read back
with an independent reader: Bags, UTF-8 IPTC, old keywords kept, no duplicates, image data and
develop settings exactly as before."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.integrations.keywords import ExiftoolMissing, KeywordFiles, KeywordWriteFailed
from orchestrator.sandbox import jpeg
from orchestrator.sandbox.edit_rules import EditSettings
from orchestrator.sandbox.outputs import xmp_packet
from orchestrator.sandbox.state import EditInput
from tests.tagging_support import (
    UTF8_MARK,
    develop_settings,
    image_data,
    iptc_keywords,
    needs_exiftool,
    pixels,
    write_photo_jpeg,
    xmp_list,
    xmp_of,
)


@pytest.fixture
def files() -> Iterator[KeywordFiles]:
    writer = KeywordFiles()
    yield writer
    writer.close()


def imagen_edit(path: Path) -> Path:
    """An edited JPEG as Imagen gives it: the photo with an XMP APP1 of develop settings."""
    source = write_photo_jpeg(path.with_suffix(".src.jpg"), seed=7)
    packet = xmp_packet(
        EditInput(name="IMG_1.jpg", path=source, md5_hex="ab" * 16),
        EditSettings(profile_key=2001, tools=("crop",)),
    )
    data = source.read_bytes()
    path.write_bytes(jpeg.SOI + jpeg.xmp_segment(packet) + data[2:])
    return path


def sidecar(path: Path) -> Path:
    packet = xmp_packet(
        EditInput(name="IMG_1.CR2", path=path, md5_hex="cd" * 16),
        EditSettings(profile_key=1001, tools=()),
    )
    path.write_bytes(packet)
    return path


@needs_exiftool
@pytest.mark.parametrize("kind", ["plain", "imagen_edit"])
async def test_a_jpeg_gets_bags_and_utf8_iptc_and_keeps_its_image(
    files: KeywordFiles, tmp_path: Path, kind: str
) -> None:
    path = (
        write_photo_jpeg(tmp_path / "a.jpg", seed=1)
        if kind == "plain"
        else imagen_edit(tmp_path / "a.jpg")
    )
    before_data, before_pixels = image_data(path), pixels(path)
    settings_before = develop_settings(xmp_of(path)) if kind == "imagen_edit" else {}
    long = "Überschwänglich-" * 6  # 102 bytes of UTF-8

    await files.write(path, add=["bride", "Straße", long], hierarchy=["events|bride"])
    await files.write(path, add=["bride", "wedding"], hierarchy=["events|wedding"])

    root = xmp_of(path)
    kind_of, subject = xmp_list(root, "dc:subject")
    assert kind_of == "Bag" and sorted(subject) == sorted(["bride", "Straße", long, "wedding"])
    assert xmp_list(root, "lr:hierarchicalSubject") == ("Bag", ["events|bride", "events|wedding"])
    charset, iptc = iptc_keywords(path)
    assert charset == UTF8_MARK
    assert sorted(iptc) == sorted(
        ["bride", "Straße", long.encode()[:64].decode(errors="ignore"), "wedding"]
    )
    assert all(len(word.encode()) <= 64 for word in iptc)
    assert image_data(path) == before_data and pixels(path) == before_pixels
    if settings_before:
        assert develop_settings(xmp_of(path)) == settings_before


@needs_exiftool
async def test_existing_keywords_stay_and_removal_takes_only_ours(
    files: KeywordFiles, tmp_path: Path
) -> None:
    path = write_photo_jpeg(tmp_path / "a.jpg", seed=2)
    await files.write(path, add=["mine", "Family"])  # a photographer's own keywords

    await files.write(path, add=["family", "sky", "tree"])
    words = xmp_list(xmp_of(path), "dc:subject")[1]
    assert sorted(words) == sorted(["mine", "Family", "family", "sky", "tree"])
    await files.write(path, add=["sky"], remove=["tree"])
    words = xmp_list(xmp_of(path), "dc:subject")[1]
    assert sorted(words) == sorted(["mine", "Family", "family", "sky"])
    assert sorted(await files.read(path)) == sorted(words)
    assert sorted(iptc_keywords(path)[1]) == sorted(words)


@needs_exiftool
async def test_a_sidecar_keeps_every_develop_setting(files: KeywordFiles, tmp_path: Path) -> None:
    path = sidecar(tmp_path / "IMG_1.xmp")
    before = develop_settings(xmp_of(path))
    assert len(before) == 5

    await files.write(path, add=["bride", "sky"], hierarchy=["people portraits|bride"])

    root = xmp_of(path)
    assert xmp_list(root, "dc:subject") == ("Bag", ["bride", "sky"])
    assert xmp_list(root, "lr:hierarchicalSubject") == ("Bag", ["people portraits|bride"])
    assert develop_settings(root) == before
    assert b"imagen:SourceMD5" in path.read_bytes()  # Imagen's own properties stay too


@needs_exiftool
async def test_a_file_exiftool_cannot_write_is_named(files: KeywordFiles, tmp_path: Path) -> None:
    bad = tmp_path / "IMG_9.dng"
    bad.write_bytes(b"II*\x00" + b"\x00" * 64)
    with pytest.raises(KeywordWriteFailed, match=r"IMG_9\.dng"):
        await files.write(bad, add=["sky"])
    with pytest.raises(KeywordWriteFailed, match="cannot be written"):
        await files.write(tmp_path / "a.png", add=["sky"])


def test_a_missing_exiftool_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no exiftool on PATH
    with pytest.raises(ExiftoolMissing, match="apt-get install libimage-exiftool-perl"):
        KeywordFiles().check()
    with pytest.raises(ExiftoolMissing, match="ORCH_EXIFTOOL, 'exiftool-not-installed-here'"):
        KeywordFiles("exiftool-not-installed-here").check()
