"""What `run` and `rescore` print at the end: the summary table and the error-budget lines."""

from __future__ import annotations

import sys
from typing import Any

from tabulate import tabulate

from obv_eval.redaction import redact
from obv_eval.usage import CHECK_FAILED


def _fmt(estimate: dict[str, Any] | None) -> str:
    if not estimate:
        return "-"
    mean = estimate.get("mean")
    if mean is None or mean != mean:  # nothing scored
        return "not scored"
    low, high = estimate.get("ci_low"), estimate.get("ci_high")
    if low is None or high is None or low != low:
        return f"{100 * mean:.1f}"
    return f"{100 * mean:.1f} [{100 * low:.1f}, {100 * high:.1f}]"


def render_summary(results: dict[str, Any]) -> str:
    rows = []
    for name, task in results["tasks"].items():
        metrics = task["metrics"]
        primary = task["primary_metric"]
        others = ", ".join(f"{m} {_fmt(metrics[m])}" for m in sorted(metrics) if m != primary)
        by_type = task.get("categories", {}).get("answer_type", {})
        if len(by_type) > 1:  # closed and open items: the split the image benchmarks report
            split = ", ".join(f"{kind} {_fmt(by_type[kind].get(primary))}" for kind in sorted(by_type))
            others = f"{primary}: {split}; {others}"
        rows.append(
            [
                name,
                task["n"],
                task["failed"],
                task["unparsed"],
                task["unscored"],
                f"{primary} {_fmt(metrics.get(primary))}",
                others,
            ]
        )
    headers = ["task", "n", "failed", "unparsed", "unscored", "primary (% [95% CI])", "other metrics"]
    table = tabulate(rows, headers=headers)
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
    return f"model: {results['model']}  run: {results['run_id']}\n{table}{note}"


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
