"""obv-train's checkpoint is found by name and evaluated end to end, and it answers differently."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from obv_eval.cli import main


def test_trained_checkpoint_runs_by_name_and_differs_from_base(
    tmp_path: Path, tiny_model_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    checkpoints = tmp_path / "checkpoints"
    env = {**os.environ, "OBV_EVAL_CHECKPOINTS": str(checkpoints)}
    subprocess.run(
        [sys.executable, "-m", "obv_eval.train.cli", "--config", "tiny_cpu"],
        check=True, capture_output=True, env=env, timeout=600,
    )  # fmt: skip
    assert (checkpoints / "tiny-qwen2vl-obv" / "obv_manifest.json").exists()
    monkeypatch.setenv("OBV_EVAL_CHECKPOINTS", str(checkpoints))
    runs = tmp_path / "runs"
    for model in ("tiny-qwen2vl", "tiny-qwen2vl-obv"):
        args = [
            "--model",
            model,
            "--tasks",
            "surgeryvqa",
            "--output-dir",
            str(runs),
            "--run-id",
            "r",
            "--no-progress",
        ]
        assert main(args) == 0

    def predictions(model: str) -> list[str]:
        lines = (runs / model / "r" / "samples.jsonl").read_text().splitlines()
        return [json.loads(line)["prediction"] for line in lines]

    base, tuned = predictions("tiny-qwen2vl"), predictions("tiny-qwen2vl-obv")
    assert len(base) == len(tuned) == 8
    assert base != tuned
    provenance = json.loads((runs / "tiny-qwen2vl-obv" / "r" / "results.json").read_text())["provenance"]
    assert provenance["model"]["training_manifest"]["base_model"]
    assert provenance["model"]["weights_sha256"]
