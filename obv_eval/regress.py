"""Regression gate: compare a run's results with a committed baseline's.

A check fails when
- a task of the baseline is missing from the run, or a metric of the baseline task is missing;
- items went missing: fewer items (n) than the baseline, or (with samples) baseline doc_ids absent;
- a fingerprint recorded in the baseline (task config, prompt, ...) differs or is absent in the run,
  because then the numbers are not comparable;
- a metric's mean drops by more than the tolerance (absolute, on the metric's own 0-1 scale; overridable
  per metric or per task/metric) AND, when both runs' samples are given, the paired 95% interval of the
  per-item difference lies entirely below zero. Without samples, or with too few paired items for an
  interval, the tolerance alone decides (the conservative choice).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tabulate import tabulate

from obv_eval.results import index_records, paired_scores
from obv_eval.stats import paired_difference

OK = "ok"
FAIL = "FAIL"
NEW = "new"
# Rounding noise (0.5 - 0.52 is -0.020000000000000018) must not turn "exactly the tolerance" into a drop.
_EPS = 1e-9


@dataclass(frozen=True)
class Check:
    """One row of the report. For metric rows baseline/run are means, delta = run - baseline, and limit is
    the lowest delta allowed (-tolerance); interval is the paired 95% interval of the delta, if computed."""

    task: str
    check: str
    baseline: float | int | str | None
    run: float | int | str | None
    status: str
    delta: float | None = None
    limit: float | None = None
    interval: tuple[float, float] | None = None
    detail: str = ""


@dataclass
class RegressReport:
    rows: list[Check] = field(default_factory=list)
    tolerance: float = 0.02

    @property
    def failed(self) -> bool:
        return any(row.status == FAIL for row in self.rows)

    @property
    def exit_code(self) -> int:
        """1 for a completed comparison that found a regression, 0 otherwise (the project's exit codes)."""
        return 1 if self.failed else 0

    @property
    def failures(self) -> list[Check]:
        return [row for row in self.rows if row.status == FAIL]

    def render(self) -> str:
        table = [
            [
                row.task,
                row.check,
                _cell(row.baseline),
                _cell(row.run),
                _cell(row.delta, signed=True),
                _cell(row.limit, signed=True),
                "" if row.interval is None else f"[{row.interval[0]:+.4f}, {row.interval[1]:+.4f}]",
                row.status,
                row.detail,
            ]
            for row in self.rows
        ]
        headers = ["task", "check", "baseline", "run", "delta", "limit", "paired 95% CI", "status", "detail"]
        text = tabulate(table, headers=headers, tablefmt="simple", disable_numparse=True)
        n_fail = len(self.failures)
        summary = (
            f"REGRESSION: {n_fail} of {len(self.rows)} checks failed (tolerance {self.tolerance:g})"
            if n_fail
            else f"OK: {len(self.rows)} checks passed (tolerance {self.tolerance:g})"
        )
        return f"{text}\n{summary}\n"


def _cell(value: float | int | str | None, signed: bool = False) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value if len(value) <= 16 else value[:13] + "..."
    if isinstance(value, int):
        return str(value)
    if not math.isfinite(value):
        return "nan"
    return f"{value:+.4f}" if signed else f"{value:.4f}"


def compare(
    baseline: Mapping[str, Any],
    run: Mapping[str, Any],
    tolerance: float = 0.02,
    baseline_samples: Iterable[Mapping[str, Any]] | None = None,
    run_samples: Iterable[Mapping[str, Any]] | None = None,
    overrides: Mapping[str, float] | None = None,
) -> RegressReport:
    """Compare run with baseline (results dicts). overrides maps "metric" or "task/metric" to a tolerance;
    the more specific key wins. Samples are the runs' samples.jsonl records (both or neither)."""
    overrides = dict(overrides or {})
    if (baseline_samples is None) != (run_samples is None):
        raise ValueError("pass samples for both the baseline and the run, or for neither")
    paired: tuple[list[Mapping[str, Any]], list[Mapping[str, Any]]] | None = None
    if baseline_samples is not None and run_samples is not None:
        paired = (list(baseline_samples), list(run_samples))
    report = RegressReport(tolerance=tolerance)
    base_tasks: Mapping[str, Any] = baseline["tasks"]
    run_tasks: Mapping[str, Any] = run["tasks"]

    for task in sorted(base_tasks):
        bt = base_tasks[task]
        if task not in run_tasks:
            report.rows.append(Check(task, "task", "present", "missing", FAIL, detail="task not in run"))
            continue
        rt = run_tasks[task]
        report.rows.extend(_fingerprint_checks(task, bt, rt))
        report.rows.append(_count_check(task, bt, rt))
        if paired is not None:
            report.rows.append(_items_check(task, *paired))
        for metric in sorted(bt["metrics"]):
            limit = -overrides.get(f"{task}/{metric}", overrides.get(metric, tolerance))
            report.rows.append(_metric_check(task, metric, bt, rt, limit, paired))
        for metric in sorted(set(rt["metrics"]) - set(bt["metrics"])):
            mean = rt["metrics"][metric]["mean"]
            report.rows.append(Check(task, metric, None, mean, NEW, detail="metric not in baseline"))

    for task in sorted(set(run_tasks) - set(base_tasks)):
        report.rows.append(Check(task, "task", "missing", "present", NEW, detail="task not in baseline"))
    return report


def _fingerprint_checks(task: str, bt: Mapping[str, Any], rt: Mapping[str, Any]) -> list[Check]:
    base_fp: Mapping[str, str] = bt.get("fingerprints", {})
    run_fp: Mapping[str, str] = rt.get("fingerprints", {})
    rows = []
    for key in sorted(base_fp):
        same = run_fp.get(key) == base_fp[key]
        detail = "" if same else ("absent in run" if key not in run_fp else "changed: scores not comparable")
        rows.append(
            Check(
                task, f"fingerprint:{key}", base_fp[key], run_fp.get(key), OK if same else FAIL, detail=detail
            )
        )
    return rows


def _count_check(task: str, bt: Mapping[str, Any], rt: Mapping[str, Any]) -> Check:
    bn, rn = int(bt["n"]), int(rt["n"])
    if rn < bn:
        return Check(task, "n", bn, rn, FAIL, detail=f"{bn - rn} fewer items than baseline")
    return Check(task, "n", bn, rn, OK)


def _items_check(
    task: str, base_records: list[Mapping[str, Any]], run_records: list[Mapping[str, Any]]
) -> Check:
    base_ids = {k for k in index_records(base_records) if k[0] == task}
    run_ids = {k for k in index_records(run_records) if k[0] == task}
    missing = sorted(doc for _, doc in base_ids - run_ids)
    if missing:
        shown = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
        return Check(
            task,
            "items",
            len(base_ids),
            len(run_ids),
            FAIL,
            detail=f"{len(missing)} baseline doc_ids missing: {shown}",
        )
    return Check(task, "items", len(base_ids), len(run_ids), OK)


def _metric_check(
    task: str,
    metric: str,
    bt: Mapping[str, Any],
    rt: Mapping[str, Any],
    limit: float,
    paired: tuple[list[Mapping[str, Any]], list[Mapping[str, Any]]] | None,
) -> Check:
    base_mean = bt["metrics"][metric]["mean"]
    if metric not in rt["metrics"]:
        return Check(task, metric, base_mean, None, FAIL, limit=limit, detail="metric missing from run")
    run_mean = rt["metrics"][metric]["mean"]
    if base_mean is None:
        return Check(task, metric, None, run_mean, OK, detail="baseline has no scored items")
    if run_mean is None:
        return Check(task, metric, base_mean, None, FAIL, limit=limit, detail="no scored items in run")
    delta = float(run_mean) - float(base_mean)
    dropped = delta < limit - _EPS
    interval: tuple[float, float] | None = None
    significant = True
    detail = f"dropped by more than {-limit:g}" if dropped else ""
    if paired is not None:
        a, b, clusters = paired_scores(paired[0], paired[1], task, metric)
        est = paired_difference(a, b, clusters)
        if math.isfinite(est.ci_low) and math.isfinite(est.ci_high):
            interval = (est.ci_low, est.ci_high)
            significant = est.ci_high < 0
            if dropped and not significant:
                detail = "drop within the paired 95% interval"
        elif dropped:
            detail += " (too few paired items for an interval)"
    status = FAIL if dropped and significant else OK
    return Check(task, metric, float(base_mean), float(run_mean), status, delta, limit, interval, detail)
