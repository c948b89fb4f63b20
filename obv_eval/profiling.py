"""Wall time per stage of a run (decode, processor, vision tower, prefill, ...), for the benchmarks.

Off unless enabled (`enable()`, or the environment variable OBV_EVAL_PROFILE naming the JSON file a run
writes its profile to), and then cheap: one perf_counter pair per stage entered. Stages nest and time is
exclusive: a vision-tower call inside a prefill counts for "vision", not twice. Threads keep their own
stack (the media loader runs beside generation), so a stage's total is the sum over threads and may
exceed the run's wall time.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

PROFILE_ENV = "OBV_EVAL_PROFILE"

_lock = threading.Lock()
_local = threading.local()
_seconds: dict[str, float] = {}
_calls: dict[str, int] = {}
_enabled = bool(os.environ.get(PROFILE_ENV))


def enable(on: bool = True) -> None:
    global _enabled
    _enabled = on


def enabled() -> bool:
    return _enabled


def reset() -> None:
    with _lock:
        _seconds.clear()
        _calls.clear()


@contextmanager
def stage(name: str) -> Iterator[None]:
    """Count the time spent inside (less any nested stage's) under `name`."""
    if not _enabled:
        yield
        return
    stack: list[list[float]] = getattr(_local, "stack", None) or []
    _local.stack = stack
    frame = [time.perf_counter(), 0.0]  # start, time taken by nested stages
    stack.append(frame)
    try:
        yield
    finally:
        stack.pop()
        elapsed = time.perf_counter() - frame[0]
        if stack:
            stack[-1][1] += elapsed
        with _lock:
            _seconds[name] = _seconds.get(name, 0.0) + elapsed - frame[1]
            _calls[name] = _calls.get(name, 0) + 1


def snapshot() -> dict[str, dict[str, float]]:
    """{stage: {"seconds": total, "calls": n}}, in the order stages were first seen."""
    with _lock:
        return {name: {"seconds": _seconds[name], "calls": _calls[name]} for name in _seconds}


def write_if_requested() -> Path | None:
    """Write the profile to the file OBV_EVAL_PROFILE names (if set); returns that path."""
    target = os.environ.get(PROFILE_ENV)
    if not target:
        return None
    path = Path(target)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(snapshot(), indent=2) + "\n", encoding="utf-8")
    return path
