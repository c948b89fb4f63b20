"""Text clean-up shared by the scorers, and the :class:`Extraction` result they return.

``normalize_answer`` is the SQuAD-style normalisation used for exact match and token F1, extended for
free-form model output: Unicode NFKC, lone surrogates repaired, all Unicode punctuation and symbols
treated as separators, number words turned into digits.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

__all__ = ["Extraction", "clean_text", "normalize_answer", "normalized_tokens", "reply_text"]


@dataclass(frozen=True)
class Extraction:
    """What an extractor read from a reply.

    ``value`` is the answer read ("B", "yes", a normalised string), or None when nothing could be
    read; ``reason`` then says why ("empty reply", "no option found", "ambiguous: A, C", ...).
    """

    value: str | None
    reason: str | None = None

    @property
    def parsed(self) -> bool:
        return self.value is not None


# Markdown emphasis, code and heading marks carry no meaning for the answer: "**B**" is "B".
_FORMATTING = re.compile(r"[*_`#]+")
_ARTICLES = frozenset({"a", "an", "the"})
_UNITS = {
    "zero": 0,
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
    "eleven": 11,
    "twelve": 12,
    "thirteen": 13,
    "fourteen": 14,
    "fifteen": 15,
    "sixteen": 16,
    "seventeen": 17,
    "eighteen": 18,
    "nineteen": 19,
}
_TENS = {
    "twenty": 20,
    "thirty": 30,
    "forty": 40,
    "fifty": 50,
    "sixty": 60,
    "seventy": 70,
    "eighty": 80,
    "ninety": 90,
}
# "1,000" becomes "1000" and "don't" becomes "dont"; other punctuation separates words.
_THOUSANDS_COMMA = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
_APOSTROPHES = re.compile(r"['’ʼ]")


def clean_text(text: str | bytes) -> str:
    """Return ``text`` as well-formed NFKC Unicode, whatever was passed in.

    Bytes are decoded as UTF-8 with replacement; lone surrogates (e.g. from ``surrogateescape``
    decoding) become U+FFFD, since they cannot be encoded and would make later steps raise.
    """
    if isinstance(text, bytes | bytearray):
        text = bytes(text).decode("utf-8", errors="replace")
    elif not isinstance(text, str):  # defensive: JSON fields can hold numbers or null
        text = "" if text is None else str(text)
    # A UTF-16 round trip joins valid surrogate pairs and replaces lone halves.
    text = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return unicodedata.normalize("NFKC", text)


def reply_text(reply: str | bytes) -> str:
    """A model reply as clean text for the extractors: ``clean_text`` without markdown marks, stripped."""
    return _FORMATTING.sub("", clean_text(reply)).strip()


def _is_decimal_point(text: str, i: int) -> bool:
    return text[i] == "." and 0 < i < len(text) - 1 and text[i - 1].isdigit() and text[i + 1].isdigit()


def _strip_punctuation(text: str) -> str:
    text = _APOSTROPHES.sub("", _THOUSANDS_COMMA.sub("", text))
    # Unicode punctuation (P*), symbols (S*) and control/format characters (C*) all separate words;
    # the decimal point in "3.5" is kept so it does not turn into "3 5".
    return "".join(
        " " if unicodedata.category(ch)[0] in "PSC" and not _is_decimal_point(text, i) else ch
        for i, ch in enumerate(text)
    )


_SCALES = {"hundred": 100, "thousand": 1000, "million": 1_000_000}


def _small_number(tokens: list[str], i: int) -> tuple[int, int] | None:
    """The value of a number below 100 spelled at ``tokens[i]`` ("twenty one", "7"), and its length."""
    token = tokens[i]
    if token in _TENS:
        value = _TENS[token]
        # "twenty one" / "twenty-one" (the hyphen is already a space) is a single number.
        nxt = tokens[i + 1] if i + 1 < len(tokens) else ""
        if 1 <= _UNITS.get(nxt, 0) <= 9:
            return value + _UNITS[nxt], 2
        return value, 1
    if token in _UNITS:
        return _UNITS[token], 1
    return None


def _numbers_to_digits(tokens: list[str]) -> list[str]:
    """Spelled numbers to digits: "twenty one" -> "21", "one hundred" -> "100",
    "two thousand five hundred" -> "2500"; a lone "hundred" (from "a hundred") is 100."""
    out: list[str] = []
    i = 0
    while i < len(tokens):
        small = _small_number(tokens, i)
        if small is None and tokens[i] not in _SCALES:
            out.append(tokens[i])
            i += 1
            continue
        total, current = 0, 0
        if small is not None:
            current, used = small
            i += used
        while i < len(tokens):
            if tokens[i] in _SCALES:
                scale = _SCALES[tokens[i]]
                current = (current or 1) * scale
                if scale > 100:  # "two thousand five hundred": bank the thousands
                    total, current = total + current, 0
                i += 1
                continue
            nxt = _small_number(tokens, i)
            # only after a scale word ("hundred five"), never "two three"
            if nxt is None or i == 0 or tokens[i - 1] not in _SCALES:
                break
            current += nxt[0]
            i += nxt[1]
        out.append(str(total + current))
    return out


def normalized_tokens(text: str | bytes) -> list[str]:
    """Tokens of ``normalize_answer(text)``."""
    text = _strip_punctuation(clean_text(text).lower())
    tokens = [t for t in text.split() if t not in _ARTICLES]
    return _numbers_to_digits(tokens)


def normalize_answer(text: str | bytes) -> str:
    """Lower-case, drop punctuation and articles, number words to digits, collapse whitespace.

    Never raises: bytes are decoded as UTF-8 with replacement and lone surrogates are replaced.
    """
    return " ".join(normalized_tokens(text))
