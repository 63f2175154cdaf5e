"""The review grid's service on both databases: capture order with the shoot's folders as
sections, the filters and their counts, thumbnails made once (upright, small), previews made
ahead by the keywording stage's code (the grid then opens no JPEG; a preview that cannot be
made is logged and left to the page), bulk keyword edits that take what each photo allows,
and the changes another reviewer's page is sent."""

from __future__ import annotations

import io
import logging
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from PIL import Image

from orchestrator.integrations.previews import THUMB_SIDE, cache_folder, thumbnail_path
from orchestrator.service import review
from orchestrator.service.review_grid import ReviewFilter, ReviewGrids, changes
from orchestrator.service.thumbnails import Thumbnails
from orchestrator.spec import JobSpec
from orchestrator.store.queries import Store
from orchestrator.web.files import open_output
from orchestrator.workflow.review_previews import ReviewPreviews, jpeg_version, review_jpeg
from orchestrator.workflow.tag_details import Capture, TagDetails
from tests.review_scale_support import big_review, capture_time, export_jpeg


@pytest.fixture
async def store(migrated_db_url: str) -> AsyncIterator[Store]:
    store = Store.open(migrated_db_url)
    yield store
    await store.close()


async def test_the_grid_is_in_capture_order_by_folder_and_filters_count(
    store: Store, tmp_path: Path
) -> None:
    job = await big_review(store, tmp_path / "wedding", 90)
    grids = ReviewGrids(store, Thumbnails(tmp_path / "cache", open_output))
    grid = await grids.grid(job.id, ReviewFilter())
    sections = [s.name for s in grid.sections(grid.shown)]
    assert sections == ["Getting Ready", "Ceremony", "Party"]  # by the hour, not the name
    ready = grid.sections(grid.shown)[0].photos
    assert [p.taken for p in ready] == sorted(p.taken for p in ready)
    assert ready[0].review.file_name == "IMG_2999.jpg" and ready[0].taken == capture_time(1, 0)
    assert grid.counts == {
        "": 90,
        "undecided": 90,
        "approved": 0,
        "held": 0,
        "flagged": 1,
        "nokeywords": 2,
        "nofaces": 0,
        "group": 0,
    }
    flagged = await grids.grid(job.id, ReviewFilter("flagged"))
    assert [p.review.flagged for p in flagged.shown] == [True]
    by_word = await grids.grid(job.id, ReviewFilter(keyword="FLOWERS"))
    assert len(by_word.shown) == 88
    by_category = await grids.grid(job.id, ReviewFilter(category="events parties"))
    assert {p.folder for p in by_category.shown} == {"Getting Ready"}

    # Decisions made since are in the next grid read, without reading every photo again.
    first, second = ready[0].id, ready[1].id
    await review.approve(store, job.id, [first])
    await review.edit_many(store, job.id, [first, second], remove=["bride"])
    again = await grids.grid(job.id, ReviewFilter("approved"))
    assert [p.id for p in again.shown] == [first]
    assert again.shown[0].review.keywords == ["groom", "flowers"]
    assert again.counts["undecided"] == 89


async def test_the_face_filters_show_photos_without_faces_and_group_photos(
    store: Store, tmp_path: Path
) -> None:
    plain = await big_review(store, tmp_path / "plain", 10)
    grids = ReviewGrids(store, Thumbnails(tmp_path / "cache", open_output))
    without = await grids.grid(plain.id, ReviewFilter())
    assert "nofaces" not in without.shows and "group" not in without.shows
    assert without.counts["nofaces"] == without.counts["group"] == 0  # unknown is not "none"

    job = await big_review(store, tmp_path / "faces", 90, faces=True)
    grid = await grids.grid(job.id, ReviewFilter())
    assert {"nofaces", "group"} <= set(grid.shows)
    assert grid.counts["nofaces"] == 18 and grid.counts["group"] == 36  # index % 5 faces
    alone = await grids.grid(job.id, ReviewFilter("nofaces"))
    assert {len(p.review.details.faces or ()) for p in alone.shown} == {0}
    assert all(p.review.details.faces == () for p in alone.shown)
    groups = await grids.grid(job.id, ReviewFilter("group"))
    assert {len(p.review.details.faces or ()) for p in groups.shown} == {3, 4}
    assert len(groups.shown) == 36


async def test_a_bulk_edit_takes_what_each_photo_allows_and_says_what_it_skipped(
    store: Store, tmp_path: Path
) -> None:
    job = await big_review(store, tmp_path / "wedding", 40)
    bare = "Ceremony/IMG_1986.jpg"  # the 40th photo: keywording chose none for it
    ids = [*list(job.photo_ids.values())[:5], job.photo_ids[bare]]
    edit = await review.edit_many(store, job.id, ids, add=["cake"])
    assert len(edit.changed) == 6 and edit.skipped == []
    removed = await review.edit_many(store, job.id, ids, remove=["bride"])
    assert len(removed.changed) == 5
    assert removed.skipped == [f"{bare} has none of bride"]
    refused = await review.edit_many(store, job.id, ids[:2], add=["volcano"])
    assert refused.changed == [] and len(refused.skipped) == 2
    assert "'volcano' is not among the suggestions" in refused.skipped[0]
    with pytest.raises(review.ReviewRefused, match="no photo is selected"):
        await review.edit_many(store, job.id, [], add=["cake"])


