"""Data parallelism on Ray (obv_eval.scaleout): 2 CPU actors on the tiny model give the records of one
engine byte for byte, whatever dies on the way: an actor SIGKILLed mid-clip, a node of a two-node
cluster removed mid-run, the driver SIGKILLed and the run resumed. Nothing is generated twice, the
restarts are in provenance, and no Ray process outlives the run.

One local Ray session (2 CPUs) serves the in-process tests; the node test needs a cluster of its own and
the driver test starts its own Ray in a subprocess, as a user's run does.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from obv_eval.runner import RunConfig, RunResult, run
from obv_eval.scaleout import FAULTS_ENV

BENCHMARKS = ["surgeryvqa", "medqa"]  # clips with several questions, and text items
BATCH = 2  # several batches per clip: a kill lands mid-clip


def _config(out: Path, run_id: str, data_parallel_size: int = 1) -> RunConfig:
    return RunConfig(
        model="tiny-qwen2vl",
        benchmarks=BENCHMARKS,
        data="samples",
        output_dir=out,
        run_id=run_id,
        batch_size=BATCH,
        data_parallel_size=data_parallel_size,
        progress=False,
    )


def _run(config: RunConfig) -> RunResult:
    return run(config, log=lambda line: None)


def _samples(result: RunResult) -> bytes:
    return (result.run_dir / "samples.jsonl").read_bytes()


def _prefill(result: RunResult) -> int:
    return sum(r["tokens"]["prefill"] or 0 for r in result.records)


def _logged_keys(run_dir: Path) -> list[tuple[str, int]]:
    """Keys of every complete batch in the generation log (what a resume would reuse)."""
    batches: dict[str, list[dict[str, Any]]] = {}
    for line in (run_dir / "generations.jsonl").read_bytes().splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        batches.setdefault(entry["batch"], []).append(entry)
    return [
        (e["output"]["key"][0], e["output"]["key"][1])
        for entries in batches.values()
        if len(entries) == entries[0]["batch_size"]
        for e in entries
    ]


def _engine_processes() -> list[psutil.Process]:
    """Ray actor processes of obv_eval.scaleout.Engine under this test process."""
    found = []
    for process in psutil.Process().children(recursive=True):
        try:
            if "Engine" in " ".join(process.cmdline()):
                found.append(process)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def _gone(processes: list[psutil.Process], timeout: float = 30.0) -> list[psutil.Process]:
    """The processes still running after `timeout` seconds."""
    _, alive = psutil.wait_procs(processes, timeout=timeout)
    return [p for p in alive if p.status() != psutil.STATUS_ZOMBIE]


def test_work_units_keep_clips_whole_and_survive_removing_any_of_them() -> None:
    """A clip's questions are one unit; single items go a batch at a time per kind; dropping finished
    units (a resume, or actors finishing out of order) leaves every other unit as it was."""
    import random

    from obv_eval.backends.base import GenerationRequest
    from obv_eval.backends.streaming import stream_order, work_units
    from obv_eval.sources import MediaRef

    requests = []
    for index in range(40):
        kind = index % 4
        if kind == 0:
            visuals: tuple[MediaRef, ...] = (MediaRef("video", f"clip{index % 5}.mp4", "/m"),)
        elif kind == 1:
            visuals = (MediaRef("video", f"alone{index}.mp4", "/m"),)
        elif kind == 2:
            visuals = (MediaRef("image", f"img{index}.png", "/m"),)
        else:
            visuals = ()
        requests.append(GenerationRequest(("t", index), "q" * (index % 7 + 1), visuals))

    def plan(keep: list[int]) -> list[list[tuple[str, int]]]:
        chosen = [requests[i] for i in keep]
        order = stream_order(chosen, [r.text for r in chosen])
        return [[chosen[i].key for unit in part for i in unit] for part in work_units(chosen, order, 3)]

    whole = plan(list(range(len(requests))))
    clips = [part for part in whole if part[0][1] % 4 == 0]  # the items on clip0..clip4
    assert len(clips) == 5 and all(len(part) == 2 for part in clips)  # every question of a clip, together
    assert sorted(k for part in whole for k in part) == sorted(r.key for r in requests)
    rng = random.Random(0)
    for _ in range(20):
        dropped = rng.sample(range(len(whole)), rng.randint(1, len(whole) - 1))
        left = [part for i, part in enumerate(whole) if i not in dropped]
        assert plan(sorted(k[1] for part in left for k in part)) == left


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory, tiny_model_path: Path) -> RunResult:
    """The uninterrupted run on one engine every other run must equal."""
    return _run(_config(tmp_path_factory.mktemp("one"), "one"))


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield
    ray.shutdown()


def _check(result: RunResult, baseline: RunResult) -> dict[str, Any]:
    assert _samples(result) == _samples(baseline)
    assert _prefill(result) == _prefill(baseline)
    keys = _logged_keys(result.run_dir)
    assert len(keys) == len(set(keys)) == len(baseline.records)  # each item logged once
    scale_out: dict[str, Any] = result.results["provenance"]["backend"]["scale_out"]
    assert scale_out["engine"] == "ray" and scale_out["actors"] == 2
    assert result.results["provenance"]["backend"]["backend"] == "transformers"
    assert not _gone(_engine_processes(), timeout=20)  # the run stopped its actors
    return scale_out


def test_two_actors_give_the_records_of_one_engine(
    baseline: RunResult, local_ray: None, tmp_path: Path
) -> None:
    clips = {r["cluster"] for r in baseline.records if r["task"] == "surgeryvqa"}
    assert len(clips) < sum(r["task"] == "surgeryvqa" for r in baseline.records)  # clips with several Qs
    result = _run(_config(tmp_path, "two", data_parallel_size=2))
    scale_out = _check(result, baseline)
    assert scale_out["restarts"] == scale_out["resubmitted_units"] == 0


def test_engines_that_cannot_be_placed_are_refused_not_waited_for(
    local_ray: None, tiny_model_path: Path
) -> None:
    from obv_eval.scaleout import scale_out

    with pytest.raises(
        ValueError, match=re.escape("2 engines x 1 GPU(s) need 2 GPUs; the Ray cluster has 0")
    ):
        scale_out("hf", {"model_path": tiny_model_path, "device": "cuda"}, 2, gpus_per_actor=1)
    with pytest.raises(ValueError, match="fewer than 2 GPUs"):
        scale_out("vllm", {"model_path": tiny_model_path}, 0, gpus_per_actor=2)


def test_an_actor_killed_mid_clip_is_restarted_and_its_unit_resubmitted(
    baseline: RunResult, local_ray: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = tmp_path / "killed"
    monkeypatch.setenv(FAULTS_ENV, json.dumps({"kill": "clip", "marker": str(marker)}))
    result = _run(_config(tmp_path, "kill", data_parallel_size=2))
    assert marker.exists()  # an actor did die with a clip's unit half done
    assert not psutil.pid_exists(int(marker.read_text()))
    scale_out = _check(result, baseline)
    assert scale_out["restarts"] >= 1 and scale_out["resubmitted_units"] >= 1


def test_a_node_removed_mid_run_leaves_its_units_to_the_other(
    baseline: RunResult, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ray
    from ray.cluster_utils import Cluster

    ray.shutdown()  # the module's local session, if any: this test needs a cluster of two nodes
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    worker = cluster.add_node(num_cpus=1)  # one actor per node
    try:
        ray.init(address=cluster.address, log_to_driver=False, logging_level="ERROR")
        monkeypatch.setenv(FAULTS_ENV, json.dumps({"sleep_s": 0.5}))
        log = tmp_path / "tiny-qwen2vl" / "node" / "generations.jsonl"

        def remove_when_started() -> None:
            deadline = time.time() + 300
            while not (log.exists() and log.stat().st_size) and time.time() < deadline:
                time.sleep(0.05)
            cluster.remove_node(worker, allow_graceful=False)

        remover = threading.Thread(target=remove_when_started, daemon=True)
        remover.start()
        result = _run(_config(tmp_path, "node", data_parallel_size=2))
        remover.join()
        scale_out = _check(result, baseline)
        assert scale_out["nodes"] == 2  # the actors ran on both nodes before one went
        assert scale_out["restarts"] >= 1 and scale_out["resubmitted_units"] >= 1
    finally:
        ray.shutdown()
        cluster.shutdown()


def _command(out: Path, run_id: str) -> list[str]:
    return [
        sys.executable, "-m", "obv_eval.cli", "--model", "tiny-qwen2vl", "--tasks", *BENCHMARKS,
        "--data", "samples", "--batch-size", str(BATCH), "--data-parallel-size", "2",
        "--output-dir", str(out), "--run-id", run_id, "--no-progress",
    ]  # fmt: skip


def test_a_killed_driver_leaves_no_process_and_its_rerun_resumes(baseline: RunResult, tmp_path: Path) -> None:
    import ray

    ray.shutdown()  # the driver below starts its own local Ray, as a user's run does
    env = {**os.environ, "PYTHONUNBUFFERED": "1", FAULTS_ENV: json.dumps({"sleep_s": 0.5})}
    run_dir = tmp_path / "tiny-qwen2vl" / "driver"
    log = run_dir / "generations.jsonl"
    driver = subprocess.Popen(
        _command(tmp_path, "driver"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env
    )
    deadline = time.time() + 300
    while not (log.exists() and log.stat().st_size) and driver.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    family = psutil.Process(driver.pid).children(recursive=True)  # Ray's GCS, raylet, the actors
    assert any("Engine" in " ".join(p.cmdline()) for p in family)
    driver.send_signal(signal.SIGKILL)  # no cleanup of any kind
    driver.wait()
    assert not _gone(family), "Ray processes outlived the killed driver"
    logged = len(_logged_keys(run_dir))
    assert 0 < logged < len(baseline.records), f"the kill should land mid-run ({logged} logged)"

    env.pop(FAULTS_ENV)
    subprocess.run(_command(tmp_path, "driver"), check=True, capture_output=True, env=env, timeout=600)
    assert (run_dir / "samples.jsonl").read_bytes() == _samples(baseline)
    keys = _logged_keys(run_dir)
    assert len(keys) == len(set(keys)) == len(baseline.records)  # nothing generated twice
    results = json.loads((run_dir / "results.json").read_text())
    assert results["provenance"]["run"]["outputs_reused"] == logged


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--ray-address", "auto"], "--ray-address needs --data-parallel-size N"),
        (["--data-parallel-ranks", "2"], "--data-parallel-ranks is for a served model: pass --base-url too"),
        (["--data-parallel-size", "-1"], "--data-parallel-size"),
    ],
)
def test_scale_out_flags_without_their_partner_are_one_line(flags: list[str], message: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "obv_eval.cli", "--model", "tiny-qwen2vl", "--tasks", "medqa", *flags],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2 and message in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
