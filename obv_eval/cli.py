"""`obv-eval`: argument parsing only; the work happens in the modules it calls.

Exit codes: 0 success, 1 a completed run that failed a check, 2 bad usage or input.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tabulate import tabulate

from obv_eval.benchmarks import BENCHMARKS, GROUPS, UnknownTaskError, resolve_task_names
from obv_eval.redaction import redact, register_secret_env

USAGE_ERROR = 2
CHECK_FAILED = 1


class UsageError(Exception):
    """Bad usage or input: printed as one line, exit 2."""


def _run_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="obv-eval",
        description="Evaluate a vision-language model on the OpenBiomedVid benchmarks (lmms-eval tasks).",
        epilog="Other commands: obv-eval models | tasks | tasks-dir | rescore | judge-agreement | "
        "leaderboard | compare | regress | report | data (each with --help)",
    )
    parser.add_argument("--model", default="tiny-qwen2vl", help="registry name or checkpoint folder")
    parser.add_argument("--model-path", help="checkpoint folder (full weights or LoRA adapter) for --model")
    parser.add_argument(
        "--tasks",
        nargs="+",
        default=["all"],
        help="benchmarks or groups: " + " ".join([*BENCHMARKS, *GROUPS]),
    )
    parser.add_argument(
        "--data",
        default=os.environ.get("OBV_EVAL_DATA", "auto"),
        help="hub | samples | DIR (a local copy); auto: samples for tiny-qwen2vl, hub otherwise",
    )
    parser.add_argument("--video-root", default=os.environ.get("OBV_EVAL_VIDEO_ROOT"))
    parser.add_argument("--image-root", default=os.environ.get("OBV_EVAL_IMAGE_ROOT"))
    parser.add_argument("--output-dir", type=Path, default=Path("results/runs"))
    parser.add_argument("--run-id", help="default: the UTC time")
    parser.add_argument(
        "--backend",
        default="auto",
        choices=("auto", "hf", "vllm", "openai"),
        help="auto: openai for --base-url and API models, else hf (transformers); vllm on a GPU",
    )
    parser.add_argument(
        "--base-url", help="an OpenAI-compatible server already serving --model (e.g. vllm serve)"
    )
    parser.add_argument("--device", default="cpu", help="hf backend: cpu, cuda, cuda:1, ...")
    parser.add_argument(
        "--dtype", choices=("float32", "bfloat16", "float16"), help="default: float32 (hf), bfloat16 (vllm)"
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=8,
        help="hf: at most this many rows per batch (default 8; the token budgets bound memory)",
    )
    parser.add_argument("--tensor-parallel-size", type=int, default=1, help="vllm: GPUs per engine")
    parser.add_argument(
        "--data-parallel-size", type=int, default=1, help="vllm: engines, one per GPU group (0: all GPUs)"
    )
    parser.add_argument(
        "--max-model-len",
        type=int,
        help="vllm: context length (default: fit to the longest item, as the hf backend runs it)",
    )
    parser.add_argument(
        "--max-batch-tokens",
        type=int,
        help="hf: a batch holds at most this many padded tokens (default 32768; a longer item runs alone)",
    )
    parser.add_argument(
        "--no-prefix-reuse",
        dest="prefix_reuse",
        action="store_false",
        help="hf: compute every prompt whole (default: a clip's questions share one prefill of its prefix)",
    )
    parser.add_argument(
        "--frames",
        choices=("default", "train"),
        default="default",
        help="default: qwen-vl-utils' frame budgets (the study's eval scripts); train: the training frames",
    )
    parser.add_argument(
        "--max-visual-tokens", type=int, help="visual-token budget per clip, e.g. 16384 (the training budget)"
    )
    parser.add_argument("--concurrency", type=int, default=8, help="openai backend: requests in flight")
    parser.add_argument("--max-new-tokens", type=int, help="override every task's token budget")
    parser.add_argument("--limit", type=int, help="only the first N items of each task")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars, only stage lines")
    parser.add_argument(
        "--verbose", action="store_true", help="let the libraries' progress bars, logs and warnings through"
    )
    parser.add_argument(
        "--max-unscored",
        type=float,
        default=0.05,
        help="error budget: exit 1 when the judge leaves more than this fraction of a task's judged items "
        "unscored",
    )
    parser.add_argument(
        "--max-failed",
        type=float,
        default=0.05,
        help="error budget: exit 1 when more than this fraction of a task's items failed (every item "
        "failing always exits 1)",
    )
    _add_judge_arguments(parser)
    return parser


def _add_judge_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("judge (open-ended answers)")
    group.add_argument("--judge-model", default=os.environ.get("OBV_EVAL_JUDGE_MODEL", "gpt-4o"))
    group.add_argument(
        "--judge-base-url",
        default=os.environ.get("OBV_EVAL_JUDGE_BASE_URL"),
        help="an OpenAI-compatible server (e.g. a local vLLM); default: the OpenAI API",
    )
    group.add_argument("--judge-api-key-env", default="OPENAI_API_KEY", help="env variable holding the key")
    group.add_argument("--judge-concurrency", type=int, default=32)
    group.add_argument("--judge-timeout", type=float, default=30.0)
    group.add_argument("--judge-retries", type=int, default=3)
    group.add_argument("--judge-cache", help="SQLite cache file (default: $OBV_EVAL_HOME/judge-cache.sqlite)")
    group.add_argument(
        "--judge-preset",
        default="study-rubric",
        choices=["study-rubric", "v1", "study-published"],
        help="judge prompt: study-rubric (the study's rubric, injection-safe; default), v1 (obv-eval's "
        "stricter first rubric), study-published (the study's prompt exactly as published); "
        "see docs/judge.md",
    )


def _judge_config(
    args: argparse.Namespace, model: str | None = None, base_url: str | None = None, preset: str | None = None
) -> Any:
    from obv_eval.judge import JudgeConfig
    from obv_eval.tiny_model import default_cache_root

    register_secret_env(args.judge_api_key_env)  # its value is redacted from everything printed
    cache = args.judge_cache or str(default_cache_root() / "judge-cache.sqlite")
    Path(cache).parent.mkdir(parents=True, exist_ok=True)
    try:
        return JudgeConfig(
            model=model or args.judge_model,
            base_url=base_url if model else args.judge_base_url,
            api_key_env=args.judge_api_key_env,
            concurrency=args.judge_concurrency,
            timeout_s=args.judge_timeout,
            max_retries=args.judge_retries,
            cache_path=cache,
            preset=preset or args.judge_preset,
        )
    except ValueError as error:
        raise UsageError(f"judge settings: {error}") from error


def cmd_run(argv: Sequence[str]) -> int:
    args = _run_parser().parse_args(argv)
    from obv_eval.gcpolicy import long_lived_objects
    from obv_eval.registry import MODELS, ModelNotAvailable
    from obv_eval.sources import DataSourceError

    try:
        benchmarks = resolve_task_names(args.tasks)
    except UnknownTaskError as error:
        raise UsageError(str(error)) from error
    if (
        args.model not in MODELS
        and args.model_path is None
        and args.base_url is None
        and not Path(args.model).is_dir()
    ):
        raise UsageError(f"unknown model {args.model!r}; valid: {', '.join(MODELS)} (or a checkpoint folder)")
    _validate_run_args(args)
    with long_lived_objects():  # what a run imports (torch, transformers, lmms-eval) stays loaded
        from obv_eval.runner import RunConfig, quiet_libraries, run

        quiet_libraries(verbose=args.verbose)
    config = RunConfig(
        model=args.model,
        benchmarks=benchmarks,
        model_path=args.model_path,
        data=args.data,
        video_root=args.video_root,
        image_root=args.image_root,
        output_dir=args.output_dir,
        run_id=args.run_id,
        backend=args.backend,
        base_url=args.base_url,
        device=args.device,
        dtype=args.dtype,
        batch_size=args.batch_size,
        tensor_parallel_size=args.tensor_parallel_size,
        data_parallel_size=args.data_parallel_size,
        max_model_len=args.max_model_len,
        max_batch_tokens=args.max_batch_tokens,
        prefix_reuse=args.prefix_reuse,
        model_args={"frames": args.frames, "max_visual_tokens": args.max_visual_tokens},
        concurrency=args.concurrency,
        max_new_tokens=args.max_new_tokens,
        limit=args.limit,
        progress=not args.no_progress,
        judge=_judge_config(args),
    )
    try:
        result = run(config, log=lambda line: print(redact(line), file=sys.stderr))
    except (ModelNotAvailable, DataSourceError, ImportError) as error:
        raise UsageError(str(error)) from error
    print(render_summary(result.results))
    print(f"\nwrote {result.run_dir / 'results.json'} and {result.run_dir / 'samples.jsonl'}")
    return _error_budget(result.results, result.records, args.max_unscored, args.max_failed)


def _error_budget(
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


def _fraction(value: float, flag: str) -> None:
    if not 0.0 <= value <= 1.0:
        raise UsageError(f"{flag} must be a fraction between 0 and 1 (got {value:g})")


def _at_least(value: int | None, low: int, flag: str) -> None:
    if value is not None and value < low:
        raise UsageError(f"{flag} must be at least {low} (got {value})")


def _validate_run_args(args: argparse.Namespace) -> None:
    """Every bad value is one line and exit 2 here, before any model or data loads."""
    _at_least(args.limit, 1, "--limit")
    _at_least(args.max_new_tokens, 1, "--max-new-tokens")
    _at_least(args.batch_size, 1, "--batch-size")
    _at_least(args.concurrency, 1, "--concurrency")
    _at_least(args.tensor_parallel_size, 1, "--tensor-parallel-size")
    _at_least(args.data_parallel_size, 0, "--data-parallel-size")
    _at_least(args.max_model_len, 1, "--max-model-len")
    _at_least(args.max_batch_tokens, 1, "--max-batch-tokens")
    _at_least(args.max_visual_tokens, 1, "--max-visual-tokens")
    _at_least(args.judge_concurrency, 1, "--judge-concurrency")
    _at_least(args.judge_retries, 0, "--judge-retries")
    if not args.judge_timeout > 0:
        raise UsageError(f"--judge-timeout must be a positive number of seconds (got {args.judge_timeout:g})")
    _fraction(args.max_unscored, "--max-unscored")
    _fraction(args.max_failed, "--max-failed")
    if args.run_id is not None:
        _check_run_id(args.run_id)
    _check_output_dir(args.output_dir)
    if args.backend == "hf" or (args.backend == "auto" and args.base_url is None):
        _check_device(args.device)


def _check_run_id(run_id: str) -> None:
    """A run id is one plain folder name under --output-dir/<model>/: it may not lead elsewhere."""
    bad = (
        not run_id.strip()
        or run_id in (".", "..")
        or any(sep in run_id for sep in ("/", "\\", os.sep, "\0"))
        or Path(run_id).is_absolute()
        or len(run_id) > 200
    )
    if bad:
        raise UsageError(
            f"--run-id {run_id!r} is not a plain name (no path separators, no '..', no absolute path); "
            "use letters, digits, '-', '_' or '.'"
        )


def _check_output_dir(path: Path) -> None:
    """--output-dir must be a folder this process can write (created if absent): probed by a real write."""
    import tempfile

    if path.exists() and not path.is_dir():
        raise UsageError(f"--output-dir {path}: exists and is not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".obv-write-probe-"):
            pass
    except OSError as error:
        raise UsageError(f"--output-dir {path}: not writable ({error.strerror or error})") from None


def _check_device(device: str) -> None:
    """--device must name a device torch can use here (cpu, cuda, cuda:N within the GPUs, mps)."""
    import torch

    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError) as error:
        raise UsageError(f"--device {device!r}: not a torch device ({error})") from None
    if parsed.type == "cpu":
        return
    if parsed.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise UsageError(f"--device {device}: no CUDA GPU is available here (use --device cpu)")
        if parsed.index is not None and parsed.index >= count:
            raise UsageError(f"--device {device}: only {count} CUDA GPU(s) here (cuda:0..cuda:{count - 1})")
        return
    if parsed.type == "mps":
        if not torch.backends.mps.is_available():
            raise UsageError(f"--device {device}: MPS is not available here (use --device cpu)")
        return
    raise UsageError(f"--device {device}: only cpu, cuda[:N] and mps are supported")


def cmd_rescore(argv: Sequence[str]) -> int:
    """Re-judge a finished run's open-ended items without re-running the model."""
    parser = argparse.ArgumentParser(prog="obv-eval rescore", description=cmd_rescore.__doc__)
    parser.add_argument("run", type=Path, help="a run folder (holding results.json and samples.jsonl)")
    parser.add_argument("--max-unscored", type=float, default=0.05)
    parser.add_argument("--max-failed", type=float, default=0.05)
    parser.add_argument("--no-progress", action="store_true")
    _add_judge_arguments(parser)
    args = parser.parse_args(argv)
    _fraction(args.max_unscored, "--max-unscored")
    _fraction(args.max_failed, "--max-failed")
    from obv_eval.results import read_results, read_samples, write_results
    from obv_eval.runner import score_run, write_samples

    results, records = _read_run(args.run, read_results, read_samples)
    provenance = {k: v for k, v in results["provenance"].items() if k != "judge"}
    records, rescored = score_run(
        records,
        results["run_id"],
        results["model"],
        provenance,
        _judge_config(args),
        not args.no_progress,
        lambda line: print(line, file=sys.stderr),
        {name: task["fingerprints"] for name, task in results["tasks"].items() if "fingerprints" in task},
    )
    write_samples(args.run / "samples.jsonl", records)
    write_results(args.run / "results.json", rescored)
    print(render_summary(rescored))
    return _error_budget(rescored, records, args.max_unscored, args.max_failed)


