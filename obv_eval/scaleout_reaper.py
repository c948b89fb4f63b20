"""Stops a local Ray instance's processes when the run that started it ends, however it ends.

Ray shares the fate of the driver for its head processes, and actors die with their raylet, but the
node's agents (dashboard and runtime-env agents) of a SIGKILLed driver linger about a minute trying to
report to the dead GCS. This watcher, started beside ray.init, notes the run's descendants every half
second; when its stdin closes with nothing written (the run died: the kernel closes the pipe) it
SIGKILLs the Ray processes among them still running, so nothing is left behind. A run that stops Ray
itself writes a line first, and the watcher leaves quietly.

    python -m obv_eval.scaleout_reaper DRIVER_PID      (stdin: a pipe the driver holds open)
"""

from __future__ import annotations

import importlib.util
import os
import select
import sys
from pathlib import Path
from typing import Any


def _psutil() -> Any:
    try:
        import psutil
    except ImportError:  # Ray ships its own copy
        spec = importlib.util.find_spec("ray")
        assert spec is not None and spec.submodule_search_locations
        sys.path.append(str(Path(spec.submodule_search_locations[0]) / "thirdparty_files"))
        import psutil
    return psutil


def watch(driver_pid: int, interval_s: float = 0.5) -> None:
    psutil = _psutil()
    seen: dict[int, tuple[Any, float]] = {}
    try:
        driver = psutil.Process(driver_pid)
    except psutil.NoSuchProcess:
        return
    while True:
        try:
            for child in driver.children(recursive=True):
                if child.pid != os.getpid() and child.pid not in seen and _is_ray(child):
                    seen[child.pid] = (child, child.create_time())
        except psutil.Error:
            pass
        ready, _, _ = select.select([sys.stdin], [], [], interval_s)
        if ready:
            if os.read(sys.stdin.fileno(), 1024):
                return  # the run stopped Ray itself
            break  # the pipe closed with nothing said: the driver died
    for process, created in seen.values():
        try:
            if process.is_running() and process.create_time() == created:  # not a reused pid
                process.kill()
        except psutil.Error:
            continue


def _is_ray(process: Any) -> bool:
    try:
        return "ray" in " ".join(process.cmdline())
    except Exception:  # gone or not ours to read
        return False


if __name__ == "__main__":
    watch(int(sys.argv[1]))
