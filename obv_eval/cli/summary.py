"""What `run` and `rescore` print at the end: the summary table and the error-budget lines."""

from __future__ import annotations

import sys
import textwrap
from typing import Any

from tabulate import tabulate

from obv_eval.escaping import TERMINAL_WIDTH, terminal_text
from obv_eval.redaction import redact
from obv_eval.usage import CHECK_FAILED


def _score(estimate: dict[str, Any] | None) -> tuple[str, str]:
    """(score, 95% interval) as percentages; "not scored" where nothing was scored."""
    if not estimate:
        return "-", ""
    mean = estimate.get("mean")
    if mean is None or mean != mean:  # nothing scored
        return "not scored", ""
    low, high = estimate.get("ci_low"), estimate.get("ci_high")
    if low is None or high is None or low != low:
        return f"{100 * mean:.1f}", ""
    return f"{100 * mean:.1f}", f"[{100 * low:.1f}, {100 * high:.1f}]"


def render_summary(results: dict[str, Any]) -> str:
    """One row per metric (as lm-eval prints), the task's counts on its first row, the primary metric first
    with its closed/open split under it: fits 100 columns however many metrics a task has."""
    rows: list[list[Any]] = []
    for name, task in results["tasks"].items():
        metrics = task["metrics"]
        primary = task["primary_metric"]
        lines = [(f"{primary} (primary)", metrics.get(primary))]
        by_type = task.get("categories", {}).get("answer_type", {})
        if len(by_type) > 1:  # closed and open items: the split the image benchmarks report
            lines += [(f"{primary}, {kind} items", by_type[kind].get(primary)) for kind in sorted(by_type)]
        lines += [(m, metrics[m]) for m in sorted(metrics) if m != primary]
        if rows:
            rows.append([""] * 8)  # a blank line between tasks
        counts = [task["n"], task["failed"], task["unparsed"], task["unscored"]]
        for i, (metric, estimate) in enumerate(lines):
            rows.append([terminal_text(name) if i == 0 else "", *(counts if i == 0 else [""] * 4), metric])
            rows[-1] += _score(estimate)
    headers = ["task", "n", "failed", "unparsed", "unscored", "metric", "score (%)", "95% CI"]
    align = ("left", "right", "right", "right", "right", "left", "right", "left")
    table = tabulate(
        rows, headers=headers, disable_numparse=True, colalign=align, maxcolwidths=[24, *[None] * 7]
    )
    judge = results["provenance"].get("judge", {})
    note = ""
    stats = judge.get("stats") or {}
    if judge.get("configured") and stats:
        cost = stats.get("estimated_cost_usd")
        note += (
            f"\njudge {judge['settings']['model']}: {stats['calls']} calls, {stats['cache_hits']} cached, "
            f"{stats['prompt_tokens']}+{stats['completion_tokens']} tokens"
            + (f", about ${cost:.4f}" if cost is not None else ", cost unknown for this model")
        )
    if not judge.get("configured", True) and any(t["unscored"] for t in results["tasks"].values()):
        note = (
            "\nOpen-ended items: not scored: no judge configured. Their accuracy (the study's metric) is "
            "left out; the lexical metrics beside it are not the study's metric."
        )
    head = f"model: {terminal_text(str(results['model']))}  run: {terminal_text(str(results['run_id']))}"
    control = results["provenance"].get("control")
    if control:  # a control run's scores are not the model's scores: say so on the first line
        head += f"  control: {terminal_text(str(control))} (docs/controls.md)"
    return "\n".join([head, table, *textwrap.wrap(note.strip(), TERMINAL_WIDTH)])


def error_budget(
    results: dict[str, Any], records: list[dict[str, Any]], max_unscored: float, max_failed: float
) -> int:
    """Exit 1 when failed items or judge-unscored items exceed their budgets; one line per task."""
    from obv_eval.runner import failed_over_budget, unscored_over_budget

    lines = [f"{line} (budget {max_failed:.0%})" for line in failed_over_budget(results, max_failed, records)]
    lines += [
        f"{line} (budget {max_unscored:.0%})" for line in unscored_over_budget(results, max_unscored, records)
    ]
    for line in lines:
        print(redact(f"obv-eval: error budget exceeded: {line}"), file=sys.stderr)
    return CHECK_FAILED if lines else 0
