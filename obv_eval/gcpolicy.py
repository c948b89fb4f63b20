"""When Python's cyclic garbage collector runs during a command (measured, not guessed).

Start-up (torch, transformers, lmms-eval, datasets, the model and its tokenizer) leaves about 600,000
objects that live until the process ends. Each full collection walks all of them (0.3 s here), and a
run made about a dozen of them (1.7 s on a 12-item run), plus 1.4 s of collections in the
interpreter's own shutdown. So: no collections while start-up builds those objects, one collection
when it ends (garbage made so far is freed, never kept), then freeze the survivors so that later
collections walk only what the run itself makes; and at exit, freeze again so the shutdown does
not walk everything once more (the operating system frees the memory).
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def long_lived_objects() -> Iterator[None]:
    """Objects made inside live for the rest of the process: collect once at the end, then freeze."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.collect()
        gc.freeze()
        if enabled:
            gc.enable()


def before_exit() -> None:
    """Only right before the process exits: nothing is collected after this."""
    gc.freeze()
