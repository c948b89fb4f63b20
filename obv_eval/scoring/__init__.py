"""Answer extraction, normalisation and lexical metrics for model replies."""

from obv_eval.scoring.choices import extract_choice
from obv_eval.scoring.lexical import (
    answer_recall,
    exact_match,
    lists_several_candidates,
    score_closed_vqa,
    token_f1,
)
from obv_eval.scoring.normalize import Extraction, normalize_answer
from obv_eval.scoring.yesno import SYNONYMS, extract_yes_no, is_presence_question

__all__ = [
    "SYNONYMS",
    "Extraction",
    "answer_recall",
    "exact_match",
    "extract_choice",
    "extract_yes_no",
    "is_presence_question",
    "lists_several_candidates",
    "normalize_answer",
    "score_closed_vqa",
    "token_f1",
]
