"""Which local files Imagen accepts, and safe local names for the files it sends back."""

from __future__ import annotations

import os
from pathlib import Path, PureWindowsPath

from orchestrator.imagen.models import ImageType

RAW_EXTENSIONS: frozenset[str] = frozenset(
    {
        ".dng",
        ".nef",
        ".cr2",
        ".arw",
        ".nrw",
        ".crw",
        ".srf",
        ".sr2",
        ".orf",
        ".raw",
        ".rw2",
        ".raf",
        ".ptx",
        ".pef",
        ".rwl",
        ".srw",
        ".cr3",
        ".3fr",
        ".fff",
    }
)
"""Extensions (lower case) of the RAW formats Imagen edits; DNG counts as RAW."""

JPEG_EXTENSIONS: frozenset[str] = frozenset({".jpg", ".jpeg"})
"""Extensions (lower case) of the JPEG files Imagen edits."""

SIGNATURE_BYTES = 16
"""How much of a photo's start is enough to tell its format (the longest signature is CRW's)."""

_TIFF = ((0, b"II*\x00"), (0, b"MM\x00*"))
_PANASONIC = ((0, b"IIU\x00"),)
_OLYMPUS = ((0, b"IIRO"), (0, b"IIRS"), (0, b"MMOR"))
_FORMATS: dict[str, tuple[tuple[int, bytes], ...]] = {
    "JPEG": ((0, b"\xff\xd8\xff"),),
    "TIFF-based RAW": _TIFF,
    "Panasonic RAW": _PANASONIC,
    "Olympus ORF": _OLYMPUS,
    "Canon CR3": ((4, b"ftypcrx "),),
    "Fujifilm RAF": ((0, b"FUJIFILMCCD-RAW"),),
    "Canon CRW": ((0, b"II\x1a\x00\x00\x00HEAPCCDR"),),
}
_FORMATS_OF: dict[str, tuple[str, ...]] = {
    **dict.fromkeys(JPEG_EXTENSIONS, ("JPEG",)),
    **dict.fromkeys(
        (
            ".cr2",
            ".nef",
            ".nrw",
            ".arw",
            ".srf",
            ".sr2",
            ".dng",
            ".pef",
            ".srw",
            ".3fr",
            ".fff",
            ".ptx",
        ),
        ("TIFF-based RAW",),
    ),
    # Panasonic and Leica write their own TIFF variant (IIU) as well as plain TIFF.
    **dict.fromkeys((".rw2", ".rwl", ".raw"), ("Panasonic RAW", "TIFF-based RAW")),
    ".orf": ("Olympus ORF",),
    ".cr3": ("Canon CR3",),
    ".raf": ("Fujifilm RAF",),
    ".crw": ("Canon CRW",),
}
"""The formats (keys of _FORMATS) a file with each accepted extension may hold."""


def image_type_of(name: str) -> ImageType | None:
    """The image type of a file judged by its extension, in any case; None if Imagen refuses it."""
    suffix = os.path.splitext(name)[1].lower()
    if suffix in RAW_EXTENSIONS:
        return ImageType.RAW
    if suffix in JPEG_EXTENSIONS:
        return ImageType.JPG
    return None


def content_matches(name: str, head: bytes) -> bool:
    """Whether a photo's first bytes (SIGNATURE_BYTES of them) fit the type its name claims.

    Only the signature is checked, not the whole file: enough to refuse a text file, a video or
    anything else renamed (or linked) to look like a photo, without reading the photo.
    """
    suffix = os.path.splitext(name)[1].lower()
    return any(_has(head, _FORMATS[fmt]) for fmt in _FORMATS_OF.get(suffix, ()))


def describe_content(head: bytes) -> str:
    """What a file's first bytes look like, for a refusal message ("a JPEG", "text", …)."""
    for fmt, signatures in _FORMATS.items():
        if _has(head, signatures):
            return f"a {fmt}"
    if head and all(32 <= byte < 127 or byte in b"\t\r\n" for byte in head):
        return "text"
    return "nothing this program knows"


def _has(head: bytes, signatures: tuple[tuple[int, bytes], ...]) -> bool:
    return any(head[offset : offset + len(magic)] == magic for offset, magic in signatures)


MAX_NAME_LENGTH = 255
"""The longest file name (in characters) Imagen takes."""


def name_refusal(name: str) -> str | None:
    """Why Imagen would refuse a photo's file name (its upload links call answers 400), or None.

    Imagen refuses dot names, separators of either platform (a backslash is a legal character
    in a Linux file name), characters that are not printable (a tab, a newline) and names longer
    than MAX_NAME_LENGTH; finding them while planning lets all be renamed before anything is sent.
    """
    if name in (".", ".."):
        return "a dot name"
    if "\\" in name or "/" in name:
        return "a backslash in the name"
    if not name.isprintable():
        return "a character that is not printable (a tab, a newline or another control character)"
    if len(name) > MAX_NAME_LENGTH:
        return f"a name longer than {MAX_NAME_LENGTH} characters"
    return None


def shown_name(name: str) -> str:
    """A file name with its unprintable characters escaped (a tab shown as \\t)."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in name)


def keep_source_case(output: str, source: str) -> str:
    """Imagen's output name in the source photo's spelling: its stem (outputs are matched by
    stem in any case), and its extension when the output is of the source's own type (an
    edited `IMG_0001.JPG` comes back as `IMG_0001.jpg`: kept `.JPG`)."""
    out, src = os.path.splitext(output), os.path.splitext(source)
    same_type = out[1].lower() == src[1].lower() or (
        out[1].lower() in JPEG_EXTENSIONS and src[1].lower() in JPEG_EXTENSIONS
    )
    return src[0] + (src[1] if same_type else out[1])


class UnsafeFileName(ValueError):
    """A file name from the API that could write outside the output folder."""


def safe_output_path(folder: Path, file_name: str) -> Path:
    """Where to save a file Imagen named `file_name`: always directly inside `folder`.

    The name comes from the network, so anything that could climb out of the folder or name a
    different one (separators of either platform, drives, NUL, dot names) is refused; refusing
    separators also refuses every absolute path.
    """
    unsafe = (
        file_name in ("", ".")
        or file_name.startswith("..")
        or "/" in file_name
        or "\\" in file_name
        or "\x00" in file_name
        or bool(PureWindowsPath(file_name).drive)
    )
    if unsafe:
        raise UnsafeFileName(f"refusing unsafe file name from Imagen: {file_name!r}")
    return folder / file_name
