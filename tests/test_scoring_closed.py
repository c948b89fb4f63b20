"""Closed-ended scoring, one table per rule of issue 15: yes/no synonyms, contradictions, containment.

Each row is (reply, gold, question, expected score, expected reason when unparsed). The questions
are written here so the presence rule is visible in the table.
"""

from __future__ import annotations

import pytest

from obv_eval.scoring import SYNONYMS, extract_yes_no, is_presence_question, score_closed_vqa
from obv_eval.scoring.vqa import score_vqa
from obv_eval.tasking import item_result

PRESENCE_Q = "Is there a pleural effusion?"
OTHER_Q = "Is the lesion benign?"

YES_NO_CASES = [
    # presence synonyms, with a presence question
    ("None", "no", PRESENCE_Q, 1.0, None),
    ("Absent", "no", PRESENCE_Q, 1.0, None),
    ("Negative", "no", PRESENCE_Q, 1.0, None),
    ("Not present", "no", PRESENCE_Q, 1.0, None),
    ("Not present.", "yes", PRESENCE_Q, 0.0, None),
    ("nope", "no", PRESENCE_Q, 1.0, None),
    ("Present", "yes", PRESENCE_Q, 1.0, None),
    ("**Present**, in the left base", "yes", "Is a pleural effusion present?", 1.0, None),
    ("The effusion is absent.", "no", "Is an effusion seen?", 1.0, None),
    # "not present" must not be read as "present"
    ("Not present", "yes", "Any pneumothorax?", 0.0, None),
    # without a presence question the presence words are not answers
    ("None", "no", OTHER_Q, 0.0, "no yes/no found"),
    ("Negative", "no", None, 0.0, "no yes/no found"),
    ("Present", "yes", OTHER_Q, 0.0, "no yes/no found"),
    # colloquial synonyms count everywhere
    ("nope", "no", OTHER_Q, 1.0, None),
    ("Yep.", "yes", None, 1.0, None),
    # contradictory replies are unparsed, not read as their first word
    ("Yes. No.", "yes", PRESENCE_Q, 0.0, "contradictory: no, yes"),
    ("No, yes", "no", PRESENCE_Q, 0.0, "contradictory: no, yes"),
    ("Yes. Absent.", "yes", PRESENCE_Q, 0.0, "contradictory: no, yes"),
    # ... but a later "no" inside a clause is not a contradiction
    ("Yes, there is no effusion", "yes", PRESENCE_Q, 1.0, None),
    ("No. No effusion is seen.", "no", PRESENCE_Q, 1.0, None),
]


@pytest.mark.parametrize(("reply", "gold", "question", "score", "reason"), YES_NO_CASES)
def test_yes_no_gold(reply: str, gold: str, question: str | None, score: float, reason: str | None) -> None:
    got, extraction = score_closed_vqa(reply, gold, question=question)
    assert got == score
    assert extraction.reason == reason
    assert extraction.parsed is (reason is None)


OTHER_CASES = [
    ("left lung", "left", 1.0, None),
    ("CT scan", "CT", 1.0, None),
    ("one hundred", "100", 1.0, None),
    ("100", "one hundred", 1.0, None),
    ("CT", "CT scan", 1.0, None),  # the gold contains the reply
    ("The left lung.", "Left", 1.0, None),
    ("right lung", "left", 0.0, None),
    ("not left", "left", 0.0, None),  # a negated phrase is not the answer
    ("leftward", "left", 0.0, None),  # whole tokens only
    ("MRI", "CT", 0.0, None),
    # several candidates are never rewarded, even when one of them is the gold
    ("left or right", "left", 0.0, "ambiguous: several candidates"),
    ("Left / right", "left", 0.0, "ambiguous: several candidates"),
    ("CT, MRI", "CT", 0.0, "ambiguous: several candidates"),
    ("liver and spleen", "liver", 0.0, "ambiguous: several candidates"),
    # ... unless the gold itself is that list
    ("liver and spleen", "Liver and spleen", 1.0, None),
    ("", "left", 0.0, "empty reply"),
]


@pytest.mark.parametrize(("reply", "gold", "score", "reason"), OTHER_CASES)
def test_other_closed_gold(reply: str, gold: str, score: float, reason: str | None) -> None:
    got, extraction = score_closed_vqa(reply, gold)
    assert (got, extraction.reason) == (score, reason)


@pytest.mark.parametrize(
    ("question", "presence"),
    [
        (PRESENCE_Q, True),
        ("In this image, is there a mass?", True),
        ("Is a pneumothorax present?", True),
        ("Are any calcifications seen?", True),
        ("Does the image show a fracture?", True),
        ("Any free air?", True),
        ("Is the lesion benign?", False),
        ("Which lung is affected?", False),
        ("Is this an MRI?", False),
        ("", False),
        (None, False),
    ],
)
def test_presence_question(question: str | None, presence: bool) -> None:
    assert is_presence_question(question) is presence


def test_every_synonym_in_the_table_reads_as_its_answer() -> None:
    # Derived from the documented table itself, so a new entry is covered without a new row.
    for scope, answers in SYNONYMS.items():
        question = PRESENCE_Q if scope == "presence" else None
        for answer, words in answers.items():
            for word in words:
                assert extract_yes_no(word.capitalize() + ".", question=question).value == answer, word
                if scope == "presence":
                    assert extract_yes_no(word, question=OTHER_Q).value is None, word


def _record(prediction: str, gold: str, question: str) -> dict[str, object]:
    scored = score_vqa(prediction, gold, closed=True, question=question)
    out = item_result(
        ("accuracy",),
        doc={},
        prediction=prediction,
        scores=scored.scores,
        item_id="i",
        cluster="c",
        categories={},
        question=question,
        target=gold,
        extracted=scored.extracted,
        unparsed=scored.unparsed,
        unparsed_reason=scored.reason,
    )
    return out["accuracy"]


@pytest.mark.parametrize(
    ("prediction", "gold", "reason"),
    [
        ("", "no", "empty reply"),
        ("Yes. No.", "no", "contradictory: no, yes"),
        ("yes or no", "yes", "ambiguous: no, yes"),
        ("I cannot tell", "yes", "no yes/no found"),
        ("left or right", "left", "ambiguous: several candidates"),
    ],
)
def test_every_unparsed_record_carries_its_reason(prediction: str, gold: str, reason: str) -> None:
    record = _record(prediction, gold, PRESENCE_Q)
    assert record["status"] == "ok" and record["unparsed"] is True
    assert record["reason"] == reason


def test_parsed_record_has_no_reason() -> None:
    record = _record("Absent", "no", PRESENCE_Q)
    assert record["unparsed"] is False and record["reason"] is None and record["score"] == 1.0
