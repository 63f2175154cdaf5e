"""The small copy of a photo that is sent for analysis: upright, long side bounded, JPEG.

Imagga asks for images of about 1024 px; sending the full export would cost upload time for
nothing. The copy is made in memory and never written next to the photos.
"""

from __future__ import annotations

import io
from pathlib import Path

DEFAULT_LONG_SIDE = 1024
QUALITY = 88


class NotAnImage(ValueError):
    """The file cannot be decoded as an image; the message names it."""


def downscale(path: Path, long_side: int = DEFAULT_LONG_SIDE) -> bytes:
    """A JPEG of the image at `path`, EXIF orientation applied, its long side at most
    `long_side` pixels (never enlarged), without any of the original's metadata.

    The same file gives the same bytes, also after keywords were written into it (only
    metadata changes), which is what lets results be kept by the copy's hash.
    """
    # Imported here: every command loads this module, only tagging needs Pillow.
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            # JPEG decoders can scale by 1/2..1/8 while decoding: a 24 MP photo is never
            # decoded at full size.
            image.draft("RGB", (long_side, long_side))
            upright = ImageOps.exif_transpose(image)
            upright.thumbnail((long_side, long_side), Image.Resampling.LANCZOS)
            rgb = upright.convert("RGB")
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise NotAnImage(f"{path.name} cannot be read as an image ({exc})") from None
    # Pillow would carry the original's comment, EXIF and XMP into the copy: only pixels go,
    # so writing keywords into the photo later never changes the copy's hash.
    rgb.info = {}
    out = io.BytesIO()
    rgb.save(out, format="JPEG", quality=QUALITY, optimize=True)
    return out.getvalue()
