"""Sample shoots for the demo and the tests: plausible RAW files and real little JPEGs."""

from __future__ import annotations

import random
import struct
from pathlib import Path

from orchestrator.sandbox import jpeg as jpeg_format

# A Canon CR2 opens as little-endian TIFF ("II", 42, first IFD at 16) followed by "CR", v2.0.
CR2_HEADER = b"II*\x00" + struct.pack("<I", 16) + b"CR\x02\x00" + struct.pack("<I", 0)
WRITE_CHUNK = 1024 * 1024


def _write_raw(path: Path, size: int, rng: random.Random) -> None:
    with path.open("wb") as out:
        out.write(CR2_HEADER)
        remaining = size - len(CR2_HEADER)
        while remaining > 0:
            chunk = min(WRITE_CHUNK, remaining)
            out.write(rng.randbytes(chunk))
            remaining -= chunk


def make_sample_shoot(
    folder: Path, *, raw: int = 6, jpeg: int = 4, raw_size: int = 256 * 1024, seed: int = 0
) -> list[Path]:
    """Write `raw` CR2 files then `jpeg` JPEGs (IMG_0001… numbered on) into `folder`.

    RAW files are a CR2 header plus deterministic pseudo-random bytes up to `raw_size`; JPEGs
    are small valid images whose comment segment makes each one distinct. Same arguments,
    same bytes.
    """
    if raw < 0 or jpeg < 0:
        raise ValueError("raw and jpeg must not be negative")
    if raw_size < len(CR2_HEADER):
        raise ValueError(f"raw_size must be at least {len(CR2_HEADER)} bytes")
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for number in range(1, raw + 1):
        path = folder / f"IMG_{number:04d}.CR2"
        _write_raw(path, raw_size, random.Random(f"{seed}:{path.name}"))
        paths.append(path)
    for number in range(raw + 1, raw + jpeg + 1):
        path = folder / f"IMG_{number:04d}.jpg"
        noise = random.Random(f"{seed}:{path.name}").randbytes(16).hex()
        path.write_bytes(jpeg_format.with_comment(f"sample {path.name} {noise}".encode()))
        paths.append(path)
    return paths
