"""Leaderboard tables (markdown, CSV, HTML) and the grouped bar chart, built from results files only.

Rows are models (one run each) plus, optionally, the study's published figure as labelled "study: ..." rows.
Cells are the task's primary metric × 100 with its 95% interval. A fine-tuned model (name ending "-obv") is
compared with its base (the same name without the suffix): relative gains with both group definitions, and
a significance mark from a paired test when both runs' samples.jsonl sit beside their results.json.
"""

from __future__ import annotations

import base64
import html
import json
import math
import os
import textwrap
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from tabulate import tabulate

from obv_eval.benchmarks import BENCHMARKS as BENCHMARK_INFO
from obv_eval.benchmarks import GROUPS as BENCHMARK_GROUPS
from obv_eval.benchmarks import TASK_PREFIX
from obv_eval.escaping import TERMINAL_WIDTH, control_to_space, csv_cell, markdown_cell, terminal_text
from obv_eval.frame_policy import policy_label, recorded_policy
from obv_eval.results import (
    RESULTS_FILENAME,
    SAMPLES_FILENAME,
    paired_scores,
    read_results,
    read_samples,
)
from obv_eval.stats import (
    Estimate,
    group_gains,
    holm,
    paired_test,
    relative_gain,
    round_half_up,
    wilson_interval,
)

# Benchmark names and groups come from obv_eval.benchmarks (one source of truth); "all" is not a group here.
GROUPS: dict[str, tuple[str, ...]] = {g: benches for g, benches in BENCHMARK_GROUPS.items() if g != "all"}
BENCHMARKS: tuple[str, ...] = tuple(b for benches in GROUPS.values() for b in benches)
# Column headers: the title without its parenthesised detail ("MedQA (USMLE, 4 options)" -> "MedQA").
LABELS: dict[str, str] = {
    **{name: b.title.split(" (")[0] for name, b in BENCHMARK_INFO.items()},
    **{g: f"{g.capitalize()} (mean)" for g in GROUPS},
}
FIELDS: tuple[str, ...] = ("mean", "ci_low", "ci_high", "n", "p_vs_base", "not_scored")
TUNED_SUFFIX = "-obv"
STUDY_PREFIX = "study: "
REFERENCE_PREFIX = "reference: "  # chance / majority (obv_eval.baselines): rows computed from the data
DEPENDENCE_TITLE = "Visual dependence (full - blind on paired items, points, 95% interval)"
DEPENDENCE_LEGEND = (
    "Visual dependence: the model's score minus its score with no visual at all (--control blind), on "
    "the items both scored; * marks p < 0.05 (the paired test of `obv-eval compare`). Near 0: the "
    "score does not need the image or video (docs/controls.md)."
)
# The words of a cell without a number, the same in every table (Markdown, CSV notes, HTML, terminal).
NOT_SCORED = "not scored"  # run, but its primary metric has no score (e.g. open items without a judge)
NOT_RUN = "-"  # the model was not run on it (or the study's figure has no number for it)
BASE_ZERO = "base 0"  # a relative gain over a base that scores 0 is undefined
ALPHA = 0.05
FRAME_POLICY_MIXED = "Frame policies differ:"  # the first words of the notes' warning


def _default_reference() -> Path:
    """results/reference/ in a checkout, shipped as the obv_eval.reference package."""
    import obv_eval.reference

    return Path(obv_eval.reference.__file__).resolve().parent / "study_figure.json"


DEFAULT_REFERENCE = _default_reference()

SIGNIFICANCE_LEGEND = (
    f"* fine-tuned differs from its base at Holm-adjusted p < {ALPHA} over the benchmarks compared for that "
    "pair (family-wise error at most 5% across the seven benchmarks), on items matched by task and doc_id: "
    "clustered paired t-test (per-cluster sums of differences, G - 1 degrees of freedom) where items share "
    "a video, study or image; exact McNemar where every item is its own cluster. Intervals: Wilson score "
    "interval on the design-effect sample size, with a t(G - 1) quantile when clustered; group means: "
    "Wilson interval on the group's effective sample size (k^2 / sum of 1 / n_eff). "
    f"'{NOT_SCORED}': the model was run but its primary metric has no score (e.g. the judge's verdicts on "
    "open items are missing; closed items are in results.json as <metric>_closed); its group is then "
    f"'{NOT_SCORED}' too (the others' mean is not the group's). '{NOT_RUN}': not run on that benchmark "
    "(or not in the study's figure)."
)
DEFINITIONS = (
    "Relative gain = (fine-tuned - base) / base x 100. 'gain of mean' is the relative gain of the group's "
    f"mean score; 'mean of gains' is the mean of the per-benchmark relative gains. '{BASE_ZERO}': undefined, "
    "the base scores 0."
)


@dataclass(frozen=True)
class Run:
    """One results document and the run directory it came from (for samples.jsonl), if any."""

    results: dict[str, Any]
    run_dir: Path | None = None

    @property
    def model(self) -> str:
        return str(self.results["model"])

    @property
    def run_id(self) -> str:
        return str(self.results["run_id"])

    def samples(self) -> list[dict[str, Any]] | None:
        if self.run_dir is None or not (self.run_dir / SAMPLES_FILENAME).is_file():
            return None
        return read_samples(self.run_dir)


RunLike = Run | Mapping[str, Any]


def load_runs(paths: Iterable[str | os.PathLike[str]]) -> list[Run]:
    """Runs from results files, run directories, or folders searched recursively for results.json."""
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir() and not (path / RESULTS_FILENAME).is_file():
            files.extend(sorted(path.rglob(RESULTS_FILENAME)))
        else:
            files.append(path / RESULTS_FILENAME if path.is_dir() else path)
    return [Run(read_results(f), f.parent) for f in files]


def latest_per_model(runs: Iterable[Run]) -> tuple[list[Run], list[Run]]:
    """(the newest run of each model, the older ones left out); newest by creation time, then run id."""

    def age(run: Run) -> tuple[str, str]:
        return (str(run.results.get("provenance", {}).get("created", "")), run.run_id)

    newest: dict[str, Run] = {}
    for run in runs:
        if run.model not in newest or age(run) > age(newest[run.model]):
            newest[run.model] = run
    kept = list(newest.values())
    return kept, [run for run in runs if all(run is not k for k in kept)]


def is_control_run(run: Run) -> bool:
    """A run under --control (blind, shuffled, ...): never a model's row (its blind runs give the visual
    dependence table)."""
    return bool((run.results.get("provenance") or {}).get("control"))


