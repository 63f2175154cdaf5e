"""How edit and export results are made from the uploads: deterministic, streamed; a small
result is kept in memory (within the sandbox's budget), a larger one written to disk.

Edit: RAW → `<stem>.xmp` sidecar; DNG (and any RAW with hdr_merge) → `<stem>.dng`, the input with
an XMP packet appended; JPEG → `<stem>.jpg`, the picture visibly edited as the packet says
(`pictures.Look`) and downscaled, with the XMP APP1 segment after SOI (a JPEG too large to decode
cheaply, or one Pillow cannot read, is streamed as it came with the segment inserted).
Export: `<stem>.jpg`, the same edited picture (for a RAW container, which the sandbox cannot
decode, a synthetic scene seeded by its md5, edited alike) with a COM segment naming the source.
Each output depends only on the input bytes and the edit settings.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Iterator
from pathlib import Path, PurePath
from xml.sax.saxutils import quoteattr

from orchestrator.sandbox import jpeg, pictures
from orchestrator.sandbox.edit_rules import EditSettings
from orchestrator.sandbox.state import (
    JPEG_EXTENSIONS,
    SMALL_OBJECT,
    EditInput,
    MemoryBudget,
    OutputFile,
)

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
    look = pictures.look_of(source.md5_hex, settings.profile_key)
    attributes = {
        "imagen:SourceFile": source.name,
        "imagen:SourceMD5": source.md5_hex,
        "imagen:ProfileKey": str(settings.profile_key),
        "imagen:Tools": ",".join(settings.tools),
        "imagen:PhotographyType": settings.photography_type or "",
        "crs:Version": "15.0",
        "crs:Exposure2012": f"{look.exposure:+.2f}",
        "crs:Temperature": str(look.temperature),
        "crs:Tint": str(bytes.fromhex(source.md5_hex)[2] % 21 - 10),
        "crs:Contrast2012": str(look.contrast),
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


def _chunks(source: EditInput, start: int = 0) -> Iterator[bytes]:
    if source.data is not None:
        yield source.data[start:]
        return
    assert source.path is not None
    with source.path.open("rb") as file:
        file.seek(start)
        while chunk := file.read(CHUNK_SIZE):
            yield chunk


def _head(source: EditInput, count: int) -> bytes:
    if source.data is not None:
        return source.data[:count]
    assert source.path is not None
    with source.path.open("rb") as file:
        return file.read(count)


def _write(name: str, dest: Path, pieces: Iterable[bytes], budget: MemoryBudget) -> OutputFile:
    """Hash `pieces` into an output: kept in memory if small and the budget allows, else
    written to `dest` via a temporary name as they come."""
    md5 = hashlib.md5()
    size = 0
    held: list[bytes] = []
    out = None
    partial = dest.with_name(dest.name + ".part")
    try:
        for piece in pieces:
            md5.update(piece)
            size += len(piece)
            if out is None and size <= SMALL_OBJECT:
                held.append(piece)
                continue
            if out is None:
                out = partial.open("wb")
                out.writelines(held)
                held = []
            out.write(piece)
    finally:
        if out is not None:
            out.close()
    content_type = CONTENT_TYPES[PurePath(name).suffix]
    if out is None:
        data = b"".join(held)
        if budget.take(size):
            return OutputFile(
                name=name,
                path=None,
                md5_hex=md5.hexdigest(),
                size=size,
                content_type=content_type,
                data=data,
            )
        partial.write_bytes(data)
    os.replace(partial, dest)
    return OutputFile(
        name=name, path=dest, md5_hex=md5.hexdigest(), size=size, content_type=content_type
    )


def _picture(source: EditInput, settings: EditSettings, *, draw: bool) -> bytes | None:
    """The edited picture of `source` (see `pictures.edited`)."""
    is_jpeg = PurePath(source.name).suffix.lower() in JPEG_EXTENSIONS
    return pictures.edited(
        source.md5_hex,
        pictures.look_of(source.md5_hex, settings.profile_key),
        data=source.data,
        path=source.path,
        decodable=is_jpeg,
        draw=draw,
    )


def _edit_pieces(
    source: EditInput, name: str, packet: bytes, settings: EditSettings
) -> Iterable[bytes]:
    suffix = PurePath(name).suffix
    if suffix == ".xmp":
        return [packet]
    if suffix == ".dng":
        return _appended(source, packet)
    if _head(source, len(jpeg.SOI)) != jpeg.SOI:
        raise OutputError(f"{source.name} is not a valid JPEG file")
    picture = _picture(source, settings, draw=False)
    if picture is None:
        return _jpeg_with_xmp(source, packet)
    return [jpeg.SOI, jpeg.xmp_segment(packet), picture[len(jpeg.SOI) :]]


def _appended(source: EditInput, packet: bytes) -> Iterator[bytes]:
    yield from _chunks(source)
    yield packet


def _jpeg_with_xmp(source: EditInput, packet: bytes) -> Iterator[bytes]:
    yield jpeg.SOI
    yield jpeg.xmp_segment(packet)
    yield from _chunks(source, start=len(jpeg.SOI))


def write_edit_outputs(
    inputs: list[EditInput], folder: Path, settings: EditSettings, budget: MemoryBudget
) -> dict[str, OutputFile]:
    """Write the edit result of every input into `folder`; OutputError if one cannot be edited."""
    folder.mkdir(parents=True, exist_ok=True)
    hdr_merge = "hdr_merge" in settings.tools
    outputs: dict[str, OutputFile] = {}
    for index, source in enumerate(inputs):
        name = edit_output_name(source.name, hdr_merge=hdr_merge)
        pieces = _edit_pieces(source, name, xmp_packet(source, settings), settings)
        outputs[name] = _write(name, folder / f"{index:06d}.out", pieces, budget)
    return outputs


def write_export_outputs(
    inputs: list[EditInput], folder: Path, settings: EditSettings, budget: MemoryBudget
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
        picture = _picture(source, settings, draw=True)
        assert picture is not None  # drawn when it cannot be decoded
        pieces = [jpeg.SOI, jpeg.comment(text), picture[len(jpeg.SOI) :]]
        outputs[name] = _write(name, folder / f"{index:06d}.out", pieces, budget)
    return outputs
