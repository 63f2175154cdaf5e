"""Just enough JPEG to make real, decodable files without an imaging library."""

from __future__ import annotations

import struct

SOI = b"\xff\xd8"
EOI = b"\xff\xd9"
COM = 0xFE
APP1 = 0xE1
XMP_NAMESPACE = b"http://ns.adobe.com/xap/1.0/\x00"
MAX_SEGMENT_PAYLOAD = 0xFFFF - 2

# An 8x8 baseline JPEG of one warm skin tone (decodes to about RGB 222,167,136). Built by hand:
# quantisation table of ones, YCbCr at 1x1 sampling, a DC Huffman table with two 2-bit codes
# (categories 8 and 9), an AC table holding only end-of-block, then one MCU whose blocks carry
# DC values Y=416, Cb=-200, Cr=240 and nothing else.
TEMPLATE = bytes.fromhex(
    "ffd8"
    "ffdb004300" + "01" * 64
    + "ffc00011080008000803011100021100031100"
    + "ffc40015000002" + "00" * 14 + "0809"
    + "ffc400141001" + "00" * 15 + "00"
    + "ffda000c03010002000300003f00"
    + "7400dc783f"
    + "ffd9"
)  # fmt: skip


def segment(marker: int, payload: bytes) -> bytes:
    """A marker segment: FF, marker, big-endian length (counting itself), payload."""
    if len(payload) > MAX_SEGMENT_PAYLOAD:
        raise ValueError(f"JPEG segment payload too long: {len(payload)} bytes")
    return bytes((0xFF, marker)) + struct.pack(">H", len(payload) + 2) + payload


def comment(text: bytes) -> bytes:
    """A COM segment carrying `text`."""
    return segment(COM, text)


def xmp_segment(packet: bytes) -> bytes:
    """An APP1 segment carrying an XMP packet, as Adobe embeds it."""
    return segment(APP1, XMP_NAMESPACE + packet)


def with_comment(text: bytes) -> bytes:
    """The template image with a COM segment right after SOI, so each such file differs."""
    return SOI + comment(text) + TEMPLATE[len(SOI) :]
