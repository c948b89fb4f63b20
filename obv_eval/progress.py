"""obv-eval's own progress output, and silencing the libraries' (lmms-eval, datasets, transformers).

By default a run prints one line per stage (loading, generating per task with items/s and ETA,
judging only when a judge runs, writing) and nothing from the libraries; ``--verbose`` leaves the
libraries' bars, logs and warnings alone. Rates appear only once there is enough to measure: a bar
over cached items finishing in microseconds shows no rate rather than "10713711.30item/s".
"""

from __future__ import annotations

import logging
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any

from tqdm import tqdm

from obv_eval.benchmarks import TASK_PREFIX

__all__ = ["Bar", "generate_per_task", "quiet_libraries", "stage"]

# A rate (and so an ETA) is shown only after this much time and this many items.
MIN_RATE_SECONDS = 1.0
MIN_RATE_ITEMS = 2
_LIBRARY_LOGGERS = (
    *("lmms-eval", "lmms_eval", "transformers", "datasets", "httpx", "accelerate", "torch"),
    *("huggingface_hub", "numexpr", "peft", "deepspeed", "filelock"),
)


class Bar(tqdm):
    """tqdm with a rate and ETA only once they mean something (see MIN_RATE_SECONDS/ITEMS)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("unit", "item")
        kwargs.setdefault("file", sys.stderr)
        kwargs.setdefault("dynamic_ncols", True)
        super().__init__(*args, **kwargs)

    @property
    def format_dict(self) -> dict[str, Any]:
        values: dict[str, Any] = dict(super().format_dict)
        done = values["n"] - values.get("initial", 0)
        if values["elapsed"] < MIN_RATE_SECONDS or done < MIN_RATE_ITEMS:
            values["rate"] = 0  # tqdm prints '?' for a zero rate and for the ETA
        return values


def stage(log: Callable[[str], None], text: str) -> None:
    """One line for one stage of a run."""
    log(f"obv-eval: {text}")


def generate_per_task(
    backend: Any,
    requests: Sequence[Any],
    progress: bool,
    on_batch: Callable[[list[Any]], None] | None,
) -> list[Any]:
    """``backend.generate`` over every request, with our progress instead of the backend's.

    One call, as before, so every item meets the same batch-mates (the generation log's resume
    guarantee); a backend may mix tasks in a batch, so rates are over all items. On a terminal one bar
    (items/s and ETA) names the task last generated; each task that completes leaves one line, and
    the end one line with the total and the rate (in a log file only those lines).
    """
    totals: dict[str, int] = {}
    for request in requests:
        task = str(request.key[0])
        totals[task] = totals.get(task, 0) + 1
    done = dict.fromkeys(totals, 0)
    live = progress and sys.stderr.isatty()
    bar = Bar(total=len(requests), desc="obv-eval: generating", disable=not live, leave=False)
    started = time.perf_counter()

    def say(line: str) -> None:
        if live:
            bar.write(line, file=sys.stderr)
        elif progress:
            print(line, file=sys.stderr)

    def _batch(outputs: list[Any]) -> None:
        if on_batch is not None:
            on_batch(outputs)
        for output in outputs:
            task = str(output.key[0])
            done[task] += 1
            name = task.removeprefix(TASK_PREFIX)
            if done[task] == totals[task]:
                say(f"obv-eval: generated {name}: {totals[task]} items ({_clock(started)})")
            bar.set_description_str(f"obv-eval: generating {name}", refresh=False)
        bar.update(len(outputs))

    try:
        produced = list(backend.generate(requests, progress=False, on_batch=_batch))
    finally:
        bar.close()
    elapsed = time.perf_counter() - started
    rate = f", {len(requests) / elapsed:.2f} items/s" if elapsed >= MIN_RATE_SECONDS else ""
    say(f"obv-eval: generated {len(requests)} items in {elapsed:.1f} s{rate}")
    return produced


def _clock(started: float) -> str:
    return f"at {time.perf_counter() - started:.1f} s"


def _silent_tqdm(*args: Any, **kwargs: Any) -> tqdm:
    kwargs["disable"] = True
    return tqdm(*args, **kwargs)


def quiet_libraries(verbose: bool = False, evaluation: bool = True) -> None:
    """No third-party progress bars, log lines or warnings unless ``verbose``: the one output policy of
    obv-eval's commands and obv-train (their own stage lines and bars still show).

    lmms-eval draws its "Postprocessing" and context-building bars with no switch to turn them off,
    so its modules' ``tqdm`` name is pointed at a disabled bar (only with ``evaluation``: commands
    that do not evaluate need not load it); datasets' and transformers' bars and loggers have
    switches. Warnings raised from obv_eval's own code still show.
    """
    if verbose:
        return
    import datasets
    import transformers

    for name in _LIBRARY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    if evaluation:
        import lmms_eval.api.task
        import lmms_eval.evaluator

        for module in (lmms_eval.evaluator, lmms_eval.api.task):
            if hasattr(module, "tqdm"):
                module.tqdm = _silent_tqdm
    warnings.filterwarnings("ignore")
    warnings.filterwarnings("default", module=r"obv_eval(\..*)?$")
