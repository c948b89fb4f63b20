"""extract_choice: one table of replies and what they must read as."""

from __future__ import annotations

import pytest

from obv_eval.scoring import Extraction, extract_choice

FOUR = {"A": "Dilated", "B": "Normal", "C": "Hypertrophic", "D": "Small"}
YES_NO = {"A": "Yes", "B": "No"}
FIVE = {"A": "Axial", "B": "Sagittal", "C": "Coronal", "D": "Oblique", "E": "Four chamber"}
NESTED = {"A": "Dilated", "B": "Dilated cardiomyopathy", "C": "Normal"}
VALVES = {"A": "Tricuspid valve", "B": "Pulmonary valve", "C": "Aortic valve", "D": "Mitral valve"}
ANEURYSM = {"A": "True aneurysm", "B": "False aneurysm", "C": "Dissection"}

# (reply, options, expected value, expected reason)
CASES = [
    # explicit letters, every phrasing from the issue
    ("B", FOUR, "B", None),
    ("(B)", FOUR, "B", None),
    ("B.", FOUR, "B", None),
    ("b)", FOUR, "B", None),
    ("Answer: B", FOUR, "B", None),
    ("The answer is B", FOUR, "B", None),
    ("Option B: Normal", FOUR, "B", None),
    ("**B**", FOUR, "B", None),
    ("[B]", FOUR, "B", None),
    ("B: Normal", FOUR, "B", None),
    ("b", FOUR, "B", None),
    ("B. Normal, because the wall is thin", FOUR, "B", None),
    # more letter phrasings
    ("  B  ", FOUR, "B", None),
    ("'B'", FOUR, "B", None),
    ("I'd go with B.", FOUR, "B", None),
    ("answer is b", FOUR, "B", None),
    ("The correct answer is (B).", FOUR, "B", None),
    ("Final answer: **C. Hypertrophic**", FOUR, "C", None),
    ("I would choose D.", FOUR, "D", None),
    ("B - Normal", FOUR, "B", None),
    ("C is correct", FOUR, "C", None),
    ("A is the most likely answer.", FOUR, "A", None),
    ("D because the cavity is tiny", FOUR, "D", None),
    ("B. C is wrong because the walls are thin.", FOUR, "B", None),
    ("Answer: B\n\nExplanation: A dilated ventricle would look different.", FOUR, "B", None),
    ("Hypertrophic (C)", FOUR, "C", None),
    ("B\nThe wall thickness is within limits.", FOUR, "B", None),
    ("The walls look thick. Answer: C", FOUR, "C", None),
    # a letter marker beats option text mentioned in the explanation
    ("B. It is not hypertrophic and not dilated; it looks normal or small.", FOUR, "B", None),
    ("A", FOUR, "A", None),
    ("a.", FOUR, "A", None),
    # option text alone
    ("Normal", FOUR, "B", None),
    ("normal.", FOUR, "B", None),
    ("NORMAL", FOUR, "B", None),
    ("The left ventricle is normal in size, not dilated.", FOUR, "B", None),
    # prefix defect: a reply starting with "A" is not option A
    ("An enlarged left ventricle", FOUR, None, "no option found"),
    ("Apical four chamber view", FOUR, None, "no option found"),
    ("A normal left ventricle", FOUR, "B", None),
    ("A small ventricle", FOUR, "D", None),
    ("The answer is a small ventricle", FOUR, "D", None),
    ("Abnormal", FOUR, None, "no option found"),
    # ... except when the rest is option A's own text
    ("A dilated ventricle", FOUR, "A", None),
    # ambiguous
    ("A or C", FOUR, None, "ambiguous: A, C"),
    ("A and B are both possible", FOUR, None, "ambiguous: A, B"),
    ("Either B or D.", FOUR, None, "ambiguous: B, D"),
    ("(A) or (C)", FOUR, None, "ambiguous: A, C"),
    ("It is dilated or hypertrophic", FOUR, None, "ambiguous: A, C"),
    # empty
    ("", FOUR, None, "empty reply"),
    ("   ", FOUR, None, "empty reply"),
    ("\n\t", FOUR, None, "empty reply"),
    ("**", FOUR, None, "empty reply"),
    # letters outside the options
    ("E", FOUR, None, "not an option: E"),
    ("The answer is E.", FOUR, None, "not an option: E"),
    ("I cannot tell from this image.", FOUR, None, "no option found"),
    # two options, Yes/No as A/B
    ("Yes", YES_NO, "A", None),
    ("No, there is no effusion", YES_NO, "B", None),
    ("Yes, there is no effusion", YES_NO, "A", None),
    ("B", YES_NO, "B", None),
    ("(a)", YES_NO, "A", None),
    ("yes or no", YES_NO, None, "ambiguous: A, B"),
    ("Nothing abnormal", YES_NO, None, "no option found"),
    ("C", YES_NO, None, "not an option: C"),
    # five options, number words and abbreviations
    ("E", FIVE, "E", None),
    ("Four-chamber view", FIVE, "E", None),
    ("4 chamber", FIVE, "E", None),
    ("e.g. the slice is coronal", FIVE, "C", None),
    # an option contained in a longer option does not also match
    ("Dilated cardiomyopathy", NESTED, "B", None),
    ("Dilated", NESTED, "A", None),
    # the answer named after ruling others out (issue 24)
    ("not B; it is C", FOUR, "C", None),
    ("It is not B, it's C.", FOUR, "C", None),
    ("Not A. It is option D.", FOUR, "D", None),
    ("A: wrong. B: right. C: wrong.", FOUR, "B", None),
    ("A - incorrect\nB - correct\nC - incorrect\nD - incorrect", FOUR, "B", None),
    ("A) Wrong\nB) Wrong\nC) Right\nD) Wrong", FOUR, "C", None),
    ("(A) is incorrect; (B) is not correct; (D) is correct.", FOUR, "D", None),
    ("Aortic valve (C) rather than mitral valve (D)", VALVES, "C", None),
    ("The mitral valve (D), not the aortic valve (C).", VALVES, "D", None),
    ("B. False aneurysm", ANEURYSM, "B", None),  # option text that starts like a verdict is no verdict
    # ... and stay unparsed, with the reason, when they do not settle on one
    ("A: wrong. B: right. C: right.", FOUR, None, "ambiguous: B, C"),
    ("A: wrong. B: wrong.", FOUR, None, "only negated options: A, B"),
    ("C is wrong", FOUR, None, "only negated options: C"),
    ("Not B; it is C or D.", FOUR, None, "ambiguous: C, D"),
    ("Mitral valve (D) or aortic valve (C)", VALVES, None, "ambiguous: C, D"),
]


