"""The judge against a real HTTP server that behaves like the OpenAI API, faults included."""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from fake_chat_server import FakeChatServer, Fault, free_port

from obv_eval.judge import (
    NO_JUDGE_REASON,
    Judge,
    JudgeCache,
    JudgeConfig,
    JudgeItem,
    cache_key,
    estimate_cost_usd,
    judge_available,
)

SECRET = "sk-test-SECRET123"


def judge_by_substring(request: dict[str, Any]) -> str:
    """Says 1 when the prediction block contains the gold answer, like a lenient grader."""
    user = request["messages"][-1]["content"]
    gold = re.search(r"<gold_answer>\n(.*?)\n</gold_answer>", user, re.DOTALL)
    pred = re.search(r"<prediction>\n(.*?)\n</prediction>", user, re.DOTALL)
    assert gold and pred
    return json.dumps({"verdict": int(gold.group(1).lower() in pred.group(1).lower())})


ITEMS = [
    JudgeItem("Which organ is being removed?", "gallbladder", "the gallbladder"),
    JudgeItem("Which instrument is used?", "harmonic scalpel", "a grasper"),
    JudgeItem("What is being sutured?", "skin", "the skin"),
]


@pytest.fixture(autouse=True)
def fast_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    # The openai client's backoff starts at 0.5 s; shrink it so retry tests take milliseconds.
    monkeypatch.setattr("openai._base_client.INITIAL_RETRY_DELAY", 0.01)


