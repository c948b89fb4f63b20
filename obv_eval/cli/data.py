"""`obv-eval data`: check a benchmark's rows and media, prepare clips, report overlap."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from obv_eval.benchmarks import BENCHMARKS, UnknownTaskError, resolve_task_names
from obv_eval.cli.args import check_hub
from obv_eval.usage import CHECK_FAILED, UsageError, add_source_arguments, data_source

VERBOSE_HELP = "let the libraries' progress bars, logs and warnings through"


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
    check.add_argument("--no-progress", action="store_true", help="no progress bars")
    check.add_argument("--verbose", action="store_true", help=VERBOSE_HELP)
    add_source_arguments(check)
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
    prepare.add_argument("--no-progress", action="store_true", help="no progress bars")
    prepare.add_argument("--verbose", action="store_true", help=VERBOSE_HELP)
    add_source_arguments(prepare)
    sub.add_parser(
        "overlap", help="training clips that share source videos with benchmark items", add_help=False
    )
    if list(argv[:1]) == ["prepare"] and _prepare_dataset(argv[1:]) == "mimicechoqa":  # DICOM, not cuts
        from obv_eval.data.dicom import main as dicom_main

        return dicom_main(_quiet_unless_verbose(argv[1:]))
    if list(argv[:1]) == ["overlap"]:
        from obv_eval.data.overlap import main as overlap_main

        return overlap_main(_quiet_unless_verbose(argv[1:]))
    args = parser.parse_args(argv)
    _quiet(args.verbose)
    return _data_check(args) if args.action == "check" else _data_prepare(args)


def _quiet(verbose: bool) -> None:
    from obv_eval.progress import quiet_libraries

    quiet_libraries(verbose=verbose, evaluation=False)


def _quiet_unless_verbose(argv: Sequence[str]) -> list[str]:
    """For the data commands parsed elsewhere: apply the output policy (unless --verbose, which is taken
    out of `argv`) and return the rest; a --help run is left alone (it must not load the libraries)."""
    probe = argparse.ArgumentParser(add_help=False)
    probe.add_argument("--verbose", action="store_true")
    known, rest = probe.parse_known_args(argv)
    if not {"-h", "--help"} & set(rest):
        _quiet(known.verbose)
    return rest


def _data_check(args: argparse.Namespace) -> int:
    from obv_eval.data.check import check_benchmark
    from obv_eval.sources import DataSourceError

    try:
        names = resolve_task_names(args.tasks)
    except UnknownTaskError as error:
        raise UsageError(str(error)) from error
    source = data_source(args)
    if source.kind == "hub":
        check_hub(names)
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

    source = data_source(args)
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
        if source.kind == "hub":
            check_hub(["surgeryvqa"])
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
