"""How a model adapter reports an item it could not run, through lmms-eval's text-only channel.

lmms-eval expects one string per request, so a failed item travels as a marked string; the task's
scoring recognises the mark, scores the item 0 and records the reason. Nothing is dropped.
"""

from __future__ import annotations

FAILURE_MARK = "\u0000obv-eval item failed: "


def failure_text(reason: str) -> str:
    return FAILURE_MARK + " ".join(reason.split())


def parse_failure(text: str) -> str | None:
    """The failure reason carried by `text`, or None for a real model reply."""
    return text[len(FAILURE_MARK) :] if text.startswith(FAILURE_MARK) else None
