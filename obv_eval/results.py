"""The versioned results schema: per-task summaries with 95% intervals, validation, and file I/O.

A run directory holds `samples.jsonl` (one record per item, written by the runner) and `results.json`
(this module's summary of it). The leaderboard and the regression gate read only these two files.
See docs/results-schema.md for the format.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from obv_eval.corpus_metrics import corpus_metrics
from obv_eval.files import atomic_write_text
from obv_eval.frame_policy import recorded_policy
from obv_eval.stats import mean_estimate

SCHEMA_VERSION = 2
RESULTS_FILENAME = "results.json"
SAMPLES_FILENAME = "samples.jsonl"
# Version 1 wrote mean ± 1.96 · SE (Wald, unclipped) for every estimate.
V1_INTERVAL_METHOD = "wald"


def _upgrade_v1(data: dict[str, Any]) -> dict[str, Any]:
    """Version 2 names each estimate's interval method and may mark a primary metric not scored."""
    out = json.loads(json.dumps(data))
    for task in (out.get("tasks") or {}).values():
        if not isinstance(task, dict):
            continue
        estimates = list((task.get("metrics") or {}).values())
        for values in (task.get("categories") or {}).values():
            for entry in (values or {}).values():
                estimates.extend(v for k, v in (entry or {}).items() if k != "n")
        for estimate in estimates:
            if isinstance(estimate, dict):
                estimate.setdefault("method", V1_INTERVAL_METHOD)
    out["schema_version"] = 2
    return out


# Older schema versions this release can read, each mapped to a function that lifts it one version up.
_UPGRADERS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {1: _upgrade_v1}

_COUNT_FIELDS = ("n", "scored", "unscored", "failed", "unparsed")
_ESTIMATE_NUMBERS = ("mean", "se", "ci_low", "ci_high")
_ESTIMATE_COUNTS = ("n", "n_clusters")


class ResultsError(ValueError):
    """A results or samples file that cannot be used; the message is one line saying what to do."""


# ---------------------------------------------------------------------------------------------------------
# Per-item records


def record_score(record: Mapping[str, Any], metric: str) -> float | None:
    """The item's score for `metric`: 0 for a failed item, None when unscored (excluded from the mean)."""
    if record.get("status") == "failed":
        return 0.0
    value = (record.get("scores") or {}).get(metric)
    return None if value is None else float(value)


def cluster_key(record: Mapping[str, Any]) -> str:
    """The item's cluster; an item without one is its own cluster, i.e. treated as independent."""
    cluster = record.get("cluster")
    if cluster is None or cluster == "":
        return f"\x00item:{record.get('task')}:{record.get('doc_id')}"
    return str(cluster)


def item_key(record: Mapping[str, Any]) -> tuple[str, str]:
    """(task, doc_id) identifies an item across runs; doc_id as text so 3 and "3" match."""
    return (str(record.get("task")), str(record.get("doc_id")))


def index_records(records: Iterable[Mapping[str, Any]]) -> dict[tuple[str, str], Mapping[str, Any]]:
    """Records keyed by (task, doc_id); a duplicate key is an error because pairing would be ambiguous."""
    index: dict[tuple[str, str], Mapping[str, Any]] = {}
    for record in records:
        key = item_key(record)
        if key in index:
            raise ResultsError(f"duplicate item task={key[0]} doc_id={key[1]} in samples; rerun or dedupe")
        index[key] = record
    return index


def paired_scores(
    base_records: Iterable[Mapping[str, Any]],
    run_records: Iterable[Mapping[str, Any]],
    task: str,
    metric: str,
) -> tuple[list[float], list[float], list[str]]:
    """Scores of the items of `task` present and scored in both runs, matched by doc_id, in doc_id order.

    Clusters come from the base run's records.
    """
    base = {k: r for k, r in index_records(base_records).items() if k[0] == task}
    run = {k: r for k, r in index_records(run_records).items() if k[0] == task}
    a: list[float] = []
    b: list[float] = []
    clusters: list[str] = []
    for key in sorted(base.keys() & run.keys(), key=_doc_order):
        sa, sb = record_score(base[key], metric), record_score(run[key], metric)
        if sa is None or sb is None:
            continue
        a.append(sa)
        b.append(sb)
        clusters.append(cluster_key(base[key]))
    return a, b, clusters


def _doc_order(key: tuple[str, str]) -> tuple[int, int, str]:
    # numeric doc ids sort numerically, others after them as text: a stable, human-friendly order
    doc = key[1]
    return (0, int(doc), "") if doc.lstrip("-").isdigit() else (1, 0, doc)