def is_reference_run(run: Run) -> bool:
    """A reference row computed from the data (--model chance | majority), not a model."""
    return ((run.results.get("provenance") or {}).get("backend") or {}).get("backend") == "reference"


def row_label(run: Run) -> str:
    return REFERENCE_PREFIX + run.model if is_reference_run(run) else run.model


def split_controls(runs: Iterable[Run]) -> tuple[list[Run], list[Run]]:
    """(the full runs, the control runs)."""
    runs = list(runs)
    return [r for r in runs if not is_control_run(r)], [r for r in runs if is_control_run(r)]


def _as_runs(runs: Iterable[RunLike]) -> list[Run]:
    out = [r if isinstance(r, Run) else Run(dict(r)) for r in runs]
    seen: dict[str, str] = {}
    for run in out:
        if run.model in seen:
            raise ValueError(
                f"two runs for model {run.model} ({seen[run.model]} and {run.run_id}); pass one run per model"
            )
        seen[run.model] = run.run_id
    return sorted(out, key=lambda r: r.model)


def benchmark_of(task: str) -> str:
    """Column name of a task: results key tasks by benchmark name, lmms-eval task names carry obv_."""
    return task.removeprefix(TASK_PREFIX)


def base_model_of(model: str) -> str | None:
    return model.removesuffix(TUNED_SUFFIX) if model.endswith(TUNED_SUFFIX) else None