@pytest.mark.parametrize(("reply", "options", "value", "reason"), CASES)
def test_extract_choice(reply: str, options: dict[str, str], value: str | None, reason: str | None) -> None:
    assert extract_choice(reply, options) == Extraction(value, reason)


def test_table_is_large_enough() -> None:
    assert len(CASES) >= 40


@pytest.mark.parametrize(("reply", "options", "value", "reason"), CASES)
def test_never_returns_a_letter_outside_options(
    reply: str, options: dict[str, str], value: str | None, reason: str | None
) -> None:
    extraction = extract_choice(reply, options)
    assert extraction.value is None or extraction.value in options
    assert extraction.parsed == (extraction.reason is None)


@pytest.mark.parametrize(
    ("reply", "released_script_said"),
    [
        # the released scripts scored by reply.startswith(letter)
        ("An enlarged left ventricle", "A"),
        ("Apical four chamber view", "A"),
        ("A normal left ventricle", "A"),
        ("The answer is B", None),
        ("(B)", None),
    ],
)
def test_prefix_defect_fixed(reply: str, released_script_said: str | None) -> None:
    prefix_read = next((letter for letter in FOUR if reply.startswith(letter)), None)
    assert prefix_read == released_script_said  # documents the old behaviour
    assert extract_choice(reply, FOUR).value != prefix_read


def test_returns_callers_key_spelling() -> None:
    assert extract_choice("B", {"a": "Yes", "b": "No"}) == Extraction("b")


def test_rejects_keys_that_are_not_single_letters() -> None:
    with pytest.raises(ValueError, match="single letters"):
        extract_choice("A", {"AB": "Dilated", "C": "Normal"})


def test_undecodable_reply_does_not_raise() -> None:
    assert extract_choice("\udcff\nB", FOUR) == Extraction("B")
    assert extract_choice("Normal\udcff", FOUR) == Extraction("B")