async def test_another_reviewers_changes_are_sent_since_a_stamp(
    store: Store, tmp_path: Path
) -> None:
    job = await big_review(store, tmp_path / "wedding", 12)
    grids = ReviewGrids(store, Thumbnails(tmp_path / "cache", open_output))
    stamp = (await grids.grid(job.id, ReviewFilter())).stamp
    quiet = await changes(store, job.id, stamp)
    assert quiet["state"] == "reviewing"
    photo = next(iter(job.photo_ids.values()))
    await review.approve(store, job.id, [photo])
    found = await changes(store, job.id, quiet["stamp"])
    assert [photo, -1, "", "a", 0, 3] in found["photos"]
    assert found["stamp"] > quiet["stamp"]


async def test_a_thumbnail_is_made_once_upright_and_small(tmp_path: Path) -> None:
    folder = tmp_path / "exported"
    # 900x600 stored, EXIF orientation 6: shown turned a quarter, 600 wide and 900 high.
    export_jpeg(folder / "IMG_1.jpg", 1, capture_time(0, 0), orientation=6)
    thumbnails = Thumbnails(tmp_path / "cache", open_output)
    body = await thumbnails.thumbnail("job", (1, "v1", str(folder), "IMG_1.jpg"))
    with Image.open(io.BytesIO(body)) as image:
        assert image.size == (round(THUMB_SIDE * 600 / 900), THUMB_SIDE)
    assert len(body) < 60_000
    kept = thumbnails.path("job", 1, "v1")
    assert kept.read_bytes() == body
    (folder / "IMG_1.jpg").unlink()  # made once: the kept one is served from now on
    assert await thumbnails.thumbnail("job", (1, "v1", str(folder), "IMG_1.jpg")) == body
    with pytest.raises(LookupError):
        await thumbnails.thumbnail("job", (2, "v1", str(folder), "../exported/IMG_1.jpg"))


async def test_previews_made_ahead_order_the_grid_without_opening_a_jpeg(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))  # Postgres's cache folder
    job = await big_review(store, tmp_path / "wedding", 30, ahead=True)
    folder = cache_folder(store.engine.url)
    taken = set()
    for photo in await store.photos(job.id):
        details = TagDetails.of(photo)
        assert details is not None and details.capture is not None, photo.rel_path
        taken.add(details.capture.taken)
        version = jpeg_version(photo)
        assert version is not None
        with Image.open(thumbnail_path(folder, job.id, photo.id, version)) as image:
            assert max(image.size) == THUMB_SIDE
    assert taken == {capture_time(index % 3, index // 3) for index in range(30)}

    shutil.rmtree(tmp_path / "wedding" / "exported")  # nothing left that the page could read
    thumbnails = Thumbnails(folder, open_output)
    grid = await ReviewGrids(store, thumbnails).grid(job.id, ReviewFilter())
    assert [s.name for s in grid.sections(grid.shown)] == ["Getting Ready", "Ceremony", "Party"]
    ready = grid.sections(grid.shown)[0].photos
    assert [p.taken for p in ready] == sorted(p.taken for p in ready)
    assert ready[0].review.file_name == "IMG_2999.jpg" and ready[0].taken == capture_time(1, 0)
    assert not (folder / job.id / "captured.json").exists()
    kept = await thumbnails.kept(job.id, ready[0].id, ready[0].version)
    assert kept == thumbnail_path(folder, job.id, ready[0].id, ready[0].version).read_bytes()


async def test_a_preview_that_cannot_be_made_is_logged_and_left_to_the_page(
    store: Store, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    made = await big_review(store, tmp_path / "wedding", 3)
    job = await store.get_job(made.id)
    spec = JobSpec.from_stored(job.options)
    broken, unkept, gone = await store.photos(job.id)
    previews = ReviewPreviews(tmp_path / "cache")

    exported = tmp_path / "wedding" / "exported"
    jpeg = review_jpeg(job, broken)
    assert jpeg is not None and jpeg[2:] == (str(exported), broken.rel_path)
    (exported / broken.rel_path).write_bytes(b"\xff\xd8\xff\xe0 not a picture after all")
    with caplog.at_level(logging.WARNING, logger="orchestrator.previews"):
        assert await previews.make(job, spec, broken) == Capture(taken=None)
    assert not thumbnail_path(tmp_path / "cache", job.id, broken.id, jpeg[1]).exists()
    [logged] = caplog.records
    assert "thumbnail not made ahead" in logged.getMessage()
    assert logged.__dict__["photo"] == broken.rel_path

    (tmp_path / "blocked").write_text("a file where the cache folder should be")
    capture = await ReviewPreviews(tmp_path / "blocked").make(job, spec, unkept)
    assert capture is not None and capture.taken is not None  # the time is read all the same

    (exported / gone.rel_path).unlink()
    assert await previews.make(job, spec, gone) is None  # unknown: the page will read it

    grid = await ReviewGrids(store, Thumbnails(tmp_path / "cache", open_output)).grid(
        job.id, ReviewFilter()
    )
    assert len(grid.shown) == 3
