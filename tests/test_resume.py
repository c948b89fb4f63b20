"""A run killed at any point and resumed ends with exactly the records of an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from obv_eval.backends.base import GenerationOutput
from obv_eval.generation_log import GenerationLog


def _command(out: Path, run_id: str) -> list[str]:
    # The demo's command line (the session's demo_runs in tests/conftest.py ran it without a kill).
    return [
        sys.executable, "-m", "obv_eval.cli", "--model", "tiny-qwen2vl", "--tasks", "all",
        "--output-dir", str(out), "--run-id", run_id, "--no-progress",
    ]  # fmt: skip


def _log_lines(path: Path) -> int:
    return len(path.read_bytes().splitlines()) if path.exists() else 0


def test_killed_run_resumes_to_identical_records(tmp_path: Path, demo_runs: tuple[Path, Path]) -> None:
    whole = demo_runs[0]  # the same command, uninterrupted
    out = tmp_path / "runs"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    log = out / "tiny-qwen2vl" / "killed" / "generations.jsonl"
    process = subprocess.Popen(
        _command(out, "killed"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env
    )
    deadline = time.time() + 300
    while _log_lines(log) < 3 and process.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)  # a real kill: no cleanup, no flush beyond what is on disk
    process.wait()
    partial = _log_lines(log)
    total = len((whole / "samples.jsonl").read_text().splitlines())
    assert 0 < partial < total, f"the kill should land mid-run ({partial} of {total} items logged)"
    assert not (out / "tiny-qwen2vl" / "killed" / "samples.jsonl").exists()

    subprocess.run(_command(out, "killed"), check=True, capture_output=True, env=env, timeout=600)
    resumed = (out / "tiny-qwen2vl" / "killed" / "samples.jsonl").read_bytes()
    assert resumed == (whole / "samples.jsonl").read_bytes()
    keys = [tuple(json.loads(line)["output"]["key"]) for line in log.read_text().splitlines()]
    assert len(set(keys)) == total  # every item generated, none twice beyond a torn batch
    scores = [json.loads((run / "results.json").read_text())["tasks"] for run in (whole, log.parent)]
    assert scores[0] == scores[1]


def _output(task: str, doc_id: int) -> GenerationOutput:
    return GenerationOutput((task, doc_id), f"answer {doc_id}", prompt="p", prompt_tokens=3, output_tokens=2)


def test_log_keeps_only_complete_batches(tmp_path: Path) -> None:
    log = GenerationLog(tmp_path / "generations.jsonl")
    log.append_batch([_output("medqa", 0), _output("medqa", 1)])
    log.append_batch([_output("medqa", 2), _output("medqa", 3)])
    # A kill in the middle of the next write: one whole line and a torn one reach the disk.
    lines = log.path.read_text().splitlines()
    torn = (
        lines[2].replace('"medqa", 2', '"medqa", 4').replace(lines[2].split('"batch": "')[1][:32], "f" * 32)
    )
    with log.path.open("a") as handle:
        handle.write(torn + "\n" + torn[: len(torn) // 2])
    done = log.load()
    assert sorted(done) == [("medqa", 0), ("medqa", 1), ("medqa", 2), ("medqa", 3)]
    assert done[("medqa", 1)] == _output("medqa", 1)


def test_log_writes_count_as_writing_in_the_profile_not_as_the_stage_around_them(tmp_path: Path) -> None:
    from obv_eval import profiling

    log = GenerationLog(tmp_path / "generations.jsonl")
    profiling.reset()
    profiling.enable(True)
    try:
        with profiling.stage("decode_steps"):  # as when a backend hands a finished batch to the log
            for batch in range(20):
                log.append_batch([_output("t", 2 * batch), _output("t", 2 * batch + 1)])
        stages = profiling.snapshot()
    finally:
        profiling.enable(False)
        profiling.reset()
    assert stages["writing"]["calls"] == 20
    assert stages["writing"]["seconds"] > 0  # twenty fsyncs take time, all of it writing's
    assert stages["decode_steps"]["calls"] == 1
    assert len(log.load()) == 40