def load_reference(path: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """The study's published figure (results/reference/study_figure.json)."""
    ref_path = Path(path) if path is not None else DEFAULT_REFERENCE
    if not ref_path.is_file():
        raise FileNotFoundError(f"{ref_path}: study reference numbers not found; pass reference_path")
    data: dict[str, Any] = json.loads(ref_path.read_text(encoding="utf-8"))
    return data


# ---------------------------------------------------------------------------------------------------------
# Tables


def _run_estimates(run: Run) -> dict[str, Estimate]:
    """Primary-metric estimate per benchmark, on the 0-100 scale."""
    out: dict[str, Estimate] = {}
    for task, summary in run.results["tasks"].items():
        bench = benchmark_of(task)
        if bench in out:
            raise ValueError(f"run {run.run_id} has two tasks for benchmark {bench}")
        est = Estimate.from_dict(summary["metrics"][summary["primary_metric"]])
        out[bench] = Estimate(
            est.mean * 100, est.se * 100, est.ci_low * 100, est.ci_high * 100, est.n, est.n_clusters
        )
    return out


def _group_estimate(estimates: Mapping[str, Estimate], benches: Sequence[str]) -> Estimate | None:
    """Unweighted mean of the group's benchmarks; they are independent samples, so SEs add in quadrature.

    The interval is a Wilson score interval (q = 1.96) on the group's effective sample size
    k² / Σ 1/n_eff_i, n_eff_i = n_i / deff_i (the variance of an unweighted mean of k proportions that
    share one value), so, like each benchmark's, it stays on the 0-100 scale and keeps a width at 0 and 100.
    """
    if not all(b in estimates and math.isfinite(estimates[b].mean) for b in benches):
        return None
    k = len(benches)
    mean = float(np.mean([estimates[b].mean for b in benches]))
    se = math.sqrt(sum(estimates[b].se ** 2 for b in benches)) / k
    n = sum(estimates[b].n for b in benches)
    n_clusters = sum(estimates[b].n_clusters for b in benches)
    n_eff = k**2 / sum(1 / _effective_n(estimates[b]) for b in benches)
    low, high = wilson_interval(mean / 100, n_eff, 1.96)
    return Estimate(mean, se, 100 * low, 100 * high, n, n_clusters, "wilson-group")


def _effective_n(est: Estimate) -> float:
    """n / deff of a benchmark's estimate (0-100 scale), deff = SE² over the independent-items SE² of its
    mean, floored at 1 as in stats.mean_estimate; n itself at 0 or 100 or without an SE."""
    p, se = est.mean / 100, est.se / 100
    if not (math.isfinite(se) and se > 0 and 0 < p < 1 and est.n > 1):
        return float(max(est.n, 1))
    plain = p * (1 - p) / (est.n - 1)
    return est.n / max(se**2 / plain, 1.0)


def significance(base: Run, tuned: Run) -> dict[str, float]:
    """Holm-adjusted p-value per benchmark of tuned vs base on paired items (stats.paired_test: clustered
    t, or exact McNemar for independent 0/1 items); empty when either run lacks samples."""
    base_samples, tuned_samples = base.samples(), tuned.samples()
    if base_samples is None or tuned_samples is None:
        return {}
    raw: dict[str, float] = {}
    for task in sorted(base.results["tasks"].keys() & tuned.results["tasks"].keys()):
        metric = tuned.results["tasks"][task]["primary_metric"]
        if base.results["tasks"][task]["primary_metric"] != metric:
            continue
        if any(metric in (r.results["tasks"][task].get("not_scored") or {}) for r in (base, tuned)):
            continue  # a "not scored" cell gets no mark: its records hold the closed items' scores only
        a, b, clusters = paired_scores(base_samples, tuned_samples, task, metric)
        if not a:
            continue
        raw[benchmark_of(task)] = paired_test(a, b, clusters).pvalue
    return holm(raw)


def _columns(present: set[str]) -> list[str]:
    cols: list[str] = []
    for group, benches in GROUPS.items():
        cols.extend(b for b in benches if b in present)
        if group in present:
            cols.append(group)
    cols.extend(sorted(present - set(cols)))
    return cols


def build_table(
    runs: Iterable[RunLike], reference: bool = True, reference_path: str | os.PathLike[str] | None = None
) -> pd.DataFrame:
    """Models x benchmarks; columns are a (benchmark, field) MultiIndex with fields mean, ci_low, ci_high,
    n and p_vs_base, all on the 0-100 scale, and not_scored (1 where the model was run on the benchmark, or
    on every member of the group, but its primary metric has no score). table.xs("mean", axis=1, level=1)
    is the plain score grid."""
    run_list = _as_runs(runs)
    by_model = {r.model: r for r in run_list}
    cells: dict[str, dict[str, dict[str, float]]] = {}
    for run in sorted(run_list, key=is_reference_run):  # reference rows last, beside the study's rows
        estimates = _run_estimates(run)
        row: dict[str, dict[str, float]] = {}
        for bench, est in estimates.items():
            row[bench] = {"mean": est.mean, "ci_low": est.ci_low, "ci_high": est.ci_high, "n": est.n}
        for task, summary in run.results["tasks"].items():
            flagged = summary["primary_metric"] in summary.get("not_scored", {})
            if flagged or not math.isfinite(row[benchmark_of(task)]["mean"]):
                row[benchmark_of(task)]["not_scored"] = 1.0  # run, but nothing (or not all) scored
        for group, benches in GROUPS.items():
            gest = _group_estimate(estimates, benches)
            if gest is not None:
                row[group] = {"mean": gest.mean, "ci_low": gest.ci_low, "ci_high": gest.ci_high, "n": gest.n}
            elif all(b in row for b in benches):
                row[group] = {"not_scored": 1.0}  # every member run, one not scored: no mean of the others
        base_name = base_model_of(run.model)
        if base_name is not None and base_name in by_model:
            for bench, p in significance(by_model[base_name], run).items():
                row[bench]["p_vs_base"] = p
        cells[row_label(run)] = row
    if reference:
        ref = load_reference(reference_path)
        for name, scores in ref["rows"].items():
            row = {b: {"mean": float(v)} for b, v in scores.items()}
            for group, benches in GROUPS.items():
                if all(b in scores for b in benches):
                    row[group] = {"mean": float(np.mean([scores[b] for b in benches]))}
            cells[STUDY_PREFIX + name] = row

    columns = _columns({c for row in cells.values() for c in row})
    index = pd.MultiIndex.from_product([columns, FIELDS], names=["benchmark", "field"])
    data = [[row.get(c, {}).get(f, math.nan) for c, f in index] for row in cells.values()]
    table = pd.DataFrame(data, index=pd.Index(list(cells), name="model"), columns=index, dtype=float)
    return table


def _pairs(run_list: Sequence[Run]) -> list[tuple[str, Run, Run]]:
    by_model = {r.model: r for r in run_list}
    pairs = []
    for run in run_list:
        base_name = base_model_of(run.model)
        if base_name is not None and base_name in by_model:
            pairs.append((f"{run.model} vs {base_name}", by_model[base_name], run))
    return pairs


def _gain_row(
    base: Mapping[str, float], tuned: Mapping[str, float]
) -> tuple[dict[str, float], dict[str, str]]:
    """The pair's gains, and why each blank one is blank: BASE_ZERO (undefined) or NOT_SCORED."""
    row: dict[str, float] = {}
    blank: dict[str, str] = {}

    def put(column: str, gain: float, benches: Sequence[str]) -> None:
        row[column] = gain
        if not math.isfinite(gain):
            scored = all(math.isfinite(x[b]) for b in benches for x in (base, tuned))
            blank[column] = BASE_ZERO if scored else NOT_SCORED

    for bench in sorted(base.keys() & tuned.keys(), key=_column_order):
        put(bench, relative_gain(base[bench], tuned[bench]), [bench])
    for group, benches in GROUPS.items():
        if all(b in base and b in tuned for b in benches):
            gains = group_gains(base, tuned, benches)
            put(f"{group}: gain of mean", gains["gain_of_mean"], benches)
            put(f"{group}: mean of gains", gains["mean_of_gains"], benches)
    return row, blank


def _column_order(bench: str) -> tuple[int, str]:
    return (BENCHMARKS.index(bench), "") if bench in BENCHMARKS else (len(BENCHMARKS), bench)


def build_gains(
    runs: Iterable[RunLike], reference: bool = True, reference_path: str | os.PathLike[str] | None = None
) -> pd.DataFrame:
    """Relative gain (%) of each fine-tuned model over its base, per benchmark and per group (both
    definitions). Study pairs come from the figure's pairs. gains.attrs["blank"] says why a blank
    (pair, column) cell is blank: NOT_SCORED, or BASE_ZERO (undefined); cells not in it were not run."""
    run_list = _as_runs(runs)
    rows: dict[str, dict[str, float]] = {}
    blank: dict[tuple[str, str], str] = {}
    for label, base, tuned in _pairs(run_list):
        base_means = {b: e.mean for b, e in _run_estimates(base).items()}
        tuned_means = {b: e.mean for b, e in _run_estimates(tuned).items()}
        rows[label], reasons = _gain_row(base_means, tuned_means)
        blank.update({(label, c): why for c, why in reasons.items()})
    if reference:
        ref = load_reference(reference_path)
        for pair in ref["pairs"]:
            label = f"{STUDY_PREFIX}{pair['tuned']} vs {pair['base']}"
            rows[label], reasons = _gain_row(ref["rows"][pair["base"]], ref["rows"][pair["tuned"]])
            blank.update({(label, c): why for c, why in reasons.items()})
    present = {c for row in rows.values() for c in row}
    columns = [b for b in sorted(present, key=_column_order) if ":" not in b]
    for group in GROUPS:
        columns.extend(c for c in (f"{group}: gain of mean", f"{group}: mean of gains") if c in present)
    data = [[row.get(c, math.nan) for c in columns] for row in rows.values()]
    gains = pd.DataFrame(data, index=pd.Index(list(rows), name="pair"), columns=columns, dtype=float)
    gains.attrs["blank"] = blank
    return gains


def _published_disagreements(ref: dict[str, Any]) -> list[str]:
    """One line per claim published with different values in different places, the figure's included."""
    pairs = {p["label"]: p for p in ref["pairs"]}
    lines = []
    for claim in ref["claims"]:
        published = claim.get("published")
        scope = claim["scope"]
        if not published or scope in GROUPS:
            continue
        pair = pairs[claim["pair"]]
        base, tuned = ref["rows"][pair["base"]][scope], ref["rows"][pair["tuned"]][scope]
        values = [f"{float(p['value']):+.1f}% ({p['source']})" for p in published]
        gain = relative_gain(base, tuned)
        values.append(f"{gain:+.1f}% (recomputed from the figure, {base:.1f} -> {tuned:.1f})")
        name = f"{claim['pair']} {LABELS[scope]}"
        lines.append(f"The study's {name} gain is published as " + ", ".join(values) + ".")
    return lines


def judge_lines(runs: Iterable[Run], escape: Callable[[str], str] = control_to_space) -> list[str]:
    """Which judge and prompt preset scored each run's open-ended numbers (a preset changes them); names
    from the results files pass through `escape` (markdown_cell for Markdown)."""
    lines = []
    for run in runs:
        judge = run.results.get("provenance", {}).get("judge") or {}
        settings = judge.get("settings") or {}
        name = escape(f"{run.model} ({run.run_id})")
        if not judge.get("configured"):
            lines.append(f"- {name}: no judge, open-ended items not scored")
            continue
        models = (judge.get("stats") or {}).get("response_models") or {}
        answered = escape(", ".join(sorted(models))) or "not recorded"
        lines.append(
            f"- {name}: open-ended items judged by {escape(str(settings.get('model')))} (answered by "
            f"{answered}) with preset {escape(str(settings.get('preset', 'v1')))} "
            f"({escape(str(settings.get('prompt_version', '?')))})"
        )
    if not lines:
        return []
    return [
        "Judged numbers (SurgeryVideoQA; the open items of VQA-RAD, PathVQA and SLAKE) and their judge "
        "preset; the study's rows were judged by GPT-4o with its own prompt (preset study-published; "
        "study-rubric is its rubric in an injection-safe layout):",
        *lines,
    ]


def frame_policy_lines(runs: Iterable[Run], escape: Callable[[str], str] = control_to_space) -> list[str]:
    """Which frame policy each model row ran under (obv_eval.frame_policy: native, common, train); when
    they differ the first line says so: those rows were not measured on the same frames."""
    rows = [run for run in runs if not is_reference_run(run)]
    if not rows:
        return []
    recorded = {run.model: recorded_policy(run.results.get("provenance") or {}) for run in rows}
    # native is one policy whatever each family's rule is; common is one only with the same settings
    kinds = {
        json.dumps({k: v for k, v in r.items() if k != "rule"}, sort_keys=True) for r in recorded.values()
    }
    if len(kinds) > 1:
        head = (
            f"{FRAME_POLICY_MIXED} these rows ran under different frame policies, so they were not shown the "
            "same frames and their scores are not a controlled comparison (rerun them with one --frames "
            "policy, e.g. --frames common; docs/running.md, Frame policy). Frame policy of each row:"
        )
    else:
        head = "Frame policy of each row (docs/running.md, Frame policy):"
    lines = [
        f"- {escape(f'{run.model} ({run.run_id})')}: {escape(policy_label(recorded[run.model]))}"
        for run in rows
    ]
    return [head, *lines]


def headline_note(reference_path: str | os.PathLike[str] | None = None) -> str:
    """Which gain definition reproduces each of the study's headline claims from its own figure."""
    ref = load_reference(reference_path)
    pairs = {p["label"]: p for p in ref["pairs"]}
    matched: list[str] = []
    unmatched: list[str] = []
    for claim in ref["claims"]:
        pair = pairs[claim["pair"]]
        base, tuned = ref["rows"][pair["base"]], ref["rows"][pair["tuned"]]
        value = float(claim["value"])
        decimals = len(repr(value).split(".")[1])
        scope = claim["scope"]
        name = f"{claim['pair']} {scope} group" if scope in GROUPS else f"{claim['pair']} {LABELS[scope]}"
        if scope not in GROUPS:
            gain = relative_gain(base[scope], tuned[scope])
            if round_half_up(gain, decimals) == value:
                matched.append(f"{name} {value:g} = per-benchmark gain ({gain:.2f})")
            else:
                unmatched.append(f"{name} {value:g} (figure gives {gain:.1f})")
            continue
        benches = GROUPS[scope]
        exact = group_gains(base, tuned, benches)
        rounded = group_gains(base, tuned, benches, per_bench_decimals=1)
        if round_half_up(exact["gain_of_mean"], decimals) == value:
            matched.append(
                f"{name} {value:g} = gain of mean ({exact['gain_of_mean']:.2f}; "
                f"mean of gains would give {exact['mean_of_gains']:.2f})"
            )
        elif round_half_up(exact["mean_of_gains"], decimals) == value:
            matched.append(
                f"{name} {value:g} = mean of gains ({exact['mean_of_gains']:.2f}; "
                f"gain of mean would give {exact['gain_of_mean']:.2f})"
            )
        elif round_half_up(rounded["mean_of_gains"], decimals) == value:
            matched.append(
                f"{name} {value:g} = mean of gains after rounding each benchmark's gain to one decimal "
                f"({rounded['mean_of_gains']:.2f}; unrounded mean of gains {exact['mean_of_gains']:.2f}, "
                f"gain of mean {exact['gain_of_mean']:.2f})"
            )
        else:
            unmatched.append(
                f"{name} {value:g} (figure gives gain of mean {exact['gain_of_mean']:.1f}, "
                f"mean of gains {exact['mean_of_gains']:.1f})"
            )
    lines = [
        f"Rows labelled '{STUDY_PREFIX}...' are the published numbers: {ref['source']} {ref['ref_row_note']}",
        DEFINITIONS,
        "The study's headline gains, recomputed from its own figure:",
        *(f"- {m}" for m in matched),
    ]
    if unmatched:
        lines.append("Not reproducible from the figure by either definition: " + "; ".join(unmatched) + ".")
    lines.extend(_published_disagreements(ref))
    lines.append("Tables here show both definitions for every group.")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------
# Rendering


def _fmt(value: float, decimals: int = 1, blank: str = NOT_RUN) -> str:
    return blank if not math.isfinite(value) else f"{value:.{decimals}f}"


def display_table(table: pd.DataFrame, interval_sep: str = " ") -> pd.DataFrame:
    """Text cells, e.g. "42.0 [38.1, 45.9] *" (with interval_sep="\n": "42.0 *" above "[38.1, 45.9]"),
    "not scored" or "-" (not run); headers are the benchmarks' display names."""
    columns = list(dict.fromkeys(table.columns.get_level_values(0)))
    out: dict[str, list[str]] = {}
    for col in columns:
        cells = []
        for _, row in table.iterrows():
            mean, low, high, p = (row[(col, f)] for f in ("mean", "ci_low", "ci_high", "p_vs_base"))
            text = NOT_SCORED if row.get((col, "not_scored")) == 1.0 else _fmt(mean)
            mark = " *" if math.isfinite(mean) and math.isfinite(p) and p < ALPHA else ""
            interval = ""
            if math.isfinite(mean) and math.isfinite(low) and math.isfinite(high):
                interval = f"[{_fmt(low)}, {_fmt(high)}]"
            if interval_sep == " ":
                cells.append(f"{text} {interval}{mark}" if interval else text + mark)
            else:
                cells.append(f"{text}{mark}{interval_sep}{interval}" if interval else text + mark)
        out[LABELS.get(col, col)] = cells
    return pd.DataFrame(out, index=table.index)


def visual_dependence(runs: Iterable[RunLike], controls: Iterable[Run]) -> pd.DataFrame:
    """Per model with a blind control run beside it (run id RUN_ID.control-blind) and per benchmark: full -
    blind on the items both scored, x 100, with its 95% interval (clustered), p and paired n; the test is
    the one `obv-eval compare` and `obv-eval controls` print (regress.paired_task_tests)."""
    from obv_eval.controls import BLIND, run_suffix
    from obv_eval.regress import paired_task_tests

    blind = {(c.model, c.run_id): c for c in controls if c.results["provenance"].get("control") == BLIND}
    cells: dict[str, dict[str, dict[str, float]]] = {}
    for run in _as_runs(runs):
        control = blind.get((run.model, f"{run.run_id}.{run_suffix(BLIND)}"))
        full_samples = run.samples()
        blind_samples = control.samples() if control is not None else None
        if control is None or full_samples is None or blind_samples is None:
            continue
        row = {}
        for task, (_, n, test) in paired_task_tests(
            run.results, full_samples, control.results, blind_samples
        ).items():
            if test is not None:  # blind - full, turned round
                est = test.estimate
                row[benchmark_of(task)] = {
                    "mean": -100 * est.mean,
                    "ci_low": -100 * est.ci_high,
                    "ci_high": -100 * est.ci_low,
                    "p": test.pvalue,
                    "n": float(n),
                }
        cells[row_label(run)] = row
    columns = _columns({c for row in cells.values() for c in row})
    index = pd.MultiIndex.from_product([columns, ("mean", "ci_low", "ci_high", "p", "n")])
    data = [[row.get(c, {}).get(f, math.nan) for c, f in index] for row in cells.values()]
    return pd.DataFrame(data, index=pd.Index(list(cells), name="model"), columns=index, dtype=float)


def _display_dependence(dependence: pd.DataFrame, interval_sep: str = " ") -> pd.DataFrame:
    """Text cells, e.g. "+12.5 [+3.1, +21.9] *"; "-" where the model has no blind run on the benchmark."""
    columns = list(dict.fromkeys(dependence.columns.get_level_values(0)))
    out: dict[str, list[str]] = {}
    for col in columns:
        cells = []
        for _, row in dependence.iterrows():
            mean, low, high, p = (row[(col, f)] for f in ("mean", "ci_low", "ci_high", "p"))
            if not math.isfinite(mean):
                cells.append(NOT_RUN)
                continue
            mark = " *" if math.isfinite(p) and p < ALPHA else ""
            finite = math.isfinite(low) and math.isfinite(high)
            interval = f"[{low + 0.0:+.1f}, {high + 0.0:+.1f}]" if finite else ""
            cells.append(f"{mean + 0.0:+.1f}{mark}{interval_sep}{interval}".rstrip())
        out[LABELS.get(col, col)] = cells
    return pd.DataFrame(out, index=dependence.index)


def _display_gains(gains: pd.DataFrame) -> pd.DataFrame:
    blank: Mapping[tuple[str, str], str] = gains.attrs.get("blank", {})
    out = pd.DataFrame(
        [
            [_fmt(gains.loc[r, c], blank=blank.get((r, c), NOT_RUN)) for c in gains.columns]
            for r in gains.index
        ],
        index=gains.index,
        columns=[LABELS.get(c, c) for c in gains.columns],
    )
    return out


def _markdown_table(shown: pd.DataFrame, index_name: str) -> str:
    """Names (row labels, headers) escaped; the cells are this module's own numbers and words."""
    headers = [markdown_cell(index_name), *(markdown_cell(str(c)) for c in shown.columns)]
    rows = [[markdown_cell(str(i)), *row] for i, row in zip(shown.index, shown.values.tolist(), strict=True)]
    text: str = tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True)
    return text


