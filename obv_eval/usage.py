"""Bad usage or input and the exit codes every command shares, and the data-source options.

Library modules that define a command of their own (e.g. `obv_eval.data.dicom`) use these, so none of
them imports from `obv_eval.cli`. Exit codes: 0 success, 1 a completed run that failed a check, 2 bad
usage or input.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

USAGE_ERROR = 2
CHECK_FAILED = 1


class UsageError(Exception):
    """Bad usage or input: printed as one line, exit 2."""


def add_source_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", default=os.environ.get("OBV_EVAL_DATA", "hub"), help="hub | samples | DIR")
    parser.add_argument("--video-root", default=os.environ.get("OBV_EVAL_VIDEO_ROOT"))
    parser.add_argument("--image-root", default=os.environ.get("OBV_EVAL_IMAGE_ROOT"))


def data_source(args: argparse.Namespace) -> Any:
    from obv_eval.sources import DataSourceError, parse_data_source

    try:
        return parse_data_source(args.data, args.video_root, args.image_root)
    except DataSourceError as error:
        raise UsageError(str(error)) from error
