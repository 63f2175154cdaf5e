"""Keywords written into photo files where Lightroom, Capture One, digiKam and galleries read
them, with nothing else in the file touched and no image re-encoded.

JPEG and DNG: XMP `dc:subject` (an rdf:Bag), `lr:hierarchicalSubject` (a Bag) when there is a
hierarchy, and IPTC Keywords in UTF-8 (at most 64 bytes each, as IPTC allows), so XMP and IPTC
agree as the Metadata Working Group asks. `.xmp` sidecars: `dc:subject` (and the hierarchy)
inside the same packet, every other property (Imagen's `crs:` develop settings) as it was.
`digiKam:TagsList` is updated only where a file already has one (digiKam then reads nothing
else). Keywords already there are kept; ours are added without duplicates.

The writing is done by the exiftool program (through pyexiftool, one long-lived process behind
a lock, called from a thread): it is the only tool tried here that writes every list as a Bag,
declares UTF-8 in IPTC and keeps `crs:`/`xmpMM:` values exactly (see docs/architecture.md).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
import threading
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from exiftool import ExifToolHelper
from exiftool.exceptions import ExifToolException

from orchestrator.errors import Refused

T = TypeVar("T")

INSTALL_HINT = (
    "writing keywords into photos needs the exiftool program: install it with "
    "`apt-get install libimage-exiftool-perl` (Debian, Ubuntu), `brew install exiftool` "
    "(macOS) or from exiftool.org, then run again"
)
IPTC_KEYWORD_BYTES = 64
EMBEDDED = frozenset({".jpg", ".jpeg", ".dng"})
"""Files that carry keywords inside (XMP and IPTC)."""
SIDECARS = frozenset({".xmp"})
"""Files that are themselves an XMP packet."""
WRITABLE = EMBEDDED | SIDECARS


class ExiftoolMissing(Refused):
    """The exiftool program is not installed; the message says how to install it."""


class KeywordWriteFailed(Refused):
    """A file's keywords could not be written (or read); the message names the file and why."""


def iptc_keyword(word: str) -> str:
    """The word cut to IPTC's 64 bytes of UTF-8, never inside a character."""
    data = word.encode("utf-8")[:IPTC_KEYWORD_BYTES]
    return data.decode("utf-8", errors="ignore")


def clean_word(word: str) -> str:
    """A keyword without control characters (exiftool takes its arguments one per line)."""
    return " ".join("".join(c if c.isprintable() else " " for c in word).split())


def writable(path: Path) -> bool:
    """Whether keywords can be written into a file of this kind."""
    return path.suffix.lower() in WRITABLE