def render_markdown(
    table: pd.DataFrame,
    gains: pd.DataFrame | None = None,
    note: str | None = None,
    dependence: pd.DataFrame | None = None,
) -> str:
    parts = [
        "## Scores (primary metric x 100, 95% interval)",
        "",
        _markdown_table(display_table(table), "model"),
        "",
        SIGNIFICANCE_LEGEND,
    ]
    if dependence is not None and not dependence.empty:
        parts += ["", f"## {DEPENDENCE_TITLE}", "", _markdown_table(_display_dependence(dependence), "model")]
        parts += ["", DEPENDENCE_LEGEND]
    if gains is not None and not gains.empty:
        parts += [
            "",
            "## Relative gain of fine-tuned over base (%)",
            "",
            _markdown_table(_display_gains(gains), "pair"),
        ]
    if note:
        parts += ["", "## Notes", "", note]
    return "\n".join(parts) + "\n"


def _neutral_csv(frame: pd.DataFrame) -> str:
    """to_csv with the row labels and headers (names from results files) neutralised against formulas."""
    flat = frame.copy()
    flat.index = pd.Index([csv_cell(str(i)) for i in frame.index], name=frame.index.name)
    flat.columns = [csv_cell(str(c)) for c in frame.columns]
    # %.6g keeps small p-values readable where a fixed 4 decimals would print 0.0000
    text: str = flat.to_csv(float_format="%.6g", lineterminator="\n")
    return text


