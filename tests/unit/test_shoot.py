"""Reading a shoot folder: types, skipped files, clashing names, our own outputs ignored."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.imagen.models import ImageType
from orchestrator.workflow.shoot import ShootError, scan_shoot


def _touch(path: Path, data: bytes = b"x") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def test_raw_and_jpeg_become_two_groups_and_the_rest_is_skipped(tmp_path: Path) -> None:
    for name in ("a.CR2", "b.nef", "c.DNG", "sub/d.ARW", "e.jpg", "f.JPEG", "g.txt", "h.mov"):
        _touch(tmp_path / name)
    _touch(tmp_path / ".hidden.jpg")
    _touch(tmp_path / "edited" / "a.xmp")
    _touch(tmp_path / "exported" / "a.jpg")
    _touch(tmp_path / "sub" / "edited" / "z.jpg")  # only the top-level output folders are ours
    scan = scan_shoot(tmp_path)
    assert [p.rel_path for p in scan.photos[ImageType.RAW]] == ["a.CR2", "b.nef", "c.DNG",
                                                                "sub/d.ARW"]
    assert [p.rel_path for p in scan.photos[ImageType.JPG]] == ["e.jpg", "f.JPEG",
                                                                "sub/edited/z.jpg"]
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


@pytest.mark.parametrize("names", [
    ("cam1/IMG_1.CR2", "cam2/IMG_1.CR2"),
    ("IMG_1.CR2", "cam2/img_1.cr2"),
    ("IMG_1.CR2", "IMG_1.NEF"),  # both would be edited to IMG_1.xmp
])
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
