"""PubMedQA (PQA-L): the abstract's contexts, the question, answer yes, no or maybe."""

from __future__ import annotations

import json
from typing import Any

from obv_eval.scoring import extract_yes_no
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

INSTRUCTION = "Answer the question with yes, no, or maybe."


def read_contexts(doc: dict[str, Any]) -> tuple[list[str], str | None]:
    """The abstract's context passages, and why they cannot be read (None when they can)."""
    value = doc.get("context") or {}
    if isinstance(value, str):  # a CSV copy keeps the dict as JSON text
        try:
            value = json.loads(value)
        except ValueError:
            return [], "field 'context': text that is not JSON"
    if not isinstance(value, dict):
        return [], "field 'context': expected an object with 'contexts'"
    passages = value.get("contexts") or []
    return [str(c) for c in (passages if isinstance(passages, list | tuple) else [passages])], None


def contexts(doc: dict[str, Any]) -> list[str]:
    return read_contexts(doc)[0]


def doc_to_visual(doc: dict[str, Any]) -> list[Any]:
    return []


def doc_to_messages(
    doc: dict[str, Any], lmms_eval_specific_kwargs: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    return chat_messages([], doc_to_text(doc))


def doc_to_text(doc: dict[str, Any], lmms_eval_specific_kwargs: dict[str, Any] | None = None) -> str:
    context = "\n".join(contexts(doc))
    return f"Context: {context}\nQuestion: {text_field(doc, 'question').strip()}\n{INSTRUCTION}"


def doc_to_target(doc: dict[str, Any]) -> str:
    return text_field(doc, "final_decision")


def process_results(doc: dict[str, Any], results: list[str]) -> dict[str, dict[str, Any]]:
    problem = read_contexts(doc)[1]
    if problem and not doc.get(ROW_ERROR_FIELD):
        doc = {**doc, ROW_ERROR_FIELD: problem}  # a row whose context cannot be read fails alone
    gold = text_field(doc, "final_decision").strip().lower()
    extraction = extract_yes_no(results[0], allow_maybe=True)
    return item_result(
        ("accuracy",),
        doc=doc,
        prediction=results[0],
        scores={"accuracy": float(extraction.value == gold)},
        item_id=text_field(doc, "pubid"),
        cluster=text_field(doc, "pubid"),
        categories={"answer": gold, "answer_type": "closed"},
        question=text_field(doc, "question"),
        target=gold,
        extracted=extraction.value,
        unparsed=not extraction.parsed,
        unparsed_reason=extraction.reason,
    )