def render_csv(table: pd.DataFrame) -> str:
    """One row per model; columns "<benchmark>.<field>"."""
    flat = table.copy()
    flat.columns = [f"{bench}.{field}" for bench, field in table.columns]
    for col in flat.columns:
        if col.endswith(".n"):
            flat[col] = flat[col].astype("Int64")  # counts print as counts, blanks stay blank
    return _neutral_csv(flat)


def render_gains_csv(gains: pd.DataFrame) -> str:
    return _neutral_csv(gains)


# Terminal: as many tables as it takes to fit the width, each repeating the row labels; intervals go on
# the line below the score, long names wrap.
_LABEL_WIDTH = 30


def _fit_width(shown: pd.DataFrame, index_name: str, width: int) -> list[str]:
    def wrap(text: str, width: int) -> str:
        return textwrap.fill(terminal_text(text), width, break_long_words=True, break_on_hyphens=False)

    labels = [wrap(str(i), _LABEL_WIDTH) for i in shown.index]
    headers = [wrap(str(c), 16) for c in shown.columns]
    cells = [["\n".join(terminal_text(line) for line in v.split("\n")) for v in row] for row in shown.values]

    def render(cols: range) -> str:
        rows = [[label, *(row[c] for c in cols)] for label, row in zip(labels, cells, strict=True)]
        text: str = tabulate(rows, headers=[index_name, *(headers[c] for c in cols)], disable_numparse=True)
        return text

    blocks: list[str] = []
    start = 0
    while start < len(headers):
        end = start + 1
        while end < len(headers) and max(map(len, render(range(start, end + 1)).splitlines())) <= width:
            end += 1
        blocks.append(render(range(start, end)))
        start = end
    return blocks


