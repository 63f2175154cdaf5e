"""JSON parsing that a hostile answer cannot turn into a RecursionError or a stalled loop."""

from __future__ import annotations

import json
import re
from itertools import accumulate
from typing import Any

MAX_JSON_DEPTH = 64
"""Deepest nesting accepted; real API answers stay under ten, Python's stack allows ~1000."""

_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_STEP = [0] * 256
_STEP[ord("[")] = _STEP[ord("{")] = 1
_STEP[ord("]")] = _STEP[ord("}")] = -1


class JsonRefused(ValueError):
    """The text is not JSON we accept; the message says why, without quoting it."""


def nesting_depth(text: str) -> int:
    """How deeply arrays and objects nest in a JSON text, brackets inside strings ignored."""
    # Both substitutions run in C, so only the brackets themselves are walked, also in C.
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text)).encode("ascii")
    return max(accumulate(map(_STEP.__getitem__, brackets)), default=0)


def loads(text: str, *, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """The value of a JSON text; JsonRefused if it is not JSON or nests deeper than max_depth."""
    if nesting_depth(text) > max_depth:
        raise JsonRefused(f"JSON nested deeper than {max_depth} levels")
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        # RecursionError only if the depth check was fooled; the message is ours either way.
        raise JsonRefused("not JSON") from None
