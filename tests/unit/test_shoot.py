"""Reading a shoot folder: types, skipped and refused files, clashing names, our outputs ignored."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from orchestrator.imagen.files import JPEG_EXTENSIONS, RAW_EXTENSIONS
from orchestrator.imagen.models import ImageType
from orchestrator.workflow.shoot import ShootError, scan_shoot
from tests.helpers import photo_bytes


def _touch(path: Path, data: bytes | None = None) -> None:
    """A file that passes for what its name says (a photo's signature, or a byte)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        default = photo_bytes(path.name)
    except KeyError:
        default = b"x"
    path.write_bytes(default if data is None else data)


def test_raw_and_jpeg_become_two_groups_and_the_rest_is_skipped(tmp_path: Path) -> None:
    for name in ("a.CR2", "b.nef", "c.DNG", "sub/d.ARW", "e.jpg", "f.JPEG", "g.txt", "h.mov"):
        _touch(tmp_path / name)
    _touch(tmp_path / ".hidden.jpg")
    _touch(tmp_path / "edited" / "a.xmp")
    _touch(tmp_path / "exported" / "a.jpg")
    _touch(tmp_path / "sub" / "edited" / "z.jpg")  # only the top-level output folders are ours
    scan = scan_shoot(tmp_path)
    assert [p.rel_path for p in scan.photos[ImageType.RAW]] == [
        "a.CR2",
        "b.nef",
        "c.DNG",
        "sub/d.ARW",
    ]
    assert [p.rel_path for p in scan.photos[ImageType.JPG]] == [
        "e.jpg",
        "f.JPEG",
        "sub/edited/z.jpg",
    ]
    assert scan.skipped == ["g.txt", "h.mov"]
    assert scan.photos[ImageType.RAW][3].file_name == "d.ARW"


def test_missing_not_a_folder_and_empty(tmp_path: Path) -> None:
    with pytest.raises(ShootError, match="does not exist"):
        scan_shoot(tmp_path / "nope")
    _touch(tmp_path / "file.jpg")
    with pytest.raises(ShootError, match="is not a folder"):
        scan_shoot(tmp_path / "file.jpg")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ShootError, match="no supported photos"):
        scan_shoot(empty)


@pytest.mark.parametrize(
    "names",
    [
        ("cam1/IMG_1.CR2", "cam2/IMG_1.CR2"),
        ("IMG_1.CR2", "cam2/img_1.cr2"),
        ("IMG_1.CR2", "IMG_1.NEF"),  # both would be edited to IMG_1.xmp
        # The same name in Unicode's two forms: macOS writes NFD, most others NFC; Imagen and
        # imgix take them for one name, and delivery failed late.
        ("caf\u00e9.jpg", "cafe\u0301.jpg"),
        ("Ceremony/\u00c5sa.jpg", "Card 2/A\u030asa.JPG"),
    ],
)
def test_names_that_would_clash_are_refused(tmp_path: Path, names: tuple[str, str]) -> None:
    for name in names:
        _touch(tmp_path / name)
    with pytest.raises(ShootError) as caught:
        scan_shoot(tmp_path)
    for name in names:
        assert name in str(caught.value)


def test_same_stem_across_types_is_fine(tmp_path: Path) -> None:
    _touch(tmp_path / "IMG_1.CR2")
    _touch(tmp_path / "IMG_1.JPG")
    scan = scan_shoot(tmp_path)
    assert set(scan.photos) == {ImageType.RAW, ImageType.JPG}


def _refusals(tmp_path: Path) -> dict[str, str]:
    """Scan a folder that also holds one good photo; what was refused, by name."""
    _touch(tmp_path / "good.jpg")
    scan = scan_shoot(tmp_path)
    assert [p.rel_path for p in scan.photos[ImageType.JPG]] == ["good.jpg"]
    return {refused.name: refused.reason for refused in scan.refused}


