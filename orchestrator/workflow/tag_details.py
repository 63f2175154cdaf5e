"""What the keywording stage records for each photo (its `tag` phase's details), typed.

One model reads the stored JSON and writes it: the keywords chosen and the files they went
into, Imagga's suggestions, categories and moderation, and what the review added since (the
decision, the words the files still carry until the review ends, the words a person added).
Every reader uses it: the review stage and page, `keywords`, delivery. Reading is lenient, as
for everything stored: rows of older releases (without `files`, `file_keywords` or `source`)
and malformed entries read as "not there", never as an error.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator

from orchestrator.integrations.imagga_models import Category, Suggestion
from orchestrator.integrations.keywords import FaceArea
from orchestrator.store.queries import PhotoRecord
from orchestrator.workflow.stage import PhaseDetails

TAG_PHASE = "tag"
"""The keywording stage's phase, whose details this model is."""


def _words(value: object) -> tuple[str, ...]:
    if not isinstance(value, list | tuple):
        return ()
    return tuple(word for word in value if isinstance(word, str))


def _scored(key: str, kind: type) -> Callable[[object], object]:
    """`[{key: str, "confidence": number}, …]`, malformed entries left out (confidence 0)."""

    def read(value: object) -> object:
        if value is None or not isinstance(value, list | tuple):
            return None
        found: list[object] = []
        for entry in value:
            if isinstance(entry, kind):
                found.append(entry)
            elif isinstance(entry, dict) and isinstance(entry.get(key), str):
                confidence = _number(entry.get("confidence"))
                found.append(kind(entry[key], confidence or 0.0))
        return tuple(found)

    return read


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _moderation(value: object) -> object:
    if isinstance(value, Moderation):
        return value
    if not isinstance(value, dict):
        return None
    return {"flagged": value.get("flagged") is True, "score": _number(value.get("score"))}


def _decision(value: object) -> bool | None:
    return value if isinstance(value, bool) else None


def _optional_words(value: object) -> tuple[str, ...] | None:
    return None if value is None else _words(value)


def _file_refs(value: object) -> tuple[object, ...]:
    if not isinstance(value, list | tuple):
        return ()
    return tuple(
        ref
        for ref in value
        if isinstance(ref, FileRef)
        or (
            isinstance(ref, dict)
            and ref.get("kind") in ("export", "edit")
            and isinstance(ref.get("name"), str)
        )
    )


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


Words = Annotated[tuple[str, ...], BeforeValidator(_words)]

COLOUR_WORD_PERCENT = 5.0
"""A colour covering at least this share of the picture becomes a keyword…"""
COLOUR_WORDS = 5
"""…at most this many, the largest first."""
COLOURS_PARENT = "Colors"
PEOPLE_PARENT = "People"
"""The keyword hierarchy's parents of colour words and people's names."""


def _entries(kind: type[BaseModel]) -> Callable[[object], object]:
    """A list of `kind` where each malformed entry is left out; None stays None."""

    def read(value: object) -> object:
        if value is None or not isinstance(value, list | tuple):
            return None
        found: list[object] = []
        for entry in value:
            if isinstance(entry, kind):
                found.append(entry)
            elif isinstance(entry, dict):
                try:
                    found.append(kind.model_validate(entry))
                except ValueError:
                    continue
        return tuple(found)

    return read


def _point(value: object) -> object:
    if isinstance(value, FocalPoint):
        return value
    if isinstance(value, dict):
        x, y = _number(value.get("x")), _number(value.get("y"))
        if x is not None and y is not None and 0 <= x <= 1 and 0 <= y <= 1:
            return {"x": x, "y": y}
    return None


def title(word: str) -> str:
    """A colour name as a keyword: `dusty rose` -> `Dusty rose`."""
    word = " ".join(word.split())
    return word[:1].upper() + word[1:]


class PaletteColour(BaseModel, frozen=True):
    """One colour of the photo's palette, as delivery.json lists it."""

    hex: str
    percent: float
    name: str


class Face(BaseModel, frozen=True):
    """One face in the photo: its centre and size in the upright picture (0..1), Imagga's face
    id (for grouping), its person (the group's label) and that person's name once given."""

    x: float
    y: float
    w: float
    h: float
    confidence: float = 0.0
    face_id: str | None = None
    person: str | None = None
    name: str | None = None

    def area(self) -> FaceArea:
        """The region written into the files."""
        return FaceArea(self.x, self.y, self.w, self.h, self.name)


class FocalPoint(BaseModel, frozen=True):
    """The subject's focal point (0..1 from the left and the top), from Imagga's croppings."""

    x: float
    y: float


class Moderation(BaseModel, frozen=True):
    """Imagga's moderation of the photo: flagged when its score reached the threshold."""

    flagged: bool = False
    score: float | None = None
    """The most confident category other than safe (0-100), if known."""


class Capture(BaseModel, frozen=True):
    """When the photo was taken, as its JPEG's EXIF says, read as the photo was tagged for a
    review (workflow/review_previews.py): the review grid's order without opening the file."""

    taken: datetime | None = None
    """The camera's clock (kept as UTC, for ordering only); None: the JPEG does not say."""


