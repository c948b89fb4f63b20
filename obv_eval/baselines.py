"""Reference rows that load no model: ``--model chance`` and ``--model majority`` (docs/controls.md).

They run through lmms-eval like any model (the same rows, prompts, records and run folder), with a
backend that answers nothing; their scores are then set from the records themselves:

* ``chance``: each closed item's exact expected accuracy when answering uniformly at random among
  its answers: 1/k for k lettered options shown, 1/2 for yes/no, 1/3 for PubMedQA's yes/no/maybe.
  Open items (and closed items with no answer set to draw from) have no chance level: not scored.
* ``majority``: every closed item answered with the most frequent gold label of its task and
  question type (MIMICEchoQA's yes/no and lettered items apart). It reads the test labels, so it
  is a reference for what the label distribution alone gives, never a model.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from obv_eval.backends.base import GenerationOutput, GenerationRequest, GenerationSettings, MediaSettings

CHANCE = "chance"
MAJORITY = "majority"
YES_NO = frozenset({"yes", "no"})
_MAYBE_TASKS = frozenset({"pubmedqa"})  # yes / no / maybe


@dataclass
class ReferenceBackend:
    """Answers nothing and loads nothing; the run's records then carry the reference's scores."""

    kind: str
    generation: GenerationSettings = field(default_factory=GenerationSettings)
    media: MediaSettings = field(default_factory=MediaSettings)
    name = "reference"

    def generate(
        self,
        requests: Sequence[GenerationRequest],
        progress: bool = True,
        on_batch: Callable[[list[GenerationOutput]], None] | None = None,
    ) -> list[GenerationOutput]:
        # The prompt is the task's text (options included): chance counts the options shown there.
        outputs = [GenerationOutput(r.key, "", prompt=r.text, output_tokens=0) for r in requests]
        if on_batch is not None and outputs:
            on_batch(outputs)
        return outputs

    def describe(self) -> dict[str, Any]:
        from obv_eval.registry import MODELS

        return {"backend": self.name, "reference": self.kind, "description": MODELS[self.kind].description}


def _group(record: dict[str, Any]) -> tuple[str, str]:
    categories = record.get("categories") or {}
    return str(record.get("task")), str(categories.get("question_type") or categories.get("answer_type"))


def _closed(record: dict[str, Any]) -> bool:
    return (record.get("categories") or {}).get("answer_type") == "closed"


def _label(record: dict[str, Any]) -> str:
    return str(record.get("target") or "").strip().rstrip(".").lower()


def chance_level(record: dict[str, Any]) -> float | None:
    """The expected accuracy of a uniform random answer to this item (None: no answer set to draw from)."""
    from obv_eval.report import options_from_prompt

    if not _closed(record):
        return None
    if record.get("task") in _MAYBE_TASKS:
        return 1 / 3
    options = options_from_prompt(str(record.get("prompt") or ""))
    if options and (record.get("categories") or {}).get("question_type") != "yes_no":
        return 1 / len(options)
    if _label(record) in YES_NO:
        return 1 / 2
    return None


def majority_labels(records: Sequence[dict[str, Any]]) -> dict[tuple[str, str], str]:
    """The most frequent gold label of each (task, question type) among closed items (ties: the first
    label in sorted order, so the answer never depends on the order of the rows)."""
    counts: dict[tuple[str, str], Counter[str]] = {}
    for record in records:
        if _closed(record) and record.get("status") != "failed":
            counts.setdefault(_group(record), Counter())[_label(record)] += 1
    return {group: min(c, key=lambda label: (-c[label], label)) for group, c in counts.items()}


def score_reference(kind: str, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The records with the reference's answer and accuracy (only accuracy: lexical metrics of an
    answer nobody gave would mean nothing). A failed row stays failed."""
    labels = majority_labels(records) if kind == MAJORITY else {}
    out = []
    for record in records:
        record = dict(record)
        if record.get("status") == "failed":  # a bad row: failed for every model, scored 0
            out.append({**record, "scores": {"accuracy": 0.0}})
            continue
        if kind == CHANCE:
            value = chance_level(record)
            prediction, why = "", "no chance level: open-ended, or no answer set to draw from"
        else:
            label = labels.get(_group(record)) if _closed(record) else None
            value = None if label is None else float(_label(record) == label)
            prediction, why = label or "", "majority: open-ended items have no label to repeat"
        record.update(
            prediction=prediction,
            extracted=prediction or None,
            status="ok",
            unparsed=False,
            reason=None if value is not None else why,
            scores={"accuracy": value},
        )
        out.append(record)
    return out


def reference_model(kind: str, progress: bool = True) -> Any:
    """The lmms-eval model of a reference row (lmms-eval is imported only here, when one runs)."""
    from obv_eval.model_adapters.base import ObvModel

    class ReferenceModel(ObvModel):
        adapter_id = f"obv_{kind}"

    model = ReferenceModel(progress=progress)
    model.backend = ReferenceBackend(kind)
    return model
