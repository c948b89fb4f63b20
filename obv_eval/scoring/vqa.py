"""Scores for one VQA item: closed answers by rule, open answers by the judge (filled in later)."""

from __future__ import annotations

from dataclasses import dataclass

from obv_eval.scoring.lexical import answer_recall, exact_match, score_closed_vqa, token_f1
from obv_eval.scoring.normalize import normalize_answer

YES_NO = frozenset({"yes", "no"})


def is_closed_answer(gold: str) -> bool:
    """VQA-RAD and PathVQA carry no answer type: by convention yes/no answers are the closed ones."""
    return normalize_answer(gold) in YES_NO


@dataclass(frozen=True)
class VqaScore:
    scores: dict[str, float | None]
    extracted: str | None
    unparsed: bool
    reason: str | None = None  # why nothing was read, when unparsed


def score_vqa(prediction: str, gold: str, closed: bool, question: str | None = None) -> VqaScore:
    """accuracy: rule-based for closed items, None for open items until the judge rules;
    exact match, token F1 and answer recall always, for every item. ``question`` lets the closed
    scorer apply the presence synonyms of a yes/no item (see ``obv_eval.scoring.yesno``)."""
    lexical: dict[str, float | None] = {
        "exact_match": exact_match(prediction, gold),
        "token_f1": token_f1(prediction, gold),
        "answer_recall": answer_recall(prediction, gold),
    }
    if closed:
        score, extraction = score_closed_vqa(prediction, gold, question=question)
        return VqaScore(
            {"accuracy": score, **lexical}, extraction.value, not extraction.parsed, extraction.reason
        )
    return VqaScore({"accuracy": None, "judge": None, **lexical}, None, False)
