"""Answer extraction, normalisation and lexical metrics for model replies."""

from obv_eval.scoring.choices import extract_choice
from obv_eval.scoring.lexical import answer_recall, exact_match, score_closed_vqa, token_f1
from obv_eval.scoring.normalize import Extraction, normalize_answer
from obv_eval.scoring.yesno import extract_yes_no

__all__ = [
    "Extraction",
    "answer_recall",
    "exact_match",
    "extract_choice",
    "extract_yes_no",
    "normalize_answer",
    "score_closed_vqa",
    "token_f1",
]
