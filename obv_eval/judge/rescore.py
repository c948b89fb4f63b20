"""Apply the judge to per-item records (the runner's samples.jsonl rows)."""

from __future__ import annotations

import copy
import json
from collections.abc import Collection, Sequence
from typing import Any

from obv_eval.judge.client import Judge, JudgeItem, Verdict
from obv_eval.judge.config import JudgeConfig


def _as_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return " | ".join(value)  # several accepted gold answers
    return json.dumps(value, ensure_ascii=False)


def _modality(task: Any) -> str:
    """The modality of a record's task (named in the judge prompt); "video" when unknown."""
    from obv_eval.benchmarks import BENCHMARKS

    benchmark = BENCHMARKS.get(task) if isinstance(task, str) else None
    return benchmark.modality if benchmark is not None else "video"


def rescore_samples(
    records: Sequence[dict[str, Any]],
    config: JudgeConfig,
    open_ended_tasks: Collection[str],
    *,
    judge: Judge | None = None,
    progress: bool | None = None,
) -> list[dict[str, Any]]:
    """New records with ``scores["judge"]`` set on every record of ``open_ended_tasks``.

    - status ``ok``: the judge's 0/1, or ``None`` plus ``judge_reason`` when unscored (no judge
      configured, judge failures, no question in the record);
    - status ``failed``: 0 (a failed generation counts against the model, in the denominator);
    - records of other tasks are copied unchanged. The input records are never modified.

    Pass ``judge`` to reuse its cache and read its ``stats`` afterwards.
    """
    judge = judge if judge is not None else Judge(config)
    tasks = set(open_ended_tasks)
    out = [copy.deepcopy(r) for r in records]
    pending: list[tuple[int, JudgeItem]] = []
    for i, record in enumerate(out):
        if record.get("task") not in tasks:
            continue
        scores = record.setdefault("scores", {})
        record.pop("judge_reason", None)  # a stale reason from an earlier pass
        if record.get("status") != "ok":
            scores["judge"] = 0
            continue
        question = record.get("question")
        if not isinstance(question, str) or not question.strip():
            scores["judge"] = None
            record["judge_reason"] = "record has no question"
            continue
        prediction = record.get("prediction")
        pending.append(
            (
                i,
                JudgeItem(
                    question=question,
                    gold=_as_text(record.get("target", "")),
                    prediction=prediction if isinstance(prediction, str) else _as_text(prediction or ""),
                    modality=_modality(record.get("task")),
                ),
            )
        )
    verdicts: list[Verdict] = judge.judge_many([item for _, item in pending], progress=progress)
    for (i, _), verdict in zip(pending, verdicts, strict=True):
        out[i]["scores"]["judge"] = verdict.score
        if verdict.score is None:
            out[i]["judge_reason"] = verdict.reason
    return out
