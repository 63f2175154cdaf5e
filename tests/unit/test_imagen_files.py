"""File-type classification and safe output names for files Imagen sends back."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.imagen.files import (
    JPEG_EXTENSIONS,
    RAW_EXTENSIONS,
    UnsafeFileName,
    image_type_of,
    safe_output_path,
)
from orchestrator.imagen.models import ImageType


def test_extension_sets_match_the_documented_lists() -> None:
    assert len(RAW_EXTENSIONS) == 19
    assert sorted(JPEG_EXTENSIONS) == [".jpeg", ".jpg"]
    assert not RAW_EXTENSIONS & JPEG_EXTENSIONS
    assert all(ext == ext.lower() and ext.startswith(".") for ext in RAW_EXTENSIONS)


@pytest.mark.parametrize("extension", sorted(RAW_EXTENSIONS))
def test_every_raw_extension_is_raw_in_any_case(extension: str) -> None:
    assert image_type_of(f"IMG_0001{extension}") is ImageType.RAW
    assert image_type_of(f"IMG_0001{extension.upper()}") is ImageType.RAW


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("A.DNG", ImageType.RAW),
        ("a.dng", ImageType.RAW),
        ("shoot/day 1/B.Cr3", ImageType.RAW),
        ("c.jpg", ImageType.JPG),
        ("D.JPEG", ImageType.JPG),
        ("e.JpG", ImageType.JPG),
        ("f.png", None),
        ("g.tif", None),
        ("h.xmp", None),
        ("photo.jpg.txt", None),
        ("no_extension", None),
        ("", None),
    ],
)
def test_image_type_of(name: str, expected: ImageType | None) -> None:
    assert image_type_of(name) is expected


@pytest.mark.parametrize(
    "name", ["IMG_1.jpg", "a..b.CR2", ".hidden.jpg", "with space.dng", "ü.jpg"]
)
def test_safe_output_path_keeps_plain_names_directly_inside(tmp_path: Path, name: str) -> None:
    path = safe_output_path(tmp_path, name)
    assert path == tmp_path / name
    assert path.parent == tmp_path


@pytest.mark.parametrize(
    "name",
    [
        "",
        ".",
        "..",
        "../escape.jpg",
        "..\\escape.jpg",
        "..hidden.jpg",
        "...jpg",
        "sub/../../escape.jpg",
        "sub/file.jpg",
        "sub\\file.jpg",
        "/etc/passwd",
        "\\\\server\\share\\x.jpg",
        "C:\\Windows\\x.jpg",
        "C:x.jpg",
        "x\x00.jpg",
    ],
)
def test_safe_output_path_rejects_traversal(tmp_path: Path, name: str) -> None:
    with pytest.raises(UnsafeFileName):
        safe_output_path(tmp_path, name)
