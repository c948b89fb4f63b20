"""SurgeryVideoQA: the video, then the question verbatim; open-ended answers scored by the judge."""

from __future__ import annotations

from typing import Any

from obv_eval.scoring.vqa import score_vqa
from obv_eval.tasking import ObvTask, chat_messages, item_result, mean_score, text_field, video_visual

__all__ = ["ObvTask", "doc_to_messages", "doc_to_text", "doc_to_visual", "mean_score", "process_results"]

BENCHMARK = "surgeryvqa"
METRICS = ("exact_match", "token_f1", "answer_recall")


def doc_to_visual(doc: dict[str, Any]) -> list[Any]:
    return video_visual(doc, "video", BENCHMARK)


def doc_to_messages(
    doc: dict[str, Any], lmms_eval_specific_kwargs: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    return chat_messages(doc_to_visual(doc), doc_to_text(doc))


def doc_to_text(doc: dict[str, Any], lmms_eval_specific_kwargs: dict[str, Any] | None = None) -> str:
    return text_field(doc, "question")


def process_results(doc: dict[str, Any], results: list[str]) -> dict[str, dict[str, Any]]:
    gold = text_field(doc, "answer")
    scored = score_vqa(results[0], gold, closed=False)  # accuracy comes from the judge, later
    return item_result(
        METRICS,
        doc=doc,
        prediction=results[0],
        scores=scored.scores,
        item_id=text_field(doc, "id"),
        cluster=text_field(doc, "video_id"),
        categories={"answer_type": "open"},
        question=text_field(doc, "question"),
        target=gold,
    )
