"""`obv-eval [run]`: evaluate a model on benchmarks; every argument is checked before anything loads."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path

from obv_eval.benchmarks import BENCHMARKS, GROUPS, UnknownTaskError, resolve_task_names
from obv_eval.cli.args import add_judge_arguments, at_least, check_hub, check_url, fraction, judge_config
from obv_eval.cli.summary import error_budget, render_summary
from obv_eval.redaction import redact
from obv_eval.usage import UsageError


def _run_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="obv-eval",
        description="Evaluate a vision-language model on the OpenBiomedVid benchmarks (lmms-eval tasks).",
        epilog="Other commands: obv-eval models | tasks | tasks-dir | rescore | judge-agreement | "
        "leaderboard | compare | controls | regress | report | data (each with --help)",
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
    parser.add_argument("--run-id", help="default: the UTC time; an existing run id resumes that run")
    parser.add_argument(
        "--restart",
        action="store_true",
        help="start --run-id afresh, discarding its earlier outputs (a resume under another model or "
        "other generation/frame settings is refused without it)",
    )
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
        "--data-parallel-size",
        type=int,
        default=1,
        help="hf/vllm: engines on Ray actors, a clip never split between them (vllm: one per "
        "--tensor-parallel-size GPUs; 0: every GPU group of the Ray cluster)",
    )
    parser.add_argument(
        "--ray-address",
        help="with --data-parallel-size: join this Ray cluster (auto, or HOST:PORT of its head) instead of "
        "starting a local one for the run",
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
        default="native",
        metavar="POLICY",
        help="frame policy (docs/running.md#frame-policy): native (default; also 'default'): each model "
        "family's own rule; common or common:fps=F,max_frames=N,max_pixels=P (default 1 fps, 32 frames, "
        "448x448 pixels): the same frames and per-frame pixel budget for every model; train: the "
        "study's training frames",
    )
    parser.add_argument(
        "--max-visual-tokens", type=int, help="visual-token budget per clip, e.g. 16384 (the training budget)"
    )
    parser.add_argument(
        "--control",
        help="a control run (docs/controls.md): blind (no visual), blank (black frames), single-frame, "
        "shuffled, frames=N; its run id gets a suffix, so it never shares the full run's folder",
    )
    parser.add_argument("--concurrency", type=int, default=8, help="openai backend: requests in flight")
    parser.add_argument(
        "--data-parallel-ranks",
        type=int,
        default=0,
        help="--base-url served by `vllm serve --data-parallel-size N`: pass N, and each clip's questions "
        "go to one rank (its prefix cache) through vLLM's X-data-parallel-rank header",
    )
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
    add_judge_arguments(parser)
    return parser


def cmd_run(argv: Sequence[str]) -> int:
    args = _run_parser().parse_args(argv)
    from obv_eval.gcpolicy import long_lived_objects
    from obv_eval.registry import ModelNotAvailable
    from obv_eval.run_identity import LOCK_FILE, RunConflict
    from obv_eval.sources import DataSourceError

    try:
        benchmarks = resolve_task_names(args.tasks)
    except UnknownTaskError as error:
        raise UsageError(str(error)) from error
    _validate_run_args(args)
    control = check_control(args.control, benchmarks)
    judge = judge_config(args)
    # Everything a run can know up front is checked here, in a second, before torch and lmms-eval load.
    _check_model(args)
    data = _check_data(args, benchmarks)
    with long_lived_objects():  # what a run imports (torch, transformers, lmms-eval) stays loaded
        from obv_eval.progress import quiet_libraries
        from obv_eval.runner import RunConfig, run
        from obv_eval.scaleout import ScaleOutError  # after the up-front checks: it loads the media stack

        quiet_libraries(verbose=args.verbose)
    config = RunConfig(
        model=args.model,
        benchmarks=benchmarks,
        model_path=args.model_path,
        data=data,
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
        ray_address=args.ray_address,
        verbose=args.verbose,
        max_model_len=args.max_model_len,
        max_batch_tokens=args.max_batch_tokens,
        prefix_reuse=args.prefix_reuse,
        model_args={
            "frames": args.frames,  # the policy's one spelling (_validate_run_args)
            "max_visual_tokens": args.max_visual_tokens,
            **({"data_parallel_ranks": args.data_parallel_ranks} if args.data_parallel_ranks else {}),
        },
        concurrency=args.concurrency,
        max_new_tokens=args.max_new_tokens,
        limit=args.limit,
        restart=args.restart,
        progress=not args.no_progress,
        judge=judge,
        control=control,
    )
    # A run that fails before it writes a record leaves no run folder (a released lock records nothing).
    with removing_new_empty_folders(args.output_dir, ignoring=(LOCK_FILE,)):
        try:
            result = run(config, log=lambda line: print(redact(line), file=sys.stderr))
        except (ModelNotAvailable, DataSourceError, ImportError, RunConflict, ScaleOutError) as error:
            raise UsageError(str(error)) from error
    print(render_summary(result.results))
    print(f"\nwrote results.json and samples.jsonl into {result.run_dir}")
    return error_budget(result.results, result.records, args.max_unscored, args.max_failed)


def check_control(value: str | None, benchmarks: Sequence[str]) -> str | None:
    """The control's one spelling; a task it cannot apply to is refused by name (one line, exit 2)."""
    if value is None:
        return None
    from obv_eval.controls import ControlError, parse_control, refusal

    try:
        control = parse_control(value)
    except ControlError as error:
        raise UsageError(f"--control: {error}") from None
    refused: dict[str, list[str]] = {}
    for name in benchmarks:
        why = refusal(control, BENCHMARKS[name].modality)
        if why:
            refused.setdefault(why, []).append(name)
    if refused:
        listed = "; ".join(f"{', '.join(names)} ({why})" for why, names in refused.items())
        raise UsageError(f"--control {control} does not apply to {listed}: leave them out of --tasks")
    return control


