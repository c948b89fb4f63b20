"""Records in the runner's format for tests that need a particular shape of scores."""

from __future__ import annotations

from typing import Any


def unjudged_vqarad_records(shift: int) -> list[dict[str, Any]]:
    """40 VQA-RAD items in pairs per image: 30 closed (scored, pattern moved by `shift`), 10 open and
    unjudged, so the task's primary accuracy is "not scored" and only accuracy_closed compares."""
    return [
        {
            "task": "vqarad",
            "doc_id": i,
            "cluster": f"img{i // 2}",
            "status": "ok",
            "categories": {"answer_type": "closed" if i < 30 else "open"},
            "scores": {"accuracy": float((i + shift) % 3 == 0) if i < 30 else None},
        }
        for i in range(40)
    ]
