"""A run judged by an OpenAI-compatible server: verdicts become accuracy, rescore cached, no key leaks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fake_chat_server import FakeChatServer, Fault

from obv_eval.cli import main

SECRET = "sk-test-SECRET123"


def verdict_by_question(request: dict[str, Any]) -> str:
    # Deterministic: 1 for questions mentioning the gallbladder, 0 otherwise.
    text = json.dumps(request["messages"])
    return json.dumps({"verdict": 1 if "gallbladder" in text else 0})


def test_judged_run_then_rescore_makes_no_calls(
    tmp_path: Path, tiny_model_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("JUDGE_KEY", SECRET)
    cache = tmp_path / "judge.sqlite"
    with FakeChatServer(verdict_by_question) as server:
        judge = [
            "--judge-base-url",
            server.base_url,
            "--judge-model",
            "open-judge",
            "--judge-api-key-env",
            "JUDGE_KEY",
        ]
        args = [
            "--model",
            "tiny-qwen2vl",
            "--tasks",
            "surgeryvqa",
            "--output-dir",
            str(tmp_path),
            "--no-progress",
        ]
        assert main([*args, "--run-id", "judged", "--judge-cache", str(cache), *judge]) == 0
        assert "judge open-judge: 8 calls, 0 cached" in capsys.readouterr().out
        first_calls = server.calls
        run = tmp_path / "tiny-qwen2vl" / "judged"
        results = json.loads((run / "results.json").read_text())
        assert first_calls == 8
        assert all(r.headers.get("authorization") == f"Bearer {SECRET}" for r in server.chat_requests)

        before = (run / "samples.jsonl").read_bytes()
        assert main(["rescore", str(run), "--judge-cache", str(cache), "--no-progress", *judge]) == 0
        assert server.calls == first_calls  # every verdict came from the cache
        assert (run / "samples.jsonl").read_bytes() == before
        assert json.loads((run / "results.json").read_text())["tasks"] == results["tasks"]

    task = results["tasks"]["surgeryvqa"]
    questions = [json.loads(line)["question"] for line in before.decode().splitlines()]
    expected = sum("gallbladder" in q for q in questions) / len(questions)
    assert task["unscored"] == 0 and task["metrics"]["accuracy"]["mean"] == pytest.approx(expected)
    assert results["provenance"]["judge"]["settings"]["model"] == "open-judge"
    for path in [*run.iterdir(), cache]:
        assert SECRET not in path.read_bytes().decode("utf-8", errors="replace"), path
    captured = capsys.readouterr()
    assert SECRET not in captured.out + captured.err


def test_judge_outage_is_unscored_and_fails_the_error_budget(tmp_path: Path, tiny_model_path: Path) -> None:
    with FakeChatServer(fault_fn=lambda call, request: Fault.SERVER_ERROR) as server:
        code = main(
            ["--model", "tiny-qwen2vl", "--tasks", "surgeryvqa", "--output-dir", str(tmp_path),
             "--no-progress", "--run-id", "outage", "--judge-base-url", server.base_url,
             "--judge-retries", "1", "--judge-timeout", "2", "--judge-cache", str(tmp_path / "c.sqlite")]
        )  # fmt: skip
    assert code == 1  # completed, but the judge left everything unscored
    task = json.loads((tmp_path / "tiny-qwen2vl" / "outage" / "results.json").read_text())["tasks"][
        "surgeryvqa"
    ]
    assert task["unscored"] == 8 and task["n"] == 8
    records = [json.loads(line) for line in (tmp_path / "tiny-qwen2vl" / "outage" / "samples.jsonl").open()]
    assert all("500" in r["judge_reason"] for r in records)


def test_judge_agreement_between_two_judges(
    tmp_path: Path, tiny_model_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from sklearn.metrics import cohen_kappa_score

    args = [
        "--model",
        "tiny-qwen2vl",
        "--tasks",
        "surgeryvqa",
        "--output-dir",
        str(tmp_path),
        "--no-progress",
    ]
    assert main([*args, "--run-id", "plain"]) == 0
    run = tmp_path / "tiny-qwen2vl" / "plain"
    questions = [json.loads(line)["question"] for line in (run / "samples.jsonl").read_text().splitlines()]

    def two_judges(request: dict[str, Any]) -> str:
        strict = request["model"] == "strict"
        verdict = int("gallbladder" in json.dumps(request["messages"])) if strict else 1
        return json.dumps({"verdict": verdict})

    with FakeChatServer(two_judges) as server:
        judges = f"strict@{server.base_url},lenient@{server.base_url}"
        capsys.readouterr()
        code = main(
            [
                "judge-agreement",
                str(run),
                "--judges",
                judges,
                "--no-progress",
                "--judge-cache",
                str(tmp_path / "c"),
            ]
        )
    assert code == 0
    strict = [int("gallbladder" in q) for q in questions]
    expected_agreement = 100 * sum(strict) / len(strict)
    row = capsys.readouterr().out.strip().splitlines()[-1].split()
    assert float(row[-2]) == pytest.approx(expected_agreement)
    kappa = cohen_kappa_score(strict, [1] * len(strict))
    assert float(row[-1]) == pytest.approx(kappa)


def test_a_judged_run_of_all_seven_with_every_open_item_judged_exits_0(
    tmp_path: Path, tiny_model_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("JUDGE_KEY", SECRET)
    with FakeChatServer(verdict_by_question) as server:
        code = main(
            ["--model", "tiny-qwen2vl", "--tasks", "all", "--output-dir", str(tmp_path), "--run-id", "all",
             "--no-progress", "--judge-cache", str(tmp_path / "judge.sqlite"), "--judge-base-url",
             server.base_url, "--judge-model", "open-judge", "--judge-api-key-env", "JUDGE_KEY"]
        )  # fmt: skip
        calls = server.calls
    assert code == 0, capsys.readouterr().err
    run = tmp_path / "tiny-qwen2vl" / "all"
    records = [json.loads(line) for line in (run / "samples.jsonl").read_text().splitlines()]
    judged = {
        (r["task"], r["doc_id"])
        for r in records
        if r["task"] == "surgeryvqa" or (r.get("categories") or {}).get("answer_type") == "open"
    }
    assert judged and calls == len(judged)  # the judge saw exactly the open items, closed ones never
    results = json.loads((run / "results.json").read_text())
    for name, task in results["tasks"].items():
        assert task["unscored"] == 0 and task["failed"] == 0, name
        assert task["metrics"][task["primary_metric"]]["mean"] is not None, name