@pytest.fixture
def key_env(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("OBV_TEST_JUDGE_KEY", SECRET)
    return "OBV_TEST_JUDGE_KEY"


@pytest.fixture
def server() -> Iterator[FakeChatServer]:
    with FakeChatServer(reply=judge_by_substring, hang_s=2.0) as s:
        yield s


def make_config(server: FakeChatServer, key_env: str, **overrides: Any) -> JudgeConfig:
    base = JudgeConfig(
        model="gpt-4o", base_url=server.base_url, api_key_env=key_env, timeout_s=2.0, max_retries=2
    )
    return replace(base, **overrides)


def test_scores_items_and_sends_the_configured_request(server: FakeChatServer, key_env: str) -> None:
    judge = Judge(make_config(server, key_env))
    verdicts = judge.judge_many(ITEMS, progress=False)
    assert [v.score for v in verdicts] == [1, 0, 1]
    assert all(v.status == "scored" and v.reason is None and not v.cached for v in verdicts)
    assert all(v.attempts == 1 and v.prompt_tokens > 0 and v.completion_tokens == 2 for v in verdicts)
    assert server.calls == 3 and judge.stats.calls == 3
    body = server.chat_requests[0].body
    assert body is not None
    assert body["model"] == "gpt-4o" and body["temperature"] == 0.0 and body["seed"] == 0
    assert body["max_tokens"] == 8
    assert body["response_format"]["json_schema"]["schema"]["properties"]["verdict"]["enum"] == [0, 1]
    assert server.chat_requests[0].headers["authorization"] == f"Bearer {SECRET}"


def test_zero_is_a_verdict_not_a_retry(server: FakeChatServer, key_env: str) -> None:
    # The released reference judge accepted only 1..5 and re-asked every 0 forever.
    server.reply = lambda request: "0"
    verdicts = Judge(make_config(server, key_env)).judge_many(ITEMS[:1], progress=False)
    assert verdicts[0].score == 0 and verdicts[0].status == "scored"
    assert server.calls == 1


@pytest.mark.parametrize(
    ("reply", "last"),
    [
        ("maybe", "reply 'maybe'"),
        ("2", "reply '2'"),
        ("5", "reply '5'"),
        ("1 because it matches", "reply '1 because it matches'"),
        ("", "empty reply"),
        (None, "empty reply"),
    ],
)
def test_bad_verdicts_are_reasked_then_unscored(
    server: FakeChatServer, key_env: str, reply: str | None, last: str
) -> None:
    server.reply = lambda request: reply
    judge = Judge(make_config(server, key_env, max_retries=2))
    verdicts = judge.judge_many(ITEMS[:2], progress=False)
    for v in verdicts:
        assert v.score is None and v.status == "unscored"
        assert v.reason == f"no 0/1 verdict after 3 asks (last: {last})"
        assert v.attempts == 3
    assert server.calls == 6 and judge.stats.calls == 6
    assert judge.stats.unscored == 2 and judge.stats.scored == 0
    assert len(judge.cache) == 0  # unscored is not final: a later run asks again


def test_bad_verdict_then_good_one(server: FakeChatServer, key_env: str) -> None:
    replies = iter(["yes", "0"])
    server.reply = lambda request: next(replies)
    verdict = Judge(make_config(server, key_env)).judge(ITEMS[0])
    assert verdict.score == 0 and verdict.attempts == 2 and verdict.raw == "0"
    assert verdict.completion_tokens == 2  # tokens of both asks


@pytest.mark.parametrize(("fault", "status"), [(Fault.RATE_LIMIT, 429), (Fault.SERVER_ERROR, 500)])
def test_http_errors_are_retried_then_unscored(
    server: FakeChatServer, key_env: str, fault: Fault, status: int
) -> None:
    server.fault_fn = lambda index, body: fault
    judge = Judge(make_config(server, key_env, max_retries=3))
    started = time.perf_counter()
    verdicts = judge.judge_many(ITEMS[:2], progress=False)
    assert time.perf_counter() - started < 5
    for v in verdicts:
        assert v.status == "unscored" and v.reason == f"HTTP {status} after 3 retries"
        assert v.attempts == 4
    assert server.calls == 8 and judge.stats.calls == 8


@pytest.mark.parametrize("fault", [Fault.RATE_LIMIT, Fault.SERVER_ERROR, Fault.MALFORMED_JSON])
def test_transient_fault_then_success(server: FakeChatServer, key_env: str, fault: Fault) -> None:
    server.push_faults(fault)
    verdict = Judge(make_config(server, key_env)).judge(ITEMS[0])
    assert verdict.score == 1 and verdict.attempts == 2 and server.calls == 2


def test_timeouts_are_bounded(server: FakeChatServer, key_env: str) -> None:
    server.fault_fn = lambda index, body: Fault.TIMEOUT  # hangs 2 s, the client waits 0.2 s
    judge = Judge(make_config(server, key_env, timeout_s=0.2, max_retries=1))
    started = time.perf_counter()
    verdict = judge.judge(ITEMS[0])
    assert time.perf_counter() - started < 1.5
    assert verdict.status == "unscored" and verdict.reason == "timeout (0.2 s) after 1 retries"
    assert server.calls == 2


def test_malformed_bodies_are_reasked_then_unscored(server: FakeChatServer, key_env: str) -> None:
    server.fault_fn = lambda index, body: Fault.MALFORMED_JSON
    verdict = Judge(make_config(server, key_env, max_retries=2)).judge(ITEMS[0])
    assert verdict.status == "unscored"
    assert verdict.reason == "no 0/1 verdict after 3 asks (last: malformed response body)"
    assert server.calls == 3


def test_unreachable_server_is_unscored_not_raised(key_env: str) -> None:
    config = JudgeConfig(
        base_url=f"http://127.0.0.1:{free_port()}/v1", api_key_env=key_env, timeout_s=1.0, max_retries=1
    )
    judge = Judge(config)
    verdict = judge.judge(ITEMS[0])
    assert verdict.status == "unscored" and verdict.reason == "connection error after 1 retries"
    assert judge.stats.calls == 2


def test_non_retried_error_keeps_the_server_message_without_the_key(key_env: str) -> None:
    with FakeChatServer(reply=judge_by_substring, api_key="the-right-key") as server:
        verdict = Judge(make_config(server, key_env)).judge(ITEMS[0])
    assert verdict.status == "unscored" and server.calls == 1
    assert verdict.reason is not None and verdict.reason.startswith("HTTP 401: Incorrect API key provided")
    assert SECRET not in verdict.reason and "[redacted]" in verdict.reason


def test_second_pass_makes_no_calls_and_gives_identical_verdicts(
    server: FakeChatServer, key_env: str, tmp_path: Path
) -> None:
    config = make_config(server, key_env, cache_path=str(tmp_path / "judge.sqlite"))
    first = Judge(config).judge_many(ITEMS, progress=False)
    server.reset()
    again = Judge(config)  # a new process would open the same file
    second = again.judge_many(ITEMS, progress=False)
    assert server.calls == 0 and again.stats.calls == 0 and again.stats.cache_hits == 3
    assert [v.score for v in second] == [v.score for v in first]
    assert all(v.cached and v.attempts == 0 and v.prompt_tokens == 0 for v in second)
    assert again.stats.estimated_cost_usd == 0.0


def test_unscored_items_are_asked_again_later(server: FakeChatServer, key_env: str, tmp_path: Path) -> None:
    config = make_config(server, key_env, cache_path=str(tmp_path / "judge.sqlite"), max_retries=0)
    server.push_faults(Fault.SERVER_ERROR)
    first = Judge(config).judge_many(ITEMS[:2], progress=False)
    assert sorted(v.status for v in first) == ["scored", "unscored"]
    server.reset()
    second = Judge(config).judge_many(ITEMS[:2], progress=False)
    assert [v.score for v in second] == [1, 0]
    assert server.calls == 1 and [v.cached for v in second].count(True) == 1


def test_identical_items_in_one_batch_are_judged_once(server: FakeChatServer, key_env: str) -> None:
    judge = Judge(make_config(server, key_env))
    verdicts = judge.judge_many([ITEMS[0], ITEMS[1], ITEMS[0], ITEMS[0]], progress=False)
    assert [v.score for v in verdicts] == [1, 0, 1, 1]
    assert server.calls == 2 and judge.stats.deduplicated == 2
    assert [v.attempts for v in verdicts] == [1, 1, 0, 0]


def test_concurrency_is_bounded_and_used(key_env: str) -> None:
    with FakeChatServer(reply=lambda request: "1", latency_s=0.05) as server:
        items = [JudgeItem("q", "g", f"p{i}") for i in range(20)]
        verdicts = Judge(make_config(server, key_env, concurrency=4)).judge_many(items, progress=False)
    assert all(v.score == 1 for v in verdicts)
    assert 1 < server.max_in_flight <= 4


def test_falls_back_to_plain_text_when_response_format_is_rejected(key_env: str) -> None:
    with FakeChatServer(reply=lambda request: "1", reject_response_format=True) as server:
        judge = Judge(make_config(server, key_env, concurrency=1))
        verdicts = judge.judge_many(ITEMS, progress=False)
        bodies = [r.body or {} for r in server.chat_requests]
    assert [v.score for v in verdicts] == [1, 1, 1]
    assert ["response_format" in b for b in bodies] == [True, False, False, False]
    assert judge.stats.structured_output_used is False
    assert verdicts[0].attempts == 2 and verdicts[1].attempts == 1


def test_a_400_that_is_not_about_response_format_keeps_structured_output(
    server: FakeChatServer, key_env: str
) -> None:
    server.push_faults(Fault.BAD_REQUEST, Fault.BAD_REQUEST)
    judge = Judge(make_config(server, key_env, concurrency=1))
    verdicts = judge.judge_many(ITEMS[:2], progress=False)
    assert verdicts[0].status == "unscored" and verdicts[0].reason == "HTTP 400: Bad request."
    assert verdicts[1].score == 0
    assert "response_format" in (server.chat_requests[-1].body or {})
    assert judge.stats.structured_output_used is True


def test_stats_tokens_and_cost(server: FakeChatServer, key_env: str) -> None:
    judge = Judge(make_config(server, key_env))
    verdicts = judge.judge_many(ITEMS, progress=False)
    stats = judge.stats
    assert stats.prompt_tokens == sum(v.prompt_tokens for v in verdicts) > 0
    assert stats.completion_tokens == 6
    assert stats.estimated_cost_usd == pytest.approx(stats.prompt_tokens * 2.5e-6 + 6 * 10e-6)
    assert estimate_cost_usd("some-open-model", 100, 10) is None
    assert stats.to_dict()["calls"] == 3


def test_no_judge_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    config = JudgeConfig()
    available, why = judge_available(config)
    assert not available and why.startswith(NO_JUDGE_REASON) and "OPENAI_API_KEY" in why
    cache = JudgeCache()
    # An earlier run's verdict is still served without a judge; the rest is unscored, no calls.
    cache.put(
        cache_key(config.settings(), "q", "g", "cached"),
        1,
        raw="1",
        prompt_tokens=5,
        completion_tokens=1,
        model="gpt-4o",
        prompt_version="v1",
    )
    judge = Judge(config, cache=cache)
    verdicts = judge.judge_many([JudgeItem("q", "g", "cached"), JudgeItem("q", "g", "new")], progress=False)
    assert verdicts[0].score == 1 and verdicts[0].cached
    assert verdicts[1].status == "unscored" and (verdicts[1].reason or "").startswith(NO_JUDGE_REASON)
    assert judge.stats.calls == 0


def test_local_server_needs_no_key(server: FakeChatServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OBV_UNSET_KEY", raising=False)
    config = JudgeConfig(base_url=server.base_url, api_key_env="OBV_UNSET_KEY")
    assert judge_available(config)[0]
    assert Judge(config).judge(ITEMS[0]).score == 1
    assert server.chat_requests[0].headers["authorization"] == "Bearer EMPTY"


def test_key_never_written_or_logged(
    server: FakeChatServer,
    key_env: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)  # openai and httpx debug logs included
    cache_path = tmp_path / "judge.sqlite"
    config = make_config(server, key_env, cache_path=str(cache_path), max_retries=1)
    server.push_faults(Fault.SERVER_ERROR, Fault.SERVER_ERROR)
    judge = Judge(config)
    verdicts = judge.judge_many(ITEMS, progress=True)
    judge.cache.close()
    assert any(r.headers.get("authorization") == f"Bearer {SECRET}" for r in server.chat_requests)
    written = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.is_file())
    assert len(written) > 0 and SECRET.encode() not in written
    assert SECRET not in json.dumps(config.describe())
    assert SECRET not in repr(config) and SECRET not in json.dumps(judge.stats.to_dict())
    assert all(SECRET not in repr(v) for v in verdicts)
    out, err = capsys.readouterr()
    assert "judge gpt-4o" in err  # the progress bar went to stderr
    assert SECRET not in out + err
    assert caplog.records and SECRET not in caplog.text


def test_describe_is_provenance_without_secrets_or_paths(key_env: str) -> None:
    # A URL carrying credentials or a query is refused (issue 24), and the refusal quotes neither.
    with pytest.raises(ValueError) as refused:
        JudgeConfig(base_url="http://user:pw@10.0.0.5:8000/v1/?token=abc", api_key_env=key_env)
    assert "pw" not in str(refused.value) and "abc" not in str(refused.value)
    config = JudgeConfig(
        base_url="http://10.0.0.5:8000/v1/", api_key_env=key_env, cache_path="/home/me/c.sqlite"
    )
    described = config.describe()
    assert described["endpoint_host"] == "10.0.0.5:8000"
    # the study's rubric is the default preset (issue 15)
    assert described["preset"] == "study-rubric" and described["prompt_version"] == "study-rubric-r1"
    assert len(described["prompt_sha256"]) == 64
    text = json.dumps(described)
    assert "pw" not in text and "abc" not in text and "/home/me" not in text
    assert JudgeConfig().describe()["endpoint_host"] == "api.openai.com"


def test_config_rejects_impossible_settings() -> None:
    with pytest.raises(ValueError, match="prompt_version"):
        JudgeConfig(prompt_version="v0")
    with pytest.raises(ValueError, match="concurrency"):
        JudgeConfig(concurrency=0)


def test_judge_many_from_a_worker_thread(server: FakeChatServer, key_env: str) -> None:
    # judge_many owns its event loop, so a caller's thread pool can use it.
    results: list[int | None] = []
    worker = threading.Thread(
        target=lambda: results.extend(
            v.score for v in Judge(make_config(server, key_env)).judge_many(ITEMS, progress=False)
        )
    )
    worker.start()
    worker.join()
    assert results == [1, 0, 1]
