"""Regression gate: compare a run's results with a committed baseline's.

A check fails when
- a task of the baseline is missing from the run, or a metric of the baseline task is missing;
- items went missing: fewer items (n) than the baseline, or (with samples) baseline doc_ids absent;
- the populations differ: a task's scored, unscored or failed count, or a metric's unscored count, moved
  by more than the count tolerance (a fraction of the baseline's n, default 0.02) in either direction;
- the judge settings differ (model, prompt, output mode, ...) unless allow_judge_change;
- a fingerprint recorded in the baseline (task config, prompt, ...) differs or is absent in the run,
  because then the numbers are not comparable;
- a metric dropped: with both runs' samples, on the items present and scored in both, the paired difference
  run − baseline is tested one-sided against the tolerance line (H0: drop <= tolerance) with t = (mean +
  tolerance) / clustered SE on G − 1 degrees of freedom (G = n when every item is its own cluster: the
  paired t-test). The metric checks form two families, split by Bonferroni and Holm-adjusted within each:
  the primary family holds each task's primary metric (the number the task reports: its primary metric, or
  the closed-item accuracy the results name when the primary is "not scored") and gets PRIMARY_SHARE of
  alpha (0.8 · 0.05 = 0.04); every other metric is in the secondary family with the rest (0.01). A check
  fails when its Holm-adjusted p is below its family's alpha, so the whole gate's false-alarm rate is at
  most alpha = 0.05 whatever the dependence between checks. (A family that is empty gives its share to the
  other: membership is fixed by the baseline, not by the p-values.) Why two families: with all 28 metrics in
  one Holm family a primary drop is judged at 0.05/28 and, on tasks with few clusters, the t(G − 1) quantile
  at that level costs much of the catch rate; the simulation measured the split. Without samples, or with
  too few clusters for an SE, the point estimate alone decides: a drop beyond the tolerance fails (the
  conservative choice). A metric the records do not carry by name, such as accuracy_closed (the summary's
  name for the primary metric on the closed items when open ones were not judged), is paired on the primary
  metric's per-item scores of the closed items. The rule and its operating characteristics come from
  benchmarks/gate_simulation.py.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tabulate import tabulate

from obv_eval.results import index_records, paired_scores
from obv_eval.stats import PairedTest, clustered_pvalue, holm, paired_difference, paired_test

OK = "ok"
FAIL = "FAIL"
NEW = "new"
ALPHA = 0.05
# Share of alpha for the family of every task's primary metric; the other metrics share the rest.
PRIMARY_SHARE = 0.8
PRIMARY = "primary"
SECONDARY = "secondary"
DEFAULT_TOLERANCE = 0.0
DEFAULT_COUNT_TOLERANCE = 0.02
# Judge settings that do not change a verdict (how fast, how patient), left out of the comparison.
_JUDGE_OPERATIONAL = frozenset({"concurrency", "timeout_s", "max_retries", "api_key_env"})
# Rounding noise (0.5 - 0.52 is -0.020000000000000018) must not turn "exactly the tolerance" into a drop.
_EPS = 1e-9


@dataclass(frozen=True)
class Check:
    """One row of the report. For metric rows baseline/run are means, delta = run - baseline, and limit is
    the lowest delta allowed (-tolerance); interval is the paired 95% interval of the delta, if computed;
    family is the multiplicity family of a metric check ("primary" or "secondary"), pvalue its Holm-adjusted
    one-sided p within that family."""

    task: str
    check: str
    baseline: float | int | str | None
    run: float | int | str | None
    status: str
    delta: float | None = None
    limit: float | None = None
    interval: tuple[float, float] | None = None
    detail: str = ""
    pvalue: float | None = None
    family: str = ""


@dataclass
class RegressReport:
    rows: list[Check] = field(default_factory=list)
    tolerance: float = DEFAULT_TOLERANCE

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
                _pvalue_cell(row),
                row.status,
                row.detail,
            ]
            for row in self.rows
        ]
        headers = [
            "task",
            "check",
            "baseline",
            "run",
            "delta",
            "limit",
            "paired 95% CI",
            "p (Holm, family)",
            "status",
        ]
        headers.append("detail")
        text = tabulate(table, headers=headers, tablefmt="simple", disable_numparse=True)
        n_fail = len(self.failures)
        summary = (
            f"REGRESSION: {n_fail} of {len(self.rows)} checks failed (tolerance {self.tolerance:g})"
            if n_fail
            else f"OK: {len(self.rows)} checks passed (tolerance {self.tolerance:g})"
        )
        return f"{text}\n{summary}\n"


def _pvalue_cell(row: Check) -> str:
    """The Holm-adjusted p with the family it was adjusted in: the same p means different things there."""
    if row.pvalue is None or not math.isfinite(row.pvalue):
        return ""
    return f"{row.pvalue:.3g} ({row.family})" if row.family else f"{row.pvalue:.3g}"


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
    tolerance: float = DEFAULT_TOLERANCE,
    baseline_samples: Iterable[Mapping[str, Any]] | None = None,
    run_samples: Iterable[Mapping[str, Any]] | None = None,
    overrides: Mapping[str, float] | None = None,
    count_tolerance: float = DEFAULT_COUNT_TOLERANCE,
    allow_judge_change: bool = False,
    alpha: float = ALPHA,
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
    report.rows.append(_judge_check(baseline, run, allow_judge_change))
    families: dict[str, list[int]] = {PRIMARY: [], SECONDARY: []}

    for task in sorted(base_tasks):
        bt = base_tasks[task]
        if task not in run_tasks:
            report.rows.append(Check(task, "task", "present", "missing", FAIL, detail="task not in run"))
            continue
        rt = run_tasks[task]
        report.rows.extend(_fingerprint_checks(task, bt, rt))
        report.rows.append(_count_check(task, bt, rt))
        report.rows.extend(_population_checks(task, bt, rt, count_tolerance))
        if paired is not None:
            report.rows.append(_items_check(task, *paired))
        primary = gated_primary(bt)
        for metric in sorted(bt["metrics"]):
            limit = -overrides.get(f"{task}/{metric}", overrides.get(metric, tolerance)) + 0.0  # no -0.0
            family = PRIMARY if metric == primary else SECONDARY
            families[family].append(len(report.rows))
            check = _metric_check(task, metric, bt, rt, limit, paired)
            report.rows.append(dataclasses.replace(check, family=family))
        for metric in sorted(set(rt["metrics"]) - set(bt["metrics"])):
            mean = rt["metrics"][metric]["mean"]
            report.rows.append(Check(task, metric, None, mean, NEW, detail="metric not in baseline"))

    for task in sorted(set(run_tasks) - set(base_tasks)):
        report.rows.append(Check(task, "task", "missing", "present", NEW, detail="task not in baseline"))
    both = bool(families[PRIMARY]) and bool(families[SECONDARY])
    shares = (
        {PRIMARY: PRIMARY_SHARE, SECONDARY: 1 - PRIMARY_SHARE} if both else {PRIMARY: 1.0, SECONDARY: 1.0}
    )
    for family, rows in families.items():
        _decide_by_holm(report, rows, alpha * shares[family], family)
    return report


def gated_primary(task_summary: Mapping[str, Any]) -> str | None:
    """The metric of a task's primary family: its primary metric, or, when the results mark that "not
    scored" (open items not judged), the closed-item metric they report instead; None if unknown."""
    primary = task_summary.get("primary_metric")
    if primary is None:
        return None
    closed = f"{primary}_closed"
    if primary in (task_summary.get("not_scored") or {}) and closed in task_summary.get("metrics", {}):
        return closed
    return str(primary)