class KeywordFiles:
    """Reads and writes the keywords of photo files through one exiftool process."""

    def __init__(self, executable: str = "exiftool") -> None:
        self.executable = executable
        self._lock = threading.Lock()
        self._tool: ExifToolHelper | None = None
        # pyexiftool asks Linux to kill exiftool when the thread that started it ends, so it
        # lives on a thread of its own that lasts as long as this writer.
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="exiftool")

    def check(self) -> None:
        """ExiftoolMissing unless the exiftool program can be run."""
        if shutil.which(self.executable) is None:
            if self.executable == "exiftool":
                raise ExiftoolMissing(INSTALL_HINT)
            raise ExiftoolMissing(
                f"the exiftool program set in ORCH_EXIFTOOL, {self.executable!r}, cannot be "
                "run: correct the setting (or unset it to use the exiftool on PATH)"
            )

    async def read(self, path: Path) -> list[str]:
        """The flat keywords a file holds (XMP dc:subject, then IPTC Keywords not among them)."""
        tags = await self._in_thread(self._read, path)
        found: list[str] = []
        for key in ("XMP-dc:Subject", "IPTC:Keywords"):
            for word in _as_list(tags.get(key)):
                if word not in found:
                    found.append(word)
        return found

    async def ratings(self, paths: Sequence[Path]) -> dict[Path, int | None]:
        """Each file's rating (xmp:Rating, else the EXIF Rating a camera or Windows wrote;
        -1 is a reject), None where it has none: RAWs, JPEGs and sidecars alike, read
        `RATINGS_AT_ONCE` files per call to exiftool."""
        found: dict[Path, int | None] = {}
        for start in range(0, len(paths), RATINGS_AT_ONCE):
            found.update(
                await self._in_thread(self._ratings, paths[start : start + RATINGS_AT_ONCE])
            )
        return found

    async def write(
        self,
        path: Path,
        *,
        add: Sequence[str],
        remove: Sequence[str] = (),
        hierarchy: Sequence[str] = (),
        remove_hierarchy: Sequence[str] = (),
    ) -> None:
        """Add `add` (and the `A|B` paths of `hierarchy`) to the file's keywords, after taking
        out `remove` (and `remove_hierarchy`); every other keyword and property stays."""
        if not writable(path):
            raise KeywordWriteFailed(f"{path.name}: keywords cannot be written into this kind")
        await self._in_thread(
            self._write, path, list(add), list(remove), list(hierarchy), list(remove_hierarchy)
        )

    async def write_regions(self, path: Path, faces: Sequence[FaceArea]) -> None:
        """Make the file's MWG face regions (XMP `mwg-rs:RegionInfo`) ours plus those we did
        not write: the regions of an earlier write of ours are replaced, anyone else's kept.
        `faces` are in the upright picture; they are turned back to the pixels as stored (the
        file's EXIF orientation) and applied to the file's own dimensions."""
        if path.suffix.lower() not in EMBEDDED:
            raise KeywordWriteFailed(f"{path.name}: face regions go into JPEG and DNG files only")
        await self._in_thread(self._write_regions, path, list(faces))

    async def read_regions(self, path: Path) -> dict[str, Any]:
        """The file's `RegionInfo` as exiftool reads it (a structure), or {} if none."""
        found = await self._in_thread(self._region_info, path)
        info = found.get("XMP-mwg-rs:RegionInfo")
        return info if isinstance(info, dict) else {}

    async def carry(self, sources: Sequence[Path], target: Path) -> None:
        """Copy what the photographer made (`PHOTOGRAPHERS_TAGS`, and the IPTC record into a
        JPEG or DNG) from each of `sources` into `target`, a later source winning over an
        earlier one, and whatever the target held of the same tags; nothing else changes."""
        await self._in_thread(self._carry, list(sources), target)

    def close(self) -> None:
        """Stop the exiftool process, if one was started, and its thread."""
        with self._lock:
            if self._tool is not None and _alive(self._tool):
                self._tool.terminate()
            self._tool = None
        self._thread.shutdown(wait=False)

    async def _in_thread(self, work: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._thread, work, *args)

    def _started(self) -> ExifToolHelper:
        if self._tool is None or not _alive(self._tool):
            self.check()
            tool = ExifToolHelper(
                executable=self.executable,
                encoding="utf-8",
                common_args=["-G1", "-charset", "filename=UTF8"],
            )
            tool.run()
            self._tool = tool
        return self._tool

    def _read(self, path: Path) -> dict[str, Any]:
        _check_name(path)
        with self._lock:
            try:
                found = self._started().get_tags(
                    [str(path)],
                    ["XMP-dc:Subject", "IPTC:Keywords", "XMP-digiKam:TagsList"],
                    params=["-charset", "iptc=UTF8"],
                )
            except ExifToolException as exc:
                raise KeywordWriteFailed(f"{path.name}: cannot read its keywords: {exc}") from None
        return dict(found[0]) if found else {}

    def _ratings(self, paths: Sequence[Path]) -> dict[Path, int | None]:
        for path in paths:
            _check_name(path)
        with self._lock:
            try:
                answers = self._started().get_tags(
                    [str(path) for path in paths], ["XMP-xmp:Rating", "EXIF:Rating"]
                )
            except ExifToolException as exc:
                raise KeywordWriteFailed(f"cannot read the photos' ratings: {_why(exc)}") from None
        by_name = {str(answer.get("SourceFile")): answer for answer in answers}
        return {path: _rating(by_name.get(str(path), {})) for path in paths}

    def _write(
        self,
        path: Path,
        add: list[str],
        remove: list[str],
        hierarchy: list[str],
        remove_hierarchy: list[str],
    ) -> None:
        _check_name(path)
        add = [w for w in (clean_word(w) for w in add) if w]
        remove = [w for w in (clean_word(w) for w in remove) if w and w not in add]
        hierarchy = [clean_word(h) for h in hierarchy if clean_word(h)]
        remove_hierarchy = [clean_word(h) for h in remove_hierarchy if clean_word(h)]
        embedded = path.suffix.lower() in EMBEDDED
        digikam = "XMP-digiKam:TagsList" in self._read(path)
        args = ["-overwrite_original", "-charset", "iptc=UTF8"]
        if embedded:
            args.append("-IPTC:CodedCharacterSet=UTF8")
        lists = [("XMP-dc:Subject", add, remove), ("XMP-lr:HierarchicalSubject", [], [])]
        if digikam:
            lists.append(("XMP-digiKam:TagsList", add, remove))
        if embedded:
            lists.append(
                (
                    "IPTC:Keywords",
                    [iptc_keyword(w) for w in add],
                    [iptc_keyword(w) for w in remove],
                )
            )
        for tag, wanted, unwanted in lists:
            if tag == "XMP-lr:HierarchicalSubject":
                wanted, unwanted = hierarchy, remove_hierarchy
            args += [f"-{tag}-={word}" for word in unwanted]
            # Taking a word out before adding it is how exiftool adds without a duplicate.
            for word in wanted:
                args += [f"-{tag}-={word}", f"-{tag}+={word}"]
        # A kill during an earlier write leaves exiftool's temporary file, which blocks the next.
        leftover = path.with_name(path.name + "_exiftool_tmp")
        leftover.unlink(missing_ok=True)
        with self._lock:
            try:
                self._started().execute(*args, str(path))
            except ExifToolException as exc:
                raise KeywordWriteFailed(
                    f"{path.name}: exiftool could not write its keywords: {_why(exc)}"
                ) from None

    def _region_info(self, path: Path) -> dict[str, Any]:
        _check_name(path)
        with self._lock:
            try:
                found = self._started().get_tags(
                    [str(path)],
                    [
                        "XMP-mwg-rs:RegionInfo",
                        "IFD0:Orientation",
                        "File:ImageWidth",
                        "File:ImageHeight",
                    ],
                    params=["-struct", "-n"],
                )
            except ExifToolException as exc:
                raise KeywordWriteFailed(f"{path.name}: cannot read its regions: {exc}") from None
        return dict(found[0]) if found else {}

    def _write_regions(self, path: Path, faces: list[FaceArea]) -> None:
        found = self._region_info(path)
        width, height = found.get("File:ImageWidth"), found.get("File:ImageHeight")
        if not isinstance(width, int) or not isinstance(height, int):
            raise KeywordWriteFailed(f"{path.name}: its pixel size cannot be read")
        orientation = found.get("IFD0:Orientation")
        turn = orientation if isinstance(orientation, int) else 1
        info = found.get("XMP-mwg-rs:RegionInfo")
        listed = info.get("RegionList") if isinstance(info, dict) else None
        theirs = [
            region
            for region in (listed if isinstance(listed, list) else [])
            if isinstance(region, dict) and region.get("Description") != REGION_MARK
        ]
        regions = theirs + [face.region(turn) for face in faces]
        leftover = path.with_name(path.name + "_exiftool_tmp")
        leftover.unlink(missing_ok=True)
        if not regions:
            if info is not None:
                self._execute_regions(path, "-XMP-mwg-rs:RegionInfo=")
            return
        value = {
            "AppliedToDimensions": {"W": width, "H": height, "Unit": "pixel"},
            "RegionList": regions,
        }
        with tempfile.TemporaryDirectory(prefix="orchestrator-regions-") as folder:
            data = Path(folder) / "regions.json"
            data.write_text(
                json.dumps([{"SourceFile": str(path), "XMP-mwg-rs:RegionInfo": value}]),
                encoding="utf-8",
            )
            self._execute_regions(path, f"-json={data}", "-n")

    def _execute_regions(self, path: Path, *args: str) -> None:
        with self._lock:
            try:
                self._started().execute("-overwrite_original", *args, str(path))
            except ExifToolException as exc:
                raise KeywordWriteFailed(
                    f"{path.name}: exiftool could not write its face regions: {_why(exc)}"
                ) from None

    def _carry(self, sources: list[Path], target: Path) -> None:
        for path in (*sources, target):
            _check_name(path)
        target.with_name(target.name + "_exiftool_tmp").unlink(missing_ok=True)
        with self._lock:
            try:
                self._started().execute(*_carry_args(sources, target))
            except ExifToolException as exc:
                raise KeywordWriteFailed(
                    f"{target.name}: exiftool could not carry the photographer's ratings and "
                    f"captions into it: {_why(exc)}"
                ) from None


