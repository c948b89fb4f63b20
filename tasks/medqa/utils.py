"""MedQA (USMLE, 4 options): the question, lettered options, answer with the letter."""

from __future__ import annotations

import json
from typing import Any

from obv_eval.scoring import extract_choice
from obv_eval.tasking import ROW_ERROR_FIELD, ObvTask, chat_messages, item_result, mean_score, text_field

__all__ = [
    "ObvTask",
    "doc_to_messages",
    "doc_to_target",
    "doc_to_text",
    "doc_to_visual",
    "mean_score",
    "process_results",
]

INSTRUCTION = "Answer with the option's letter (A, B, C, or D)."


def read_options(doc: dict[str, Any]) -> tuple[dict[str, str], str | None]:
    """The lettered options of a row, and why they cannot be read (None when they can).

    Accepted: a dict {letter: text} (the hub's schema); the same as JSON text (a CSV copy); a list of
    {"key": letter, "value": text} structs or (letter, text) pairs, which is how a dict column round-trips
    through parquet as a map; a plain list of texts, lettered A, B, ... in order.
    """
    value = doc.get("options")
    if isinstance(value, str):  # a CSV copy keeps the dict as JSON text
        try:
            value = json.loads(value)
        except ValueError:
            return {}, "field 'options': text that is not JSON"
    if isinstance(value, list):
        if all(isinstance(v, dict) and set(v) == {"key", "value"} for v in value):
            value = {v["key"]: v["value"] for v in value}
        elif all(isinstance(v, list | tuple) and len(v) == 2 for v in value):
            value = dict(value)
        elif all(isinstance(v, str) for v in value):
            value = {chr(ord("A") + i): v for i, v in enumerate(value[:26])}
    if not isinstance(value, dict) or not value:
        return {}, "field 'options': expected the options as {letter: text}"
    # .strip(): some real rows carry a leading space (" Hepatic venous outflow obstruction").
    letters = sorted(value.items(), key=lambda item: str(item[0]))
    return {str(k).upper(): str(v).strip() for k, v in letters if v is not None}, None


def options(doc: dict[str, Any]) -> dict[str, str]:
    return read_options(doc)[0]


def doc_to_visual(doc: dict[str, Any]) -> list[Any]:
    return []


def doc_to_messages(
    doc: dict[str, Any], lmms_eval_specific_kwargs: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    return chat_messages([], doc_to_text(doc))


def doc_to_text(doc: dict[str, Any], lmms_eval_specific_kwargs: dict[str, Any] | None = None) -> str:
    lines = [f"{letter}. {text}" for letter, text in options(doc).items()]
    return "\n".join([text_field(doc, "question").strip(), *lines, INSTRUCTION])


def doc_to_target(doc: dict[str, Any]) -> str:
    return text_field(doc, "answer_idx")


def process_results(doc: dict[str, Any], results: list[str]) -> dict[str, dict[str, Any]]:
    choices, problem = read_options(doc)
    if problem and not doc.get(ROW_ERROR_FIELD):
        doc = {**doc, ROW_ERROR_FIELD: problem}  # a row whose options cannot be read fails alone
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