def _read_run(run: Path, read_results: Any, read_samples: Any) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    from obv_eval.results import ResultsError

    if not (run / "results.json").exists() or not (run / "samples.jsonl").exists():
        raise UsageError(f"{run}: not a run folder (needs results.json and samples.jsonl)")
    try:
        return read_results(run / "results.json"), read_samples(run)
    except ResultsError as error:
        raise UsageError(str(error)) from error


def cmd_judge_agreement(argv: Sequence[str]) -> int:
    """Agreement and Cohen's kappa between two judges (or a judge and a lexical metric) on a run."""
    parser = argparse.ArgumentParser(prog="obv-eval judge-agreement", description=cmd_judge_agreement.__doc__)
    parser.add_argument("run", type=Path)
    parser.add_argument(
        "--judges",
        help="two, comma separated: MODEL, MODEL@BASE_URL or either with #PRESET (an LLM judge, e.g. "
        "gpt-4o#v1), or exact_match",
    )
    parser.add_argument(
        "--presets",
        help="two judge presets, comma separated (e.g. study-rubric,v1): the --judge-model judge asked "
        "with each, on the same predictions",
    )
    parser.add_argument("--no-progress", action="store_true")
    _add_judge_arguments(parser)
    args = parser.parse_args(argv)
    from obv_eval.judge import Judge, JudgeCache, agreement, rescore_samples
    from obv_eval.results import read_results, read_samples
    from obv_eval.runner import is_open_ended

    if (args.judges is None) == (args.presets is None):
        raise UsageError("give one of --judges (e.g. gpt-4o,exact_match) or --presets (e.g. study-rubric,v1)")
    if args.presets is not None:
        at = f"@{args.judge_base_url}" if args.judge_base_url else ""
        specs = [f"{args.judge_model}{at}#{p.strip()}" for p in args.presets.split(",") if p.strip()]
    else:
        specs = [spec.strip() for spec in args.judges.split(",") if spec.strip()]
    if len(specs) != 2:
        raise UsageError("--judges / --presets take exactly two, e.g. gpt-4o,exact_match or study-rubric,v1")
    _, records = _read_run(args.run, read_results, read_samples)
    items = [r for r in records if is_open_ended(r) and r.get("status") == "ok"]
    if not items:
        raise UsageError(f"{args.run}: no open-ended items to judge")
    verdicts: list[list[int | None]] = []
    for spec in specs:
        if spec in ("exact_match",):
            verdicts.append([int(r["scores"][spec]) for r in items])
            continue
        head, _, preset = spec.partition("#")
        model, _, base_url = head.partition("@")
        config = _judge_config(args, model=model, base_url=base_url or None, preset=preset or None)
        judge = Judge(config, cache=JudgeCache(config.cache_path))
        judged = rescore_samples(
            items, config, {r["task"] for r in items}, judge=judge, progress=not args.no_progress
        )
        verdicts.append([r["scores"]["judge"] for r in judged])
    stats = agreement(verdicts[0], verdicts[1])
    row = [specs[0], specs[1], stats["n"], stats["n_total"]]
    row += [stats["accuracy_a"], stats["accuracy_b"], stats["accuracy_difference"]]
    row += [stats["percent_agreement"], stats["kappa"]]
    headers = ["judge A", "judge B", "n (both scored)", "n", "accuracy A %", "accuracy B %", "B - A (points)"]
    headers += ["agreement %", "Cohen's kappa"]
    print(tabulate([row], headers=headers))
    return 0