REGION_MARK = "Imagga face detection"
"""The `Description` of the regions this product writes: the others are never touched."""


@dataclass(frozen=True)
class FaceArea:
    """A face region in the upright picture: its centre, width and height (0..1), the person's
    name if one was given."""

    x: float
    y: float
    w: float
    h: float
    name: str | None = None

    def region(self, orientation: int) -> dict[str, Any]:
        """The MWG region, in the pixels as stored under this EXIF orientation."""
        x, y, w, h = _stored_area(self.x, self.y, self.w, self.h, orientation)
        area = {"X": round(x, 6), "Y": round(y, 6), "W": round(w, 6), "H": round(h, 6)}
        region: dict[str, Any] = {
            "Area": {**area, "Unit": "normalized"},
            "Type": "Face",
            "Description": REGION_MARK,
        }
        if self.name:
            region["Name"] = clean_word(self.name)
        return region


def _stored_area(
    x: float, y: float, w: float, h: float, orientation: int
) -> tuple[float, float, float, float]:
    """An upright area (centre and size, 0..1) as it lies in the stored pixels: the inverse of
    the EXIF orientation's turn (2-8; anything else is upright already)."""
    inverse = {
        2: (1 - x, y, w, h),
        3: (1 - x, 1 - y, w, h),
        4: (x, 1 - y, w, h),
        5: (y, x, h, w),
        6: (y, 1 - x, h, w),
        7: (1 - y, 1 - x, h, w),
        8: (1 - y, x, h, w),
    }
    return inverse.get(orientation, (x, y, w, h))


