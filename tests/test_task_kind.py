"""obv tasks learn from lmms-eval's task loader whether a chat or a simple model will read them; a loader
that no longer says is an error, not a silent guess (a chat model given simple requests runs blind)."""

from __future__ import annotations

from typing import Any

import pytest

from obv_eval.tasking import _loaded_for_chat_model


def _load_individual_task_or_group(**locals_: Any) -> bool:
    """Stands in for lmms-eval 0.7.3's TaskManager method of this name (the frame obv looks for)."""
    task_type = locals_.get("task_type", "<absent>")
    if task_type == "<absent>":
        del task_type
    return _loaded_for_chat_model()


def test_the_loaders_task_type_decides() -> None:
    assert _load_individual_task_or_group(task_type="chat") is True
    assert _load_individual_task_or_group(task_type="simple") is False
    assert _loaded_for_chat_model() is False  # no lmms-eval loader on the stack: obv's own adapters


@pytest.mark.parametrize("task_type", [None, "messages", "<absent>"])
def test_a_loader_without_a_known_task_type_is_an_error(task_type: str | None) -> None:
    with pytest.raises(RuntimeError, match="chat or a simple model"):
        _load_individual_task_or_group(task_type=task_type)
