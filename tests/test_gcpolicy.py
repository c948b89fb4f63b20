"""The collector policy of a command (obv_eval.gcpolicy): nothing lost, nothing leaked, state restored."""

from __future__ import annotations

import gc
import weakref

import pytest

from obv_eval.gcpolicy import long_lived_objects


class _Node:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: only the cyclic collector can free it


@pytest.fixture(autouse=True)
def _unfreeze() -> object:
    yield
    gc.unfreeze()  # frozen objects go back to the collector: other tests see a normal process


def test_no_collection_inside_and_garbage_freed_at_the_end() -> None:
    collections: list[int] = []

    def count(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            collections.append(info["generation"])

    gc.callbacks.append(count)
    try:
        with long_lived_objects():
            for _ in range(20_000):  # enough allocations to trigger collections with gc enabled
                _Node()
            garbage = _Node()
            gone = weakref.ref(garbage)
            del garbage
            during = list(collections)
            assert gc.isenabled() is False
    finally:
        gc.callbacks.remove(count)
    assert during == []  # start-up ran without the collector
    assert gone() is None  # the cycle made inside was collected once at the end, not frozen
    assert gc.isenabled()


def test_survivors_are_frozen() -> None:
    with long_lived_objects():
        kept = [_Node() for _ in range(10)]
    assert gc.get_freeze_count() >= len(kept)
    collectable = {id(o) for o in gc.get_objects()}  # frozen objects are in no generation
    assert not collectable & {id(n) for n in kept}


def test_state_restored_on_error_and_when_already_disabled() -> None:
    with pytest.raises(RuntimeError), long_lived_objects():
        raise RuntimeError("start-up failed")
    assert gc.isenabled()
    gc.disable()
    try:
        with long_lived_objects():
            pass
        assert not gc.isenabled()  # a caller that had it off keeps it off
    finally:
        gc.enable()