def cmd_leaderboard(argv: Sequence[str]) -> int:
    """Tables (Markdown, CSV, HTML) and a bar chart from results files, beside the study's figure."""
    parser = argparse.ArgumentParser(prog="obv-eval leaderboard", description=cmd_leaderboard.__doc__)
    parser.add_argument("runs", nargs="*", type=Path, help="results files or run folders (default: none)")
    parser.add_argument("--out", type=Path, default=Path("results/leaderboard"))
    parser.add_argument("--no-reference", action="store_true", help="leave out the study's published rows")
    args = parser.parse_args(argv)
    from obv_eval.leaderboard import latest_per_model, load_runs, write_leaderboard

    try:
        runs, older = latest_per_model(load_runs(args.runs))
        for run in older:
            print(
                f"obv-eval: leaving out {run.model} run {run.run_id} (a newer run of it is shown)",
                file=sys.stderr,
            )
        paths = write_leaderboard(args.out, runs, reference=not args.no_reference)
    except (ValueError, FileNotFoundError) as error:
        raise UsageError(str(error)) from error
    print(paths["markdown"].read_text(encoding="utf-8"))
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0


def cmd_compare(argv: Sequence[str]) -> int:
    """Paired comparison of two runs on the same items: difference, 95% interval, clustered paired test."""
    parser = argparse.ArgumentParser(prog="obv-eval compare", description=cmd_compare.__doc__)
    parser.add_argument("base", type=Path, help="run folder of the reference model (e.g. the base model)")
    parser.add_argument("other", type=Path, help="run folder of the model compared with it (e.g. fine-tuned)")
    args = parser.parse_args(argv)
    from obv_eval.regress import paired_metric_scores
    from obv_eval.results import read_results, read_samples
    from obv_eval.stats import holm, paired_test

    base, base_records = _read_run(args.base, read_results, read_samples)
    other, other_records = _read_run(args.other, read_results, read_samples)
    tests = {}
    for task in [t for t in base["tasks"] if t in other["tasks"]]:
        # a primary "not scored" in either run (open items not judged) is compared on what is scored in
        # both, the closed items, under their own name (accuracy_closed)
        primary = base["tasks"][task]["primary_metric"]
        unjudged = any(primary in (r["tasks"][task].get("not_scored") or {}) for r in (base, other))
        metric = f"{primary}_closed" if unjudged else primary
        a, b, clusters = paired_metric_scores(base_records, other_records, task, metric, base["tasks"][task])
        tests[task] = (metric, len(a), paired_test(a, b, clusters) if a else None)
    # Holm over the benchmarks compared: the family-wise error rate stays at 5% however many there are.
    adjusted = holm({task: test.pvalue for task, (_, _, test) in tests.items() if test is not None})
    rows = []
    for task, (metric, n, test) in tests.items():
        if test is None:
            rows.append([task, metric, 0, "-", "-", "-", "-", "no paired items"])
            continue
        diff, exact = test.estimate, test.mcnemar
        rows.append(
            [
                task,
                metric,
                n,
                f"{100 * diff.mean:+.1f}",
                f"[{100 * diff.ci_low:+.1f}, {100 * diff.ci_high:+.1f}]" if diff.se == diff.se else "-",
                f"{test.pvalue:.3g} ({test.method})",
                f"{adjusted[task]:.3g}",
                f"{exact.b01} gained, {exact.b10} lost" if exact else "",
            ]
        )
    print(f"{other['model']} vs {base['model']} (paired items, intervals and tests clustered by source)")
    headers = ["task", "metric", "paired n", "difference (pts)", "95% CI", "p", "Holm p", "note"]
    print(tabulate(rows, headers=headers, disable_numparse=True))
    return 0