PHOTOGRAPHERS_TAGS = (
    "-XMP-xmp:Rating",
    "-XMP-xmp:Label",
    "-XMP-xmpDM:Good",
    "-XMP-photomech:all",
    "-XMP-dc:all",
    "-XMP-lr:HierarchicalSubject",
    "-XMP-photoshop:all",
    "-XMP-iptcCore:all",
    "-XMP-iptcExt:all",
    "-XMP-xmpRights:all",
)
"""What a photographer makes of a photo, in XMP: rating (-1 is a reject), colour label, pick
(Photo Mechanic's tag, Bridge's Good), title, caption, creator, rights, their own keywords and
hierarchy, IPTC contact, location and copyright. Never Camera Raw's `crs:` settings (Imagen's
edit), the document's ids or the camera's own data (orientation, exposure)."""


def _carry_args(sources: Sequence[Path], target: Path) -> list[str]:
    args = ["-overwrite_original", "-charset", "iptc=UTF8"]
    for source in sources:
        args += ["-tagsFromFile", str(source), *PHOTOGRAPHERS_TAGS]
        if target.suffix.lower() in EMBEDDED:
            args.append("-IPTC:all")
    return [*args, str(target)]


RATINGS_AT_ONCE = 500
"""Files whose ratings one exiftool call reads."""


def _rating(tags: dict[str, Any]) -> int | None:
    """The rating among a file's tags: XMP's first, then EXIF's; None when neither is a number."""
    for key in ("XMP-xmp:Rating", "IFD0:Rating", "ExifIFD:Rating"):
        try:
            return round(float(tags[key]))
        except (KeyError, TypeError, ValueError):
            continue
    return None


def _alive(tool: ExifToolHelper) -> bool:
    """Whether the exiftool process still runs (pyexiftool warns when it died; we restart it)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return bool(tool.running)


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    items = value if isinstance(value, list) else [value]
    return [str(item) for item in items if str(item)]


def _check_name(path: Path) -> None:
    if any(not c.isprintable() for c in str(path)):
        raise KeywordWriteFailed(
            f"{str(path)!r}: a path with control characters cannot be given to exiftool"
        )


def _why(exc: ExifToolException) -> str:
    stderr = getattr(exc, "stderr", None)
    text = str(stderr or exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__
