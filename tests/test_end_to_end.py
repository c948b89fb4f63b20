"""The whole path on the tiny model and the bundled samples: lmms-eval, tasks, backend, files."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from obv_eval.benchmarks import BENCHMARKS, GROUPS
from obv_eval.cli import main
from obv_eval.sources import SAMPLES_DIR, parse_data_source
from obv_eval.tasking import load_rows


def _run(tmp_path: Path, run_id: str, *args: str) -> Path:
    code = main(
        ["--model", "tiny-qwen2vl", "--output-dir", str(tmp_path), "--run-id", run_id, "--no-progress", *args]
    )
    assert code == 0
    return tmp_path / "tiny-qwen2vl" / run_id


def _sample_rows(benchmark: str) -> list[dict[str, object]]:
    """The sample's test rows as the task reads them (real samples are in their release formats)."""
    return [dict(row) for row in load_rows(BENCHMARKS[benchmark], parse_data_source("samples"))]


# demo_runs: the demo run twice, a session fixture in tests/conftest.py shared with other tests.


def test_demo_runs_all_seven_and_counts_every_row(demo_runs: tuple[Path, Path]) -> None:
    results = json.loads((demo_runs[0] / "results.json").read_text())
    assert set(results["tasks"]) == set(GROUPS["all"])
    for name, task in results["tasks"].items():
        rows = [r for r in _sample_rows(name) if r.get("q_lang") != "zh"]
        assert task["n"] == len(rows), name
        assert task["failed"] == 0, name


def test_demo_is_byte_identical_across_runs(demo_runs: tuple[Path, Path]) -> None:
    first, second = (run / "samples.jsonl" for run in demo_runs)
    assert first.read_bytes() == second.read_bytes()
    records = [json.loads(line) for line in first.read_text().splitlines()]
    assert all(r["prompt"].startswith("<|im_start|>system") for r in records)
    video = [r for r in records if r["task"] == "surgeryvqa"]
    assert video and all(r["frames"] and r["frames"][0] >= 4 for r in video)
    assert all(r["tokens"]["output"] and r["tokens"]["output"] <= 32 for r in records)


def test_records_carry_clusters_and_categories(demo_runs: tuple[Path, Path]) -> None:
    records = [json.loads(line) for line in (demo_runs[0] / "samples.jsonl").read_text().splitlines()]
    surgery = {r["item_id"]: r for r in records if r["task"] == "surgeryvqa"}
    for row in _sample_rows("surgeryvqa"):
        assert surgery[str(row["id"])]["cluster"] == row["video_id"]
    echo = [r for r in records if r["task"] == "mimicechoqa"]
    assert {"view", "structure", "question_type"} <= set(echo[0]["categories"])


def _write_rows(path: Path, rows: list[dict[str, object]], raw_lines: list[bytes] = ()) -> None:  # type: ignore[assignment]
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as handle:
        for row in rows:
            handle.write(json.dumps(row).encode() + b"\n")
        for line in raw_lines:
            handle.write(line + b"\n")


def test_bad_items_fail_alone_and_are_counted(tmp_path: Path, tiny_model_path: Path) -> None:
    data = tmp_path / "data"
    media = data / "media" / "surgeryvqa"
    shutil.copytree(SAMPLES_DIR / "media" / "surgeryvqa", media)
    good = _sample_rows("surgeryvqa")[:2]
    (media / "empty.mp4").write_bytes(b"")
    (media / "corrupt.mp4").write_bytes(b"\x00\x01 this is not an mp4 \xff" * 50)
    bad = [
        {**good[0], "id": "missing-file", "video": "nowhere.mp4"},
        {**good[0], "id": "zero-length", "video": "empty.mp4"},
        {**good[0], "id": "corrupt", "video": "corrupt.mp4"},
        {**good[0], "id": "escape", "video": "../../../etc/passwd"},
        {key: value for key, value in good[0].items() if key != "question"} | {"id": "no-question"},
    ]
    non_utf8 = b'{"id": "latin1", "question": "caf\xe9?", "answer": "x", "video": "a.mp4", "video_id": "v"}'
    _write_rows(data / "surgeryvqa" / "test.jsonl", good + bad, [non_utf8])

    # 6 of 8 failed: over the default --max-failed budget (exit 1), so the budget is lifted here.
    run_dir = _run(
        tmp_path / "runs", "bad", "--tasks", "surgeryvqa", "--data", str(data), "--max-failed", "1"
    )
    task = json.loads((run_dir / "results.json").read_text())["tasks"]["surgeryvqa"]
    assert task["n"] == 8 and task["failed"] == 6
    records = {r["item_id"]: r for r in map(json.loads, (run_dir / "samples.jsonl").read_text().splitlines())}
    reasons = {item: r["reason"] for item, r in records.items() if r["status"] == "failed"}
    assert "missing-file" in reasons and "not found" in reasons["missing-file"].lower()
    assert "zero-length" in reasons and "empty" in reasons["zero-length"].lower()
    assert "escape" in reasons["escape"].lower()
    assert "question" in reasons["no-question"]
    assert any("UTF-8" in reason for reason in reasons.values())
    assert all(r["scores"]["exact_match"] == 0.0 for r in records.values() if r["status"] == "failed")
    assert sum(r["status"] == "ok" for r in records.values()) == 2


def test_plain_lmms_eval_runs_an_obv_task(tmp_path: Path, tiny_model_path: Path) -> None:
    tasks_dir = subprocess.run(
        [sys.executable, "-m", "obv_eval.cli", "tasks-dir"], capture_output=True, text=True, check=True
    ).stdout.strip()
    env = {**os.environ, "OBV_EVAL_DATA": "samples"}
    lmms_eval = Path(sys.executable).with_name("lmms-eval")
    command = [str(lmms_eval)] if lmms_eval.exists() else [sys.executable, "-m", "lmms_eval"]
    completed = subprocess.run(
        [
            *command,
            "--include_path", tasks_dir,
            "--model", "obv_hf",
            "--model_args", "pretrained=tiny-qwen2vl,progress=False",
            "--tasks", "obv_surgeryvqa",
            "--output_path", str(tmp_path / "out"),
            "--log_samples",
        ],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-2000:]
    written = list((tmp_path / "out").rglob("*results*.json"))
    assert written, completed.stderr[-2000:]
    results = json.loads(written[0].read_text())
    assert "obv_surgeryvqa" in results["results"]
    assert "token_f1,none" in results["results"]["obv_surgeryvqa"]


BASELINE = Path(__file__).resolve().parent.parent / "results" / "baselines" / "tiny-qwen2vl" / "samples"


def test_demo_passes_the_committed_baseline(
    demo_runs: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    # The regression gate CI runs on every change: same items, prompts, data and scores as committed.
    assert main(["regress", "--baseline", str(BASELINE), str(demo_runs[0])]) == 0, capsys.readouterr().out
