"""Applying the judge to the runner's per-item records."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

import pytest
from fake_chat_server import FakeChatServer

from obv_eval.judge import NO_JUDGE_REASON, Judge, JudgeConfig, rescore_samples


def record(
    doc_id: int, task: str, prediction: str, target: Any, status: str = "ok", **extra: Any
) -> dict[str, Any]:
    return {
        "task": task,
        "doc_id": doc_id,
        "prompt": f"<video> question {doc_id}",
        "prediction": prediction,
        "target": target,
        "status": status,
        "scores": {"exact_match": 0},
        "question": f"What is shown in clip {doc_id}?",
        **extra,
    }


RECORDS = [
    record(0, "obv_surgeryvqa", "the gallbladder", "gallbladder"),
    record(1, "obv_surgeryvqa", "a stapler", "harmonic scalpel"),
    record(2, "obv_surgeryvqa", "", "liver", status="failed", error="CUDA out of memory"),
    record(3, "obv_mimicechoqa", "B", "B"),
    record(4, "obv_surgeryvqa", "skin", ["skin", "dermis"]),
]


def gold_in_prediction(request: dict[str, Any]) -> str:
    user = request["messages"][-1]["content"]
    gold = user.split("<gold_answer>\n")[1].split("\n</gold_answer>")[0]
    pred = user.split("<prediction>\n")[1].split("\n</prediction>")[0]
    return json.dumps({"verdict": int(any(g.strip() in pred for g in gold.split("|")))})


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeChatServer]:
    monkeypatch.setattr("openai._base_client.INITIAL_RETRY_DELAY", 0.01)
    with FakeChatServer(reply=gold_in_prediction) as s:
        yield s


def test_judges_open_ended_ok_records_and_scores_failed_as_zero(server: FakeChatServer) -> None:
    before = copy.deepcopy(RECORDS)
    out = rescore_samples(RECORDS, JudgeConfig(base_url=server.base_url), {"obv_surgeryvqa"})
    assert before == RECORDS  # inputs untouched
    assert [r["scores"].get("judge") for r in out] == [1, 0, 0, None, 1]
    assert "judge" not in out[3]["scores"] and out[3] == RECORDS[3]  # other task unchanged
    assert out[0]["scores"]["exact_match"] == 0  # other scores kept
    assert server.calls == 3  # the failed record is not sent to the judge
    assert all("judge_reason" not in r for r in out)
    sent = [(b.body or {})["messages"][-1]["content"] for b in server.chat_requests]
    assert any("skin | dermis" in s for s in sent)  # several gold answers are all shown


def test_unscored_records_carry_a_reason_and_a_rescore_fills_them(server: FakeChatServer) -> None:
    server.reply = lambda request: "maybe"
    judge = Judge(JudgeConfig(base_url=server.base_url, max_retries=0))
    first = rescore_samples(RECORDS, judge.config, {"obv_surgeryvqa"}, judge=judge)
    assert first[0]["scores"]["judge"] is None
    assert first[0]["judge_reason"] == "no 0/1 verdict after 1 asks (last: reply 'maybe')"
    assert first[2]["scores"]["judge"] == 0 and "judge_reason" not in first[2]

    server.reply = gold_in_prediction
    server.reset()
    second = rescore_samples(first, judge.config, {"obv_surgeryvqa"}, judge=judge)
    assert [r["scores"].get("judge") for r in second] == [1, 0, 0, None, 1]
    assert all("judge_reason" not in r for r in second)  # stale reasons removed
    server.reset()
    third = rescore_samples(second, judge.config, {"obv_surgeryvqa"}, judge=judge)
    assert third == second and server.calls == 0 and judge.stats.cache_hits == 3


def test_record_without_question_is_unscored(server: FakeChatServer) -> None:
    broken = record(7, "obv_surgeryvqa", "liver", "liver")
    del broken["question"]
    out = rescore_samples([broken], JudgeConfig(base_url=server.base_url), ["obv_surgeryvqa"])
    assert out[0]["scores"]["judge"] is None and out[0]["judge_reason"] == "record has no question"
    assert server.calls == 0


def test_no_judge_configured_marks_records_not_scored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    out = rescore_samples(RECORDS, JudgeConfig(), {"obv_surgeryvqa"})
    assert [r["scores"].get("judge") for r in out] == [None, None, 0, None, None]
    assert out[0]["judge_reason"].startswith(NO_JUDGE_REASON)
