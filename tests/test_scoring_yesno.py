"""extract_yes_no: one table of replies and what they must read as."""

from __future__ import annotations

import pytest

from obv_eval.scoring import Extraction, extract_yes_no

NOT_FOUND = "no yes/no found"

# (reply, allow_maybe, expected value, expected reason)
CASES = [
    ("No, there is no effusion", False, "no", None),
    ("Yes.", False, "yes", None),
    ("yes", False, "yes", None),
    ("NO.", False, "no", None),
    ("**Yes**", False, "yes", None),
    ('"No"', False, "no", None),
    ("(No)", False, "no", None),
    ("Based on the image, yes.", False, "yes", None),
    ("I think the answer is no", False, "no", None),
    ("Answer: YES", False, "yes", None),
    ("I would say yes", False, "yes", None),
    ("There is no effusion. Yes.", False, "yes", None),
    # a leading answer wins over a later determiner "no"
    ("Yes, there is no effusion", False, "yes", None),
    ("Yes, and no effusion is seen", False, "yes", None),
    # never inside other words
    ("Nothing", False, None, NOT_FOUND),
    ("None", False, None, NOT_FOUND),
    ("yesterday", False, None, NOT_FOUND),
    ("I don't know", False, None, NOT_FOUND),
    ("The eyes are normal", False, None, NOT_FOUND),
    ("Not sure", False, None, NOT_FOUND),
    # both offered as answers
    ("yes or no", False, None, "ambiguous: no, yes"),
    ("Yes/No", False, None, "ambiguous: no, yes"),
    ("Yes and no.", False, None, "ambiguous: no, yes"),
    ("Could be yes, could be no.", False, None, "ambiguous: no, yes"),
    # empty
    ("", False, None, "empty reply"),
    ("  \n", False, None, "empty reply"),
    # maybe only when allowed
    ("maybe", False, None, NOT_FOUND),
    ("Maybe yes", False, "yes", None),
    ("maybe", True, "maybe", None),
    ("Maybe, the image is unclear.", True, "maybe", None),
    ("yes or maybe", True, None, "ambiguous: maybe, yes"),
    ("No.", True, "no", None),
    # the labels restated before the answer (issue 24)
    ("yes, no or maybe? It is yes.", True, "yes", None),
    ("Yes, no, or maybe: no.", True, "no", None),
    ("Yes/No/Maybe? Maybe, the data are mixed.", True, "maybe", None),
    ("Yes or no? No.", False, "no", None),
    ("Yes/No: yes", False, "yes", None),
    ("Is there an effusion, yes or no? Yes, a small one.", False, "yes", None),
    # ... and no answer after them stays unparsed
    ("yes, no or maybe? yes or no", True, None, "ambiguous: no, yes"),
    ("Yes or no? It is hard to say.", False, None, NOT_FOUND),
    ("Yes or no?", False, None, "ambiguous: no, yes"),
]


@pytest.mark.parametrize(("reply", "allow_maybe", "value", "reason"), CASES)
def test_extract_yes_no(reply: str, allow_maybe: bool, value: str | None, reason: str | None) -> None:
    assert extract_yes_no(reply, allow_maybe=allow_maybe) == Extraction(value, reason)


def test_table_is_large_enough() -> None:
    assert len(CASES) >= 20


def test_parsed_follows_value() -> None:
    assert extract_yes_no("Yes").parsed
    assert not extract_yes_no("Nothing").parsed


def test_undecodable_reply_does_not_raise() -> None:
    # the replacement character separates words like any other symbol
    assert extract_yes_no("\udcffno") == Extraction("no")
    assert extract_yes_no("\udcff") == Extraction(None, NOT_FOUND)
