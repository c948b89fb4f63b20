"""`obv-eval controls` (issue 28): control runs beside the full run, resumable, tested as `compare` tests."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import pytest
from conftest import run_obv_eval

from obv_eval.cli import main
from obv_eval.control_runs import Run, difference_in_differences
from obv_eval.results import cluster_key
from obv_eval.stats import clustered_pvalue, mean_estimate


@pytest.fixture(scope="module")
def controlled(tmp_path_factory: pytest.TempPathFactory, tiny_model_path: Path) -> dict[str, Any]:
    """A tiny-model run on two MIMICEchoQA clips' worth of items and two VQA-RAD images, then its blind
    and shuffled controls (stdout of `obv-eval controls`)."""
    out = tmp_path_factory.mktemp("controls")
    run_obv_eval("--model", "tiny-qwen2vl", "--tasks", "mimicechoqa", "vqarad", "--limit", "3",
             "--output-dir", str(out), "--run-id", "full", "--no-progress")  # fmt: skip
    full = out / "tiny-qwen2vl" / "full"
    return {"full": full, "out": out}


def test_controls_run_beside_the_full_run_and_match_compare(
    controlled: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    full = controlled["full"]
    assert main(["controls", str(full), "--controls", "blind,shuffled", "--no-progress"]) == 0
    table = capsys.readouterr().out
    blind, shuffled = full.parent / "full.control-blind", full.parent / "full.control-shuffled"
    blind_results = json.loads((blind / "results.json").read_text())
    assert blind_results["provenance"]["control"] == "blind"
    assert sorted(blind_results["tasks"]) == ["mimicechoqa", "vqarad"]
    # shuffled reorders a video's frames: the image task is left out of it
    assert sorted(json.loads((shuffled / "results.json").read_text())["tasks"]) == ["mimicechoqa"]
    records = [json.loads(line) for line in (blind / "samples.jsonl").read_text().splitlines()]
    assert {r["control"] for r in records} == {"blind"} and all(r["frames"] == [] for r in records)
    assert all(r["tokens"]["visual"] == 0 for r in records)
    assert "visual_dependence" in table
    from obv_eval.report import report_data

    assert report_data(blind, media=False)["runs"][0]["model"] == "tiny-qwen2vl [control: blind]"

    # `compare FULL BLIND` prints the same difference and p for each task
    assert main(["compare", str(full), str(blind)]) == 0
    compared = capsys.readouterr().out
    for task in ("mimicechoqa", "vqarad"):
        row = next(line for line in compared.splitlines() if line.startswith(task))
        block = table.split(task, 1)[1]
        mine = next(line for line in block.splitlines() if line.split()[:1] == ["blind"])
        assert _difference_and_p(mine) == _difference_and_p(row), (row, mine)

    # a second call resumes each control run: every output reused, nothing generated
    assert main(["controls", str(full), "--controls", "blind", "--no-progress"]) == 0
    rerun = json.loads((blind / "results.json").read_text())["provenance"]["run"]
    assert rerun["outputs_generated"] == 0 and rerun["outputs_reused"] == len(records)
    capsys.readouterr()
    assert main(["controls", str(blind)]) == 2  # a control of a control is refused
    assert "itself a control run" in capsys.readouterr().err

    # the leaderboard: the full run is the model's row (its control runs never are), the chance row
    # sits beside the study's rows, and visual dependence = full - blind = minus compare's difference
    run_obv_eval("--model", "chance", "--data", "samples", "--tasks", "mimicechoqa", "vqarad", "--limit", "3",
             "--output-dir", str(controlled["out"]), "--run-id", "ref", "--no-progress")  # fmt: skip
    capsys.readouterr()
    assert main(["leaderboard", str(controlled["out"]), "--out", str(controlled["out"] / "board")]) == 0
    board = capsys.readouterr().out
    labels = [line.split("  ")[0] for line in board.split("Scores", 1)[1].split("\n\n", 2)[1].splitlines()]
    labels = [label for label in labels if label.strip() and not label.startswith(("-", " ", "model"))]
    assert labels[:2] == ["tiny-qwen2vl", "reference: chance"] and labels[2].startswith("study: ")
    dependence = board.split("Visual dependence", 1)[1]
    row = next(line for line in dependence.splitlines() if line.startswith("tiny-qwen2vl"))
    echo = next(line for line in compared.splitlines() if line.startswith("mimicechoqa"))
    blind_minus_full = float(_difference_and_p(echo)[0])
    assert float(row.split()[1]) == pytest.approx(-blind_minus_full, abs=0.051)
    assert (controlled["out"] / "board" / "visual_dependence.csv").is_file()


def _difference_and_p(line: str) -> tuple[str, str]:
    difference = re.search(r"\s([+-]\d+\.\d)\s", line)
    p = re.search(r"\S+ \((?:mcnemar-exact|clustered-t)\)", line)
    assert difference and p, line
    return difference.group(1), p.group(0)


def test_controls_refuse_a_bad_control(
    controlled: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    full = controlled["full"]
    assert main(["controls", str(full), "--controls", "frames=3"]) == 2
    assert "even" in capsys.readouterr().err


def _run(name: str, scores: list[float], clusters: list[str]) -> Run:
    records = [
        {
            "task": "medqa",
            "doc_id": i,
            "cluster": c,
            "status": "ok",
            "scores": {"accuracy": s},
            "categories": {"answer_type": "closed"},
        }
        for i, (s, c) in enumerate(zip(scores, clusters, strict=True))
    ]
    results = {"tasks": {"medqa": {"primary_metric": "accuracy"}}}
    return Run(Path(name), results, records)


def test_difference_in_differences_is_the_per_item_gain_that_needs_the_visuals() -> None:
    clusters = ["a", "a", "b", "c", "d", "d"]
    base_full, base_blind = [1, 0, 0, 1, 0, 1], [1, 0, 0, 0, 0, 1]
    tuned_full, tuned_blind = [1, 1, 1, 1, 0, 1], [1, 0, 0, 1, 0, 1]
    runs = [_run(n, s, clusters) for n, s in (("bf", base_full), ("bb", base_blind), ("tf", tuned_full),
                                                ("tb", tuned_blind))]  # fmt: skip
    estimate, p, n = difference_in_differences(*runs, "medqa", "accuracy")
    by_hand = [(tf - tb) - (bf - bb) for bf, bb, tf, tb in zip(base_full, base_blind, tuned_full, tuned_blind,
                                                                strict=True)]  # fmt: skip
    assert n == 6 and estimate.mean == pytest.approx(sum(by_hand) / 6)
    clustered = mean_estimate(by_hand, [cluster_key(r) for r in runs[0].records], proportion=False)
    assert estimate.se == pytest.approx(clustered.se)
    assert p == pytest.approx(clustered_pvalue(clustered)) and math.isfinite(p)
    assert re.fullmatch(r"[abcd]", runs[0].records[0]["cluster"])