def _check_model(args: argparse.Namespace) -> None:
    """The model must be usable here (a served model need not be): a registry name whose weights are in
    the local cache or checkpoint folder, or a checkpoint folder; nothing is built or downloaded."""
    if args.base_url is not None:
        return
    from obv_eval.registry import ModelNotAvailable, resolve_model

    try:
        resolve_model(args.model, args.model_path, build=False)
    except ModelNotAvailable as error:
        raise UsageError(str(error)) from error
    except KeyError as error:
        raise UsageError(str(error.args[0] if error.args else error)) from error


def _check_data(args: argparse.Namespace, benchmarks: Sequence[str]) -> str:
    """The data source the run will read (`auto` resolved), checked: every benchmark's rows are there
    (a local copy's files; a hub dataset in the cache or on a hub that answers)."""
    from obv_eval.registry import default_data
    from obv_eval.sources import DataSourceError, local_rows_location, parse_data_source

    data = default_data(args.model, args.model_path) if args.data == "auto" else args.data
    if data == "hub":
        check_hub(benchmarks)
        return "hub"
    try:
        source = parse_data_source(data, args.video_root, args.image_root)
        for name in benchmarks:
            local_rows_location(BENCHMARKS[name].rows_name, "test", source)
    except DataSourceError as error:
        raise UsageError(str(error)) from error
    return str(data)


def _validate_run_args(args: argparse.Namespace) -> None:
    """Every bad value is one line and exit 2 here, before any model or data loads."""
    at_least(args.limit, 1, "--limit")
    at_least(args.max_new_tokens, 1, "--max-new-tokens")
    at_least(args.batch_size, 1, "--batch-size")
    at_least(args.concurrency, 1, "--concurrency")
    at_least(args.data_parallel_ranks, 0, "--data-parallel-ranks")
    if args.data_parallel_ranks and args.base_url is None:
        raise UsageError("--data-parallel-ranks is for a served model: pass --base-url too")
    at_least(args.tensor_parallel_size, 1, "--tensor-parallel-size")
    at_least(args.data_parallel_size, 0, "--data-parallel-size")
    if args.ray_address is not None and args.data_parallel_size == 1:
        raise UsageError("--ray-address needs --data-parallel-size N (N > 1, or 0 for every GPU group)")
    at_least(args.max_model_len, 1, "--max-model-len")
    at_least(args.max_batch_tokens, 1, "--max-batch-tokens")
    at_least(args.max_visual_tokens, 1, "--max-visual-tokens")
    args.frames = _check_frames(args.frames, args.max_visual_tokens)
    at_least(args.judge_concurrency, 1, "--judge-concurrency")
    at_least(args.judge_retries, 0, "--judge-retries")
    if not args.judge_timeout > 0:
        raise UsageError(f"--judge-timeout must be a positive number of seconds (got {args.judge_timeout:g})")
    fraction(args.max_unscored, "--max-unscored")
    fraction(args.max_failed, "--max-failed")
    if args.run_id is not None:
        _check_run_id(args.run_id)
    _check_output_dir(args.output_dir)
    if args.backend == "hf" or (args.backend == "auto" and args.base_url is None):
        _check_device(args.device)
    for flag, url in (("--base-url", args.base_url), ("--judge-base-url", args.judge_base_url)):
        if url is not None:
            check_url(url, flag)


def _check_frames(value: str, max_visual_tokens: int | None) -> str:
    """--frames as its policy's one spelling (obv_eval.frame_policy); a bad spec is one line, exit 2."""
    from obv_eval.frame_policy import COMMON, FramePolicyError, parse_frames

    try:
        policy = parse_frames(value)
    except FramePolicyError as error:
        raise UsageError(f"--frames: {error}") from None
    if policy.name == COMMON and max_visual_tokens is not None:
        raise UsageError(
            "--max-visual-tokens does not combine with --frames common (its max_pixels is the budget; "
            "a token budget would size each family differently)"
        )
    return policy.spec


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
    """--output-dir must be a folder this process can write: probed by a real write, in folders made
    for the probe and removed after it (the run makes its folder only when it starts writing)."""
    import tempfile

    if path.exists() and not path.is_dir():
        raise UsageError(f"--output-dir {path}: exists and is not a folder")
    with removing_new_empty_folders(path):
        try:
            path.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=path, prefix=".obv-write-probe-"):
                pass
        except OSError as error:
            raise UsageError(f"--output-dir {path}: not writable ({error.strerror or error})") from None


@contextmanager
def removing_new_empty_folders(path: Path, ignoring: Sequence[str] = ()) -> Iterator[None]:
    """On the way out (success or failure), remove the folders at or under `path`, and its missing
    parents, that did not exist before and are empty now, but for files named in `ignoring`. Folders
    holding anything else stay (an interrupted run's records are kept for resume)."""
    path = path.absolute()
    missing = [p for p in (path, *path.parents) if not p.exists()]
    before = {Path(root) for root, _, _ in os.walk(path)}
    try:
        yield
    finally:
        created = [Path(root) for root, _, _ in os.walk(path) if Path(root) not in before]
        for folder in sorted([*created, *missing], key=lambda p: len(p.parts), reverse=True):
            with suppress(OSError):  # not empty, or already gone
                if folder.is_dir() and {p.name for p in folder.iterdir()} <= set(ignoring):
                    for name in ignoring:
                        (folder / name).unlink(missing_ok=True)
                folder.rmdir()


def _check_device(device: str) -> None:
    """--device must name a device torch can use here (cpu, cuda, cuda:N within the GPUs, mps)."""
    if device == "cpu":  # always there: no need to load torch (seconds) to say so
        return
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
