"""`obv-eval controls RUN`: a finished run's controls, run with its model, items and settings, and what
they say: per task the accuracy under each control and its paired difference to the full run (the
test `compare` prints, obv_eval.regress.paired_task_tests), visual dependence = full - blind, and for
two runs (base, fine-tuned) the difference in differences (docs/controls.md).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tabulate import tabulate

from obv_eval.benchmarks import BENCHMARKS
from obv_eval.controls import BLIND, ControlError, parse_control, refusal, run_suffix
from obv_eval.judge import JudgeConfig
from obv_eval.results import cluster_key, index_records, read_results, read_samples, record_score
from obv_eval.stats import Estimate, PairedTest, clustered_pvalue, mean_estimate

DEFAULT_CONTROLS = ("blind", "blank", "single-frame", "shuffled")
_BACKENDS = {"transformers": "hf", "vllm": "vllm", "openai-compatible": "openai", "openai": "openai"}


@dataclass
class Run:
    """A finished run folder: its results and records."""

    path: Path
    results: dict[str, Any]
    records: list[dict[str, Any]] = field(repr=False)

    @classmethod
    def read(cls, path: Path) -> Run:
        return cls(Path(path), read_results(path), read_samples(path))

    @property
    def provenance(self) -> dict[str, Any]:
        provenance: dict[str, Any] = self.results["provenance"]
        return provenance


def parse_controls(text: str | None) -> list[str]:
    """The controls asked for, in their one spelling (all four named controls when none are named)."""
    if not text:
        return list(DEFAULT_CONTROLS)
    chosen = [parse_control(part) for part in text.split(",") if part.strip()]
    if not chosen:
        raise ControlError("--controls names no control; e.g. --controls blind,shuffled")
    return list(dict.fromkeys(chosen))


def check_full_run(run: Run) -> None:
    """A control is taken away from a full run of a model: not from a control run or a reference row."""
    if run.provenance.get("control"):
        raise ControlError(
            f"{run.path} is itself a control run ({run.provenance['control']}); give the full run"
        )
    if (run.provenance.get("backend") or {}).get("backend") == "reference":
        raise ControlError(
            f"{run.path} is a reference row ({run.results['model']}); it has no visuals to remove"
        )


def applicable_tasks(run: Run, control: str) -> tuple[list[str], dict[str, str]]:
    """The run's tasks the control applies to, and why each other one is left out."""
    tasks, skipped = [], {}
    for task in run.results["tasks"]:
        why = refusal(control, BENCHMARKS[task].modality)
        if why:
            skipped[task] = why
        else:
            tasks.append(task)
    return tasks, skipped


