"""What the sandbox's Imagga sees in a picture: a cheap, deterministic reading of its pixels.

The picture is read at `ANALYSIS_SIDE` pixels: tags and categories from buckets of its dominant
hue, brightness, saturation, edges and face count; colours by median-cut quantising (the whole
picture, its centre as foreground, its border as background); faces as skin-coloured blobs shaped
like an upright ellipse with dark eyes (which the synthetic scenes of `pictures` draw); a face's
signature is the hue just above it (a synthetic person's hat); crops around the busiest window.
"""

from __future__ import annotations

import colorsys
import io
from collections import deque
from dataclasses import dataclass

from PIL import Image, ImageFilter, ImageStat

from orchestrator.sandbox import pictures

ANALYSIS_SIDE = 256
NAMED_COLOURS = (
    ("black", "black", (20, 20, 20)), ("dark gray", "gray", (80, 80, 80)),
    ("light gray", "gray", (170, 170, 170)), ("white", "white", (245, 245, 245)),
    ("red", "red", (200, 35, 40)), ("dusty rose", "pink", (190, 130, 140)),
    ("pink", "pink", (235, 150, 190)), ("orange", "orange", (235, 130, 40)),
    ("skin", "beige", (225, 175, 145)), ("beige", "beige", (215, 200, 170)),
    ("brown", "brown", (120, 75, 45)), ("gold", "yellow", (210, 170, 50)),
    ("yellow", "yellow", (235, 220, 60)), ("olive green", "green", (110, 120, 50)),
    ("green", "green", (60, 150, 70)), ("mint", "green", (150, 220, 180)),
    ("teal", "blue", (30, 120, 120)), ("turquoise", "blue", (50, 190, 200)),
    ("sky blue", "blue", (120, 170, 230)), ("navy blue", "blue", (30, 40, 110)),
    ("blue", "blue", (45, 75, 200)), ("lavender", "violet", (180, 160, 220)),
    ("purple", "violet", (110, 50, 150)), ("magenta", "violet", (190, 40, 170)),
)  # fmt: skip
HUE_WORDS = (
    ("red", "vibrant", "rose"), ("warm", "autumn", "sunset"), ("sunny", "gold", "summer"),
    ("nature", "green", "garden"), ("grass", "tree", "outdoors"), ("water", "sea", "turquoise"),
    ("sky", "blue", "calm"), ("evening", "twilight", "purple"), ("flower", "pink", "romantic"),
)  # fmt: skip
FACE_WORDS = (
    (), ("portrait", "person", "face", "people"), ("couple", "people", "love", "portrait"),
    ("group", "people", "family", "celebration"),
)  # fmt: skip


@dataclass(frozen=True, kw_only=True)
class Face:
    """A face found: its box in pixels of the image received, and its signature hue (0..360)."""

    box: tuple[int, int, int, int]
    confidence: float
    hue: float


@dataclass(frozen=True, kw_only=True)
class Reading:
    """Everything the fake Imagga answers about one picture."""

    width: int
    height: int
    tags: tuple[tuple[str, float], ...]
    personal_photos: tuple[tuple[str, float], ...]
    image_colors: tuple[tuple[tuple[int, int, int], float], ...]
    foreground_colors: tuple[tuple[tuple[int, int, int], float], ...]
    background_colors: tuple[tuple[tuple[int, int, int], float], ...]
    faces: tuple[Face, ...]
    columns: tuple[float, ...]
    """Interest (edges, faces) of each column of the analysis picture, for crops."""
    rows: tuple[float, ...]


def read_bytes(data: bytes, seed_hex: str) -> Reading:
    """The reading of an uploaded image, or of the synthetic scene of `seed_hex` if it cannot be
    decoded (a RAW, or anything else Pillow does not read)."""
    opened = pictures.decode(data, None, long_side=ANALYSIS_SIDE * 2)
    if opened is None:
        return read_seed(seed_hex)
    size = _received_size(data)
    return read(opened, size or opened.size)


