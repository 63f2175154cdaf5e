"""The pictures the sandbox edits and exports: a visibly edited downscale of a decodable upload,
or, for a RAW container it cannot decode, a seeded synthetic scene (gradients, shapes and a few
face-like ellipses under coloured hats, so that face detection and grouping have something to
find). Deterministic: same bytes and edit values, same picture.

Cheap on purpose, as thousands of tiny photos go through: a file above `DECODE_LIMIT` is never
decoded (its caller keeps the streaming path), JPEGs decode at a reduced DCT scale (`draft`), the
edit is one lookup table per channel, and results are kept by md5 in a small cache.
"""

from __future__ import annotations

import colorsys
import hashlib
import io
import random
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageOps

LONG_SIDE = 2048
"""Edits and exports are downscaled to at most this long side (never enlarged)."""
DECODE_LIMIT = 48 * 1024 * 1024
"""Uploads larger than this are never decoded: a JPEG edit streams its input, an export draws."""
MAX_PIXELS = 120_000_000
"""A header claiming more pixels than this is not decoded (no decompression bombs)."""
SYNTHETIC_SIZE = (1536, 1024)
QUALITY = 85
CACHE_BYTES = 32 * 1024 * 1024
"""Encoded pictures kept by (md5, edit values), so an export after its edit decodes nothing."""

PERSONS = (
    ((236, 190, 160), (200, 35, 40)),
    ((224, 172, 140), (215, 195, 30)),
    ((198, 140, 105), (40, 160, 60)),
    ((170, 118, 88), (30, 170, 190)),
    ((140, 96, 70), (40, 60, 200)),
    ((230, 180, 150), (170, 40, 170)),
)
"""(skin, hat) colours of the people who appear in synthetic scenes: a person is recognised by
the hue of their hat, which six persons hold 60 degrees apart, so an edit's warmth cannot
confuse them."""


@dataclass(frozen=True, kw_only=True)
class Look:
    """The visible edit: what the XMP's Camera Raw values do to the pixels."""

    exposure: float
    """Stops (the XMP's Exposure2012)."""
    temperature: int
    """Kelvin (the XMP's Temperature); 5500 is neutral, more is warmer."""
    contrast: int
    """-100..100 (the XMP's Contrast2012)."""

    def matrix(self) -> tuple[float, ...]:
        """This look as the affine colour matrix of `Image.convert` (one C pass, clamped)."""
        gain = 2 ** (self.exposure * 0.6)
        warmth = (self.temperature - 5500) / 2500
        slope = 1 + self.contrast / 100
        # Each channel: ((value / 255) * gain * channel_gain - 0.5) * slope + 0.5, in 0..255.
        offset = (0.5 - 0.5 * slope) * 255
        red, green, blue = (gain * slope * (1 + k * warmth) for k in (0.12, 0.02, -0.12))
        return (red, 0, 0, offset, 0, green, 0, offset, 0, 0, blue, offset)


def look_of(md5_hex: str, profile_key: int) -> Look:
    """The edit values the sandbox derives for a photo (the same ones its XMP packet states)."""
    digest = bytes.fromhex(md5_hex)
    return Look(
        exposure=(digest[0] - 128) / 100,
        temperature=4500 + digest[1] * 10 + (profile_key % 5) * 100,
        contrast=digest[3] % 41 - 20,
    )


class _Cache:
    """Encoded pictures by key, least recently used dropped past `CACHE_BYTES` (thread-safe)."""

    def __init__(self) -> None:
        self._items: OrderedDict[tuple[str, Look], bytes] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: tuple[str, Look]) -> bytes | None:
        with self._lock:
            found = self._items.get(key)
            if found is not None:
                self._items.move_to_end(key)
            return found

    def put(self, key: tuple[str, Look], data: bytes) -> None:
        with self._lock:
            if key in self._items or len(data) > CACHE_BYTES // 4:
                return
            self._items[key] = data
            self._bytes += len(data)
            while self._bytes > CACHE_BYTES:
                _, dropped = self._items.popitem(last=False)
                self._bytes -= len(dropped)


_CACHE = _Cache()


def decode(
    data: bytes | None, path: Path | None, *, long_side: int = LONG_SIDE
) -> Image.Image | None:
    """The upright RGB picture in `data` (or the file at `path`) downscaled to `long_side`, or
    None if it is too large to decode cheaply or not an image Pillow reads."""
    size = len(data) if data is not None else (path.stat().st_size if path else 0)
    if size > DECODE_LIMIT:
        return None
    try:
        with Image.open(io.BytesIO(data) if data is not None else path) as opened:  # type: ignore[arg-type]
            if opened.width * opened.height > MAX_PIXELS:
                return None
            opened.draft("RGB", (long_side, long_side))
            upright = ImageOps.exif_transpose(opened).convert("RGB")
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return None
    upright.thumbnail((long_side, long_side))
    return upright


def _skin_like(colour: tuple[int, int, int]) -> bool:
    red, green, blue = colour
    cb = 128 - 0.1687 * red - 0.3313 * green + 0.5 * blue
    cr = 128 + 0.5 * red - 0.4187 * green - 0.0813 * blue
    return 65 <= cb <= 140 and 125 <= cr <= 185


