"""Read a yes / no (/ maybe) answer from a free-form reply.

Precedence, first rule that reads something wins:

1. empty or whitespace reply -> None, "empty reply"; a restatement of the labels as a question before
   the answer is set aside first ("Yes, no or maybe? It is yes." reads yes; "Yes/No: no" reads no);
2. the answers offered as alternatives ("yes or no", "yes/no", "yes and no") -> None, "ambiguous: ...";
3. explicit final-answer statements ("the answer is no", "Final answer: no", "Answer: yes",
   "\\boxed{no}", "答案：否") win over answers mentioned elsewhere; statements that disagree ->
   None, "contradictory: no, yes";
4. the reply opens with an answer word ("No, there is no effusion", "**Yes**", "yes.") - unless
   another clause of the reply stands alone as the opposite answer ("Yes. No.", "No, yes"), which
   is None, "contradictory: ...";
5. an answer word standing alone as a clause ("Based on the image, yes.") - all such must agree;
6. any answer word anywhere ("I would say yes") - all must agree, else ambiguous;
7. otherwise None, "no yes/no found".

Answer words only match as whole words, so "Nothing", "know", "eyes" and "yesterday" never count.
"maybe" is an answer word only when ``allow_maybe`` is true. Synonyms (:data:`SYNONYMS`) count as
answer words: the colloquial ones always ("nope", "yep"), the presence ones ("absent", "negative",
"none", "not present", "present", ...) only when ``question`` is a presence question
(:func:`is_presence_question`: "Is there ...?", "Is ... present / seen / visible?", "Any ...?").
Hedges are read ("likely yes"; a clause "Probably not." is no). Chinese "是" / "是的" / "对" (yes) and
"否" / "不是" / "不对" (no) count when they stand apart from other Chinese text, and
:func:`obv_eval.scoring.forms.answer_forms` rewrites ``\\boxed{}`` and CJK cues and punctuation first.
"""

from __future__ import annotations

import re

from obv_eval.scoring.forms import answer_forms
from obv_eval.scoring.normalize import Extraction, reply_text

__all__ = ["SYNONYMS", "extract_yes_no", "is_presence_question"]

# Quotes and brackets that may open a reply before the answer word: '"Yes"', "(No)".
_LEADING_NOISE = re.compile(r"^[\s\"'“”‘’(\[{<>:\-–—]+")
_ANSWER_CUE = r"\banswer\b(?:\s+(?:is|would\s+be|will\s+be|should\s+be))?\s*[:=\-]?\s*"
# Chinese answer words, read only when they stand apart from other CJK text: "是", "否。", "答案：是"
# (the cue is rewritten to "answer:" first), never the "是" inside a sentence.
_CJK_ANSWERS = re.compile(
    r"(?<![\u3400-\u9fff])(不是|不对|不對|是的|对的|對的|是|对|對|否|不)(?![\u3400-\u9fff])"
)
_CJK_NO = frozenset({"不是", "不对", "不對", "否", "不"})
# A hedged "not" standing alone as a clause is a no: "Probably not.", "I think not".
_HEDGED_NOT = re.compile(
    r"(?:^|(?<=[^\w\s]))(\s*)(?:probably|likely|most\s+likely|possibly|perhaps|definitely|certainly"
    r"|i\s+think|i\s+believe|i\s+guess)\s+not\s*(?=[^\w\s]|$)"
)

# Words read as "yes" / "no". "always": in every reply; "presence": only when the question asks
# whether something is there (a "None" or "Negative" answers "Is there an effusion?", but not
# "Which lobe is affected?" or "Is the lesion benign?"). Matched as whole words, longest first.
SYNONYMS: dict[str, dict[str, tuple[str, ...]]] = {
    "always": {"no": ("nope", "nah"), "yes": ("yep", "yup", "yeah")},
    "presence": {
        "no": ("not present", "not seen", "not visible", "absent", "negative", "none"),
        "yes": ("present", "positive"),
    },
}

# A presence question asks whether something is there: "Is there ...", "Are any ... seen?",
# "Is a mass present?", "Does the image show ...?", "Any evidence of ...?".
_PRESENCE_QUESTION = re.compile(
    r"\b(?:is|are|was|were)\s+there\b"
    r"|^\W*any\b"
    r"|\b(?:present|presence|absent|absence|evidence|visible|seen|noted|identified|detected|exist|exists)\b"
    r"|^\W*(?:does|do|did)\b.*\b(?:show|shows|demonstrate|demonstrates|contain|contains|have|has|reveal)\b",
    re.IGNORECASE,
)


