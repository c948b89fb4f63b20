"""MIMICEchoQA: the echo video, the question, the options, and what to answer with."""

from __future__ import annotations

from typing import Any

from obv_eval.scoring import extract_choice, extract_yes_no
from obv_eval.tasking import ObvTask, chat_messages, item_result, mean_score, text_field, video_visual

__all__ = [
    "ObvTask",
    "doc_to_messages",
    "doc_to_target",
    "doc_to_text",
    "doc_to_visual",
    "mean_score",
    "process_results",
]

BENCHMARK = "mimicechoqa"
LETTERS = ("A", "B", "C", "D")


def options(doc: dict[str, Any]) -> dict[str, str]:
    """The item's non-empty options by letter."""
    return {
        letter: text_field(doc, f"option_{letter}").strip()
        for letter in LETTERS
        if text_field(doc, f"option_{letter}").strip()
    }


def is_yes_no(doc: dict[str, Any]) -> bool:
    """A Yes/No item, decided by the answer text as the study's scripts do, whatever the options hold."""
    return text_field(doc, "answer").strip().rstrip(".").lower() in ("yes", "no")


def doc_to_visual(doc: dict[str, Any]) -> list[Any]:
    return video_visual(doc, "video", BENCHMARK)


def doc_to_messages(
    doc: dict[str, Any], lmms_eval_specific_kwargs: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    return chat_messages(doc_to_visual(doc), doc_to_text(doc))


def doc_to_text(doc: dict[str, Any], lmms_eval_specific_kwargs: dict[str, Any] | None = None) -> str:
    question = text_field(doc, "question").strip()
    if is_yes_no(doc):
        return f"{question}\nChoose Yes or No."
    lines = [f"{letter}. {text}" for letter, text in options(doc).items()]
    return "\n".join([question, *lines, "Choose A, B, C, or D."])


def doc_to_target(doc: dict[str, Any]) -> str:
    return text_field(doc, "correct_option")


def process_results(doc: dict[str, Any], results: list[str]) -> dict[str, dict[str, Any]]:
    prediction = results[0]
    choices = options(doc)
    gold = text_field(doc, "correct_option").strip().upper()
    yes_no = is_yes_no(doc)
    if yes_no:
        # Scored against the answer text: the options may be Yes/No, null, or anything else.
        said = extract_yes_no(prediction, question=text_field(doc, "question"))
        gold = text_field(doc, "answer").strip().rstrip(".").lower()
        extraction_value, parsed, reason = said.value, said.parsed, said.reason
    else:
        extraction = extract_choice(prediction, choices)
        extraction_value, parsed, reason = extraction.value, extraction.parsed, extraction.reason
    return item_result(
        ("accuracy",),
        doc=doc,
        choices=None if yes_no else choices,
        prediction=prediction,
        scores={"accuracy": float(extraction_value == gold)},
        item_id=text_field(doc, "messages_id"),
        cluster=text_field(doc, "study"),
        categories={
            "question_type": "yes_no" if is_yes_no(doc) else "multiple_choice",
            "view": text_field(doc, "view"),
            "structure": text_field(doc, "structure"),
            "answer_type": "closed",
        },
        question=text_field(doc, "question"),
        target=gold,
        extracted=extraction_value,
        unparsed=not parsed,
        unparsed_reason=reason,
    )