def _scene_colour(rng: random.Random) -> tuple[int, int, int]:
    """A colour for backgrounds and shapes that face detection will not take for skin."""
    while True:
        hue = rng.random()
        red, green, blue = colorsys.hsv_to_rgb(hue, rng.uniform(0.25, 0.9), rng.uniform(0.2, 0.95))
        colour = (round(red * 255), round(green * 255), round(blue * 255))
        if not _skin_like(colour):
            return colour


def _mix(a: tuple[int, int, int], b: tuple[int, int, int], t: float) -> tuple[int, int, int]:
    return (
        round(a[0] + (b[0] - a[0]) * t),
        round(a[1] + (b[1] - a[1]) * t),
        round(a[2] + (b[2] - a[2]) * t),
    )


def synthetic_size(seed_hex: str, *, long_side: int = SYNTHETIC_SIZE[0]) -> tuple[int, int]:
    """The size of the synthetic scene of `seed_hex` (about a third of them are upright)."""
    short = long_side * SYNTHETIC_SIZE[1] // SYNTHETIC_SIZE[0]
    portrait = random.Random(seed_hex).random() < 0.3
    return (short, long_side) if portrait else (long_side, short)


def synthetic(seed_hex: str, *, long_side: int = SYNTHETIC_SIZE[0]) -> Image.Image:
    """A scene seeded by `seed_hex`: a sky-to-ground gradient, shapes and 0–3 people."""
    width, height = synthetic_size(seed_hex, long_side=long_side)
    rng = random.Random(seed_hex)
    rng.random()  # the orientation, drawn by synthetic_size
    while True:
        top, bottom = _scene_colour(rng), _scene_colour(rng)
        if not any(_skin_like(_mix(top, bottom, step / 8)) for step in range(9)):
            break
    mask = Image.linear_gradient("L").resize((width, height))
    picture = Image.composite(
        Image.new("RGB", (width, height), bottom), Image.new("RGB", (width, height), top), mask
    )
    draw = ImageDraw.Draw(picture)
    for _ in range(rng.randint(3, 7)):
        x, y = rng.uniform(-0.1, 1.0) * width, rng.uniform(0.2, 1.0) * height
        w, h = rng.uniform(0.08, 0.4) * width, rng.uniform(0.05, 0.3) * height
        box = (x, y, x + w, y + h)
        colour = _scene_colour(rng)
        if rng.random() < 0.5:
            draw.rectangle(box, fill=colour)
        else:
            draw.ellipse(box, fill=colour)
    people = rng.choices((0, 1, 2, 3), weights=(2, 4, 3, 1))[0]
    slots = rng.sample(range(4), people)
    for slot, person in zip(slots, rng.sample(range(len(PERSONS)), people), strict=False):
        skin, hat = PERSONS[person]
        face_h = rng.uniform(0.2, 0.3) * min(width, height)
        face_w = face_h * 0.75
        cx = (slot + 0.5) / 4 * width + rng.uniform(-0.05, 0.05) * width
        cy = rng.uniform(0.4, 0.6) * height
        left, top_y = cx - face_w / 2, cy - face_h / 2
        draw.ellipse((left, top_y, left + face_w, top_y + face_h), fill=skin)
        draw.chord(
            (
                left - face_w * 0.05,
                top_y - face_h * 0.25,
                left + face_w * 1.05,
                top_y + face_h * 0.45,
            ),
            180,
            360,
            fill=hat,
        )
        eye = face_w * 0.09
        for ex in (cx - face_w * 0.2, cx + face_w * 0.2):
            draw.ellipse(
                (ex - eye, cy - face_h * 0.08 - eye, ex + eye, cy - face_h * 0.08 + eye),
                fill=(35, 25, 25),
            )
        draw.line(
            (cx - face_w * 0.18, cy + face_h * 0.22, cx + face_w * 0.18, cy + face_h * 0.22),
            fill=(150, 40, 50),
            width=max(1, round(eye * 0.8)),
        )
    return picture


def encode(picture: Image.Image) -> bytes:
    """A baseline JPEG of `picture`."""
    out = io.BytesIO()
    picture.save(out, "JPEG", quality=QUALITY, optimize=False)
    return out.getvalue()


def edited(
    md5_hex: str, look: Look, *, data: bytes | None, path: Path | None, decodable: bool, draw: bool
) -> bytes | None:
    """The JPEG of the upload `md5_hex` with `look` applied: decoded if `decodable` and it can be,
    else drawn from its md5 if `draw`, else None (the caller streams the input instead)."""
    key = (md5_hex, look)
    if (cached := _CACHE.get(key)) is not None:
        return cached
    picture = decode(data, path) if decodable else None
    if picture is None:
        if not draw:
            return None
        picture = synthetic(md5_hex)
    result = encode(picture.convert("RGB", look.matrix()))
    _CACHE.put(key, result)
    return result


def seed_of(text: str) -> str:
    """An md5 seed for a picture named by text (an image URL) rather than bytes."""
    return hashlib.md5(text.encode()).hexdigest()