def cmd_report(argv: Sequence[str]) -> int:
    """A self-contained HTML page of a run's items (or a pair's, with the flips) for error analysis."""
    parser = argparse.ArgumentParser(prog="obv-eval report", description=cmd_report.__doc__)
    parser.add_argument("run", type=Path, help="a run folder (holding results.json and samples.jsonl)")
    parser.add_argument(
        "--against", type=Path, help="a second run folder to compare with (e.g. the base model)"
    )
    parser.add_argument("--out", type=Path, help="the HTML file (default: RUN/report.html)")
    parser.add_argument("--no-media", action="store_true", help="leave out the contact sheets of frames")
    parser.add_argument(
        "--data", help="where the run's media are (hub | samples | DIR); default: as recorded"
    )
    parser.add_argument("--video-root")
    parser.add_argument("--image-root")
    args = parser.parse_args(argv)
    from obv_eval.report import write_report
    from obv_eval.results import ResultsError

    for folder in [args.run, *([args.against] if args.against else [])]:
        if not (folder / "results.json").is_file() or not (folder / "samples.jsonl").is_file():
            raise UsageError(f"{folder}: not a run folder (needs results.json and samples.jsonl)")
    try:
        path = write_report(
            args.run,
            args.out,
            against=args.against,
            media=not args.no_media,
            data=args.data,
            video_root=args.video_root,
            image_root=args.image_root,
            log=lambda line: print(line, file=sys.stderr),
        )
    except ResultsError as error:
        raise UsageError(str(error)) from error
    print(f"wrote {path}")
    return 0


