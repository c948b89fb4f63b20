"""`obv-eval`: argument parsing only; the work happens in the modules it calls.

One module per command group (run, data, results, listing); shared argument helpers in `args`.
Exit codes: 0 success, 1 a completed run that failed a check, 2 bad usage or input.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable, Sequence
from types import FrameType

from obv_eval.cli.controls import cmd_controls
from obv_eval.cli.data import cmd_data
from obv_eval.cli.listing import cmd_models, cmd_tasks, cmd_tasks_dir
from obv_eval.cli.results import (
    cmd_compare,
    cmd_judge_agreement,
    cmd_leaderboard,
    cmd_regress,
    cmd_report,
    cmd_rescore,
)
from obv_eval.cli.run import cmd_run
from obv_eval.files import describe_os_error
from obv_eval.redaction import redact
from obv_eval.usage import CHECK_FAILED, USAGE_ERROR, UsageError

__all__ = ["CHECK_FAILED", "HANDLERS", "USAGE_ERROR", "UsageError", "entry_point", "main"]

HANDLERS: dict[str, Callable[[Sequence[str]], int]] = {
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
    "controls": cmd_controls,
    "report": cmd_report,
}


class Terminated(BaseException):
    """SIGTERM, raised where the process is, so it unwinds as an interrupt does (records kept)."""


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise Terminated


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv[0] if argv and argv[0] in HANDLERS else "run"
    rest = argv[1:] if argv and argv[0] in HANDLERS else argv
    # A signal handler can only be set from the main thread; elsewhere SIGTERM keeps its default.
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _on_sigterm) if in_main_thread else None
    try:
        return HANDLERS[command](rest)
    except UsageError as error:
        print(redact(f"obv-eval: error: {error}"), file=sys.stderr)
        return USAGE_ERROR
    except OSError as error:  # the environment (a full disk, a file in the way): one line, no traceback
        print(redact(f"obv-eval: error: {describe_os_error(error)}"), file=sys.stderr)
        return USAGE_ERROR
    except KeyboardInterrupt:
        print("obv-eval: interrupted", file=sys.stderr)
        return 130
    except Terminated:
        print("obv-eval: terminated", file=sys.stderr)
        return 128 + signal.SIGTERM
    finally:
        if in_main_thread:  # None: a handler not set from Python, i.e. the default
            signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)


def entry_point(argv: Sequence[str] | None = None) -> int:
    """The `obv-eval` command: `main`, then nothing left for the interpreter's shutdown to collect."""
    from obv_eval.gcpolicy import before_exit

    code = main(argv)
    before_exit()
    return code
