"""How edit and export results are made from the uploads: deterministic, streamed, on disk.

Edit: RAW → `<stem>.xmp` sidecar; DNG (and any RAW with hdr_merge) → `<stem>.dng`, the input with
an XMP packet appended; JPEG → `<stem>.jpg`, the input with an XMP APP1 segment after SOI.
Export: `<stem>.jpg`, a small real JPEG whose COM segment names the source and its md5.
Each output depends only on the input bytes and the edit settings.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Iterator
from pathlib import Path, PurePath
from xml.sax.saxutils import quoteattr

from orchestrator.sandbox import jpeg
from orchestrator.sandbox.edit_rules import EditSettings
from orchestrator.sandbox.state import JPEG_EXTENSIONS, EditInput, OutputFile

CHUNK_SIZE = 1024 * 1024
CONTENT_TYPES = {".xmp": "application/rdf+xml", ".dng": "image/x-adobe-dng", ".jpg": "image/jpeg"}


class OutputError(Exception):
    """An input cannot be processed; the message becomes the job's failure details."""


def edit_output_name(file_name: str, *, hdr_merge: bool) -> str:
    """The name Imagen gives the edit result of `file_name`."""
    path = PurePath(file_name)
    suffix = path.suffix.lower()
    if suffix in JPEG_EXTENSIONS:
        return f"{path.stem}.jpg"
    if suffix == ".dng" or hdr_merge:
        return f"{path.stem}.dng"
    return f"{path.stem}.xmp"


def export_output_name(file_name: str) -> str:
    """The name Imagen gives the exported JPEG of `file_name`."""
    return f"{PurePath(file_name).stem}.jpg"


def xmp_packet(source: EditInput, settings: EditSettings) -> bytes:
    """The edit "instructions": plausible Camera Raw values derived from the input's md5."""
    digest = bytes.fromhex(source.md5_hex)
    exposure = (digest[0] - 128) / 100
    attributes = {
        "imagen:SourceFile": source.name,
        "imagen:SourceMD5": source.md5_hex,
        "imagen:ProfileKey": str(settings.profile_key),
        "imagen:Tools": ",".join(settings.tools),
        "imagen:PhotographyType": settings.photography_type or "",
        "crs:Version": "15.0",
        "crs:Exposure2012": f"{exposure:+.2f}",
        "crs:Temperature": str(4500 + digest[1] * 10),
        "crs:Tint": str(digest[2] % 21 - 10),
        "crs:Contrast2012": str(digest[3] % 41 - 20),
    }
    lines = "\n".join(f"   {key}={quoteattr(value)}" for key, value in attributes.items())
    text = (
        '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>\n'
        '<x:xmpmeta xmlns:x="adobe:ns:meta/">\n'
        ' <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">\n'
        '  <rdf:Description rdf:about=""\n'
        '   xmlns:crs="http://ns.adobe.com/camera-raw-settings/1.0/"\n'
        '   xmlns:imagen="https://imagen-ai.com/ns/sandbox/1.0/"\n'
        f"{lines}/>\n"
        " </rdf:RDF>\n"
        "</x:xmpmeta>\n"
        '<?xpacket end="w"?>\n'
    )
    return text.encode()


def _chunks(path: Path, start: int = 0) -> Iterator[bytes]:
    with path.open("rb") as source:
        source.seek(start)
        while chunk := source.read(CHUNK_SIZE):
            yield chunk


def _write(name: str, dest: Path, pieces: Iterable[bytes]) -> OutputFile:
    """Write `pieces` to `dest` via a temporary name, hashing as it goes."""
    md5 = hashlib.md5()
    size = 0
    partial = dest.with_name(dest.name + ".part")
    with partial.open("wb") as out:
        for piece in pieces:
            md5.update(piece)
            size += len(piece)
            out.write(piece)
    os.replace(partial, dest)
    return OutputFile(
        name=name,
        path=dest,
        md5_hex=md5.hexdigest(),
        size=size,
        content_type=CONTENT_TYPES[PurePath(name).suffix],
    )


def _edit_pieces(source: EditInput, name: str, packet: bytes) -> Iterable[bytes]:
    suffix = PurePath(name).suffix
    if suffix == ".xmp":
        return [packet]
    if suffix == ".dng":
        return _appended(source.path, packet)
    with source.path.open("rb") as head:
        if head.read(len(jpeg.SOI)) != jpeg.SOI:
            raise OutputError(f"{source.name} is not a valid JPEG file")
    return _jpeg_with_xmp(source.path, packet)


def _appended(path: Path, packet: bytes) -> Iterator[bytes]:
    yield from _chunks(path)
    yield packet


def _jpeg_with_xmp(path: Path, packet: bytes) -> Iterator[bytes]:
    yield jpeg.SOI
    yield jpeg.xmp_segment(packet)
    yield from _chunks(path, start=len(jpeg.SOI))


def write_edit_outputs(
    inputs: list[EditInput], folder: Path, settings: EditSettings
) -> dict[str, OutputFile]:
    """Write the edit result of every input into `folder`; OutputError if one cannot be edited."""
    folder.mkdir(parents=True, exist_ok=True)
    hdr_merge = "hdr_merge" in settings.tools
    outputs: dict[str, OutputFile] = {}
    for index, source in enumerate(inputs):
        name = edit_output_name(source.name, hdr_merge=hdr_merge)
        pieces = _edit_pieces(source, name, xmp_packet(source, settings))
        outputs[name] = _write(name, folder / f"{index:06d}.out", pieces)
    return outputs


def write_export_outputs(
    inputs: list[EditInput], folder: Path, settings: EditSettings
) -> dict[str, OutputFile]:
    """Write the exported JPEG of every input into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    outputs: dict[str, OutputFile] = {}
    for index, source in enumerate(inputs):
        name = export_output_name(source.name)
        text = (
            f"Imagen sandbox export of {source.name}; source md5 {source.md5_hex}; "
            f"profile {settings.profile_key}"
        ).encode()
        outputs[name] = _write(name, folder / f"{index:06d}.out", [jpeg.with_comment(text)])
    return outputs
