"""Text made safe to show: every form of every secret replaced, server text bounded."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterable, Iterator
from urllib.parse import quote, quote_plus

REDACTED = "[redacted]"

MESSAGE_LIMIT = 300
"""Longest piece of server or library text quoted in an error message."""

_PERCENT = re.compile(r"%[0-9A-F]{2}")


class Scrubber:
    """Replaces the secrets it was given, raw or in the encodings they travel or echo in."""

    def __init__(self, secrets: Iterable[str]) -> None:
        forms = {form for secret in secrets if secret for form in _forms(secret) if form}
        # Longest first, so a secret that contains another is replaced whole.
        ordered = sorted(forms, key=len, reverse=True)
        self._pattern = re.compile("|".join(map(re.escape, ordered))) if ordered else None

    def __repr__(self) -> str:
        return "Scrubber()"

    def scrub(self, text: str) -> str:
        """The whole text with every secret replaced."""
        return self._pattern.sub(REDACTED, text) if self._pattern is not None else text

    def clip(self, text: str, limit: int = MESSAGE_LIMIT) -> str:
        """At most `limit` characters of the text, secrets replaced, "…" if it was longer.

        Secrets are matched in the full text before it is cut, so a cut never leaves the
        beginning of one visible; only as much of the text is scanned as the limit needs.
        """
        if self._pattern is None:
            return text if len(text) <= limit else text[:limit] + "…"
        pieces: list[str] = []
        size = 0
        position = 0
        for match in self._pattern.finditer(text):
            pieces.append(text[position : match.start()])
            pieces.append(REDACTED)
            size += match.start() - position + len(REDACTED)
            position = match.end()
            if size > limit:
                break
        pieces.append(text[position : position + limit + 1])
        shown = "".join(pieces)
        return shown if len(shown) <= limit else shown[:limit] + "…"


def _forms(secret: str) -> Iterator[str]:
    """The secret and the forms a server or library may echo it in."""
    raw = secret.encode()
    yield secret
    for encoded in (quote(secret, safe=""), quote_plus(secret)):
        yield encoded
        yield _PERCENT.sub(lambda escape: escape.group().lower(), encoded)
    escaped = json.dumps(secret)[1:-1]
    yield escaped
    yield escaped.replace("/", "\\/")
    for encoded_bytes in (base64.b64encode(raw), base64.urlsafe_b64encode(raw)):
        text = encoded_bytes.decode("ascii")
        yield text
        yield text.rstrip("=")
