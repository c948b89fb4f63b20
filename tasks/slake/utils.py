"""SLAKE (English): the image, the question, and a short-answer instruction (obv_eval.tasking.ImageVqa)."""

from typing import Any

import datasets

from obv_eval.tasking import ImageVqa, ObvTask, mean_score, text_field

__all__ = [
    "ObvTask",
    "doc_to_messages",
    "doc_to_target",
    "doc_to_text",
    "doc_to_visual",
    "english_only",
    "mean_score",
    "process_results",
]

_TASK = ImageVqa(
    "slake",
    image_field="img_name",
    answer_type_field="answer_type",
    category_fields=("modality", "location", "content_type"),
)
doc_to_visual = _TASK.doc_to_visual
doc_to_messages = _TASK.doc_to_messages
doc_to_text = _TASK.doc_to_text
doc_to_target = _TASK.doc_to_target
process_results = _TASK.process_results


def english_only(dataset: datasets.Dataset) -> datasets.Dataset:
    # Malformed rows are kept (they fail with their reason); only rows marked Chinese are left out.
    def is_english(row: dict[str, Any]) -> bool:
        return text_field(row, "q_lang") != "zh"

    return dataset.filter(is_english)
