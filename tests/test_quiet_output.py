"""Quiet, informative output: a run prints our stage lines and none of the libraries' bars or warnings."""

from __future__ import annotations

import io
import logging
import os
import re
import subprocess
import sys
import time
import warnings
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from obv_eval.progress import MIN_RATE_SECONDS, Bar, generate_per_task

# What lmms-eval, datasets, transformers and Python's warnings machinery print when let through.
THIRD_PARTY_MARKERS = ("Postprocessing", "Map:", "Map (num_proc", "it/s]", "s/it]", "Warning", "warn(")


def test_demo_like_run_prints_only_our_stage_lines(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONWARNINGS": "default"}  # warnings on, as a user's shell may have them
    command = [sys.executable, "-m", "obv_eval.cli", "--tasks", "medqa", "pubmedqa", "--limit", "2"]
    done = subprocess.run(
        [*command, "--output-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    output = done.stdout + done.stderr
    found = [marker for marker in THIRD_PARTY_MARKERS if marker in output]
    assert not found, f"third-party output {found}:\n{done.stderr}"
    for stage in ("loading tiny-qwen2vl", "generated medqa: 2 items", "generated pubmedqa: 2 items"):
        assert f"obv-eval: {stage}" in done.stderr
    assert re.search(r"obv-eval: generated 4 items in [0-9.]+ s", done.stderr)
    assert "obv-eval: writing" in done.stderr
    assert "judge" not in done.stderr.lower().replace("no judge configured", "")  # no judge bar
    assert "medqa" in done.stdout and "pubmedqa" in done.stdout  # the table


def test_verbose_leaves_the_libraries_alone() -> None:
    from obv_eval.progress import quiet_libraries

    filters = list(warnings.filters)
    level = logging.getLogger("transformers").level
    quiet_libraries(verbose=True)
    assert warnings.filters == filters
    assert logging.getLogger("transformers").level == level


def _render(bar: Bar) -> str:
    return str(bar)


def test_no_rate_until_there_is_enough_to_measure() -> None:
    stream = io.StringIO()
    bar = Bar(total=2_000_000, file=stream)
    bar.update(1_000_000)  # e.g. cached verdicts counted in microseconds
    early = _render(bar)
    assert "?item/s" in early and not re.search(r"\d{4,}\.\d+item/s", early)
    bar.start_t -= MIN_RATE_SECONDS + 1  # as if the bar had run longer
    bar.update(10)
    later = _render(bar)
    assert "?item/s" not in later and "item/s" in later
    bar.close()


def test_cached_items_do_not_count_towards_the_rate() -> None:
    bar = Bar(total=100, initial=90, file=io.StringIO())
    bar.start_t -= MIN_RATE_SECONDS + 1
    bar.update(1)  # one real item, after the 90 given as already done
    assert "?item/s" in _render(bar)  # one item is too few for a rate
    bar.close()


class _FakeBackend:
    """Reports batches mixing tasks, as the transformers backend does after sorting by length."""

    def __init__(self) -> None:
        self.calls = 0
        self.progress: list[bool] = []

    def generate(self, requests: list[Any], progress: bool, on_batch: Any) -> list[Any]:
        self.calls += 1
        self.progress.append(progress)
        outputs = [SimpleNamespace(key=r.key) for r in requests]
        for start in range(0, len(outputs), 3):
            time.sleep(0.001)
            on_batch(outputs[start : start + 3])
        return outputs


def test_generation_lines_per_task_from_one_backend_call(capsys: Any) -> None:
    requests = [SimpleNamespace(key=(task, i)) for task, n in (("obv_a", 4), ("obv_b", 2)) for i in range(n)]
    backend = _FakeBackend()
    logged: list[Any] = []
    produced = generate_per_task(backend, requests, True, logged.extend)
    assert [o.key for o in produced] == [r.key for r in requests]
    assert len(logged) == len(requests)
    assert backend.calls == 1 and backend.progress == [False]  # same batches; the backend's bar off
    err = capsys.readouterr().err
    assert "obv-eval: generated a: 4 items" in err and "obv-eval: generated b: 2 items" in err
    assert err.index("generated a:") < err.index("generated b:")
    generate_per_task(_FakeBackend(), requests, False, None)
    assert capsys.readouterr().err == ""


def _obv(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONWARNINGS": "default"}
    return subprocess.run(
        [sys.executable, "-m", "obv_eval.cli", *args], capture_output=True, text=True, timeout=600, env=env
    )


def test_data_check_prints_no_library_bars_and_verbose_lets_them_through() -> None:
    quiet = _obv("data", "check", "medqa", "--data", "samples", "--no-progress")
    assert quiet.returncode == 0, quiet.stderr
    assert "medqa:" in quiet.stdout
    found = [marker for marker in THIRD_PARTY_MARKERS if marker in quiet.stdout + quiet.stderr]
    assert not found, f"third-party output {found}:\n{quiet.stderr}"
    verbose = _obv("data", "check", "medqa", "--data", "samples", "--verbose")
    assert verbose.returncode == 0, verbose.stderr
    assert "Map" in verbose.stderr  # the check can fail: datasets' bar is there when let through
