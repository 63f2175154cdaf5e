"""How counts are written in what the program says: `1 photo`, `2 photos`."""

from __future__ import annotations


def plural(count: int, noun: str) -> str:
    """`1 photo`, `2 photos`, `0 photos`, `1,200 photos`: a count with its noun in the right
    number (nouns that take an `s`)."""
    return f"{count:,} {noun}" if count == 1 else f"{count:,} {noun}s"
