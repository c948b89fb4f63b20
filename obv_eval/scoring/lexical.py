"""Lexical answer metrics on ``normalize_answer`` tokens, and closed-ended VQA scoring.

Empty-answer convention (as in the SQuAD evaluation script): when either side has no tokens after
normalisation, the score is 1.0 if both are empty and 0.0 otherwise.
"""

from __future__ import annotations

import re
from collections import Counter

from obv_eval.scoring.normalize import Extraction, normalize_answer, normalized_tokens, reply_text
from obv_eval.scoring.yesno import extract_yes_no

__all__ = ["answer_recall", "exact_match", "lists_several_candidates", "score_closed_vqa", "token_f1"]


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


# Words and marks that join alternatives: a reply holding one is "several candidates".
_LISTING_WORDS = frozenset({"or", "and", "nor", "either", "versus", "vs"})
_LISTING_MARKS = re.compile(r"[,/;&|+]")
# A contained phrase right after one of these is denied, not given: "not left".
_NEGATIONS = frozenset({"not", "no", "without", "non"})


def lists_several_candidates(reply: str) -> bool:
    """Whether the reply joins alternatives ("left or right", "CT, MRI", "liver and spleen")."""
    text = reply_text(reply)
    return bool(_LISTING_MARKS.search(text)) or any(t in _LISTING_WORDS for t in normalized_tokens(text))


def _contains_phrase(tokens: list[str], phrase: list[str]) -> bool:
    """``phrase`` occurs in ``tokens`` as whole tokens, and not right after a negation."""
    n = len(phrase)
    return any(
        tokens[i : i + n] == phrase and (i == 0 or tokens[i - 1] not in _NEGATIONS)
        for i in range(len(tokens) - n + 1)
    )


def score_closed_vqa(prediction: str, gold: str, question: str | None = None) -> tuple[float, Extraction]:
    """Score a closed-ended VQA reply: (1.0 or 0.0, what was read from the prediction).

    - A yes/no gold answer is compared with the yes/no read by ``extract_yes_no`` (so "No, there is
      no effusion" matches "no"); ``question`` turns on its presence synonyms ("Absent" -> no).
    - Any other gold: 1.0 when the normalised strings are equal, or when one contains the other as
      whole tokens ("left lung" for "left", "CT" for "CT scan", "one hundred" for "100"), unless
      the reply lists several candidates (:func:`lists_several_candidates`: "left or right",
      "CT, MRI") or negates the phrase ("not left"). A reply listing candidates that is not
      exactly the gold is unparsed with reason "ambiguous: several candidates"; an empty one has
      "empty reply"; otherwise the extraction holds the normalised prediction.
    """
    gold_norm = normalize_answer(gold)
    if gold_norm in ("yes", "no"):
        extraction = extract_yes_no(prediction, question=question)
        return float(extraction.value == gold_norm), extraction
    pred_norm = normalize_answer(prediction)
    if not pred_norm:
        return 0.0, Extraction(None, "empty reply")
    if pred_norm == gold_norm:
        return 1.0, Extraction(pred_norm)
    if lists_several_candidates(prediction):
        return 0.0, Extraction(None, "ambiguous: several candidates")
    pred_tokens, gold_tokens = pred_norm.split(), gold_norm.split()
    contained = bool(gold_tokens) and (
        _contains_phrase(pred_tokens, gold_tokens) or _contains_phrase(gold_tokens, pred_tokens)
    )
    return float(contained), Extraction(pred_norm)