def read_samples(run_dir: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """All records of `<run_dir>/samples.jsonl`, in file order; blank lines are skipped."""
    path = Path(run_dir) / SAMPLES_FILENAME
    if not path.is_file():
        raise ResultsError(f"{path}: no samples file; is {run_dir} a run directory?")
    records: list[dict[str, Any]] = []
    seen: dict[tuple[str, str], int] = {}
    with path.open("rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            try:
                line = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
            except UnicodeDecodeError:
                raise ResultsError(
                    f"{path}:{lineno}: not UTF-8 text; is this an obv-eval samples file?"
                ) from None
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ResultsError(
                    f"{path}:{lineno}: not valid JSON ({exc.msg}); the run may be truncated"
                ) from None
            if not isinstance(record, dict):
                raise ResultsError(f"{path}:{lineno}: expected a JSON object per line")
            # One record per item: a second one (a file concatenated or edited by hand) would be counted
            # twice by every summary and make pairing ambiguous.
            key = item_key(record)
            if key in seen:
                raise ResultsError(
                    f"{path}:{lineno}: a second record of item task={key[0]} doc_id={key[1]} (first at line "
                    f"{seen[key]}); keep one record per item"
                )
            seen[key] = lineno
            records.append(record)
    return records


def check_samples_match(results: Mapping[str, Any], records: Sequence[Mapping[str, Any]], run: str) -> None:
    """Raise ResultsError unless the records are the items results.json summarises (per task, as many).

    A samples file emptied, cut short or swapped for another run's would otherwise be summarised anew
    (rescore) or paired (compare, regress) as if it were the run's.
    """
    counts: dict[str, int] = {}
    for record in records:
        counts[str(record.get("task"))] = counts.get(str(record.get("task")), 0) + 1
    for task, summary in (results.get("tasks") or {}).items():
        expected, held = summary.get("n"), counts.pop(task, 0)
        if held != expected:
            raise ResultsError(
                f"{run}: samples.jsonl holds {held} items of {task} but results.json counts {expected}; "
                "the two files are not from the same run (restore them, or rerun)"
            )
    if counts:
        task = sorted(counts)[0]
        raise ResultsError(
            f"{run}: samples.jsonl holds {counts[task]} items of {task}, a task results.json does not have; "
            "the two files are not from the same run (restore them, or rerun)"
        )


# ---------------------------------------------------------------------------------------------------------
# Summaries


def summarize_task(records: list[dict[str, Any]], primary_metric: str) -> dict[str, Any]:
    """Counts, per-metric clustered estimates and per-category breakdowns of one task's records.

    Every record counts in n. A failed item scores 0 in every metric. A None score leaves the item out of
    that metric's mean and counts it in unscored_by_metric. Top-level scored/unscored refer to the primary
    metric (failed items are scored, as 0), so n == scored + unscored.
    """
    metric_names = {primary_metric}
    for record in records:
        metric_names.update((record.get("scores") or {}).keys())

    metrics: dict[str, Any] = {}
    unscored_by_metric: dict[str, int] = {}
    for metric in sorted(metric_names):
        estimate, unscored = _metric_estimate(records, metric)
        metrics[metric] = estimate
        unscored_by_metric[metric] = unscored
    if records:
        corpus = corpus_metrics(str(records[0].get("task", "")), records)
        metrics.update(corpus)
        unscored_by_metric.update(dict.fromkeys(corpus, 0))

    categories: dict[str, dict[str, Any]] = {}
    fields = sorted({f for r in records for f in (r.get("categories") or {})})
    for field in fields:
        groups: dict[str, list[dict[str, Any]]] = {}
        for record in records:
            value = (record.get("categories") or {}).get(field)
            if value is not None:
                groups.setdefault(str(value), []).append(record)
        categories[field] = {
            value: {"n": len(group), primary_metric: _metric_estimate(group, primary_metric)[0]}
            for value, group in sorted(groups.items())
        }

    not_scored: dict[str, str] = {}
    by_type = categories.get("answer_type", {})
    open_items = [r for r in records if (r.get("categories") or {}).get("answer_type") == "open"]
    if (
        "closed" in by_type
        and open_items
        and all(record_score(r, primary_metric) is None for r in open_items)
        and metrics[primary_metric]["n"] > 0
    ):
        # No silent denominator: without verdicts on the open items the task's primary number would be
        # the closed items' alone. It is "not scored"; the closed items keep their own name.
        closed_name = f"{primary_metric}_closed"
        metrics[closed_name] = metrics[primary_metric]
        unscored_by_metric[closed_name] = len(records) - len(open_items) - metrics[closed_name]["n"]
        metrics[primary_metric] = mean_estimate([]).to_dict()
        not_scored[primary_metric] = (
            f"open items not judged ({len(open_items)} of {len(records)}); closed items only: {closed_name}"
        )

    return {
        "n": len(records),
        "not_scored": not_scored,
        "scored": len(records) - unscored_by_metric[primary_metric],
        "unscored": unscored_by_metric[primary_metric],
        "failed": sum(1 for r in records if r.get("status") == "failed"),
        "unparsed": sum(1 for r in records if r.get("unparsed")),
        # Long-video policy: items past the model's native context, and the visual tokens of the longest.
        "over_context": sum(1 for r in records if r.get("over_context")),
        "visual_tokens_max": max(((r.get("tokens") or {}).get("visual") or 0 for r in records), default=0),
        # Prompt tokens of the items, and those the model computed (a clip's shared prefix counts once).
        "prompt_tokens": sum((r.get("tokens") or {}).get("prompt") or 0 for r in records),
        "prefill_tokens": sum((r.get("tokens") or {}).get("prefill") or 0 for r in records),
        "primary_metric": primary_metric,
        "metrics": metrics,
        "unscored_by_metric": unscored_by_metric,
        "categories": categories,
    }


def _metric_estimate(records: Sequence[Mapping[str, Any]], metric: str) -> tuple[dict[str, Any], int]:
    values: list[float] = []
    clusters: list[str] = []
    unscored = 0
    for record in records:
        score = record_score(record, metric)
        if score is None:
            unscored += 1
            continue
        values.append(score)
        clusters.append(cluster_key(record))
    return mean_estimate(values, clusters).to_dict(), unscored


def summarize_tasks(records: Iterable[dict[str, Any]], primary_metrics: Mapping[str, str]) -> dict[str, Any]:
    """summarize_task for each task named in primary_metrics, from one mixed list of records."""
    by_task: dict[str, list[dict[str, Any]]] = {task: [] for task in primary_metrics}
    for record in records:
        task = str(record.get("task"))
        if task not in by_task:
            raise ResultsError(f"record for task {task!r} but no primary metric given for it")
        by_task[task].append(record)
    return {task: summarize_task(by_task[task], primary_metrics[task]) for task in sorted(by_task)}


def build_results(
    run_id: str, model: str, tasks: Mapping[str, dict[str, Any]], provenance: Mapping[str, Any]
) -> dict[str, Any]:
    """Assemble a results document and validate it.

    A run's provenance (one with its media settings) gains ``frame_policy``: which frame policy the
    run used (obv_eval.frame_policy: native with its family's rule, common with its settings, or train).
    """
    provenance = dict(provenance)
    if "media" in provenance:
        provenance["frame_policy"] = recorded_policy(provenance)
    results = {
        "schema_version": SCHEMA_VERSION,
        "run_id": run_id,
        "model": model,
        "tasks": dict(tasks),
        "provenance": provenance,
    }
    validate_results(results)
    return results


# ---------------------------------------------------------------------------------------------------------
# Validation (hand-written: jsonschema is not a dependency of the project)


def validate_results(results: Any, source: str = "results") -> None:
    """Raise ResultsError naming the first field that does not match the current schema version."""
    _expect(isinstance(results, dict), source, "expected a JSON object")
    version = results.get("schema_version")
    _expect(
        version == SCHEMA_VERSION, f"{source}.schema_version", f"expected {SCHEMA_VERSION}, got {version!r}"
    )
    for key in ("run_id", "model"):
        _expect(isinstance(results.get(key), str) and results[key] != "", f"{source}.{key}", "expected text")
    _expect(isinstance(results.get("provenance"), dict), f"{source}.provenance", "expected an object")
    tasks = results.get("tasks")
    _expect(isinstance(tasks, dict), f"{source}.tasks", "expected an object")
    for name, task in tasks.items():
        _validate_task(task, f"{source}.tasks.{name}")


def _validate_task(task: Any, where: str) -> None:
    _expect(isinstance(task, dict), where, "expected an object")
    for key in _COUNT_FIELDS:
        _expect(_is_count(task.get(key)), f"{where}.{key}", "expected a non-negative integer")
    _expect(task["scored"] + task["unscored"] == task["n"], where, "scored + unscored must equal n")
    _expect(task["failed"] <= task["n"], f"{where}.failed", "more failed items than items")
    primary = task.get("primary_metric")
    _expect(isinstance(primary, str), f"{where}.primary_metric", "expected text")
    metrics = task.get("metrics")
    _expect(isinstance(metrics, dict), f"{where}.metrics", "expected an object")
    _expect(primary in metrics, f"{where}.metrics", f"no entry for the primary metric {primary!r}")
    for name, estimate in metrics.items():
        _validate_estimate(estimate, f"{where}.metrics.{name}")
    unscored = task.get("unscored_by_metric")
    _expect(isinstance(unscored, dict), f"{where}.unscored_by_metric", "expected an object")
    for name, count in unscored.items():
        _expect(_is_count(count), f"{where}.unscored_by_metric.{name}", "expected a non-negative integer")
    categories = task.get("categories")
    _expect(isinstance(categories, dict), f"{where}.categories", "expected an object")
    not_scored = task.get("not_scored", {})
    _expect(
        isinstance(not_scored, dict) and all(isinstance(v, str) for v in not_scored.values()),
        f"{where}.not_scored",
        "expected an object of text values",
    )
    for field, values in categories.items():
        _expect(isinstance(values, dict), f"{where}.categories.{field}", "expected an object")
        for value, entry in values.items():
            at = f"{where}.categories.{field}.{value}"
            _expect(isinstance(entry, dict) and _is_count(entry.get("n")), f"{at}.n", "expected a count")
            _expect(primary in entry, at, f"no entry for the primary metric {primary!r}")
            _validate_estimate(entry[primary], f"{at}.{primary}")
    fingerprints = task.get("fingerprints", {})
    _expect(
        isinstance(fingerprints, dict) and all(isinstance(v, str) for v in fingerprints.values()),
        f"{where}.fingerprints",
        "expected an object of text values",
    )


def _validate_estimate(estimate: Any, where: str) -> None:
    _expect(isinstance(estimate, dict), where, "expected an object")
    for key in _ESTIMATE_NUMBERS:
        value = estimate.get(key, "missing")
        ok = value is None or (
            isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        )
        _expect(ok, f"{where}.{key}", f"expected a finite number or null, got {value!r}")
    for key in _ESTIMATE_COUNTS:
        _expect(_is_count(estimate.get(key)), f"{where}.{key}", "expected a non-negative integer")
    _expect(isinstance(estimate.get("method", ""), str), f"{where}.method", "expected text")


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _expect(condition: bool, where: str, message: str) -> None:
    if not condition:
        raise ResultsError(f"{where}: {message}")


# ---------------------------------------------------------------------------------------------------------
# Files


def dumps_results(results: Mapping[str, Any]) -> str:
    """The canonical text of a results document: sorted keys, 2-space indent, trailing newline."""
    return json.dumps(results, sort_keys=True, indent=2, ensure_ascii=False, allow_nan=False) + "\n"


def write_results(path: str | os.PathLike[str], results: Mapping[str, Any]) -> Path:
    """Validate and write atomically (a reader never sees half a file)."""
    target = Path(path)
    validate_results(dict(results), source=str(target))
    atomic_write_text(target, dumps_results(results))
    return target


def read_results(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and validate a results file (a run directory is accepted too); older versions are upgraded."""
    source = Path(path)
    if source.is_dir():
        source = source / RESULTS_FILENAME
    try:
        data = json.loads(source.read_text(encoding="utf-8-sig"))
    except FileNotFoundError:
        raise ResultsError(f"{source}: no such results file") from None
    except OSError as exc:
        raise ResultsError(f"{source}: cannot be read ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise ResultsError(f"{source}: not UTF-8 text; is this an obv-eval results file?") from None
    except json.JSONDecodeError as exc:
        raise ResultsError(f"{source}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(data, dict) or "schema_version" not in data:
        raise ResultsError(f"{source}: not an obv-eval results file (no schema_version)")
    version = data["schema_version"]
    while isinstance(version, int) and version in _UPGRADERS:
        data = _UPGRADERS[version](data)
        version = data["schema_version"]
    if version != SCHEMA_VERSION:
        raise ResultsError(
            f"{source}: results schema_version {version!r} is not supported (this obv-eval reads version "
            f"{SCHEMA_VERSION}); use the obv-eval release that wrote it or rerun the evaluation"
        )
    validate_results(data, source=str(source))
    return data
