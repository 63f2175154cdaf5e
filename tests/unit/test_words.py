"""What the program says reads right: counts with their noun in the right number, a photo
named once in its failure."""

from __future__ import annotations

import pytest

from orchestrator.retry import RetriesExhausted, RetryableError
from orchestrator.words import plural


@pytest.mark.parametrize(
    ("count", "expected"),
    [(0, "0 photos"), (1, "1 photo"), (2, "2 photos"), (1200, "1,200 photos")],
)
def test_plural(count: int, expected: str) -> None:
    assert plural(count, "photo") == expected


def test_one_attempt_is_one_attempt() -> None:
    assert str(RetriesExhausted(1, RetryableError("refused"))) == "gave up after 1 attempt: refused"


def test_a_failed_transfer_names_its_photo_once() -> None:
    from orchestrator.transfer.errors import TransferFailed
    from orchestrator.workflow.photos import PhotoFailed

    failed = TransferFailed("B.jpg", "gave up after 8 attempts: storage answered 500")
    assert str(failed) == "B.jpg: gave up after 8 attempts: storage answered 500"
    # The stage runner puts the photo's path ("A/B.jpg: ") before the photo's reason.
    assert (
        PhotoFailed.of_transfer(failed).reason == "gave up after 8 attempts: storage answered 500"
    )
