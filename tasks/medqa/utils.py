"""MedQA (USMLE, 4 options): the question, lettered options, answer with the letter."""

from __future__ import annotations

import json
from typing import Any

from obv_eval.scoring import extract_choice
from obv_eval.tasking import ObvTask, item_result, mean_score, text_field

__all__ = ["ObvTask", "doc_to_target", "doc_to_text", "doc_to_visual", "mean_score", "process_results"]

INSTRUCTION = "Answer with the option's letter (A, B, C, or D)."


def options(doc: dict[str, Any]) -> dict[str, str]:
    value = doc.get("options") or {}
    if isinstance(value, str):  # a CSV copy keeps the dict as JSON text
        value = json.loads(value)
    # .strip(): some real rows carry a leading space (" Hepatic venous outflow obstruction").
    return {str(k).upper(): str(v).strip() for k, v in sorted(value.items()) if v is not None}


def doc_to_visual(doc: dict[str, Any]) -> list[Any]:
    return []


def doc_to_text(doc: dict[str, Any], lmms_eval_specific_kwargs: dict[str, Any] | None = None) -> str:
    lines = [f"{letter}. {text}" for letter, text in options(doc).items()]
    return "\n".join([text_field(doc, "question").strip(), *lines, INSTRUCTION])


def doc_to_target(doc: dict[str, Any]) -> str:
    return text_field(doc, "answer_idx")


def process_results(doc: dict[str, Any], results: list[str]) -> dict[str, dict[str, Any]]:
    choices = options(doc)
    gold = text_field(doc, "answer_idx").strip().upper()
    extraction = extract_choice(results[0], choices)
    question = text_field(doc, "question")
    return item_result(
        ("accuracy",),
        doc=doc,
        choices=choices,
        prediction=results[0],
        scores={"accuracy": float(extraction.value == gold)},
        item_id=question[:80],
        cluster=question,  # no shared source: each question is its own cluster
        categories={"meta_info": text_field(doc, "meta_info"), "answer_type": "closed"},
        question=question,
        target=gold,
        extracted=extraction.value,
        unparsed=not extraction.parsed,
        unparsed_reason=extraction.reason,
    )