def read_seed(seed_hex: str) -> Reading:
    """The reading of the synthetic scene seeded by `seed_hex` (an undecodable image, a URL)."""
    scene = pictures.synthetic(seed_hex, long_side=ANALYSIS_SIDE * 2)
    full = pictures.synthetic_size(seed_hex)
    return read(scene, full)


def _received_size(data: bytes) -> tuple[int, int] | None:
    """The upright size of the image in `data`, from its header."""
    try:
        with Image.open(io.BytesIO(data)) as opened:
            orientation = opened.getexif().get(0x0112, 1)
            return opened.size[::-1] if orientation in (5, 6, 7, 8) else opened.size
    except (OSError, ValueError, SyntaxError):
        return None


def read(picture: Image.Image, received: tuple[int, int]) -> Reading:
    """Read `picture` (any size); coordinates are answered for an image of size `received`."""
    small = picture.copy()
    small.thumbnail((ANALYSIS_SIDE, ANALYSIS_SIDE))
    width, height = small.size
    scale = received[0] / width, received[1] / height
    faces = _faces(small, scale)
    edges = small.convert("L").filter(ImageFilter.FIND_EDGES)
    edge_level = ImageStat.Stat(edges).mean[0] / 255
    hsv = small.convert("HSV")
    hue_band, sat_band, value_band = hsv.split()
    saturation = ImageStat.Stat(sat_band).mean[0] / 255
    brightness = ImageStat.Stat(value_band).mean[0] / 255
    hue_share = _hue_shares(hue_band, sat_band)
    red, _, blue = ImageStat.Stat(small).mean
    warmth = (red - blue) / 255
    tags = _tags(hue_share, brightness, saturation, edge_level, warmth, len(faces))
    columns, rows = _interest(edges, faces, scale, width, height)
    border = _border(small)
    centre = small.crop((width // 4, height // 4, width - width // 4, height - height // 4))
    return Reading(
        width=received[0],
        height=received[1],
        tags=tags,
        personal_photos=_personal_photos(hue_share, saturation, edge_level, warmth, len(faces)),
        image_colors=_palette(small, 5),
        foreground_colors=_palette(centre, 3),
        background_colors=_palette(border, 3),
        faces=tuple(faces),
        columns=columns,
        rows=rows,
    )


def _hue_shares(hue_band: Image.Image, sat_band: Image.Image) -> list[float]:
    """Share of saturated pixels in each of the nine hue buckets of HUE_WORDS."""
    counts = [0] * len(HUE_WORDS)
    for hue, sat in zip(hue_band.tobytes(), sat_band.tobytes(), strict=True):
        if sat > 60:
            counts[min(len(HUE_WORDS) - 1, hue * len(HUE_WORDS) // 256)] += 1
    total = max(1, hue_band.width * hue_band.height)
    return [count / total for count in counts]


def _tags(
    hue_share: list[float],
    brightness: float,
    saturation: float,
    edges: float,
    warmth: float,
    faces: int,
) -> tuple[tuple[str, float], ...]:
    strengths: list[tuple[tuple[str, ...], float]] = [
        (words, share) for words, share in zip(HUE_WORDS, hue_share, strict=True)
    ]
    strengths.append((FACE_WORDS[min(faces, 3)], 1.0 if faces else 0.0))
    light = ("light", "bright", "airy") if brightness > 0.5 else ("dark", "night", "moody")
    strengths.append((light, abs(brightness - 0.5) * 2))
    busy = ("texture", "pattern", "architecture") if edges > 0.06 else ("smooth", "minimal", "soft")
    strengths.append((busy, min(1.0, abs(edges - 0.06) * 10)))
    vivid = ("colorful", "vivid") if saturation > 0.35 else ("muted", "monochrome")
    strengths.append((vivid, min(1.0, abs(saturation - 0.35) * 3)))
    strengths.append((("warm",) if warmth > 0 else ("cool",), min(1.0, abs(warmth) * 4)))
    scores: dict[str, float] = {}
    for words, strength in strengths:
        if strength <= 0:
            continue
        for rank, word in enumerate(words):
            score = round(max(0.5, 30 + 68 * min(1.0, strength) - 7 * rank), 4)
            scores[word] = max(scores.get(word, 0.0), score)
    return tuple(sorted(scores.items(), key=lambda pair: (-pair[1], pair[0])))


def _personal_photos(
    hue_share: list[float], saturation: float, edges: float, warmth: float, faces: int
) -> tuple[tuple[str, float], ...]:
    weights = {
        "people portraits": 3.0 * min(faces, 1) + 0.05,
        "events parties": 1.5 * (faces >= 2) + saturation * 0.3,
        "nature landscape": 4 * (hue_share[3] + hue_share[4] + hue_share[6]) + 0.05,
        "streetview architecture": edges * 8,
        "interior objects": max(0.0, 0.4 - saturation),
        "food drinks": 2 * (hue_share[1] + hue_share[2]) * saturation,
        "pets animals": 0.05,
        "sunrises sunsets": max(0.0, warmth) * 3 * (hue_share[0] + hue_share[1] + 0.1),
    }
    total = sum(weights.values())
    scored = sorted(
        ((name, round(100 * weight / total, 4)) for name, weight in weights.items()),
        key=lambda pair: (-pair[1], pair[0]),
    )
    return tuple(pair for pair in scored if pair[1] >= 1.0)


def _palette(picture: Image.Image, count: int) -> tuple[tuple[tuple[int, int, int], float], ...]:
    """The `count` main colours of `picture` by median cut, with their share in percent."""
    quantised = picture.quantize(colors=count, method=Image.Quantize.MEDIANCUT)
    palette = quantised.getpalette() or []
    pixels = picture.width * picture.height
    found = sorted(
        ((number, int(index)) for number, index in quantised.getcolors(count) or []),  # type: ignore[arg-type]
        key=lambda pair: (-pair[0], pair[1]),
    )
    return tuple(
        (
            (palette[index * 3], palette[index * 3 + 1], palette[index * 3 + 2]),
            round(100 * number / pixels, 2),
        )
        for number, index in found
    )


def _border(picture: Image.Image) -> Image.Image:
    """The outer strips of `picture` (an eighth on each side) as one image."""
    width, height = picture.size
    band = max(1, height // 8)
    strip = Image.new("RGB", (width, band * 2))
    strip.paste(picture.crop((0, 0, width, band)), (0, 0))
    strip.paste(picture.crop((0, height - band, width, height)), (0, band))
    return strip


def closest_named(colour: tuple[int, int, int]) -> tuple[str, str, tuple[int, int, int], float]:
    """(name, parent, its RGB, distance) of the palette colour nearest to `colour`."""
    name, parent, rgb = min(
        NAMED_COLOURS,
        key=lambda item: sum((a - b) ** 2 for a, b in zip(item[2], colour, strict=True)),
    )
    distance = sum((a - b) ** 2 for a, b in zip(rgb, colour, strict=True)) ** 0.5
    return name, parent, rgb, round(distance, 2)


def _skin_mask(picture: Image.Image) -> list[bool]:
    raw = picture.convert("YCbCr").tobytes()
    return [
        raw[at] > 50 and 77 <= raw[at + 1] <= 135 and 133 <= raw[at + 2] <= 180
        for at in range(0, len(raw), 3)
    ]


def _faces(picture: Image.Image, scale: tuple[float, float]) -> list[Face]:
    """Skin blobs shaped like an upright ellipse with dark pixels where the eyes are."""
    width, height = picture.size
    skin = _skin_mask(picture)
    luma = picture.convert("L").tobytes()
    seen = [False] * len(skin)
    faces: list[Face] = []
    for start, is_skin in enumerate(skin):
        if not is_skin or seen[start]:
            continue
        seen[start] = True
        queue = deque([start])
        xs: list[int] = []
        ys: list[int] = []
        while queue:
            at = queue.popleft()
            x, y = at % width, at // width
            xs.append(x)
            ys.append(y)
            for nx, ny in ((x - 1, y), (x + 1, y), (x, y - 1), (x, y + 1)):
                if 0 <= nx < width and 0 <= ny < height:
                    near = ny * width + nx
                    if skin[near] and not seen[near]:
                        seen[near] = True
                        queue.append(near)
        face = _face_of(xs, ys, luma, picture, scale)
        if face is not None:
            faces.append(face)
    return sorted(faces, key=lambda face: (face.box[0], face.box[1]))


def _face_of(
    xs: list[int], ys: list[int], luma: bytes, picture: Image.Image, scale: tuple[float, float]
) -> Face | None:
    left, right, top, bottom = min(xs), max(xs), min(ys), max(ys)
    w, h = right - left + 1, bottom - top + 1
    if len(xs) < 40 or not 1.0 <= h / w <= 1.9:
        return None
    fill = len(xs) / (w * h)
    if not 0.55 <= fill <= 0.85:
        return None
    width = picture.width
    eye_row_top, eye_row_bottom = top + round(h * 0.25), top + round(h * 0.55)
    dark = sum(
        luma[y * width + x] < 80
        for y in range(eye_row_top, eye_row_bottom)
        for x in range(left + w // 6, right - w // 6 + 1)
    )
    if dark < 2:
        return None
    above = picture.crop(
        (left + w // 4, max(0, top - max(2, h // 6)), right - w // 4 + 1, max(1, top))
    )
    red, green, blue = (value / 255 for value in ImageStat.Stat(above).mean[:3])
    hue = colorsys.rgb_to_hsv(red, green, blue)[0] * 360
    confidence = round(min(99.9, 60 + 40 * (1 - abs(fill - 0.72) * 4)), 2)
    box = (
        round(left * scale[0]),
        round(top * scale[1]),
        round((right + 1) * scale[0]),
        round((bottom + 1) * scale[1]),
    )
    return Face(box=box, confidence=confidence, hue=round(hue, 1))


def _interest(
    edges: Image.Image,
    faces: list[Face],
    scale: tuple[float, float],
    width: int,
    height: int,
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    values = edges.tobytes()
    columns = [0.0] * width
    rows = [0.0] * height
    for index, value in enumerate(values):
        columns[index % width] += value
        rows[index // width] += value
    total = sum(values) or 1.0
    for face in faces:
        x1, y1 = int(face.box[0] / scale[0]), int(face.box[1] / scale[1])
        x2, y2 = int(face.box[2] / scale[0]), int(face.box[3] / scale[1])
        for x in range(max(0, x1), min(width, x2)):
            columns[x] += total / max(1, x2 - x1)
        for y in range(max(0, y1), min(height, y2)):
            rows[y] += total / max(1, y2 - y1)
    return tuple(columns), tuple(rows)


def cropping(reading: Reading, target_width: int, target_height: int) -> tuple[int, int, int, int]:
    """(x1, y1, x2, y2) of the largest window of the target's aspect holding the most interest,
    in pixels of the image received (x2, y2 inclusive, as Imagga answers)."""
    width, height = reading.width, reading.height
    aspect = target_width / target_height
    if width / height > aspect:
        window = round(height * aspect)
        offset = _best_offset(reading.columns, window / width)
        x1 = min(width - window, round(offset * width))
        return x1, 0, x1 + window - 1, height - 1
    window = round(width / aspect)
    offset = _best_offset(reading.rows, window / height)
    y1 = min(height - window, round(offset * height))
    return 0, y1, width - 1, y1 + window - 1


def _best_offset(profile: tuple[float, ...], fraction: float) -> float:
    """Where (0..1 of the length) a window of `fraction` of `profile` holds the most of it."""
    length = len(profile)
    span = max(1, min(length, round(fraction * length)))
    best, best_start = -1.0, 0
    running = sum(profile[:span])
    for start in range(length - span + 1):
        if start:
            running += profile[start + span - 1] - profile[start - 1]
        if running > best:
            best, best_start = running, start
    return best_start / length
