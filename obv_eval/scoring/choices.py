"""Read which multiple-choice option a free-form reply picks.

Replaces the prefix test of the study's released scripts, where any reply starting with "A" counted
as option A and "The answer is B" or "(B)" counted as wrong.

Precedence, first rule that reads something wins:

1. empty or whitespace reply -> None, "empty reply".
2. explicit letter markers, pooled from the whole reply:
   - a letter in brackets anywhere: "(B)", "[B]";
   - a letter opening the reply, a line or a sentence, or following a cue ("answer", "option",
     "choice", "choose", "select", "pick", "go with"), when it stands alone or is followed by
     punctuation or a closing bracket: "B", "b)", "B.", "B: Normal", "Answer: B", "The answer is B";
   - a letter opening the reply or following a cue and followed by words, only if they start the
     option's own text ("A Dilated" with A = Dilated) or affirm the pick ("B is correct",
     "C because ..."), so the article in "A dilated ventricle" or "An enlarged ..." is not read as
     option A, nor "C is wrong" as C;
   - capital letters joined by "or", "and", ",", "/", "&": "A or C", "A and B are both possible".
   One distinct letter -> that option (or None, "not an option: E" when it is not in ``options``);
   several -> None, "ambiguous: A, C".
3. option text: an option whose normalised text appears as a whole phrase and is not negated
   ("not dilated"); an occurrence inside a longer matching option's text does not count.
   One option -> it; several -> None, "ambiguous: ...". When all options are yes/no(/maybe), the
   yes/no reader is used instead, so "Yes, there is no effusion" picks the "Yes" option.
4. otherwise None, "no option found".

Markdown emphasis, code and heading marks are dropped first, so "**B**" reads as "B".
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from obv_eval.scoring.normalize import Extraction, normalized_tokens, reply_text
from obv_eval.scoring.yesno import yes_no_candidates

__all__ = ["extract_choice"]

_CUE = (
    r"\b(?:answer|option|choice)\b(?:\s+(?:is|would\s+be|should\s+be|must\s+be|will\s+be))?\s*[:=\-–]?\s*"
    r"|\b(?:choose|select|pick|go\s+with)\s+"
)
# A letter at the start of the reply, a line or a sentence, or after a cue; optionally bracketed.
_LETTER_AT_OPENING = re.compile(
    r"(?:(?P<start>\A)[\s\"'“‘]*|(?<=\n)[ \t\"'“‘]*|(?<=[.!?;:])\s+|(?P<cue>" + _CUE + r"))"
    r"(?P<open>[(\[]\s*)?(?P<letter>[A-Za-z])(?!\w)",
    re.IGNORECASE,
)
_BRACKETED_LETTER = re.compile(r"(?<!\w)[(\[]\s*([A-Za-z])\s*[)\]]")
_COORDINATED_LETTERS = re.compile(r"(?<![\w'’])([A-Z])\s*(?:,|/|&|\bor\b|\band\b)\s*([A-Z])(?![\w'’])")
# After the letter: closing bracket or quote (but not "I'd"), punctuation (but not "e.g."), " - ",
# or the end of a line.
_DELIMITED = re.compile(r"\s*[)\]]|[\"'”’](?!\w)|[.:,;!?](?![a-z]\.)|\s+[-–—]\s|[ \t]*(?:\r?\n|$)")
# Words after a letter that make it a pick ("B is correct", "C because ..."); "C is wrong" is not one.
_AFFIRMING = re.compile(
    r"\s+(?:because\b|(?:is|seems|would\s+be)\s+(?:the\s+)?(?:correct|right|best|answer|most\s+likely)\b)",
    re.IGNORECASE,
)
_NEGATIONS = frozenset({"not", "no"})
_YES_NO = frozenset({"yes", "no", "maybe"})
_NOT_FOUND = Extraction(None, "no option found")


def _phrase_spans(tokens: list[str], phrase: list[str]) -> list[tuple[int, int]]:
    n = len(phrase)
    return [(i, i + n) for i in range(len(tokens) - n + 1) if tokens[i : i + n] == phrase]


class _ChoiceReader:
    def __init__(self, options: Mapping[str, str]) -> None:
        self.keys: dict[str, str] = {}  # upper-case letter -> the caller's key
        for key in options:
            letter = key.strip().upper()
            if len(letter) != 1 or not letter.isalpha():
                raise ValueError(f"option keys must be single letters, got {key!r}")
            self.keys[letter] = key
        self.texts = {letter: normalized_tokens(options[key]) for letter, key in self.keys.items()}

    def _counts(self, letter: str) -> bool:
        # Lower-case letters outside the options are too often words or numbering ("(i)") to report.
        return letter.upper() in self.keys or letter.isupper()

    def letter_markers(self, text: str) -> set[str]:
        found = {
            m.group("letter").upper() for m in _LETTER_AT_OPENING.finditer(text) if self._is_pick(m, text)
        }
        found.update(letter.upper() for letter in _BRACKETED_LETTER.findall(text) if self._counts(letter))
        for pair in _COORDINATED_LETTERS.findall(text):
            found.update(pair)
        return found

    def _is_pick(self, m: re.Match[str], text: str) -> bool:
        letter, end = m.group("letter"), m.end()
        if not self._counts(letter):
            return False
        if m.group("open") or _DELIMITED.match(text, end):
            return True
        # Mid-reply, "Explanation: A dilated ventricle would ..." is prose, not a second pick.
        at_start_or_cue = m.group("start") is not None or bool(m.group("cue"))
        return at_start_or_cue and self._words_pick(letter.upper(), text, end)

    def _words_pick(self, letter: str, text: str, pos: int) -> bool:
        """Whether the words from ``pos`` on make ``letter`` a pick: they affirm it or are its option text."""
        if letter not in self.keys:
            return False
        if _AFFIRMING.match(text, pos):
            return True
        option = self.texts[letter]
        if not option:
            return False
        # Only a few words are read, so a long reply full of cues stays linear.
        words = re.compile(rf"(?:\s*\S+){{1,{len(option) + 3}}}").match(text, pos)
        return words is not None and normalized_tokens(words.group())[: len(option)] == option

    def text_matches(self, text: str) -> set[str]:
        tokens = normalized_tokens(text)
        spans = {
            letter: [
                (start, end)
                for start, end in _phrase_spans(tokens, phrase)
                if start == 0 or tokens[start - 1] not in _NEGATIONS
            ]
            for letter, phrase in self.texts.items()
            if phrase
        }

        def inside_longer_match(letter: str, span: tuple[int, int]) -> bool:
            return any(
                other != letter
                and len(self.texts[other]) > len(self.texts[letter])
                and o_start <= span[0]
                and span[1] <= o_end
                for other, other_spans in spans.items()
                for o_start, o_end in other_spans
            )

        return {
            letter
            for letter, letter_spans in spans.items()
            if any(not inside_longer_match(letter, span) for span in letter_spans)
        }

    def yes_no_matches(self, text: str) -> set[str]:
        by_word = {" ".join(phrase): letter for letter, phrase in self.texts.items()}
        found = yes_no_candidates(text, allow_maybe="maybe" in by_word)
        return {by_word[word] for word in found if word in by_word}

    def decide(self, letters: set[str]) -> Extraction:
        if len(letters) > 1:
            return Extraction(None, "ambiguous: " + ", ".join(sorted(letters)))
        (letter,) = letters
        if letter not in self.keys:
            return Extraction(None, f"not an option: {letter}")
        return Extraction(self.keys[letter])


def extract_choice(reply: str, options: Mapping[str, str]) -> Extraction:
    """Return the option key the reply picks, or Extraction(None, reason); see module docstring.

    ``options`` maps single letters to option text, e.g. {"A": "Dilated", "B": "Normal"}; letters
    outside it are never returned. Raises ValueError when a key is not a single letter.
    """
    reader = _ChoiceReader(options)
    text = reply_text(reply)
    if not text:
        return Extraction(None, "empty reply")
    markers = reader.letter_markers(text)
    if markers:
        return reader.decide(markers)
    yes_no_options = all(" ".join(phrase) in _YES_NO for phrase in reader.texts.values())
    matches = reader.yes_no_matches(text) if yes_no_options else reader.text_matches(text)
    return reader.decide(matches) if matches else _NOT_FOUND