def cmd_regress(argv: Sequence[str]) -> int:
    """Compare a run with a committed baseline; exit 1 on a drop, missing items or changed prompts."""
    parser = argparse.ArgumentParser(prog="obv-eval regress", description=cmd_regress.__doc__)
    parser.add_argument("--baseline", type=Path, required=True, help="a baseline run folder or results.json")
    parser.add_argument("run", type=Path, help="a run folder or results.json")
    parser.add_argument(
        "--tolerance",
        type=float,
        default=0.0,
        help="the tolerance line: fail only when the paired drop is significantly beyond it (default 0)",
    )
    parser.add_argument(
        "--count-tolerance",
        type=float,
        default=0.02,
        help="largest change in scored/unscored/failed counts, as a fraction of n (default 0.02)",
    )
    parser.add_argument(
        "--allow-judge-change", action="store_true", help="do not fail when the judge settings differ"
    )
    args = parser.parse_args(argv)
    from obv_eval.regress import compare
    from obv_eval.results import read_results, read_samples

    folders = [p if p.is_dir() else p.parent for p in (args.baseline, args.run)]
    base, base_records = _read_run(folders[0], read_results, read_samples)
    run, run_records = _read_run(folders[1], read_results, read_samples)
    report = compare(
        base,
        run,
        args.tolerance,
        base_records,
        run_records,
        count_tolerance=args.count_tolerance,
        allow_judge_change=args.allow_judge_change,
    )
    print(report.render())
    return CHECK_FAILED if report.failed else 0


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


