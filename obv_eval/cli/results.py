"""Commands over finished runs: rescore, judge-agreement, leaderboard, compare, report, regress."""

from __future__ import annotations

import argparse
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tabulate import tabulate

from obv_eval.cli.args import add_judge_arguments, fraction, judge_config
from obv_eval.cli.summary import error_budget, render_summary
from obv_eval.usage import CHECK_FAILED, UsageError


def cmd_rescore(argv: Sequence[str]) -> int:
    """Re-judge a finished run's open-ended items without re-running the model."""
    parser = argparse.ArgumentParser(prog="obv-eval rescore", description=cmd_rescore.__doc__)
    parser.add_argument("run", type=Path, help="a run folder (holding results.json and samples.jsonl)")
    parser.add_argument("--max-unscored", type=float, default=0.05)
    parser.add_argument("--max-failed", type=float, default=0.05)
    parser.add_argument("--no-progress", action="store_true")
    add_judge_arguments(parser)
    args = parser.parse_args(argv)
    fraction(args.max_unscored, "--max-unscored")
    fraction(args.max_failed, "--max-failed")
    from obv_eval.results import read_results, read_samples, write_results
    from obv_eval.runner import score_run, write_samples

    results, records = read_run(args.run, read_results, read_samples)
    provenance = {k: v for k, v in results["provenance"].items() if k != "judge"}
    records, rescored = score_run(
        records,
        results["run_id"],
        results["model"],
        provenance,
        judge_config(args),
        not args.no_progress,
        lambda line: print(line, file=sys.stderr),
        {name: task["fingerprints"] for name, task in results["tasks"].items() if "fingerprints" in task},
    )
    write_samples(args.run / "samples.jsonl", records)
    write_results(args.run / "results.json", rescored)
    print(render_summary(rescored))
    return error_budget(rescored, records, args.max_unscored, args.max_failed)


def read_run(run: Path, read_results: Any, read_samples: Any) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    from obv_eval.results import ResultsError, check_samples_match

    if not (run / "results.json").exists() or not (run / "samples.jsonl").exists():
        raise UsageError(f"{run}: not a run folder (needs results.json and samples.jsonl)")
    try:
        results, records = read_results(run / "results.json"), read_samples(run)
        check_samples_match(results, records, str(run))
    except ResultsError as error:
        raise UsageError(str(error)) from error
    return results, records


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
    add_judge_arguments(parser)
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
    _, records = read_run(args.run, read_results, read_samples)
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
        config = judge_config(args, model=model, base_url=base_url or None, preset=preset or None)
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
    from obv_eval.escaping import terminal_text
    from obv_eval.leaderboard import latest_per_model, load_runs, split_controls, write_leaderboard

    try:
        # control runs (--control) are never a model's row: their blind runs give the visual dependence
        runs, controls = split_controls(load_runs(args.runs))
        runs, older = latest_per_model(runs)
        for run in older:
            print(
                terminal_text(
                    f"obv-eval: leaving out {run.model} run {run.run_id} (a newer run of it is shown)"
                ),
                file=sys.stderr,
            )
        paths = write_leaderboard(args.out, runs, reference=not args.no_reference, controls=controls)
    except (ValueError, FileNotFoundError) as error:
        raise UsageError(str(error)) from error
    print(paths["text"].read_text(encoding="utf-8"))  # the tables within 100 columns; notes in leaderboard.md
    names = ", ".join(p.name for p in paths.values())
    names = textwrap.fill(names, 98, initial_indent="  ", subsequent_indent="  ")
    print(f"wrote into {args.out}:\n{names}")  # the file list wrapped within 100 columns too
    return 0


def cmd_compare(argv: Sequence[str]) -> int:
    """Paired comparison of two runs on the same items: difference, 95% interval, clustered paired test."""
    parser = argparse.ArgumentParser(prog="obv-eval compare", description=cmd_compare.__doc__)
    parser.add_argument("base", type=Path, help="run folder of the reference model (e.g. the base model)")
    parser.add_argument("other", type=Path, help="run folder of the model compared with it (e.g. fine-tuned)")
    args = parser.parse_args(argv)
    from obv_eval.frame_policy import policy_label, recorded_policy
    from obv_eval.regress import paired_task_tests
    from obv_eval.results import read_results, read_samples
    from obv_eval.stats import holm

    base, base_records = read_run(args.base, read_results, read_samples)
    other, other_records = read_run(args.other, read_results, read_samples)
    tests = paired_task_tests(base, base_records, other, other_records)
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
    policies = [policy_label(recorded_policy(run.get("provenance") or {})) for run in (base, other)]
    if policies[0] != policies[1]:  # the runs saw different frames: the difference is not the model's alone
        print(
            textwrap.fill(
                f"note: the runs used different frame policies ({base['model']}: {policies[0]}; "
                f"{other['model']}: {policies[1]}), so these differences include what each was shown",
                100,
                break_on_hyphens=False,  # model names stay whole
            )
        )
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
    base, base_records = read_run(folders[0], read_results, read_samples)
    run, run_records = read_run(folders[1], read_results, read_samples)
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
