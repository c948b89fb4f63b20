"""A task's utils.py (prompt and scoring functions), loaded the way lmms-eval loads it: by file path."""

from __future__ import annotations

import importlib.util
from types import ModuleType

from obv_eval.benchmarks import BENCHMARKS
from obv_eval.sources import tasks_package_dir


def task_utils(benchmark: str) -> ModuleType:
    path = tasks_package_dir() / BENCHMARKS[benchmark].rows_name / "utils.py"
    spec = importlib.util.spec_from_file_location(f"obv_task_utils_{benchmark}", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