def cmd_models(argv: Sequence[str]) -> int:
    from obv_eval.registry import availability

    argparse.ArgumentParser(prog="obv-eval models", description="List registry models").parse_args(argv)
    rows = [(name, "yes" if ok else "no", desc, where) for name, desc, ok, where in availability()]
    print(tabulate(rows, headers=["model", "available", "description", "where / why not"]))
    return 0


def cmd_tasks(argv: Sequence[str]) -> int:
    argparse.ArgumentParser(prog="obv-eval tasks", description="List benchmarks").parse_args(argv)
    rows = [(b.name, b.task, b.modality, b.title, b.hub_path) for b in BENCHMARKS.values()]
    print(tabulate(rows, headers=["name", "lmms-eval task", "modality", "benchmark", "hub dataset"]))
    print("\ngroups: " + "; ".join(f"{g} = {' '.join(m)}" for g, m in GROUPS.items()))
    return 0


def cmd_tasks_dir(argv: Sequence[str]) -> int:
    from obv_eval.sources import tasks_package_dir

    argparse.ArgumentParser(
        prog="obv-eval tasks-dir", description="Print the lmms-eval include path"
    ).parse_args(argv)
    print(tasks_package_dir())
    return 0


def _source_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", default=os.environ.get("OBV_EVAL_DATA", "hub"), help="hub | samples | DIR")
    parser.add_argument("--video-root", default=os.environ.get("OBV_EVAL_VIDEO_ROOT"))
    parser.add_argument("--image-root", default=os.environ.get("OBV_EVAL_IMAGE_ROOT"))