def is_presence_question(question: str | None) -> bool:
    """Whether ``question`` asks if something is there (see ``_PRESENCE_QUESTION``)."""
    return bool(question) and _PRESENCE_QUESTION.search(reply_text(question or "")) is not None


def _synonym_patterns(presence: bool) -> list[tuple[re.Pattern[str], str]]:
    groups = [SYNONYMS["always"], *([SYNONYMS["presence"]] if presence else [])]
    pairs = [(word, answer) for group in groups for answer, words in group.items() for word in words]
    pairs.sort(key=lambda pair: -len(pair[0]))  # "not present" before "present"
    return [(re.compile(rf"\b{re.escape(word)}\b"), answer) for word, answer in pairs]


_SYNONYM_PATTERNS = {presence: _synonym_patterns(presence) for presence in (False, True)}


def _canonical(text: str, presence: bool) -> str:
    """``text`` (lower case) with every synonym replaced by the answer word it stands for."""
    text = _CJK_ANSWERS.sub(lambda m: " no " if m.group(1) in _CJK_NO else " yes ", text)
    text = _HEDGED_NOT.sub(r"\1no", text)
    for pattern, answer in _SYNONYM_PATTERNS[presence]:
        text = pattern.sub(answer, text)
    return text


def _word(words: str) -> str:
    return rf"\b(?P<w>{words})\b"


def _standalone(words: str, text: str) -> list[str]:
    # bounded by start/punctuation on the left and punctuation/end on the right
    return re.findall(rf"(?:^|[^\w\s])\s*({words})\s*(?=[^\w\s]|$)", text)


# The labels restated as a question before the answer: "Yes, no or maybe? It is yes.", "Yes/No: no".
_LABELS_RESTATED = re.compile(
    r"\b(?:yes|no|maybe)\b(?:\s*(?:,|/|\bor\b|,\s*or\b)\s*\b(?:yes|no|maybe)\b)+\s*[?:]"
)


def _without_restated_labels(text: str) -> str:
    """``text`` without a list of every label offered as a question when an answer follows it."""
    for m in _LABELS_RESTATED.finditer(text):
        if {"yes", "no"} <= set(re.findall(r"yes|no|maybe", m.group())) and re.search(r"\w", text[m.end() :]):
            return text[: m.start()] + " " + text[m.end() :]
    return text


def _read(reply: str, allow_maybe: bool, question: str | None) -> tuple[list[str], bool]:
    """Answer words read by the first rule (2-6) that reads any, and whether they contradict."""
    text = _canonical(answer_forms(reply_text(reply)).lower(), is_presence_question(question))
    text = _without_restated_labels(text)
    words = "yes|no|maybe" if allow_maybe else "yes|no"
    # rule 2: the second word must end the clause, so "yes, and no effusion" is not read as alternatives
    alternatives = re.search(
        rf"\b({words})\b\s*,?\s*(?:or|and|/|&)\s*\b({words})\b(?=\s*(?:[^\w\s]|$))", text
    )
    if alternatives:
        return sorted({alternatives.group(1), alternatives.group(2)}), False

    # rule 3: explicit final-answer statements win over answers mentioned elsewhere; two that
    # disagree ("The answer is yes. The answer is no.") contradict
    final = sorted({m.group("w") for m in re.finditer(_ANSWER_CUE + _word(words), text)})
    if final:
        return final, len(final) > 1

    opening = re.match(_word(words), _LEADING_NOISE.sub("", text))
    if opening:
        # rule 4: another clause that is only the opposite answer contradicts the opening one
        found = sorted({opening.group("w"), *_standalone(words, text)})
        return found, len(found) > 1

    return sorted(set(_standalone(words, text) or re.findall(_word(words), text))), False


def yes_no_candidates(reply: str, allow_maybe: bool = False, question: str | None = None) -> list[str]:
    """Answer words read by the first rule (2-6 of the module docstring) that reads any, sorted.

    One word is an answer, several are ambiguous (or contradictory), none means nothing was found.
    """
    return _read(reply, allow_maybe, question)[0]


def extract_yes_no(reply: str, allow_maybe: bool = False, question: str | None = None) -> Extraction:
    """Return Extraction("yes" | "no" | "maybe") or Extraction(None, reason); see module docstring.

    ``question`` (optional) turns on the presence synonyms when it is a presence question.
    """
    if not reply_text(reply):
        return Extraction(None, "empty reply")
    found, contradictory = _read(reply, allow_maybe, question)
    if len(found) == 1:
        return Extraction(found[0])
    if found:
        return Extraction(None, ("contradictory: " if contradictory else "ambiguous: ") + ", ".join(found))
    return Extraction(None, "no yes/no found")
