"""How text from outside (Imagen, file names, error bodies) is shown: inert, visible, unwrapped.

Such text may hold Rich markup (`[/]`, `[redacted]`) and terminal control codes (`ESC[2J`,
`ESC]0;title`, newlines that forge lines). Every place that prints it goes through `visible`
(control characters spelled out) and, where the line is Rich markup, `markup_safe`.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
# Bidirectional overrides and isolates reorder what follows them on screen ("Trojan source").
_BIDI = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f")


def _spelled(char: str) -> str:
    named = _NAMED.get(char)
    if named is not None:
        return named
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def _hidden(char: str) -> bool:
    """Whether a terminal would act on `char` (or not show it) rather than print it."""
    return unicodedata.category(char) in ("Cc", "Zl", "Zp") or char in _BIDI


def visible(value: object) -> str:
    """`value` as text whose control characters are spelled out (ESC -> `\\x1b`, LF -> `\\n`)."""
    text = str(value)
    if text.isprintable():
        return text
    return "".join(_spelled(c) if _hidden(c) else c for c in text)


def markup_safe(value: object) -> str:
    """`value` for insertion into a Rich markup string: visible, and never read as markup."""
    return escape(visible(value))


def make_console(*, stderr: bool = False) -> Console:
    """A console that never wraps lines itself: a terminal wraps them, a log keeps them whole."""
    return Console(stderr=stderr, highlight=False, soft_wrap=True)


def print_table(console: Console, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """A table on a terminal; elsewhere one tab-separated line per row, after a header line.

    Cells are outside text: shown visibly (a tab inside one becomes `\\t`, so the columns stay
    intact) and never as markup.
    """
    cells = [[visible(cell) for cell in row] for row in rows]
    if not console.is_terminal:
        # Straight to the stream: Rich would expand the tabs into spaces.
        console.file.write("".join("\t".join(line) + "\n" for line in [list(headers), *cells]))
        console.file.flush()
        return
    table = Table(*headers)
    for row in cells:
        table.add_row(*(escape(cell) for cell in row))
    console.print(table)
