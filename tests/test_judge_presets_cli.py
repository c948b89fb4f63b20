"""`obv-eval judge-agreement --presets A,B`: one judge, two presets, the same predictions (issue 15)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from fake_chat_server import FakeChatServer

from obv_eval.cli import main
from obv_eval.judge import agreement


def _fields(request: dict[str, Any]) -> tuple[str, str, str]:
    system, user = (m["content"] for m in request["messages"])
    gold = re.search(r"<gold_answer>\n(.*?)\n</gold_answer>", user, re.S)
    pred = re.search(r"<prediction>\n(.*?)\n</prediction>", user, re.S)
    assert gold and pred
    return system, gold.group(1), pred.group(1)


def strict(gold: str, pred: str) -> int:
    return int(pred.strip().lower() == gold.strip().lower())


def lenient(gold: str, pred: str) -> int:
    return int(bool(set(gold.lower().split()) & set(pred.lower().split())))


def rubric_sensitive(request: dict[str, Any]) -> str:
    """A stand-in judge: strict under v1's rubric ("several alternatives"), lenient under the study's."""
    system, gold, pred = _fields(request)
    rule = strict if "several alternatives" in system else lenient
    return json.dumps({"verdict": rule(gold, pred)})


SAMPLES = Path(__file__).resolve().parent.parent / "tasks" / "samples" / "surgeryvqa" / "test.jsonl"


def sample_run(folder: Path) -> list[dict[str, Any]]:
    """A finished run on the bundled SurgeryVideoQA samples, predictions made from the gold answers
    (exact, hedged with an alternative, reworded, unrelated), written without a model or a judge."""
    from obv_eval.judge import JudgeConfig
    from obv_eval.results import write_results
    from obv_eval.runner import score_run, write_samples

    rows = [json.loads(line) for line in SAMPLES.read_text(encoding="utf-8").splitlines() if line.strip()]
    variants = [
        lambda gold: gold,
        lambda gold: f"{gold.rstrip('.')} or something else",
        lambda gold: f"I think it is the {gold.rstrip('.').lower()}",
        lambda gold: "no idea",
    ]
    records = [
        {
            "task": "surgeryvqa",
            "doc_id": i,
            "item_id": row["id"],
            "cluster": row["video_id"],
            "categories": {"answer_type": "open"},
            "question": row["question"],
            "target": row["answer"],
            "prediction": variants[i % len(variants)](row["answer"]),
            "extracted": None,
            "prompt": "",
            "frames": [],
            "tokens": {"prompt": None, "output": None},
            "status": "ok",
            "reason": None,
            "unparsed": False,
            "scores": {"judge": None, "exact_match": 0.0, "token_f1": 0.0, "answer_recall": 0.0},
        }
        for i, row in enumerate(rows)
    ]
    no_judge = JudgeConfig(api_key_env="OBV_TEST_NO_SUCH_KEY")
    provenance = {"created": "now"}
    records, results = score_run(records, "samples", "fixture-model", provenance, no_judge, False, print)
    folder.mkdir(parents=True)
    write_samples(folder / "samples.jsonl", records)
    write_results(folder / "results.json", results)
    return records


def test_presets_compared_on_the_same_predictions(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "fixture-model" / "samples"
    ok = sample_run(run)
    with FakeChatServer(rubric_sensitive) as server:
        capsys.readouterr()
        code = main(
            [
                "judge-agreement",
                str(run),
                "--presets",
                "study-rubric,v1",
                "--judge-model",
                "fake-judge",
                "--judge-base-url",
                server.base_url,
                "--judge-cache",
                str(tmp_path / "cache.sqlite"),
                "--no-progress",
            ]
        )
        systems = {r.body["messages"][0]["content"] for r in server.chat_requests if r.body}
    assert code == 0
    assert len(systems) == 2  # each preset's prompt was sent
    out = capsys.readouterr().out
    row = out.strip().splitlines()[-1].split()
    pairs = [(r["target"], r["prediction"]) for r in ok]
    expected = agreement([lenient(*p) for p in pairs], [strict(*p) for p in pairs])
    assert row[0] == "fake-judge@" + server.base_url + "#study-rubric"
    numbers = [float(x) for x in row[2:]]
    assert numbers[:2] == [expected["n"], expected["n_total"]]
    assert numbers[2:5] == pytest.approx(
        [expected["accuracy_a"], expected["accuracy_b"], expected["accuracy_difference"]], abs=1e-3
    )
    assert numbers[5] == pytest.approx(expected["percent_agreement"], abs=1e-3)
    assert expected["accuracy_difference"] < 0  # the stricter rubric scores lower on these predictions
    print(out)  # shown with -s; docs/judge.md quotes a run of this test


def test_judges_or_presets_required(tmp_path: Path) -> None:
    from obv_eval.cli import USAGE_ERROR

    sample_run(tmp_path / "run")
    both = ["--presets", "study-rubric,v1", "--judges", "a,b"]
    assert main(["judge-agreement", str(tmp_path / "run"), *both]) == USAGE_ERROR
    assert main(["judge-agreement", str(tmp_path / "run")]) == USAGE_ERROR
