"""obv-train's checkpoint is found by name and evaluated end to end, and it answers differently."""

from __future__ import annotations

import json
from pathlib import Path

from obv_eval.train.trainer import TrainResult


def test_trained_checkpoint_runs_by_name_and_differs_from_base(
    tiny_obv: TrainResult, judged_pair: dict[str, Path]
) -> None:
    # tiny_obv: obv-train --config tiny_cpu, written to its default folder; judged_pair: both models run
    # by name on surgeryvqa (and vqarad) by obv-eval (the session's shared runs, tests/conftest.py).
    assert (tiny_obv.output_dir.parent / "tiny-qwen2vl-obv" / "obv_manifest.json").exists()

    def predictions(run: Path) -> list[str]:
        records = [json.loads(line) for line in (run / "samples.jsonl").read_text().splitlines()]
        return [r["prediction"] for r in records if r["task"] == "surgeryvqa"]

    base, tuned = predictions(judged_pair["base"]), predictions(judged_pair["tuned"])
    assert len(base) == len(tuned) == 8
    assert base != tuned
    provenance = json.loads((judged_pair["tuned"] / "results.json").read_text())["provenance"]
    assert provenance["model"]["training_manifest"]["base_model"]
    assert provenance["model"]["weights_sha256"]