def frame_args(media: Mapping[str, Any], model_path: str | None = None) -> dict[str, Any]:
    """The adapter's frame arguments that rebuild the run's recorded frame settings exactly (model_path:
    the run's checkpoint, whose family's native rule they were made from)."""
    from obv_eval.model_adapters.base import media_settings

    if media.get("frame_policy"):  # a common policy: its spec says it all
        return {"frames": str(media["frame_policy"])}
    video = dict(media.get("video") or {})
    base = {
        "fps": video.get("fps"),
        "min_frames": video.get("min_frames"),
        "max_frames": video.get("max_frames"),
    }
    budgets: list[int | None] = [None, int(video.get("total_pixels") or 0) // (28 * 28) or None]
    for frames in ("default", "train"):
        for budget in budgets:
            args = {**base, "frames": frames, "max_visual_tokens": budget}
            try:
                if media_settings(**args, model_path=model_path).to_dict()["video"] == video:
                    return args
            except (TypeError, ValueError):
                continue
    raise ControlError(
        "the run's recorded frame settings cannot be rebuilt from --frames/--max-visual-tokens"
    )


def data_argument(described: str) -> str:
    """The --data value that names the data source recorded in provenance ('samples:/x' -> samples)."""
    kind, _, root = str(described).partition(":")
    return kind if kind in ("hub", "samples") else root or kind


def control_config(
    run: Run,
    control: str,
    tasks: Sequence[str],
    judge: JudgeConfig,
    overrides: Mapping[str, Any] | None = None,
) -> Any:
    """The RunConfig of the control run: the full run's model, items (its limit) and settings, the
    control added; its run id is the full run's with the control's suffix, beside it."""
    from obv_eval.registry import MODELS
    from obv_eval.runner import RunConfig

    provenance = run.provenance
    model = provenance["model"]
    backend = provenance.get("backend") or {}
    kind = _BACKENDS.get(str(backend.get("backend")), "hf")
    settings: dict[str, Any] = {
        "model": model["name"],
        "model_path": None if model["name"] in MODELS else model.get("path"),
        "benchmarks": list(tasks),
        "data": data_argument(provenance.get("data_source", "hub")),
        "output_dir": run.path.parent.parent,
        "run_id": run.results["run_id"],
        "backend": kind,
        "limit": provenance.get("limit"),
        "model_args": frame_args(provenance.get("media") or {}, model.get("path")),
        "control": control,
        "judge": judge,
    }
    if kind == "hf":
        settings.update(
            device=backend.get("device", "cpu"),
            dtype=backend.get("dtype"),
            batch_size=int(backend.get("batch_size") or 8),
            prefix_reuse=bool(backend.get("prefix_reuse", True)),
        )
    elif kind == "vllm":
        settings.update(dtype=backend.get("dtype"))
    settings.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return RunConfig(**settings)


def control_folder(run: Run, control: str) -> Path:
    return run.path.parent / f"{run.results['run_id']}.{run_suffix(control)}"


def run_controls(
    run: Run,
    controls: Sequence[str],
    judge: JudgeConfig,
    overrides: Mapping[str, Any] | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Run]:
    """Run (or resume) each control of the run; returns the control runs by control."""
    from obv_eval.runner import run as run_one

    done: dict[str, Run] = {}
    for control in controls:
        tasks, skipped = applicable_tasks(run, control)
        for task, why in skipped.items():
            log(f"obv-eval: {control}: {task} left out ({why})")
        if not tasks:
            continue
        result = run_one(control_config(run, control, tasks, judge, overrides), log=log)
        done[control] = Run(result.run_dir, result.results, result.records)
    return done


# ---------------------------------------------------------------------------------------------------
# What the controls say


def _pct(value: float) -> str:
    return "-" if not math.isfinite(value) else f"{100 * value:.1f}"


def _diff(estimate: Estimate) -> tuple[str, str]:
    if not math.isfinite(estimate.mean):
        return "-", "-"
    interval = "-"
    if math.isfinite(estimate.ci_low) and math.isfinite(estimate.ci_high):
        interval = f"[{_points(estimate.ci_low)}, {_points(estimate.ci_high)}]"
    return _points(estimate.mean), interval


def _points(value: float) -> str:
    return f"{100 * value + 0.0:+.1f}"  # + 0.0: a negated zero reads +0.0, not -0.0


def _mean(run: Run, task: str, metric: str) -> float:
    estimate = (run.results["tasks"].get(task, {}).get("metrics") or {}).get(metric) or {}
    value = estimate.get("mean")
    return math.nan if value is None else float(value)


def control_tests(
    full: Run, controls: Mapping[str, Run]
) -> dict[str, dict[str, tuple[str, int, PairedTest | None]]]:
    """Per control, per task: (metric, paired n, the paired test of control - full), as `compare` tests."""
    from obv_eval.regress import paired_task_tests

    return {
        control: paired_task_tests(full.results, full.records, run.results, run.records)
        for control, run in controls.items()
    }


def control_table(full: Run, controls: Mapping[str, Run]) -> str:
    """Per task: the full run's accuracy, then each control's with its paired difference to the full run
    (control - full: a drop is negative), 95% clustered interval and p; visual dependence = full - blind."""
    tests = control_tests(full, controls)
    rows: list[list[Any]] = []
    for task in full.results["tasks"]:
        mine = [(control, tests[control][task]) for control in controls if task in tests[control]]
        if not mine:
            continue
        metric = mine[0][1][0]
        if rows:
            rows.append([""] * 8)
        rows.append([task, "full", metric, "", _pct(_mean(full, task, metric)), "", "", ""])
        for control, (metric, n, test) in mine:
            accuracy = _pct(_mean(controls[control], task, metric))
            if test is None:
                rows.append(["", control, metric, n, accuracy, "-", "-", "no paired items"])
                continue
            difference, interval = _diff(test.estimate)
            p = f"{test.pvalue:.3g} ({test.method})"  # as `compare` prints it
            rows.append(["", control, metric, n, accuracy, difference, interval, p])
            if control == BLIND:
                flipped = Estimate(
                    -test.estimate.mean,
                    test.estimate.se,
                    -test.estimate.ci_high,
                    -test.estimate.ci_low,
                    test.estimate.n,
                    test.estimate.n_clusters,
                    test.estimate.method,
                )
                dependence, interval = _diff(flipped)
                rows.append(["", "visual_dependence", "full - blind", n, "", dependence, interval, p])
    headers = ["task", "run", "metric", "paired n", "acc (%)", "vs full (pts)", "95% CI", "p"]
    return tabulate(rows, headers=headers, disable_numparse=True)


def _scores(run: Run, task: str, metric: str) -> dict[tuple[str, str], tuple[float, str]]:
    """Each scored item's score on `metric` (accuracy_closed: the primary metric of the closed items)."""
    primary = run.results["tasks"][task]["primary_metric"]
    closed_only = metric == f"{primary}_closed"
    out = {}
    for key, record in index_records(r for r in run.records if r.get("task") == task).items():
        if closed_only and (record.get("categories") or {}).get("answer_type") != "closed":
            continue
        value = record_score(record, primary if closed_only else metric)
        if value is not None:
            out[key] = (value, cluster_key(record))
    return out


def difference_in_differences(
    base: Run, base_control: Run, tuned: Run, tuned_control: Run, task: str, metric: str
) -> tuple[Estimate, float, int]:
    """Per item (tuned full - tuned control) - (base full - base control) over the items scored in all
    four runs: the part of the fine-tune's gain that the control takes away (for blind: the gain that
    needs the video). Clustered by the base run's clusters; p from the clustered t test."""
    runs = [_scores(run, task, metric) for run in (base, base_control, tuned, tuned_control)]
    keys = sorted(set.intersection(*(set(r) for r in runs)))
    values = [(runs[2][k][0] - runs[3][k][0]) - (runs[0][k][0] - runs[1][k][0]) for k in keys]
    clusters = [runs[0][k][1] for k in keys]
    estimate = mean_estimate(values, clusters, proportion=False, bounds=(-2.0, 2.0))
    return estimate, clustered_pvalue(estimate), len(keys)


def did_table(
    base: Run, base_controls: Mapping[str, Run], tuned: Run, tuned_controls: Mapping[str, Run]
) -> str:
    """Per task and control: the fine-tune's gain on the full runs, its gain under the control, and the
    difference in differences with its interval and p."""
    from obv_eval.regress import paired_task_tests

    full_gain = paired_task_tests(base.results, base.records, tuned.results, tuned.records)
    rows = []
    for control in [c for c in base_controls if c in tuned_controls]:
        gain = paired_task_tests(
            base_controls[control].results,
            base_controls[control].records,
            tuned_controls[control].results,
            tuned_controls[control].records,
        )
        for task, (metric, _, test) in full_gain.items():
            if task not in gain or test is None or gain[task][2] is None:
                continue
            estimate, p, n = difference_in_differences(
                base, base_controls[control], tuned, tuned_controls[control], task, metric
            )
            difference, interval = _diff(estimate)
            under = gain[task][2]
            rows.append(
                [
                    task,
                    control,
                    metric,
                    n,
                    _diff(test.estimate)[0],
                    _diff(under.estimate)[0] if under else "-",
                    difference,
                    interval,
                    f"{p:.3g}" if math.isfinite(p) else "-",
                ]
            )
    headers = ["task", "control", "metric", "n", "gain full", "gain control", "DiD (pts)", "95% CI", "p"]
    return tabulate(rows, headers=headers, disable_numparse=True)