def _source(args: argparse.Namespace) -> Any:
    from obv_eval.sources import DataSourceError, parse_data_source

    try:
        return parse_data_source(args.data, args.video_root, args.image_root)
    except DataSourceError as error:
        raise UsageError(str(error)) from error


def _prepare_dataset(argv: Sequence[str]) -> str | None:
    """The dataset `data prepare` names, read as its positional (a folder called mimicechoqa given to
    an option is not it); both prepare parsers' value options are declared so their values are skipped."""
    probe = argparse.ArgumentParser(add_help=False)
    probe.add_argument("dataset", nargs="?")
    values = ("--source-videos", "--source", "--rows", "--out", "--data", "--video-root", "--image-root")
    for option in values:
        probe.add_argument(option)
    known, _ = probe.parse_known_args(argv)
    return str(known.dataset) if known.dataset is not None else None


def cmd_data(argv: Sequence[str]) -> int:
    """Check a benchmark's rows and media, cut downloaded source videos into its clips, or report
    overlap between training clips and benchmark items."""
    parser = argparse.ArgumentParser(prog="obv-eval data", description=cmd_data.__doc__)
    sub = parser.add_subparsers(dest="action", required=True)
    check = sub.add_parser("check", help="list malformed rows and missing or unreadable media, with counts")
    check.add_argument("tasks", nargs="+")
    check.add_argument("--no-progress", action="store_true")
    _source_arguments(check)
    prepare = sub.add_parser("prepare", help="cut source videos into clips by each row's timestamp")
    prepare.add_argument(
        "dataset",
        choices=("surgeryvqa", "openbiomedvid", "mimicechoqa"),
        help="mimicechoqa converts DICOM cines instead: obv-eval data prepare mimicechoqa --help",
    )
    prepare.add_argument(
        "--source-videos", type=Path, required=True, help="folder of <video_id>.mp4 downloads"
    )
    prepare.add_argument("--rows", type=Path, help="rows file (.jsonl/.json/.parquet); default: from --data")
    prepare.add_argument("--out", type=Path, help="clip folder; default: the dataset's video root")
    prepare.add_argument(
        "--keep-source-format",
        action="store_true",
        help="keep the source's frame rate and size (default: the row's video_metadata.original fps and "
        "resolution, as the published clips are)",
    )
    prepare.add_argument(
        "--allow-missing", action="store_true", help="exit 0 when source videos are missing (partial set)"
    )
    prepare.add_argument("--no-progress", action="store_true")
    _source_arguments(prepare)
    sub.add_parser(
        "overlap", help="training clips that share source videos with benchmark items", add_help=False
    )
    if list(argv[:1]) == ["prepare"] and _prepare_dataset(argv[1:]) == "mimicechoqa":  # DICOM, not cuts
        from obv_eval.data.dicom import main as dicom_main

        return dicom_main(list(argv[1:]))
    if list(argv[:1]) == ["overlap"]:
        from obv_eval.data.overlap import main as overlap_main

        return overlap_main(list(argv[1:]))
    args = parser.parse_args(argv)
    return _data_check(args) if args.action == "check" else _data_prepare(args)


