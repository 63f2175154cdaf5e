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
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator

from orchestrator.integrations.imagga_models import Category, Suggestion
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
                found.append({key: entry[key], "confidence": confidence or 0.0})
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


class Moderation(BaseModel, frozen=True):
    """Imagga's moderation of the photo: flagged when its score reached the threshold."""

    flagged: bool = False
    score: float | None = None
    """The most confident category other than safe (0-100), if known."""


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

    @classmethod
    def of(cls, photo: PhotoRecord) -> TagDetails | None:
        """What keywording recorded for the photo, if it was tagged."""
        record = photo.phase(TAG_PHASE)
        if record is None or record.done_at is None:
            return None
        return cls.model_validate(record.details if isinstance(record.details, dict) else {})

    def stored(self) -> dict[str, Any]:
        """The JSON the `tag` phase stores (what is not set is left out, as it always was)."""
        unset = {"image_md5", "content_md5", "approved", "written_keywords"}
        return self.model_dump(
            mode="json", exclude={name for name in unset if getattr(self, name) is None}
        )

    @property
    def flagged(self) -> bool:
        """Whether moderation flagged the photo (then delivered only if approved by name)."""
        return self.moderation is not None and self.moderation.flagged

    @property
    def addable(self) -> list[str]:
        """The suggestions not chosen yet: the only words a person may add."""
        chosen = {word.casefold() for word in self.keywords}
        return [s.tag for s in self.suggestions if s.tag.casefold() not in chosen]
