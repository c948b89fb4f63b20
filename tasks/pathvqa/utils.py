"""PathVQA: the image, the question, and a short-answer instruction (obv_eval.tasking.ImageVqa)."""

from obv_eval.tasking import ImageVqa, ObvTask, mean_score

__all__ = [
    "ObvTask",
    "doc_to_messages",
    "doc_to_target",
    "doc_to_text",
    "doc_to_visual",
    "mean_score",
    "process_results",
]

_TASK = ImageVqa("pathvqa", image_field="image")
doc_to_visual = _TASK.doc_to_visual
doc_to_messages = _TASK.doc_to_messages
doc_to_text = _TASK.doc_to_text
doc_to_target = _TASK.doc_to_target
process_results = _TASK.process_results
