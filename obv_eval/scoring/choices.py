"""Read which multiple-choice option a free-form reply picks.

Replaces the prefix test of the study's released scripts, where any reply starting with "A" counted
as option A and "The answer is B" or "(B)" counted as wrong.

Precedence, first rule that reads something wins:

1. empty or whitespace reply -> None, "empty reply".
2. explicit final-answer statements win over letters mentioned elsewhere: a letter after "answer"
   ("The answer is C", "Final answer: C", "I think the answer is C"), "the correct / best / final
   option (choice)", "I('d) choose / pick / go with", or ``\\boxed{C}``. "A is tempting, but the
   answer is C" and "The answer is C. A and B are chambers" read C. One letter -> that option;
   "The answer is A or C" -> None, "ambiguous: A, C"; two statements naming different letters
   ("The answer is A. The answer is B.") -> None, "contradictory: A, B".
3. explicit letter markers, pooled from the whole reply, except negated ones ("not (A)",
   "rather than A", "except A", "neither A nor B"):
   - a letter in brackets anywhere: "(B)", "[B]";
   - a letter opening the reply, a line or a sentence, or following a cue ("answer", "option",
     "choice", "choose", "select", "pick", "go with", a hedge "probably", "likely", "I think
     (it's)", "I'd say", a contrast "but", or "it is": "Probably B", "Not A but B", "Not B; it is C"),
     when it stands alone
     or is followed by punctuation or a closing bracket: "B", "b)", "B.", "B: Normal", "Option B";
   - a letter opening the reply or following a cue and followed by words, only if they start the
     option's own text ("A Dilated" with A = Dilated) or affirm the pick ("B is correct",
     "C because ..."), so the article in "A dilated ventricle" or "An enlarged ..." is not read as
     option A, nor "C is wrong" as C;
   - capital letters joined by "or", "and", ",", "/", "&": "A or C", "A and B are both possible";
   - a bracketed letter after a negation and its own option's text is ruled out: "Aortic valve (C)
     rather than mitral valve (D)" reads C;
   - a verdict per option ("A: wrong. B: right. C: wrong.", "(A) is incorrect", "B - correct") rules
     out the options judged wrong and picks those judged right, whatever else names them.
   One distinct letter -> that option (or None, "not an option: E" when it is not in ``options``);
   several -> None, "ambiguous: A, C".
4. option text: an option whose normalised text appears as a whole phrase and is not negated
   ("not dilated"); an occurrence inside a longer matching option's text does not count.
   One option -> it; several -> None, "ambiguous: ...". When all options are yes/no(/maybe), the
   yes/no reader is used instead, so "Yes, there is no effusion" picks the "Yes" option.
5. otherwise None, "only negated options: A" when the reply only rules options out ("It is not
   A", "A: wrong."), else "no option found".

Markdown emphasis, code and heading marks are dropped first, so "**B**" reads as "B"; then
:func:`obv_eval.scoring.forms.answer_forms` rewrites ``\\boxed{}`` and CJK forms ("答案：B", "B。",
"我选B"; NFKC already makes "（B）" "(B)").
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from obv_eval.scoring.forms import answer_forms
from obv_eval.scoring.normalize import Extraction, normalized_tokens, reply_text
from obv_eval.scoring.yesno import yes_no_candidates

__all__ = ["extract_choice"]

_VERB = r"(?:\s+(?:is|would\s+be|should\s+be|must\s+be|will\s+be))?\s*[:=\-–]?\s*"
_CUE = (
    r"\b(?:answer|option|choice)\b" + _VERB + r"|\b(?:choose|select|pick|go\s+with)\s+"
    # hedges and contrasts: "Probably B", "I think it's B", "Not A but B"
    r"|\b(?:probably|likely|possibly|perhaps|presumably)\s+(?:(?:option|choice)\s+)?"
    r"|\bi\s+(?:think|believe|guess|suspect)\s+(?:(?:it\s+is|it's|it’s)\s+)?(?:(?:probably|likely)\s+)?"
    r"|\bi(?:'d|’d|\s+would)\s+say\s+(?:(?:it's|it’s|it\s+is)\s+)?|\bbut\s+(?:rather\s+)?"
    # a pick stated after ruling others out: "Not B; it is C", "it's C"
    r"|\bit(?:\s+is|'s|’s)\s+(?:(?:option|choice)\s+)?"
)
# An explicit final-answer statement: "The answer is C", "Final answer: C", "The correct option is C",
# "I'd go with C" (and "\boxed{C}", rewritten to "final answer: C." by ``answer_forms``).
_FINAL_CUE = (
    r"\banswer\b"
    + _VERB
    + r"|\b(?:final|correct|right|best)\s+(?:option|choice)\b"
    + _VERB
    + r"|\bi(?:\s+would|\s+will|'d|'ll|’d|’ll)?\s+(?:choose|select|pick|go\s+with)\s+"
    + r"(?:(?:option|choice)\s+)?"
)
_FINAL_LETTER = re.compile(
    r"(?P<cue>" + _FINAL_CUE + r")(?P<open>[(\[]\s*)?(?P<letter>[A-Za-z])(?!\w)", re.IGNORECASE
)
# A letter at the start of the reply, a line or a sentence, or after a cue; optionally bracketed.
_LETTER_AT_OPENING = re.compile(
    r"(?:(?P<start>\A)[\s\"'“‘]*|(?<=\n)[ \t\"'“‘]*|(?<=[.!?;:])\s+|(?P<cue>" + _CUE + r"))"
    r"(?P<open>[(\[]\s*)?(?P<letter>[A-Za-z])(?!\w)",
    re.IGNORECASE,
)
# The cues alone, since an opening letter ("I" of "I think it's B") can hide a cue from the pattern above.
_LETTER_AFTER_CUE = re.compile(
    r"(?P<cue>" + _CUE + r")(?P<open>[(\[]\s*)?(?P<letter>[A-Za-z])(?!\w)", re.IGNORECASE
)
_BRACKETED_LETTER = re.compile(r"(?<!\w)[(\[]\s*([A-Za-z])\s*[)\]]")
_COORDINATED_LETTERS = re.compile(
    r"(?<![\w'’])([A-Z])\s*[)\]]?\s*(?:,|/|&|\bor\b|\band\b)\s*[(\[]?\s*([A-Z])(?![\w'’])"
)
# Words before a letter that exclude it: "not (A)", "rather than B", "except C", "rule out D".
_NEGATED_BEFORE = re.compile(
    r"(?:\bnot|\bneither|\bnor|n't|n’t|\bnever|\bexcept|\brather\s+than|\binstead\s+of|\bexclude|\brules?\s+out"
    r"|\bruled\s+out|\beliminate)\s+(?:(?:option|choice|answer)\s+)?"
    # a chain of negated letters: "not (A) or (B)", "neither A nor B"
    r"(?:[(\[]?\s*[A-Z]\s*[)\]]?\s*(?:,|/|\bor\b|\bnor\b|\band\b)\s*)*[(\[]?\s*$",
    re.IGNORECASE,
)
_NEGATED_LETTER = re.compile(
    r"(?:\b[Nn]ot|\b[Nn]either|\b[Nn]or|n't|n’t|\b[Nn]ever|\b[Ee]xcept|\b[Rr]ather\s+than|\b[Ii]nstead\s+of)\s+"
    r"(?:(?:[Oo]ption|[Cc]hoice)\s+)?[(\[]?\s*([A-Z])(?![\w'’])"
)
# After the letter: closing bracket or quote (but not "I'd"), punctuation (but not "e.g."), " - ",
# or the end of a line.
_DELIMITED = re.compile(r"\s*[)\]]|[\"'”’](?!\w)|[.:,;!?](?![a-z]\.)|\s+[-–—]\s|[ \t]*(?:\r?\n|$)")
# Words after a letter that make it a pick ("B is correct", "C because ..."); "C is wrong" is not one.
_AFFIRMING = re.compile(
    r"\s+(?:because\b|rather\s+than\b|instead\s+of\b|(?:is|seems|would\s+be)\s+(?:the\s+)?(?:correct|right|best|answer|most\s+likely)\b)",
    re.IGNORECASE,
)
# A verdict on one option: "A: wrong.", "B - correct", "(C) is incorrect", "D. False". The option is
# ruled out (a negative verdict) or picked (a positive one) whatever else the reply says of it.
_VERDICT_LINK = r"(?:[:=\-–—.]|\bis\b|\bwould\s+be\b)[ \t]*"
_VERDICT = re.compile(
    r"(?<![\w'’])[(\[]?(?P<letter>(?-i:[A-Z]))"
    r"(?:[)\]][ \t]*(?:" + _VERDICT_LINK + r")?|[ \t]*" + _VERDICT_LINK + r")"
    r"(?P<verdict>(?:not\s+(?:the\s+)?(?:correct|right|answer)|incorrect|wrong|false|unlikely|less\s+likely"
    r"|excluded|ruled\s+out)|(?:correct|right|true|the\s+answer|most\s+likely))"
    # the verdict ends its clause, so option text such as "False aneurysm" is not read as one
    r"(?=[ \t]*(?:[.,;:!?)\]]|\r?\n|$)|\s+(?:because|since|as)\b|\s+[-–—]\s)",
    re.IGNORECASE,
)
_POSITIVE_VERDICT = re.compile(r"correct|right|true|the\s+answer|most\s+likely", re.IGNORECASE)
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
        # "rather than mitral valve (D)": a negation, the option's own text, then its letter in brackets
        self.negated_with_text = {
            letter: re.compile(
                r"(?:\bnot|\bnor|n't|n’t|\bexcept|\brather\s+than|\binstead\s+of|\bexclude|\brules?\s+out"
                r"|\bruled\s+out)\s+(?:the\s+|an?\s+)?"
                + r"\s+".join(map(re.escape, options[key].split()))
                + r"\s*[(\[]\s*$",
                re.IGNORECASE,
            )
            for letter, key in self.keys.items()
            if str(options[key]).split()
        }

    def _counts(self, letter: str) -> bool:
        # Lower-case letters outside the options are too often words or numbering ("(i)") to report.
        return letter.upper() in self.keys or letter.isupper()

    def final_markers(self, text: str) -> set[str]:
        """Letters named by explicit final-answer statements, with any they are offered with ("A or C")."""
        found: set[str] = set()
        for m in _FINAL_LETTER.finditer(text):
            if self._is_pick(m, text, at_start_or_cue=True):
                found.add(m.group("letter").upper())
                pair = _COORDINATED_LETTERS.match(text, m.start("letter"))
                # "The answer is A or C." offers two; "The answer is C, B is wrong." does not
                if pair and pair.group(1) == m.group("letter") and _DELIMITED.match(text, pair.end()):
                    found.add(pair.group(2))
        return found

    def letter_markers(self, text: str) -> set[str]:
        found = {
            m.group("letter").upper()
            for m in _LETTER_AT_OPENING.finditer(text)
            if self._is_pick(m, text, m.group("start") is not None or bool(m.group("cue")))
            and not _negated(text, m.start("letter"))
        }
        found.update(
            m.group("letter").upper()
            for m in _LETTER_AFTER_CUE.finditer(text)
            if self._is_pick(m, text, at_start_or_cue=True) and not _negated(text, m.start("letter"))
        )
        found.update(
            m.group(1).upper()
            for m in _BRACKETED_LETTER.finditer(text)
            if self._counts(m.group(1))
            and not _negated(text, m.start())
            and not self._negated_option(text, m)
        )
        for m in _COORDINATED_LETTERS.finditer(text):
            if not _negated(text, m.start()):
                found.update(m.groups())
        ruled_out, picked = self.verdicts(text)
        return (found - ruled_out) | picked

    def verdicts(self, text: str) -> tuple[set[str], set[str]]:
        """Options given a verdict of their own ("A: wrong. B: right."): those ruled out and those picked."""
        ruled_out: set[str] = set()
        picked: set[str] = set()
        for m in _VERDICT.finditer(text):
            positive = _POSITIVE_VERDICT.fullmatch(m.group("verdict")) is not None
            (picked if positive else ruled_out).add(m.group("letter").upper())
        return ruled_out - picked, picked

    def _negated_option(self, text: str, m: re.Match[str]) -> bool:
        pattern = self.negated_with_text.get(m.group(1).upper())
        before = text[max(0, m.start() - 200) : m.start() + 1]  # up to and with the opening bracket
        return pattern is not None and pattern.search(before) is not None

    def _is_pick(self, m: re.Match[str], text: str, at_start_or_cue: bool) -> bool:
        letter, end = m.group("letter"), m.end()
        if not self._counts(letter):
            return False
        if m.group("open") or _DELIMITED.match(text, end):
            return True
        # Mid-reply, "Explanation: A dilated ventricle would ..." is prose, not a second pick.
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

    def decide(self, letters: set[str], several: str = "ambiguous") -> Extraction:
        if len(letters) > 1:
            return Extraction(None, f"{several}: " + ", ".join(sorted(letters)))
        (letter,) = letters
        if letter not in self.keys:
            return Extraction(None, f"not an option: {letter}")
        return Extraction(self.keys[letter])


def _negated(text: str, pos: int) -> bool:
    return _NEGATED_BEFORE.search(text[max(0, pos - 40) : pos]) is not None


def extract_choice(reply: str, options: Mapping[str, str]) -> Extraction:
    """Return the option key the reply picks, or Extraction(None, reason); see module docstring.

    ``options`` maps single letters to option text, e.g. {"A": "Dilated", "B": "Normal"}; letters
    outside it are never returned. Raises ValueError when a key is not a single letter.
    """
    reader = _ChoiceReader(options)
    text = answer_forms(reply_text(reply))
    if not text:
        return Extraction(None, "empty reply")
    final = reader.final_markers(text)
    if final:
        # two final statements naming different letters contradict; "The answer is A or C" is ambiguous
        several = "contradictory" if len(_FINAL_LETTER.findall(text)) > 1 else "ambiguous"
        return reader.decide(final, several)
    markers = reader.letter_markers(text)
    if markers:
        return reader.decide(markers)
    yes_no_options = all(" ".join(phrase) in _YES_NO for phrase in reader.texts.values())
    matches = reader.yes_no_matches(text) if yes_no_options else reader.text_matches(text)
    if matches:
        return reader.decide(matches)
    ruled_out = set(_NEGATED_LETTER.findall(text)) | reader.verdicts(text)[0]
    negated = sorted(letter for letter in ruled_out if letter in reader.keys)
    return Extraction(None, "only negated options: " + ", ".join(negated)) if negated else _NOT_FOUND