def _decide_by_holm(report: RegressReport, metric_rows: list[int], alpha: float, family: str) -> None:
    """Holm-adjust, within one family, the one-sided p-values of the metric checks that have one, and
    decide them at the family's alpha."""
    raw: dict[int, float] = {}
    for i in metric_rows:
        pvalue = report.rows[i].pvalue
        if pvalue is not None:
            raw[i] = pvalue
    adjusted = holm({str(i): p for i, p in raw.items()})
    for i in raw:
        row = report.rows[i]
        p = adjusted[str(i)]
        failed = math.isfinite(p) and p < alpha
        line = f"{abs(row.limit or 0.0):g}"
        detail = (
            f"paired drop beyond {line} (one-sided Holm p {p:.3g} < {alpha:g}, {family} family)"
            if failed
            else (
                f"drop not beyond {line} at Holm-adjusted p < {alpha:g} ({family} family)"
                if (row.delta or 0) < 0
                else ""
            )
        )
        report.rows[i] = dataclasses.replace(
            row, status=FAIL if failed else OK, detail=(detail + row.detail).strip(), pvalue=p
        )


def _judge_check(baseline: Mapping[str, Any], run: Mapping[str, Any], allow: bool) -> Check:
    def settings(results: Mapping[str, Any]) -> dict[str, Any]:
        judge = results.get("provenance", {}).get("judge", {}) or {}
        described = {k: v for k, v in (judge.get("settings") or {}).items() if k not in _JUDGE_OPERATIONAL}
        return {"configured": judge.get("configured"), **described}

    base, mine = settings(baseline), settings(run)
    changed = sorted(k for k in base.keys() | mine.keys() if base.get(k) != mine.get(k))
    if not changed:
        return Check("*", "judge settings", "same", "same", OK)
    shown = ", ".join(f"{k}: {base.get(k)!r} -> {mine.get(k)!r}" for k in changed[:4])
    status = OK if allow else FAIL
    detail = ("changed (allowed): " if allow else "changed: verdicts not comparable: ") + shown
    return Check("*", "judge settings", "baseline", "changed", status, detail=detail)