def render_terminal(
    table: pd.DataFrame,
    gains: pd.DataFrame | None = None,
    note: str | None = None,
    width: int = TERMINAL_WIDTH,
    dependence: pd.DataFrame | None = None,
) -> str:
    """The scores, gains and notes for a terminal: no line longer than width (labels wrapped at 30)."""
    parts = ["Scores (primary metric x 100, 95% interval)", ""]
    parts += "\n\n".join(_fit_width(display_table(table, interval_sep="\n"), "model", width)).splitlines()
    parts += ["", *textwrap.wrap(SIGNIFICANCE_LEGEND, width)]
    if dependence is not None and not dependence.empty:
        shown = _display_dependence(dependence, interval_sep="\n")
        parts += ["", *textwrap.wrap(DEPENDENCE_TITLE, width), ""]
        parts += "\n\n".join(_fit_width(shown, "model", width)).splitlines()
        parts += ["", *textwrap.wrap(DEPENDENCE_LEGEND, width)]
    if gains is not None and not gains.empty:
        parts += ["", "Relative gain of fine-tuned over base (%)", ""]
        parts += "\n\n".join(_fit_width(_display_gains(gains), "pair", width)).splitlines()
    if note:
        parts += ["", "Notes", ""]
        for line in map(terminal_text, note.splitlines()):
            indent = "  " if line.startswith("- ") else ""
            parts += textwrap.wrap(line, width, subsequent_indent=indent, break_on_hyphens=False) or [""]
    elif gains is not None and not gains.empty:
        parts += ["", *textwrap.wrap(DEFINITIONS, width)]
    return "\n".join(parts) + "\n"


@dataclass(frozen=True)
class ChartSeries:
    """One model's bars: means, the error bar below and above each mean (None: no interval, as for the
    study's rows), which benchmarks' primary metric was not fully scored (unscored items left out), and
    which were run but have no score at all (drawn as a "not scored" label instead of a bar)."""

    model: str
    means: list[float]
    yerr: tuple[list[float], list[float]] | None
    not_fully_scored: list[bool]
    study: bool
    not_scored: list[bool] = field(default_factory=list)


NOT_FULLY_SCORED_MARK = "\u2020"  # dagger, drawn above a bar whose primary metric left items unscored
NOT_FULLY_SCORED_LEGEND = (
    f"{NOT_FULLY_SCORED_MARK} primary metric not fully scored (unscored items are left out of the mean); "
    "error bars: 95% interval (none for the study's rows, which publish none)"
)
NOT_SCORED_LEGEND = f"'{NOT_SCORED}' in place of a bar: run, but the primary metric has no score"


def unscored_counts(runs: Iterable[RunLike]) -> dict[str, dict[str, int]]:
    """Items left unscored by each run's primary metric, per model and benchmark (non-zero counts only)."""
    out: dict[str, dict[str, int]] = {}
    for run in _as_runs(runs):
        for task, summary in run.results["tasks"].items():
            if int(summary.get("unscored", 0)) > 0:
                out.setdefault(row_label(run), {})[benchmark_of(task)] = int(summary["unscored"])
    return out


def chart_series(
    table: pd.DataFrame, unscored: Mapping[str, Mapping[str, int]] | None = None
) -> tuple[list[str], list[ChartSeries]]:
    """The benchmarks on the chart's x axis and one series per table row, as render_bar_chart draws them."""
    benches = [c for c in dict.fromkeys(table.columns.get_level_values(0)) if c not in GROUPS]
    series: list[ChartSeries] = []
    for model in table.index:
        means = np.array([table.loc[model, (b, "mean")] for b in benches], dtype=float)
        low = np.array([table.loc[model, (b, "ci_low")] for b in benches], dtype=float)
        high = np.array([table.loc[model, (b, "ci_high")] for b in benches], dtype=float)
        has_ci = np.isfinite(low) & np.isfinite(high) & np.isfinite(means)
        study = str(model).startswith(STUDY_PREFIX)
        yerr = None
        if has_ci.any() and not study:
            yerr = (
                # at 0 or 100 a Wilson bound can miss the mean by a rounding error (5e-17): no bar below 0
                [float(v) for v in np.where(has_ci, np.maximum(means - low, 0.0), 0.0)],
                [float(v) for v in np.where(has_ci, np.maximum(high - means, 0.0), 0.0)],
            )
        counts = (unscored or {}).get(str(model), {})
        series.append(
            ChartSeries(
                model=str(model),
                means=[float(v) for v in means],
                yerr=yerr,
                not_fully_scored=[counts.get(b, 0) > 0 for b in benches],
                study=study,
                not_scored=[
                    not math.isfinite(m) and table.loc[model, (b, "not_scored")] == 1.0
                    for b, m in zip(benches, means, strict=True)
                ],
            )
        )
    return benches, series


# Chart layout, in inches at CHART_DPI (fonts in points, so every size below is what a reader sees when
# the PNG is shown at its own size, as the HTML page does up to about 12 inches wide).
CHART_DPI = 100
CHART_FONT = 10.0  # tick labels, legend and footnote
_LABEL_FONT = 8.0  # the labels on bars
_BAR_IN = 0.16  # narrowest bar: room for a vertical 8 pt "not scored" label with a gap to the next
_GROUP_MIN_IN = 1.3  # one benchmark's slot, however few models
_AXES_MAX_IN = 11.0  # wider than this, the benchmarks go on several panels, one above the other
_PANEL_IN = 3.0
_LEFT_IN, _RIGHT_IN = 0.75, 0.25


def _plain(text: str) -> str:
    """Matplotlib reads text between two $ as mathtext; names are shown as written (a stray $ would
    otherwise fail the whole chart)."""
    return control_to_space(text).replace("$", r"\$")


def _wrap_px(text: str, max_px: float, size: float, renderer: Any) -> str:
    """Greedy word wrap to a width in pixels as the renderer measures it; a word too long is broken."""
    from matplotlib.font_manager import FontProperties

    prop = FontProperties(size=size)

    def width(s: str) -> float:
        return float(renderer.get_text_width_height_descent(s.replace(r"\$", "$"), prop, ismath=False)[0])

    lines: list[str] = []
    for word in text.split(" "):
        while width(word) > max_px and len(word) > 1:  # break an over-long word where it stops fitting
            cut = max(1, max(i for i in range(1, len(word) + 1) if width(word[:i]) <= max_px or i == 1))
            if lines and width(f"{lines[-1]} {word[:cut]}") <= max_px:
                lines[-1] = f"{lines[-1]} {word[:cut]}"
            else:
                lines.append(word[:cut])
            word = word[cut:]
        if lines and width(f"{lines[-1]} {word}") <= max_px:
            lines[-1] = f"{lines[-1]} {word}"
        else:
            lines.append(word)
    return "\n".join(lines)


