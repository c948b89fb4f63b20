"""`obv-eval controls RUN [TUNED_RUN]`: run a finished run's controls and print what they say."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from obv_eval.cli.args import add_judge_arguments, at_least, judge_config
from obv_eval.redaction import redact
from obv_eval.usage import UsageError


def cmd_controls(argv: Sequence[str]) -> int:
    """Run controls (blind, blank, single-frame, shuffled, frames=N) for a finished run's model, items and
    settings, resumably, beside the run; print per task each control's accuracy and its paired difference
    to the full run (95% interval clustered by source, p as `compare`). With a second run (a fine-tuned
    model on the same items), also the difference in differences: how much of the gain needs the video."""
    parser = argparse.ArgumentParser(prog="obv-eval controls", description=cmd_controls.__doc__)
    parser.add_argument("run", type=Path, help="a full run folder (holding results.json and samples.jsonl)")
    parser.add_argument("tuned", type=Path, nargs="?", help="a second full run (e.g. the fine-tuned model)")
    parser.add_argument(
        "--controls",
        help="comma-separated: blind, blank, single-frame, shuffled, frames=N (default: the first four)",
    )
    parser.add_argument("--device", help="hf backend: override the run's device (cpu, cuda, ...)")
    parser.add_argument("--base-url", help="an OpenAI-compatible server serving the run's model")
    parser.add_argument("--video-root", help="the video root the run used (hub data)")
    parser.add_argument("--image-root", help="the image root the run used (hub data)")
    parser.add_argument("--max-new-tokens", type=int, help="the run's --max-new-tokens, if it had one")
    parser.add_argument("--no-progress", action="store_true")
    add_judge_arguments(parser)
    args = parser.parse_args(argv)
    at_least(args.max_new_tokens, 1, "--max-new-tokens")
    from obv_eval import control_runs
    from obv_eval.controls import ControlError
    from obv_eval.registry import ModelNotAvailable
    from obv_eval.results import ResultsError
    from obv_eval.run_identity import RunConflict
    from obv_eval.sources import DataSourceError

    try:
        controls = control_runs.parse_controls(args.controls)
        runs = [control_runs.Run.read(path) for path in (args.run, args.tuned) if path is not None]
        for run in runs:
            control_runs.check_full_run(run)
    except (ControlError, ResultsError, FileNotFoundError) as error:
        raise UsageError(str(error)) from None
    overrides = {
        "device": args.device,
        "base_url": args.base_url,
        "video_root": args.video_root,
        "image_root": args.image_root,
        "max_new_tokens": args.max_new_tokens,
        "progress": not args.no_progress,
    }
    from obv_eval.progress import quiet_libraries

    quiet_libraries()
    judge = judge_config(args)
    done = []
    for run in runs:
        try:
            done.append(control_runs.run_controls(run, controls, judge, overrides, log=_stderr))
        except (ControlError, ModelNotAvailable, DataSourceError, ImportError, RunConflict) as error:
            raise UsageError(str(error)) from None
    for run, made in zip(runs, done, strict=True):
        print(f"\n{run.results['model']} {run.results['run_id']}: controls against the full run "
              "(paired items; intervals and tests clustered by source)")  # fmt: skip
        print(control_runs.control_table(run, made))
    if len(runs) == 2:
        print(f"\ndifference in differences: {runs[1].results['model']} vs {runs[0].results['model']} "
              "(gain on the full runs minus gain under the control)")  # fmt: skip
        print(control_runs.did_table(runs[0], done[0], runs[1], done[1]))
    return 0


def _stderr(line: str) -> None:
    print(redact(line), file=sys.stderr)
