"""SLAKE (English): the image, the question, and a short-answer instruction."""

from __future__ import annotations

from typing import Any

import datasets

from obv_eval.scoring.vqa import score_vqa
from obv_eval.tasking import ObvTask, image_visual, item_result, mean_score, text_field

__all__ = [
    "ObvTask",
    "doc_to_target",
    "doc_to_text",
    "doc_to_visual",
    "english_only",
    "mean_score",
    "process_results",
]

BENCHMARK = "slake"
METRICS = ("accuracy", "exact_match", "token_f1", "answer_recall")
INSTRUCTION = "Answer the question using a single word or phrase."


def english_only(dataset: datasets.Dataset) -> datasets.Dataset:
    # Malformed rows are kept (they fail with their reason); only rows marked Chinese are left out.
    return dataset.filter(lambda row: text_field(row, "q_lang") != "zh")


def doc_to_visual(doc: dict[str, Any]) -> list[Any]:
    return image_visual(doc, "img_name", BENCHMARK)


def doc_to_text(doc: dict[str, Any], lmms_eval_specific_kwargs: dict[str, Any] | None = None) -> str:
    return f"{text_field(doc, 'question').strip()}\n{INSTRUCTION}"


def doc_to_target(doc: dict[str, Any]) -> str:
    return text_field(doc, "answer")


def process_results(doc: dict[str, Any], results: list[str]) -> dict[str, dict[str, Any]]:
    gold = text_field(doc, "answer")
    closed = text_field(doc, "answer_type").upper() == "CLOSED"
    scored = score_vqa(results[0], gold, closed)
    return item_result(
        METRICS,
        doc=doc,
        prediction=results[0],
        scores=scored.scores,
        item_id=f"{text_field(doc, 'img_name')}|{text_field(doc, 'question')}",
        cluster=text_field(doc, "img_name"),
        categories={
            "answer_type": "closed" if closed else "open",
            "modality": text_field(doc, "modality"),
            "location": text_field(doc, "location"),
            "content_type": text_field(doc, "content_type"),
        },
        question=text_field(doc, "question"),
        target=gold,
        extracted=scored.extracted,
        unparsed=scored.unparsed,
    )
