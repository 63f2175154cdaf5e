"""The page serves a job's outputs only from inside that job's output folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.web.files import NotServed, read_output


def test_an_output_inside_its_folder_is_read(tmp_path: Path) -> None:
    (tmp_path / "exported" / "day 1").mkdir(parents=True)
    (tmp_path / "exported" / "day 1" / "a.jpg").write_bytes(b"\xff\xd8jpeg")
    assert read_output(str(tmp_path / "exported"), "day 1/a.jpg") == b"\xff\xd8jpeg"


@pytest.mark.parametrize("name", ["../secret.jpg", "/etc/secret.jpg", "link.jpg", "up/x.jpg"])
def test_names_and_links_leading_out_are_refused(tmp_path: Path, name: str) -> None:
    folder = tmp_path / "exported"
    folder.mkdir()
    (tmp_path / "secret.jpg").write_bytes(b"not yours")
    (folder / "link.jpg").symlink_to(tmp_path / "secret.jpg")
    (folder / "up").symlink_to(tmp_path)
    (tmp_path / "x.jpg").write_bytes(b"not yours either")
    with pytest.raises(NotServed):
        read_output(str(folder), name)


def test_only_jpegs_are_served(tmp_path: Path) -> None:
    (tmp_path / "a.dng").write_bytes(b"raw")
    with pytest.raises(NotServed, match="not a JPEG"):
        read_output(str(tmp_path), "a.dng")
