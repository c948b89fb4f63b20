"""Names from results files and the command line, written into other formats as plain text.

Model names, run ids and benchmark names reach tables from results.json files anyone can write, so a
cell may hold hostile text: a formula for a spreadsheet, a | or a tag for Markdown, an escape sequence for
a terminal. Each writer passes its names through the function for its format. (HTML: html.escape.)
"""

from __future__ import annotations

import re
import unicodedata

TERMINAL_WIDTH = 100  # what tables printed to a terminal fit in

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_MARKDOWN_ACTIVE = re.compile(r"([\\|<>\[\]`])")


def control_to_space(text: str) -> str:
    """Control characters (newlines, tabs, escapes) as spaces: for formats where they break the layout."""
    return "".join(" " if unicodedata.category(ch) == "Cc" else ch for ch in text)


def csv_cell(text: str) -> str:
    """A text cell a spreadsheet will not run as a formula (OWASP CSV injection: prefix a single quote),
    its control characters as spaces (a lone CR is not quoted by a writer whose line ends in LF, so it
    would start a new row, and a formula with it)."""
    return control_to_space("'" + text if text.startswith(_FORMULA_START) else text)


def markdown_cell(text: str) -> str:
    """A Markdown table cell shown as written: a newline would end the row, an unescaped | split the cell
    (GFM: \\|), < start raw HTML, [ ] a link, ` a code span; each is backslash-escaped (CommonMark)."""
    return _MARKDOWN_ACTIVE.sub(r"\\\1", control_to_space(text))


def terminal_text(text: str) -> str:
    """Text for a terminal: control characters (escape sequences, carriage returns) shown, not obeyed."""
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in text)
