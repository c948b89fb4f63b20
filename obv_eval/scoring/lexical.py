"""Lexical answer metrics on ``normalize_answer`` tokens, and closed-ended VQA scoring.

Empty-answer convention (as in the SQuAD evaluation script): when either side has no tokens after
normalisation, the score is 1.0 if both are empty and 0.0 otherwise.
"""

from __future__ import annotations

from collections import Counter

from obv_eval.scoring.normalize import Extraction, normalize_answer, normalized_tokens
from obv_eval.scoring.yesno import extract_yes_no

__all__ = ["answer_recall", "exact_match", "score_closed_vqa", "token_f1"]


def exact_match(prediction: str, gold: str) -> float:
    """1.0 when the normalised strings are equal, else 0.0."""
    return float(normalize_answer(prediction) == normalize_answer(gold))


def _common_tokens(pred_tokens: list[str], gold_tokens: list[str]) -> int:
    # Counter intersection counts a repeated token only as often as it appears on both sides.
    return sum((Counter(pred_tokens) & Counter(gold_tokens)).values())


def token_f1(prediction: str, gold: str) -> float:
    """SQuAD-style token F1 between the normalised prediction and gold."""
    pred_tokens, gold_tokens = normalized_tokens(prediction), normalized_tokens(gold)
    if not pred_tokens or not gold_tokens:
        return float(pred_tokens == gold_tokens)
    common = _common_tokens(pred_tokens, gold_tokens)
    if common == 0:
        return 0.0
    precision, recall = common / len(pred_tokens), common / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def answer_recall(prediction: str, gold: str) -> float:
    """Fraction of the gold tokens (with multiplicity) that the prediction contains."""
    pred_tokens, gold_tokens = normalized_tokens(prediction), normalized_tokens(gold)
    if not pred_tokens or not gold_tokens:
        return float(pred_tokens == gold_tokens)
    return _common_tokens(pred_tokens, gold_tokens) / len(gold_tokens)


def score_closed_vqa(prediction: str, gold: str) -> tuple[float, Extraction]:
    """Score a closed-ended VQA reply: (1.0 or 0.0, what was read from the prediction).

    A yes/no gold answer is compared with the yes/no read by ``extract_yes_no`` (so "No, there is
    no effusion" matches "no"); any other gold needs a normalised exact match, and the extraction
    holds the normalised prediction (None with "empty reply" when nothing is left of it).
    """
    gold_norm = normalize_answer(gold)
    if gold_norm in ("yes", "no"):
        extraction = extract_yes_no(prediction)
        return float(extraction.value == gold_norm), extraction
    pred_norm = normalize_answer(prediction)
    if not pred_norm:
        return 0.0, Extraction(None, "empty reply")
    return float(pred_norm == gold_norm), Extraction(pred_norm)