def _population_checks(
    task: str, bt: Mapping[str, Any], rt: Mapping[str, Any], count_tolerance: float
) -> list[Check]:
    """Scored/unscored/failed counts, and each metric's unscored count, within count_tolerance · n."""
    allowed = math.floor(count_tolerance * int(bt["n"]) + _EPS)
    pairs = [(key, bt.get(key), rt.get(key)) for key in ("scored", "unscored", "failed")]
    base_unscored = bt.get("unscored_by_metric", {})
    run_unscored = rt.get("unscored_by_metric", {})
    pairs += [(f"unscored:{m}", base_unscored[m], run_unscored.get(m)) for m in sorted(base_unscored)]
    rows = []
    for key, b, r in pairs:
        if b is None or r is None:
            continue
        moved = abs(int(r) - int(b))
        if moved > allowed:
            detail = f"changed by {moved} (allowed {allowed}): the runs score different populations"
            rows.append(Check(task, key, int(b), int(r), FAIL, detail=detail))
        else:
            rows.append(Check(task, key, int(b), int(r), OK))
    return rows


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
    if paired is None:
        detail = f"dropped by more than {-limit:g} (no samples: point estimate)" if dropped else ""
        status = FAIL if dropped else OK
        return Check(task, metric, float(base_mean), float(run_mean), status, delta, limit, detail=detail)
    a, b, clusters = paired_metric_scores(paired[0], paired[1], task, metric, bt)
    est = paired_difference(a, b, clusters)
    where = f" on {len(a)} paired items"
    if not (math.isfinite(est.se) and math.isfinite(est.ci_low)):
        paired_delta = est.mean if math.isfinite(est.mean) else delta
        dropped = paired_delta < limit - _EPS
        detail = (f"dropped by more than {-limit:g}" if dropped else "") + " (too few clusters for an SE)"
        status = FAIL if dropped else OK
        return Check(
            task, metric, float(base_mean), float(run_mean), status, paired_delta, limit, None, detail
        )
    shifted = type(est)(est.mean - limit, est.se, est.ci_low, est.ci_high, est.n, est.n_clusters)
    pvalue = clustered_pvalue(shifted, alternative="less")
    # status is decided after Holm over all metric checks (_decide_by_holm)
    return Check(
        task,
        metric,
        float(base_mean),
        float(run_mean),
        OK,
        est.mean,
        limit,
        (est.ci_low, est.ci_high),
        where,
        pvalue,
    )


def paired_metric_scores(
    base_records: Sequence[Mapping[str, Any]],
    run_records: Sequence[Mapping[str, Any]],
    task: str,
    metric: str,
    bt: Mapping[str, Any],
) -> tuple[list[float], list[float], list[str]]:
    """results.paired_scores, except that the closed-item alias of a not-scored primary metric (which
    no record carries by name) pairs on the primary metric's scores of the closed items. bt: the
    baseline's task summary."""
    primary = bt.get("primary_metric")
    named = any(metric in (r.get("scores") or {}) for r in base_records if r.get("task") == task)
    if named or primary is None or metric != f"{primary}_closed":
        return paired_scores(base_records, run_records, task, metric)

    def closed(records: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
        return [
            r
            for r in records
            if r.get("task") == task and (r.get("categories") or {}).get("answer_type") == "closed"
        ]

    return paired_scores(closed(base_records), closed(run_records), task, str(primary))


def paired_task_tests(
    base: Mapping[str, Any],
    base_records: Sequence[Mapping[str, Any]],
    other: Mapping[str, Any],
    other_records: Sequence[Mapping[str, Any]],
) -> dict[str, tuple[str, int, PairedTest | None]]:
    """Per task of both runs: (metric, paired n, the paired test of other - base), as `compare` prints
    and `controls` reuses. A primary metric "not scored" in either run (open items not judged) is
    compared on what both scored, the closed items, under its own name (accuracy_closed)."""
    tests: dict[str, tuple[str, int, PairedTest | None]] = {}
    for task in [t for t in base["tasks"] if t in other["tasks"]]:
        primary = base["tasks"][task]["primary_metric"]
        unjudged = any(primary in (r["tasks"][task].get("not_scored") or {}) for r in (base, other))
        metric = f"{primary}_closed" if unjudged else primary
        a, b, clusters = paired_metric_scores(base_records, other_records, task, metric, base["tasks"][task])
        tests[task] = (metric, len(a), paired_test(a, b, clusters) if a else None)
    return tests
