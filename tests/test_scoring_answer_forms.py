"""Issue 12: replies real models give, choice and yes/no: final statements, negation, hedges, CJK, boxed.

Each row is (reply, expected value, expected reason when unparsed); the option set is FOUR throughout.
"""

from __future__ import annotations

import pytest

from obv_eval.scoring import Extraction, extract_choice, extract_yes_no
from obv_eval.scoring.forms import answer_forms

FOUR = {"A": "Dilated", "B": "Normal", "C": "Hypertrophic", "D": "Small"}
YES_NO = {"A": "Yes", "B": "No"}

CHOICE_CASES = [
    # an explicit final-answer statement wins over letters mentioned elsewhere
    ("A is tempting, but the answer is C", "C", None),
    ("The answer is C. A and B are chambers, not valves.", "C", None),
    ("Option A, however, is wrong. The answer is C.", "C", None),
    ("(A) and (B) can be excluded. Final answer: D", "D", None),
    ("Let me think. A? B? The correct option is B.", "B", None),
    ("A dilated ventricle is unlikely. I'd go with C.", "C", None),
    ("Looking at A, B and D in turn, none fit.\n\nAnswer: C", "C", None),
    # negated options are excluded
    ("Not B. The answer is D.", "D", None),
    ("Not A but B", "B", None),
    ("Not A, but B.", "B", None),
    ("B, not (A).", "B", None),
    ("It is not (A); choose C.", "C", None),
    ("B rather than A.", "B", None),
    ("A is wrong; not C either. B.", "B", None),
    ("The answer is C, B is wrong.", "C", None),
    ("Not (B) or (C); the ventricle is dilated.", "A", None),
    ("It is not A", None, "only negated options: A"),
    ("Definitely not D.", None, "only negated options: D"),
    ("Neither (A) nor (B).", None, "only negated options: A, B"),
    ("Neither A nor B; C.", "C", None),
    # hedged statements are read
    ("Probably B", "B", None),
    ("I think the answer is B", "B", None),
    ("Most likely C.", "C", None),
    ("I think it's B.", "B", None),
    ("B, probably.", "B", None),
    ("I'd say B.", "B", None),
    ("Possibly (D)", "D", None),
    # CJK punctuation and cues
    ("答案：B", "B", None),
    ("答案是C。", "C", None),
    ("（B）", "B", None),
    ("B。", "B", None),
    ("【D】", "D", None),
    ("最终答案：A", "A", None),
    ("我选B。", "B", None),
    ("Ｃ", "C", None),
    # \boxed{} in its LaTeX forms
    ("\\boxed{C}", "C", None),
    ("$\\boxed{\\text{C}}$", "C", None),
    ("The wall is thick, so A and D are out. $\\boxed{C}$", "C", None),
    ("\\boxed{\\textbf{B}}", "B", None),
    ("\\boxed{C. Hypertrophic}", "C", None),
    # still unparsed when truly ambiguous or contradictory
    ("A or B", None, "ambiguous: A, B"),
    ("The answer is A or C.", None, "ambiguous: A, C"),
    ("The answer is A. The answer is B.", None, "contradictory: A, B"),
    ("Answer: B\nFinal answer: D", None, "contradictory: B, D"),
    ("\\boxed{A} or \\boxed{C}", None, "contradictory: A, C"),
    ("Probably B or C", None, "ambiguous: B, C"),
    ("The answer is not clear from this view.", None, "no option found"),
    ("Final answer: E", None, "not an option: E"),
]


@pytest.mark.parametrize(("reply", "value", "reason"), CHOICE_CASES)
def test_choice_forms(reply: str, value: str | None, reason: str | None) -> None:
    extraction = extract_choice(reply, FOUR)
    assert extraction == Extraction(value, reason)
    assert extraction.parsed is (reason is None)


# (reply, allow_maybe, expected value, expected reason)
YES_NO_CASES = [
    ("The image might suggest yes at first glance, but no.\nFinal answer: no", False, "no", None),
    ("Yes, it could look like an effusion. Final answer: no.", False, "no", None),
    ("No at first sight. On closer look the answer is yes.", False, "yes", None),
    ("likely yes", False, "yes", None),
    ("Probably not.", False, "no", None),
    ("I think not.", False, "no", None),
    ("I think the answer is yes.", False, "yes", None),
    ("是", False, "yes", None),
    ("是的。", False, "yes", None),
    ("否", False, "no", None),
    ("不是。", False, "no", None),
    ("答案：否", False, "no", None),
    ("答案是：是", False, "yes", None),
    ("\\boxed{yes}", False, "yes", None),
    ("$\\boxed{\\text{No}}$", False, "no", None),
    ("The answer is yes. The answer is no.", False, None, "contradictory: no, yes"),
    ("Final answer: yes or no", False, None, "ambiguous: no, yes"),
    # a "是" inside a Chinese sentence is not an answer
    ("这是一个超声图像", False, None, "no yes/no found"),
    ("Not sure.", False, None, "no yes/no found"),
]


@pytest.mark.parametrize(("reply", "allow_maybe", "value", "reason"), YES_NO_CASES)
def test_yes_no_forms(reply: str, allow_maybe: bool, value: str | None, reason: str | None) -> None:
    assert extract_yes_no(reply, allow_maybe=allow_maybe) == Extraction(value, reason)


@pytest.mark.parametrize(
    ("reply", "value"),
    [("是", "A"), ("否。", "B"), ("Final answer: no", "B"), ("\\boxed{Yes}", "A"), ("likely yes", "A")],
)
def test_yes_no_options_read_the_same_forms(reply: str, value: str) -> None:
    assert extract_choice(reply, YES_NO) == Extraction(value)


def test_tables_are_large_enough() -> None:
    assert len(CHOICE_CASES) + len(YES_NO_CASES) >= 60


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("\\boxed{C}", "final answer: C."),
        ("答案:B.", "answer: B."),
        ("B。", "B."),
        ("plain text", "plain text"),
    ],
)
def test_answer_forms(text: str, expected: str) -> None:
    assert answer_forms(text) == expected
