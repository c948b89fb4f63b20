"""`obv-train`: fine-tune Qwen2-VL on OpenBiomedVid (argument parsing only; the work is in trainer.py).

    obv-train --config study_full_ft --model qwen2vl-2b --data /data/obv
    accelerate launch --config_file obv_eval/train/configs/accelerate/zero2.yaml -m obv_eval.train.cli \
        --config study_full_ft --model qwen2vl-7b --data /data/obv

Exit codes: 0 success; 1 refused by the overlap check; 2 bad usage or input.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from typing import Any

import yaml

USAGE_ERROR = 2
CHECK_FAILED = 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="obv-train",
        description="Fine-tune a Qwen2-VL or Qwen2.5-VL model on OpenBiomedVid (the study's recipe)",
        epilog="Shipped configs: study_full_ft (the study's hyperparameters), lora, tiny_cpu. "
        "Any setting: --set key=value (YAML value; nested as video.fps=2).",
    )
    parser.add_argument(
        "--config",
        help="shipped config name or a YAML file (default: tiny_cpu for a tiny twin, else study_full_ft)",
    )
    parser.add_argument(
        "--model",
        help="registry name (tiny-qwen2vl, tiny-qwen2.5-vl, qwen2vl-2b, qwen2.5-vl-7b...) or a folder",
    )
    parser.add_argument("--data", help="hub | samples | DIR (DIR/openbiomedvid/train.jsonl) | a rows file")
    parser.add_argument("--video-root", help="folder the rows' video paths resolve under")
    parser.add_argument("--output-dir", help="checkpoint folder (default: checkpoint_dir()/<model>-obv)")
    parser.add_argument("--work-dir", help="Trainer checkpoints for --resume (default: <output-dir>.work)")
    parser.add_argument("--method", choices=("full", "lora"))
    parser.add_argument("--max-steps", type=int)
    parser.add_argument("--limit", type=int, help="only the first N clips")
    parser.add_argument("--benchmark-data", help="benchmark rows for the overlap check (default: as --data)")
    parser.add_argument(
        "--allow-overlap", action="store_true", help="train even if clips overlap a benchmark"
    )
    parser.add_argument("--deepspeed", help="DeepSpeed JSON, or 'zero2' for the shipped ZeRO-2 config")
    parser.add_argument(
        "--resume",
        nargs="?",
        const=True,
        default=None,
        metavar="CHECKPOINT",
        help="resume from the last checkpoint in the work folder (or from CHECKPOINT)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing checkpoint folder")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a setting")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars, only stage lines")
    parser.add_argument(
        "--verbose", action="store_true", help="let the libraries' progress bars, logs and warnings through"
    )
    return parser


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for item in args.set:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--set {item!r}: expected KEY=VALUE")
        values[key.strip()] = yaml.safe_load(raw)
    flags = {
        "model": args.model,
        "data": args.data,
        "video_root": args.video_root,
        "output_dir": args.output_dir,
        "work_dir": args.work_dir,
        "method": args.method,
        "max_steps": args.max_steps,
        "limit": args.limit,
        "benchmark_data": args.benchmark_data,
        "deepspeed": args.deepspeed,
    }
    values.update({key: value for key, value in flags.items() if value is not None})
    if args.allow_overlap:
        values["allow_overlap"] = True
    if args.no_progress:
        values["progress"] = False
    return values


def _default_config(model: str | None) -> str:
    """A tiny twin trains with the CPU recipe; anything else with the study's."""
    from obv_eval.registry import MODELS

    entry = MODELS.get(model or "")
    tiny = entry is not None and entry.build is not None and entry.name.startswith("tiny-")
    return "tiny_cpu" if tiny else "study_full_ft"


def main(argv: Sequence[str] | None = None) -> int:
    from obv_eval.registry import ModelNotAvailable
    from obv_eval.sources import DataSourceError
    from obv_eval.train.config import load_config

    args = _parser().parse_args(argv)
    # obv-eval's output policy: our lines (and the training bar), no library's unless --verbose
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        config = load_config(args.config or _default_config(args.model), _overrides(args))
    except (OSError, ValueError, TypeError) as error:
        print(f"obv-train: {error}", file=sys.stderr)
        return USAGE_ERROR

    from obv_eval.progress import quiet_libraries
    from obv_eval.train.trainer import OutputExistsError, OverlapError, train

    quiet_libraries(verbose=args.verbose, evaluation=False)

    try:
        train(config, resume=args.resume, overwrite=args.overwrite, echo=lambda line: print(line, flush=True))
    except OverlapError as error:
        print(f"obv-train: {error}", file=sys.stderr)
        return CHECK_FAILED
    except (OutputExistsError, ModelNotAvailable, DataSourceError, KeyError, OSError, ValueError) as error:
        # Bad input: a missing checkpoint to resume, an unknown model, unreadable rows, no sample left.
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f"obv-train: {message}", file=sys.stderr)
        return USAGE_ERROR
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