def _capture(value: object) -> object:
    if value is None or isinstance(value, Capture):
        return value
    if not isinstance(value, dict):
        return None
    try:
        capture = Capture.model_validate(value)
    except ValueError:
        return None
    taken = capture.taken
    return capture if taken is None or taken.tzinfo is not None else None


class FileRef(BaseModel, frozen=True):
    """A file that carries the photo's keywords: its folder's kind and its path in it (a
    sidecar beside its RAW, in the shoot itself, by its whole path)."""

    kind: Literal["export", "edit"]
    name: str


class TagDetails(PhaseDetails, frozen=True, extra="allow"):
    """A tagged photo's keywording, as the `tag` phase's details store it."""

    keywords: Words = ()
    """The photo's keywords now (reviewed ones included)."""
    source: Annotated[str, BeforeValidator(lambda v: v if isinstance(v, str) and v else "auto")] = (
        "auto"
    )
    """"auto" as chosen from the suggestions, "reviewed" once a person changed them."""
    suggestions: Annotated[tuple[Suggestion, ...], BeforeValidator(_scored("tag", Suggestion))] = ()
    """Every keyword Imagga suggested, most confident first."""
    categories: Annotated[
        tuple[Category, ...] | None, BeforeValidator(_scored("name", Category))
    ] = None
    """The categorizer's answer, if the job asked for one."""
    moderation: Annotated[Moderation | None, BeforeValidator(_moderation)] = None
    """Imagga's moderation, if the job asked for it."""
    image_md5: Annotated[str | None, BeforeValidator(_text)] = None
    """The md5 of the small copy sent to Imagga: the key of its kept answers."""
    files: Annotated[tuple[FileRef, ...], BeforeValidator(_file_refs)] = ()
    """The files the keywords were written into, the one sent to Imagga first."""
    file_keywords: Words = ()
    """Words the files held before the photo was tagged: never taken out."""
    content_md5: Annotated[str | None, BeforeValidator(_text)] = None
    """The md5 of the first file once its keywords were written."""
    approved: Annotated[bool | None, BeforeValidator(_decision)] = None
    """The reviewer's decision: deliver (True), hold back (False), none yet (None)."""
    written_keywords: Annotated[tuple[str, ...] | None, BeforeValidator(_optional_words)] = None
    """The words the files still carry after a reviewer changed the keywords on the page;
    set until the review stage writes the reviewed ones in."""
    reviewed_words: Words = ()
    """Words a person added with `orchestrator keywords --add`."""
    colors: Annotated[
        tuple[PaletteColour, ...] | None, BeforeValidator(_entries(PaletteColour))
    ] = None
    """The palette (`--colors`), the largest share first; None: not asked for."""
    faces: Annotated[tuple[Face, ...] | None, BeforeValidator(_entries(Face))] = None
    """The faces (`--faces`, `--people`); None: not asked for."""
    focal_point: Annotated[FocalPoint | None, BeforeValidator(_point)] = None
    """The subject's focal point (`--smart-crops`); None: not asked for."""
    capture: Annotated[Capture | None, BeforeValidator(_capture)] = None
    """When the photo was taken; None: not read as it was tagged (a job without `--review`,
    or from an older release): the review page reads its JPEG."""

    @classmethod
    def of(cls, photo: PhotoRecord) -> TagDetails | None:
        """What keywording recorded for the photo, if it was tagged."""
        record = photo.phase(TAG_PHASE)
        if record is None or record.done_at is None:
            return None
        return cls.model_validate(record.details if isinstance(record.details, dict) else {})

    def stored(self) -> dict[str, Any]:
        """The JSON the `tag` phase stores (what is not set is left out, as it always was)."""
        unset = {
            "image_md5",
            "content_md5",
            "approved",
            "written_keywords",
            "colors",
            "faces",
            "focal_point",
            "capture",
        }
        return self.model_dump(
            mode="json", exclude={name for name in unset if getattr(self, name) is None}
        )

    @property
    def color_words(self) -> list[str]:
        """The palette's colours as keywords (`Dusty rose`), the largest first."""
        words: list[str] = []
        for colour in self.colors or ():
            word = title(colour.name)
            if colour.percent >= COLOUR_WORD_PERCENT and word and word not in words:
                words.append(word)
        return words[:COLOUR_WORDS]

    @property
    def people(self) -> list[str]:
        """The names of the people in the photo, as given once per person."""
        return sorted({face.name for face in self.faces or () if face.name})

    @property
    def analysis_words(self) -> list[str]:
        """The keywords the analyses add beside the chosen ones: colours, then people."""
        return [*self.color_words, *self.people]

    @property
    def analysis_paths(self) -> list[str]:
        """Their `Colors|…` and `People|…` paths in the keyword hierarchy."""
        return [f"{COLOURS_PARENT}|{w.replace('|', ' ')}" for w in self.color_words] + [
            f"{PEOPLE_PARENT}|{n.replace('|', ' ')}" for n in self.people
        ]

    @property
    def flagged(self) -> bool:
        """Whether moderation flagged the photo (then delivered only if approved by name)."""
        return self.moderation is not None and self.moderation.flagged

    @property
    def addable(self) -> list[str]:
        """The suggestions not chosen yet: the only words a person may add."""
        chosen = {word.casefold() for word in self.keywords}
        return [s.tag for s in self.suggestions if s.tag.casefold() not in chosen]
