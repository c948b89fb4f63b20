"""VQA-RAD: the image, the question, and a short-answer instruction."""

from __future__ import annotations

from typing import Any

from obv_eval.scoring.vqa import is_closed_answer, score_vqa
from obv_eval.tasking import ObvTask, image_key, image_visual, item_result, mean_score, text_field

__all__ = ["ObvTask", "doc_to_target", "doc_to_text", "doc_to_visual", "mean_score", "process_results"]

BENCHMARK = "vqarad"
METRICS = ("accuracy", "exact_match", "token_f1", "answer_recall")
INSTRUCTION = "Answer the question using a single word or phrase."


def doc_to_visual(doc: dict[str, Any]) -> list[Any]:
    return image_visual(doc, "image", BENCHMARK)


def doc_to_text(doc: dict[str, Any], lmms_eval_specific_kwargs: dict[str, Any] | None = None) -> str:
    return f"{text_field(doc, 'question').strip()}\n{INSTRUCTION}"


def doc_to_target(doc: dict[str, Any]) -> str:
    return text_field(doc, "answer")


def process_results(doc: dict[str, Any], results: list[str]) -> dict[str, dict[str, Any]]:
    gold = text_field(doc, "answer")
    closed = is_closed_answer(gold)
    scored = score_vqa(results[0], gold, closed)
    cluster = image_key(doc, "image")
    return item_result(
        METRICS,
        doc=doc,
        prediction=results[0],
        scores=scored.scores,
        item_id=f"{cluster}|{text_field(doc, 'question')}",
        cluster=cluster,
        categories={"answer_type": "closed" if closed else "open"},
        question=text_field(doc, "question"),
        target=gold,
        extracted=scored.extracted,
        unparsed=scored.unparsed,
    )
