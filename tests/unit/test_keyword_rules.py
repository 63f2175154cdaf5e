"""Which suggestions become keywords, the moderation flag, the hierarchy, the tag spec, and the
copy sent to Imagga (upright, bounded, no metadata)."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pytest
from PIL import Image

from orchestrator.integrations.downscale import NotAnImage, downscale
from orchestrator.integrations.imagga_models import Category, Suggestion
from orchestrator.integrations.keywords import clean_word, iptc_keyword
from orchestrator.rules.keywords import KEYWORD_BYTES, KeywordRules, hierarchy
from orchestrator.spec import JobSpec, SpecError, TagSpec


def suggestions(*scores: float) -> list[Suggestion]:
    return [Suggestion(f"w{i}", score) for i, score in enumerate(scores)]


def test_every_tag_at_60_and_always_the_top_three() -> None:
    rules = KeywordRules()
    assert rules.choose(suggestions(95, 80, 61, 60, 59.9, 30), TagSpec()) == [
        "w0", "w1", "w2", "w3"
    ]  # fmt: skip
    assert rules.choose(suggestions(50, 40, 30, 20), TagSpec()) == ["w0", "w1", "w2"]
    assert rules.choose(suggestions(50, 40, 30, 20), TagSpec(), threshold=35) == ["w0", "w1", "w2"]
    assert rules.choose(suggestions(99, 98, 97, 96), TagSpec(min_keywords=1, max_keywords=2)) == [
        "w0",
        "w1",
    ]
    assert rules.choose(suggestions(10, 5), TagSpec(min_keywords=0)) == []


def test_block_and_allow_lists_and_no_word_twice() -> None:
    found = [Suggestion("Bride", 99), Suggestion("bride", 98), Suggestion("nude", 97),
             Suggestion("sky", 96), Suggestion("tree", 40)]  # fmt: skip
    rules = KeywordRules.of([], ["NUDE"])
    assert rules.choose(found, TagSpec()) == ["Bride", "sky", "tree"]
    only = KeywordRules.of(["sky", "tree"], [])
    assert only.choose(found, TagSpec()) == ["sky", "tree"]


def test_moderation_flags_the_unsafe_and_hierarchy_follows_the_top_category() -> None:
    rules = KeywordRules(moderation_threshold=50)
    assert rules.moderation([Category("safe", 97), Category("nsfw", 3)]) == {
        "flagged": False, "score": 3.0
    }  # fmt: skip
    assert rules.moderation([Category("underwear", 70), Category("safe", 30)])["flagged"]
    tops = [Category("events parties", 80), Category("people portraits", 20)]
    assert hierarchy(["dance", "a|b"], tops) == ["events parties|dance", "events parties|a b"]
    assert hierarchy(["dance"], None) == []


def test_iptc_keywords_are_cut_at_64_bytes_on_a_character_boundary() -> None:
    word = "é" * 40  # 80 bytes
    cut = iptc_keyword(word)
    assert len(cut.encode()) <= 64 and cut == "é" * 32
    assert clean_word("new\nline\x00word ") == "new line word"


def test_a_keyword_of_any_length_is_chosen_capped_as_iptc_caps_it() -> None:
    huge = "wedding " * 625  # 5,000 characters in one suggestion
    chosen = KeywordRules().choose(
        [Suggestion(huge, 99), Suggestion("ü" * 40, 90), Suggestion("wedding", 80)], TagSpec()
    )
    assert chosen == ["wedding " * 7 + "wedding", "ü" * 32, "wedding"]
    assert all(len(word.encode()) <= KEYWORD_BYTES for word in chosen)


def test_the_tag_spec_refuses_what_cannot_work() -> None:
    assert JobSpec.build(tag={"languages": ["EN", "de", "en"]}).tag == TagSpec(
        languages=("en", "de")
    )
    bad_specs = [
        {"languages": ["en;drop"]},
        {"threshold": 101},
        {"min_keywords": 9, "max_keywords": 3},
        {"categorizer": "../x"},
        {"languages": []},
    ]
    for bad in bad_specs:
        with pytest.raises(SpecError):
            JobSpec.build(tag=bad)
    stored = JobSpec(tag=TagSpec(moderate=True)).to_stored()
    assert JobSpec.from_stored(stored).tag == TagSpec(moderate=True)
    assert JobSpec.from_stored({"version": 1}).tag is None


def _jpeg(path: Path, size: tuple[int, int], orientation: int | None = None) -> Path:
    image = Image.new("RGB", size, (200, 30, 30))
    image.paste((10, 10, 240), (0, 0, size[0] // 4, size[1]))  # a blue band on the left
    exif = Image.Exif()
    if orientation:
        exif[0x0112] = orientation
    image.save(path, format="JPEG", exif=exif.tobytes(), comment=b"private note")
    return path


def test_the_copy_is_upright_bounded_and_without_metadata(tmp_path: Path) -> None:
    rotated = _jpeg(tmp_path / "r.jpg", (3000, 2000), orientation=6)  # 90° clockwise to view
    data = downscale(rotated, 1024)
    with Image.open(io.BytesIO(data)) as copy:
        assert copy.size == (683, 1024)  # portrait once orientation is applied
        assert "exif" not in copy.info and "comment" not in copy.info
        # The blue band on the left of the stored pixels is at the top once upright.
        assert copy.convert("RGB").getpixel((340, 5))[2] > 200
    small = _jpeg(tmp_path / "s.jpg", (300, 200))
    with Image.open(io.BytesIO(downscale(small, 1024))) as copy:
        assert copy.size == (300, 200)  # never enlarged


def test_the_copy_is_the_same_after_metadata_changes(tmp_path: Path) -> None:
    path = _jpeg(tmp_path / "a.jpg", (800, 600))
    first = hashlib.md5(downscale(path)).hexdigest()
    with Image.open(path) as image:
        image.save(tmp_path / "b.jpg", format="JPEG", comment=b"other")
    data = path.read_bytes()
    # Same image data, different metadata: a COM segment inserted after SOI.
    path.write_bytes(data[:2] + b"\xff\xfe\x00\x07hello" + data[2:])
    assert hashlib.md5(downscale(path)).hexdigest() == first


def test_a_file_that_is_no_image_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "x.jpg"
    bad.write_bytes(b"\xff\xd8 not really")
    with pytest.raises(NotAnImage, match=r"x\.jpg"):
        downscale(bad)