def test_links_are_refused_whether_they_leave_the_shoot_or_not(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    _touch(outside / "secret.jpg")
    _touch(outside / "album" / "x.jpg")
    shoot = tmp_path / "shoot"
    _touch(shoot / "sub" / "real.jpg", photo_bytes("real.jpg", b"real"))
    (shoot / "passwd.jpg").symlink_to("/etc/passwd")
    (shoot / "secret.jpg").symlink_to(outside / "secret.jpg")
    (shoot / "album").symlink_to(outside / "album", target_is_directory=True)
    (shoot / "again.jpg").symlink_to(shoot / "sub" / "real.jpg")
    (shoot / "loop.jpg").symlink_to("loop.jpg")
    (shoot / "notes.txt").symlink_to("/etc/passwd")  # not a photo: merely skipped
    scan = scan_shoot(shoot)
    refused = {r.name: r.reason for r in scan.refused}
    assert set(refused) == {"passwd.jpg", "secret.jpg", "album", "again.jpg", "loop.jpg"}
    assert "outside the shoot" in refused["passwd.jpg"]
    assert "outside the shoot" in refused["secret.jpg"]
    assert refused["album"].startswith("a link to a folder outside the shoot")
    assert "inside the shoot" in refused["again.jpg"]
    assert [p.rel_path for p in scan.photos[ImageType.JPG]] == ["sub/real.jpg"]
    assert scan.skipped == ["notes.txt"]


def test_pipes_and_other_files_that_are_not_regular_are_refused_unopened(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe.jpg")  # opening it to read would wait for a writer forever
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(tmp_path / "sock.CR2"))
        refused = _refusals(tmp_path)
    assert refused == {
        "pipe.jpg": "a named pipe, not a regular file: only regular files are sent",
        "sock.CR2": "a socket, not a regular file: only regular files are sent",
    }


def test_an_empty_photo_is_refused(tmp_path: Path) -> None:
    _touch(tmp_path / "IMG_1.CR2", b"")
    assert _refusals(tmp_path) == {
        "IMG_1.CR2": "empty (0 bytes): copy it again from the card, or leave it out"
    }


def test_content_that_is_not_what_the_extension_says_is_refused(tmp_path: Path) -> None:
    _touch(tmp_path / "passwd.jpg", b"root:x:0:0:root:/root:/bin/bash\n")
    _touch(tmp_path / "renamed.CR2", photo_bytes("x.jpg", b"a JPEG really"))
    _touch(tmp_path / "short.NEF", b"II*")
    refused = _refusals(tmp_path)
    assert refused["passwd.jpg"].startswith("its content is not a JPG photo but text")
    assert refused["renamed.CR2"].startswith("its content is not a CR2 photo but a JPEG")
    assert refused["short.NEF"].startswith("its content is not a NEF photo")
    assert "give it its real extension" in refused["passwd.jpg"]


@pytest.mark.parametrize("extension", sorted(RAW_EXTENSIONS | JPEG_EXTENSIONS))
def test_every_accepted_type_is_recognised_by_its_signature(tmp_path: Path, extension: str) -> None:
    name = f"IMG_1{extension.upper()}"
    _touch(tmp_path / name)
    scan = scan_shoot(tmp_path)
    assert scan.refused == []
    [photos] = scan.photos.values()
    assert [p.file_name for p in photos] == [name]


def test_names_that_are_not_utf8_are_listed_readably_and_the_rest_goes_on(tmp_path: Path) -> None:
    bad = os.fsdecode(b"caf\xe9.jpg")
    _touch(tmp_path / bad)
    _touch(tmp_path / os.fsdecode(b"d\xefa") / "inside.jpg")
    _touch(tmp_path / os.fsdecode(b"clip\xff.mov"))
    _touch(tmp_path / "good.jpg")
    scan = scan_shoot(tmp_path)
    assert {r.name for r in scan.refused} == {"caf\\xe9.jpg", "d\\xefa"}
    assert "not valid UTF-8" in str(scan.refused[0])
    assert scan.skipped == ["clip\\xff.mov"]
    assert [p.rel_path for p in scan.photos[ImageType.JPG]] == ["good.jpg"]
    for text in [*scan.skipped, *map(str, scan.refused)]:
        text.encode("utf-8")  # storable and printable


def test_a_folder_of_refusals_only_says_what_was_refused(tmp_path: Path) -> None:
    (tmp_path / "passwd.jpg").symlink_to("/etc/passwd")
    _touch(tmp_path / "empty.jpg", b"")
    with pytest.raises(ShootError, match="no supported photos") as caught:
        scan_shoot(tmp_path)
    assert "2 refused: empty.jpg (empty (0 bytes)" in str(caught.value)
    assert "passwd.jpg (a link to a file outside the shoot" in str(caught.value)


def test_a_shoot_whose_own_path_is_not_utf8_is_refused_whole(tmp_path: Path) -> None:
    shoot = tmp_path / os.fsdecode(b"mari\xe9e")
    _touch(shoot / "a.jpg")
    with pytest.raises(ShootError, match=r"mari\\xe9e is not valid UTF-8"):
        scan_shoot(shoot)


@pytest.mark.parametrize("extension", sorted(RAW_EXTENSIONS | JPEG_EXTENSIONS))
def test_every_accepted_type_refuses_another_types_content(tmp_path: Path, extension: str) -> None:
    other = "x.jpg" if extension not in JPEG_EXTENSIONS else "x.cr2"
    _touch(tmp_path / f"IMG_1{extension}", photo_bytes(other))
    assert list(_refusals(tmp_path)) == [f"IMG_1{extension}"]


def test_names_imagen_refuses_are_all_named_at_once_before_anything_is_sent(
    tmp_path: Path,
) -> None:
    for n in range(7):
        _touch(tmp_path / f"DSC_{n:04}.NEF")
    _touch(tmp_path / "back\\slash.NEF")
    _touch(tmp_path / "Card 2" / "with\ttab.NEF")
    _touch(tmp_path / "notes\tabout.txt")  # not a photo: skipped, its name does not matter
    with pytest.raises(ShootError) as refused:
        scan_shoot(tmp_path)
    message = str(refused.value)
    assert "Imagen refuses the names of 2 photos" in message
    assert "back\\slash.NEF (a backslash in the name)" in message
    assert "Card 2/with\\ttab.NEF (a character that is not printable" in message
    assert "\t" not in message
    (tmp_path / "back\\slash.NEF").rename(tmp_path / "backslash.NEF")
    (tmp_path / "Card 2" / "with\ttab.NEF").rename(tmp_path / "Card 2" / "with tab.NEF")
    assert len(scan_shoot(tmp_path).photos[ImageType.RAW]) == 9


def test_two_bodies_one_name_are_refused_with_the_way_out_and_sent_prefixed_with_it(
    tmp_path: Path,
) -> None:
    _touch(tmp_path / "Card 1" / "IMG_0001.CR2")
    _touch(tmp_path / "Card 2" / "IMG_0001.CR2")
    _touch(tmp_path / "IMG_0009.CR2")
    with pytest.raises(ShootError, match="add --prefix-subfolders"):
        scan_shoot(tmp_path)
    photos = scan_shoot(tmp_path, prefix_subfolders=True).photos[ImageType.RAW]
    assert sorted((p.rel_path, p.file_name) for p in photos) == [
        ("Card 1/IMG_0001.CR2", "Card 1_IMG_0001.CR2"),
        ("Card 2/IMG_0001.CR2", "Card 2_IMG_0001.CR2"),
        ("IMG_0009.CR2", "IMG_0009.CR2"),
    ]


def test_a_photo_a_job_recorded_is_not_read_again_while_its_size_and_time_hold(
    tmp_path: Path,
) -> None:
    for name in ("a.jpg", "b.jpg", "c.jpg"):
        _touch(tmp_path / name)
    [a, b, c] = scan_shoot(tmp_path).photos[ImageType.JPG]
    known = {p.rel_path: (p.size, p.mtime_ns) for p in (a, b)}
    # Content that is no JPEG, of the same size: seen only by reading the file.
    for photo in (a, b):
        Path(photo.location).write_bytes(b"\0" * photo.size)
    os.utime(a.location, ns=(a.mtime_ns, a.mtime_ns))  # a keeps its time, b does not
    os.utime(b.location, ns=(b.mtime_ns + 10**9, b.mtime_ns + 10**9))

    scan = scan_shoot(tmp_path, known=known)
    assert scan.photos[ImageType.JPG] == [a, c]  # a not read again
    assert [r.name for r in scan.refused] == ["b.jpg"]  # read, and refused
    assert [r.name for r in scan_shoot(tmp_path).refused] == ["a.jpg", "b.jpg"]