def chart_figure(table: pd.DataFrame, unscored: Mapping[str, Mapping[str, int]] | None = None) -> Figure:
    """The grouped bar chart as a matplotlib Figure (render_bar_chart saves it). Bars are never narrower
    than _BAR_IN and the figure no wider than about _AXES_MAX_IN: more models put the benchmarks on
    several panels; labels are wrapped to their slot, so no two texts overlap however many models."""
    benches, series = chart_series(table, unscored)
    n_models = max(len(series), 1)
    group_in = max(_GROUP_MIN_IN, n_models * _BAR_IN / 0.8)
    n_panels = max(1, math.ceil(len(benches) / max(1, int(_AXES_MAX_IN // group_in))))
    per_panel = max(1, math.ceil(len(benches) / n_panels))
    fig_w = max(8.0, _LEFT_IN + _RIGHT_IN + per_panel * group_in)
    axes_w = fig_w - _LEFT_IN - _RIGHT_IN
    fig = Figure(figsize=(fig_w, 8.0), dpi=CHART_DPI)
    renderer = FigureCanvasAgg(fig).get_renderer()
    slot_px = axes_w / per_panel * CHART_DPI
    colors = _palette(len(series))
    width = 0.8 / n_models
    drew_mark = drew_not_scored = False
    panels = []
    handles: list[Any] = []  # BarContainers: one legend entry per model
    for p in range(n_panels):
        shown = benches[p * per_panel : (p + 1) * per_panel]
        ax = fig.add_axes((0.0, 0.0, 1.0, 1.0))
        x = np.arange(len(shown))
        for i, item in enumerate(series):
            cols = [benches.index(b) for b in shown]
            positions = x - 0.4 + width * (i + 0.5)
            means = np.array([item.means[j] for j in cols], dtype=float)
            yerr = None if item.yerr is None else np.array([[item.yerr[k][j] for j in cols] for k in (0, 1)])
            bars = ax.bar(
                positions,
                np.nan_to_num(means),
                width,
                yerr=yerr,
                capsize=2,
                error_kw={"elinewidth": 1, "ecolor": "#333333"},
                color=colors[i],
                hatch="//" if item.study else None,
                edgecolor="white" if item.study else None,
                linewidth=0,
            )
            if p == 0:
                handles.append(bars)
            for pos, j, mean in zip(positions, cols, means, strict=True):
                if item.not_scored[j]:  # inside the empty slot, upright: as narrow as a bar
                    drew_not_scored = True
                    dark = tuple(0.6 * c for c in colors[i][:3])
                    ax.text(
                        pos, 1.5, NOT_SCORED, rotation=90, ha="center", va="bottom", fontsize=_LABEL_FONT,
                        color=dark,
                    )  # fmt: skip
                elif item.not_fully_scored[j] and math.isfinite(mean):
                    drew_mark = True
                    top = mean + (0.0 if yerr is None else float(yerr[1][cols.index(j)]))
                    ax.text(pos, min(top, 93.0) + 1.0, NOT_FULLY_SCORED_MARK, ha="center", va="bottom")
        ax.set_xlim(-0.5, per_panel - 0.5)  # the same slot width on every panel
        ax.set_xticks(
            x, [_wrap_px(_plain(LABELS.get(b, b)), 0.95 * slot_px, CHART_FONT, renderer) for b in shown]
        )
        ax.tick_params(labelsize=CHART_FONT)
        ax.set_ylabel("score x 100", fontsize=CHART_FONT)
        ax.set_ylim(0, 100)
        ax.grid(axis="y", alpha=0.3)
        ax.set_axisbelow(True)
        panels.append(ax)

    # Legend: as many columns as the widest name allows; the names wrap where one alone is too wide.
    text_px = (fig_w - 0.2) * CHART_DPI - 60  # less the colour patch and padding
    labels = []
    for item in series:
        mark = f" {NOT_FULLY_SCORED_MARK}" if any(
            f and math.isfinite(m) for f, m in zip(item.not_fully_scored, item.means, strict=True)
        ) else ""  # fmt: skip
        labels.append(_wrap_px(_plain(item.model) + mark, text_px, CHART_FONT, renderer))
    from matplotlib.font_manager import FontProperties

    prop = FontProperties(size=CHART_FONT)
    widest = max(
        (
            renderer.get_text_width_height_descent(line, prop, ismath=False)[0]
            for s in labels
            for line in s.split("\n")
        ),
        default=0.0,
    )
    ncol = max(1, min(len(labels), int(((fig_w - 0.2) * CHART_DPI) // (widest + 60))))
    legend = fig.legend(
        handles, labels, ncol=ncol, loc="lower left", fontsize=CHART_FONT, frameon=False, borderaxespad=0.0
    )
    caption = NOT_FULLY_SCORED_LEGEND if drew_mark else NOT_FULLY_SCORED_LEGEND.split("; ", 1)[1]
    caption = caption[0].upper() + caption[1:] + "."
    if drew_not_scored:
        caption += f" {NOT_SCORED_LEGEND[0].upper()}{NOT_SCORED_LEGEND[1:]}."
    footnote = fig.text(
        0.1, 0.1, _wrap_px(caption, (fig_w - 0.2) * CHART_DPI, CHART_FONT, renderer), fontsize=CHART_FONT,
        ha="left", va="bottom", transform=fig.dpi_scale_trans,
    )  # fmt: skip

    # Bottom up, in inches: footnote, legend, then the panels with their tick labels.
    foot_h = footnote.get_window_extent(renderer).height / CHART_DPI
    legend_y = 0.1 + foot_h + 0.15
    legend.set_bbox_to_anchor((0.1, legend_y), transform=fig.dpi_scale_trans)
    legend_h = legend.get_window_extent(renderer).height / CHART_DPI if labels else 0.0
    y = legend_y + legend_h + 0.15
    boxes = []
    for ax in reversed(panels):
        ticks_h = max((t.get_text().count("\n") + 1 for t in ax.get_xticklabels()), default=1)
        y += 0.15 + ticks_h * CHART_FONT * 1.25 / 72
        boxes.append((ax, y))
        y += _PANEL_IN + 0.25
    fig_h = y
    fig.set_size_inches(fig_w, fig_h)
    for ax, bottom in boxes:
        ax.set_position((_LEFT_IN / fig_w, bottom / fig_h, axes_w / fig_w, _PANEL_IN / fig_h))
    return fig


def render_bar_chart(
    table: pd.DataFrame,
    png_path: str | os.PathLike[str],
    unscored: Mapping[str, Mapping[str, int]] | None = None,
) -> Path:
    """Grouped bars like the study's figure: benchmarks on x, one bar per model, 95% intervals as error bars.
    Study rows are hatched and have no error bars (the figure publishes none). A run's bar is marked with a
    dagger where its primary metric was not fully scored (`unscored`: model -> benchmark -> count), and a
    benchmark with nothing scored says "not scored" upright in the bar's place instead of an empty bar."""
    fig = chart_figure(table, unscored)
    target = Path(png_path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(target, format="png", metadata={"Software": None})
    return target


def _palette(n: int) -> list[tuple[float, float, float, float]]:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


_HTML_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.45em; text-align: right; }
th { background: #f3f3f3; }
td { white-space: nowrap; }  /* a score and its interval are one line each */
div.wide { overflow-x: auto; }
tbody th { background: none; font-weight: normal; text-align: left; }
tbody th { min-width: 10em; overflow-wrap: anywhere; }  /* a long name wraps, a short one never */
thead th:first-child { text-align: left; }
p.note { white-space: pre-line; max-width: 60em; }
img { max-width: 100%; }
"""


def _html_table(shown: pd.DataFrame, index_name: str) -> str:
    """Every name and cell escaped; a cell's lines (a score above its interval) as separate lines."""

    def cell(tag: str, text: object) -> str:
        return f"<{tag}>" + "<br>".join(html.escape(line) for line in str(text).split("\n")) + f"</{tag}>"

    head = "".join(cell("th", c) for c in [index_name, *shown.columns])
    rows = [
        "<tr>" + cell("th", label) + "".join(cell("td", v) for v in row) + "</tr>"
        for label, row in zip(shown.index, shown.values.tolist(), strict=True)
    ]
    body = "\n".join(rows)
    table = f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody>\n</table>"
    return f'<div class="wide">{table}</div>'


def render_html(
    table: pd.DataFrame,
    gains: pd.DataFrame | None = None,
    note: str | None = None,
    png: bytes | str | os.PathLike[str] | None = None,
    title: str = "obv-eval leaderboard",
    dependence: pd.DataFrame | None = None,
) -> str:
    """A self-contained page: inline style, the chart embedded as a base64 data URI, no external assets."""
    body = [
        f"<h1>{html.escape(title)}</h1>",
        "<h2>Scores (primary metric &times; 100, 95% interval)</h2>",
        _html_table(display_table(table, interval_sep="\n"), "model"),
        f"<p>{html.escape(SIGNIFICANCE_LEGEND)}</p>",
    ]
    if dependence is not None and not dependence.empty:
        body += [
            f"<h2>{html.escape(DEPENDENCE_TITLE)}</h2>",
            _html_table(_display_dependence(dependence, interval_sep="\n"), "model"),
            f"<p>{html.escape(DEPENDENCE_LEGEND)}</p>",
        ]
    if png is not None:
        data = png if isinstance(png, bytes) else Path(png).read_bytes()
        encoded = base64.b64encode(data).decode("ascii")
        body.append(f'<img alt="grouped bar chart of scores" src="data:image/png;base64,{encoded}">')
    if gains is not None and not gains.empty:
        body += [
            "<h2>Relative gain of fine-tuned over base (%)</h2>",
            _html_table(_display_gains(gains), "pair"),
        ]
    if note:
        body += ["<h2>Notes</h2>", f'<p class="note">{html.escape(note)}</p>']
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html.escape(title)}</title>\n<style>{_HTML_STYLE}</style>\n</head>\n<body>\n"
        + "\n".join(body)
        + "\n</body>\n</html>\n"
    )


def write_leaderboard(
    out_dir: str | os.PathLike[str],
    runs: Iterable[RunLike],
    reference: bool = True,
    reference_path: str | os.PathLike[str] | None = None,
    controls: Iterable[Run] = (),
) -> dict[str, Path]:
    """Write leaderboard.{md,csv,png,html,txt} and gains.csv into out_dir; returns their paths by kind.
    leaderboard.txt is what `obv-eval leaderboard` prints: the tables within 100 columns. With control
    runs (split_controls), also the visual dependence table, and visual_dependence.csv."""
    run_list = _as_runs(runs)
    dependence = visual_dependence(run_list, controls)
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError) as error:
        raise ValueError(
            f"{out}: cannot be the output folder ({error.strerror}); pass --out a folder"
        ) from error
    table = build_table(run_list, reference=reference, reference_path=reference_path)
    if table.empty:
        raise ValueError("nothing to show: no runs given and the study reference left out")
    gains = build_gains(run_list, reference=reference, reference_path=reference_path)
    head = headline_note(reference_path) if reference else DEFINITIONS
    note = "\n".join([head, *judge_lines(run_list), *frame_policy_lines(run_list)])
    paths = {
        "markdown": out / "leaderboard.md",
        "csv": out / "leaderboard.csv",
        "gains_csv": out / "gains.csv",
        "png": out / "leaderboard.png",
        "html": out / "leaderboard.html",
        "text": out / "leaderboard.txt",
    }
    md_note = "\n".join(
        [head, *judge_lines(run_list, markdown_cell), *frame_policy_lines(run_list, markdown_cell)]
    )
    paths["markdown"].write_text(render_markdown(table, gains, md_note, dependence), encoding="utf-8")
    paths["csv"].write_text(render_csv(table), encoding="utf-8")
    paths["gains_csv"].write_text(render_gains_csv(gains), encoding="utf-8")
    render_bar_chart(table, paths["png"], unscored_counts(run_list))
    page = render_html(table, gains, note, png=paths["png"], dependence=dependence)
    paths["html"].write_text(page, encoding="utf-8")
    paths["text"].write_text(render_terminal(table, gains, note, dependence=dependence), encoding="utf-8")
    if not dependence.empty:
        flat = dependence.copy()
        flat.columns = [f"{bench}.{field}" for bench, field in dependence.columns]
        paths["dependence_csv"] = out / "visual_dependence.csv"
        paths["dependence_csv"].write_text(_neutral_csv(flat), encoding="utf-8")
    return paths
