"""Bandwidth caps as people write them ("20M", "1.5MiB/s"), read into bytes per second: a rule
the settings check when they are loaded and the transfers obey."""

from __future__ import annotations

import re

_RATE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(?:([kmg])(i?))?b?(?:/s)?\s*", re.IGNORECASE)
_DECIMAL = {"k": 10**3, "m": 10**6, "g": 10**9}
_BINARY = {"k": 2**10, "m": 2**20, "g": 2**30}


def parse_rate(text: str) -> float:
    """Bytes per second from a rate such as "20M" (20 MB/s), "500k", "1.5MiB/s" or "1000000".

    K, M and G are decimal (powers of 1000), KiB, MiB and GiB binary; "B" and "/s" are optional.
    """
    match = _RATE.fullmatch(text)
    if match is None:
        raise ValueError(
            f"invalid rate {text!r}: give bytes per second with an optional K, M or G suffix "
            "(decimal) or KiB, MiB, GiB (binary), for example 20M for 20 MB/s"
        )
    number, prefix, binary = match.groups()
    value = float(number)
    if prefix:
        value *= (_BINARY if binary else _DECIMAL)[prefix.lower()]
    if value <= 0:
        raise ValueError(f"invalid rate {text!r}: it must be more than zero")
    return value
