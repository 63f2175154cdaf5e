"""Origin paths never leave their template's prefix; URLs are signed as imgix checks them;
the contact sheet shows outside text inert; delivery reads keywords and moderation safely."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from urllib.parse import urlsplit

import pytest

from orchestrator.integrations.delivery_files import DeliveryRecord, Urls, contact_sheet
from orchestrator.rules.delivery import PathRefused, check_template, origin_path
from orchestrator.spec import JobSpec, SpecError
from orchestrator.store.queries import PhaseRecord, PhotoRecord
from orchestrator.workflow.deliver import tag_view

VALUES = {
    "job_name": "Smith wedding",
    "job_id": "abc123",
    "file_name": "IMG_1.jpg",
    "stem": "IMG_1",
}


@pytest.mark.parametrize(
    "template",
    [
        "../{file_name}",
        "/clients/{file_name}",
        "{job_name}/../../{file_name}",
        "clients/./{file_name}",
        "clients//{file_name}",
        "clients\\{file_name}",
        "clients/\x00/{file_name}",
        "clients/\u202e/{file_name}",
        "{job_name}",
        "{nope}/{file_name}",
        "{file_name!r}",
        "{file_name:>40}",
        "{job_name",
        " {file_name}",
    ],
)
def test_a_template_that_could_escape_or_collide_is_refused(template: str) -> None:
    with pytest.raises(PathRefused):
        check_template(template)
    with pytest.raises(SpecError, match=r"deliver\.path"):
        JobSpec.build(export=True, deliver={"path": template})


@pytest.mark.parametrize("name", ["..", ".", "a/b", "a\\b", "x\ny", ""])
def test_a_value_that_would_add_or_climb_a_folder_is_refused(name: str) -> None:
    with pytest.raises(PathRefused):
        origin_path("clients/{job_name}/{file_name}", **{**VALUES, "job_name": name})


def test_a_path_is_the_template_filled_in_below_its_prefix() -> None:
    assert origin_path("clients/{job_name}/{stem}-{job_id}.jpg", **VALUES) == (
        "clients/Smith wedding/IMG_1-abc123.jpg"
    )


def _signed(url: str, token: str) -> bool:
    parts = urlsplit(url)
    query = "&".join(p for p in parts.query.split("&") if not p.startswith("s="))
    signature = dict(p.split("=", 1) for p in parts.query.split("&"))["s"]
    base = token + parts.path + (f"?{query}" if query else "")
    return hashlib.md5(base.encode()).hexdigest() == signature


def test_urls_and_srcsets_are_encoded_once_and_signed_with_the_token() -> None:
    urls = Urls("studio.imgix.net", "tok3n")
    url = urls.url("http shoot/IMG 1#.jpg")  # "http…" must not be taken for a web proxy path
    assert url.startswith("https://studio.imgix.net/http%20shoot/IMG%201%23.jpg?s=")
    assert _signed(url, "tok3n") and not _signed(url, "other")
    candidates = [c.strip().split(" ")[0] for c in urls.srcset("a/b.jpg").split(",\n")]
    assert len(candidates) == 6 and all(_signed(c, "tok3n") for c in candidates)
    assert "?s=" not in Urls("studio.imgix.net").url("a/b.jpg")
    assert urls.purge_url("a b/c.jpg") == "https://studio.imgix.net/a%20b/c.jpg"


def test_the_contact_sheet_shows_every_outside_text_inert() -> None:
    hostile = '<script>alert(1)</script>"onload="x'
    record = DeliveryRecord(
        photo=f"{hostile}.jpg",
        origin_path="a.jpg",
        url='https://studio.imgix.net/a.jpg?s=1&x="><script>',
        srcset="https://studio.imgix.net/a.jpg?w=1 1w",
        keywords=[hostile],
        delivered_at="",
        md5="",
    )
    page = contact_sheet(hostile, [record], {f"{hostile}.jpg": hostile})
    assert "<script>" not in page and '"onload' not in page
    assert page.count("&lt;script&gt;") >= 4
    assert "<script" not in page.lower().replace("&lt;script", "")


def _photo(details: object) -> PhotoRecord:
    photo = PhotoRecord(1, "IMG_1.jpg", "IMG_1.jpg", 1, 1, None)
    photo.phases["tag"] = PhaseRecord(None, None, None, details, datetime.now(UTC), None)  # type: ignore[arg-type]
    return photo


def test_delivery_reads_keywords_and_moderation_and_trusts_neither() -> None:
    assert tag_view(PhotoRecord(1, "a", "a", 1, 1, None)).keywords == ()
    view = tag_view(_photo({"keywords": [" sea ", "sea", 3, "", None, "sky"]}))
    assert view.keywords == ("sea", "sky") and view.held is None
    flagged = {"keywords": ["x"], "moderation": {"flagged": True, "score": 0.9}}
    assert "flagged" in (tag_view(_photo(flagged)).held or "")
    assert tag_view(_photo({**flagged, "approved": True})).held is None
    assert tag_view(_photo({**flagged, "approved": "yes"})).held is not None
    assert tag_view(_photo({"keywords": "not a list", "moderation": "odd"})) == tag_view(_photo({}))
