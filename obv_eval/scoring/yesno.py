"""Read a yes / no (/ maybe) answer from a free-form reply.

Precedence, first rule that reads something wins:

1. empty or whitespace reply -> None, "empty reply";
2. the answers offered as alternatives ("yes or no", "yes/no", "yes and no") -> None, "ambiguous: ...";
3. the reply opens with an answer word ("No, there is no effusion", "**Yes**", "yes.");
4. an answer word after a cue ("the answer is no", "Answer: yes");
5. an answer word standing alone as a clause ("Based on the image, yes.") - all such must agree;
6. any answer word anywhere ("I would say yes") - all must agree, else ambiguous;
7. otherwise None, "no yes/no found".

Answer words only match as whole words, so "Nothing", "None", "know", "eyes" and "yesterday" never
count. "maybe" is an answer word only when ``allow_maybe`` is true.
"""

from __future__ import annotations

import re

from obv_eval.scoring.normalize import Extraction, reply_text

__all__ = ["extract_yes_no"]

# Quotes and brackets that may open a reply before the answer word: '"Yes"', "(No)".
_LEADING_NOISE = re.compile(r"^[\s\"'“”‘’(\[{<>:\-–—]+")
_ANSWER_CUE = r"\banswer\b(?:\s+(?:is|would\s+be|will\s+be|should\s+be))?\s*[:=\-]?\s*"


def _word(words: str) -> str:
    return rf"\b(?P<w>{words})\b"


def yes_no_candidates(reply: str, allow_maybe: bool = False) -> list[str]:
    """Answer words read by the first rule (2-6 of the module docstring) that reads any, sorted.

    One word is an answer, several are ambiguous, none means nothing was found.
    """
    text = reply_text(reply).lower()
    words = "yes|no|maybe" if allow_maybe else "yes|no"
    # rule 2: the second word must end the clause, so "yes, and no effusion" is not read as alternatives
    alternatives = re.search(
        rf"\b({words})\b\s*,?\s*(?:or|and|/|&)\s*\b({words})\b(?=\s*(?:[^\w\s]|$))", text
    )
    if alternatives:
        return sorted({alternatives.group(1), alternatives.group(2)})

    opening = re.match(_word(words), _LEADING_NOISE.sub("", text))
    if opening:
        return [opening.group("w")]

    cue = re.search(_ANSWER_CUE + _word(words), text)
    if cue:
        return [cue.group("w")]

    # rule 5: bounded by start/punctuation on the left and punctuation/end on the right
    standalone = re.findall(rf"(?:^|[^\w\s])\s*({words})\s*(?=[^\w\s]|$)", text)
    return sorted(set(standalone or re.findall(_word(words), text)))


def extract_yes_no(reply: str, allow_maybe: bool = False) -> Extraction:
    """Return Extraction("yes" | "no" | "maybe") or Extraction(None, reason); see module docstring."""
    if not reply_text(reply):
        return Extraction(None, "empty reply")
    found = yes_no_candidates(reply, allow_maybe)
    if len(found) == 1:
        return Extraction(found[0])
    if found:
        return Extraction(None, "ambiguous: " + ", ".join(found))
    return Extraction(None, "no yes/no found")