def _data_check(args: argparse.Namespace) -> int:
    from obv_eval.data.check import check_benchmark
    from obv_eval.sources import DataSourceError

    try:
        names = resolve_task_names(args.tasks)
    except UnknownTaskError as error:
        raise UsageError(str(error)) from error
    source = _source(args)
    failed = False
    for name in names:
        try:
            report = check_benchmark(BENCHMARKS[name], source, progress=not args.no_progress)
        except DataSourceError as error:
            raise UsageError(str(error)) from error
        counts = (
            ", ".join(f"{kind}: {count}" for kind, count in sorted(report.counts().items())) or "no problems"
        )
        print(f"{name}: {report.rows} rows, {report.media_checked} media files checked; {counts}")
        for row, kind, detail in report.problems:
            print(f"  row {row}: {kind}: {detail}")
        if report.warnings:  # clips that disagree with their rows: the items still run and count
            warned = ", ".join(f"{kind}: {n}" for kind, n in sorted(report.warning_counts().items()))
            print(f"{name}: warnings (items still run): {warned}")
            for row, kind, detail in report.warnings:
                print(f"  {'file' if row < 0 else f'row {row}'}: warning: {kind}: {detail}")
        failed = failed or not report.ok
    return CHECK_FAILED if failed else 0


def _data_prepare(args: argparse.Namespace) -> int:
    import datasets

    from obv_eval.data.prepare import prepare_clips
    from obv_eval.sources import DataSourceError, media_root
    from obv_eval.tasking import load_rows, read_json_rows

    source = _source(args)
    if not args.source_videos.is_dir():
        raise UsageError(f"--source-videos {args.source_videos}: not a folder")
    if args.rows is not None:
        if not args.rows.is_file():
            raise UsageError(f"--rows {args.rows}: no such file")
        if args.rows.suffix == ".parquet":
            rows = list(datasets.Dataset.from_parquet(str(args.rows)))
        else:
            rows = read_json_rows(args.rows)
    elif args.dataset == "surgeryvqa":
        try:
            rows = list(load_rows(BENCHMARKS["surgeryvqa"], source))
        except DataSourceError as error:
            raise UsageError(str(error)) from error
    else:
        raise UsageError("openbiomedvid: give the rows with --rows (e.g. DIR/openbiomedvid/train.jsonl)")
    out = args.out or media_root(args.dataset, "video", source)
    if out is None:
        raise UsageError("no clip folder: pass --out DIR (or --video-root / --data DIR)")
    report = prepare_clips(
        rows,
        args.source_videos,
        Path(out),
        progress=not args.no_progress,
        keep_source_format=args.keep_source_format,
    )
    print(f"{args.dataset}: {report.summary()} -> {out}")
    for video_id, clips in sorted(report.missing_sources.items()):
        shown = ", ".join(clips[:3]) + ("..." if len(clips) > 3 else "")
        print(f"  missing source {video_id}: {len(clips)} clips ({shown})")
    for clip, reason in sorted(report.failed.items()):
        print(f"  failed {clip}: {reason}")
    if report.missing_sources and not args.allow_missing:
        print(f"  {report.missing_clips} clips not made: download their sources or pass --allow-missing")
    return CHECK_FAILED if report.failed or (report.missing_sources and not args.allow_missing) else 0


HANDLERS = {
    "data": cmd_data,
    "run": cmd_run,
    "models": cmd_models,
    "tasks": cmd_tasks,
    "tasks-dir": cmd_tasks_dir,
    "rescore": cmd_rescore,
    "judge-agreement": cmd_judge_agreement,
    "leaderboard": cmd_leaderboard,
    "regress": cmd_regress,
    "compare": cmd_compare,
    "report": cmd_report,
}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv[0] if argv and argv[0] in HANDLERS else "run"
    rest = argv[1:] if argv and argv[0] in HANDLERS else argv
    try:
        return HANDLERS[command](rest)
    except UsageError as error:
        print(redact(f"obv-eval: error: {error}"), file=sys.stderr)
        return USAGE_ERROR
    except KeyboardInterrupt:
        print("obv-eval: interrupted", file=sys.stderr)
        return 130


def entry_point(argv: Sequence[str] | None = None) -> int:
    """The `obv-eval` command: `main`, then nothing left for the interpreter's shutdown to collect."""
    from obv_eval.gcpolicy import before_exit

    code = main(argv)
    before_exit()
    return code


if __name__ == "__main__":
    sys.exit(entry_point())
