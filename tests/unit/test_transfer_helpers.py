"""Small pieces of the transfers: hashing, output names, storage answers, redacted messages."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

import pytest

from orchestrator.transfer.errors import LinkExpired, TransferFailed, redact_urls
from orchestrator.transfer.hashing import file_md5, md5_base64, md5_of_file
from orchestrator.transfer.names import check_output_name, etag_path, partial_path
from orchestrator.transfer.storage import connection_failure, etag_md5


async def test_file_md5_streams_the_whole_file(tmp_path: Path) -> None:
    data = bytes(range(256)) * 5000 + b"tail"
    path = tmp_path / "photo.cr2"
    path.write_bytes(data)
    assert await file_md5(path, chunk_size=1000) == hashlib.md5(data).digest()
    assert await file_md5(path) == hashlib.md5(data).digest()


async def test_md5_of_file_can_be_continued(tmp_path: Path) -> None:
    path = tmp_path / "part"
    path.write_bytes(b"hello ")
    hasher = await md5_of_file(path)
    hasher.update(b"world")
    assert hasher.hexdigest() == hashlib.md5(b"hello world").hexdigest()


async def test_file_md5_of_an_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty"
    path.write_bytes(b"")
    assert await file_md5(path) == hashlib.md5(b"").digest()


def test_md5_base64_is_what_content_md5_wants() -> None:
    digest = hashlib.md5(b"abc").digest()
    assert md5_base64(digest) == base64.b64encode(digest).decode()
    assert md5_base64(digest) == "kAFQmDzST7DWlj99KOF/cg=="


@pytest.mark.parametrize("name", ["IMG_0001.xmp", "a b.jpg", "résumé.JPG", ".hidden", "x..y"])
def test_plain_names_are_accepted(name: str) -> None:
    assert check_output_name(name) == name


@pytest.mark.parametrize(
    "name", ["", ".", "..", "../x", "a/b", "/etc/passwd", "a\\b", "..\\x", "a\x00b", "x" * 250]
)
def test_unsafe_names_are_refused(name: str) -> None:
    with pytest.raises(TransferFailed, match="refusing"):
        check_output_name(name)


def test_temporary_names_sit_next_to_the_output(tmp_path: Path) -> None:
    assert partial_path(tmp_path, "A.xmp") == tmp_path / "A.xmp.partial"
    assert etag_path(tmp_path, "A.xmp") == tmp_path / "A.xmp.partial.etag"


def test_redaction_strips_signatures_from_every_url() -> None:
    text = (
        "PUT https://bucket.s3.amazonaws.com/p/A.CR2?X-Amz-Signature=abc&X-Amz-Expires=60 "
        "failed, see http://127.0.0.1:9/x?sig=1#frag."
    )
    redacted = redact_urls(text)
    assert "Signature" not in redacted and "sig=1" not in redacted and "frag" not in redacted
    assert "https://bucket.s3.amazonaws.com/p/A.CR2" in redacted
    assert "http://127.0.0.1:9/x" in redacted


def test_errors_never_show_a_signature() -> None:
    exc = TransferFailed("A.CR2", "storage at https://h/o?X-Amz-Signature=secret said no")
    assert "secret" not in str(exc) and "secret" not in exc.reason
    assert "secret" not in str(LinkExpired("A.CR2", "https://h/o?X-Amz-Signature=secret"))
    error = connection_failure(OSError("Can not write request body for https://h/o?sig=secret"))
    assert "secret" not in str(error)


@pytest.mark.parametrize(
    ("etag", "expected"),
    [
        ('"900150983cd24fb0d6963f7d28e17f72"', "900150983cd24fb0d6963f7d28e17f72"),
        ('"900150983CD24FB0D6963F7D28E17F72"', "900150983cd24fb0d6963f7d28e17f72"),
        ("900150983cd24fb0d6963f7d28e17f72", "900150983cd24fb0d6963f7d28e17f72"),
        ('"900150983cd24fb0d6963f7d28e17f72-3"', None),  # multipart: not an MD5 of the object
        ('W/"900150983cd24fb0d6963f7d28e17f72"', None),
        ('"abc"', None),
        (None, None),
    ],
)
def test_only_plain_md5_etags_are_used_for_checking(etag: str | None, expected: str | None) -> None:
    assert etag_md5(etag) == expected
