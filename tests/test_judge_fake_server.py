"""The fake OpenAI chat server itself behaves like the API it stands in for."""

from __future__ import annotations

import time

import httpx
import openai
import pytest
from fake_chat_server import FakeChatServer, Fault, fake_chat_server_fixture  # noqa: F401 (fixture)


def test_chat_completion_models_and_recording() -> None:
    with FakeChatServer(reply=lambda request: "hello there", model="tiny") as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="sk-abc", max_retries=0)
        completion = client.chat.completions.create(
            model="tiny", messages=[{"role": "user", "content": "one two three"}]
        )
        assert completion.choices[0].message.content == "hello there"
        assert completion.usage is not None
        assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (3, 2)
        assert [m.id for m in client.models.list()] == ["tiny"]
        assert server.calls == 1 and len(server.requests) == 2
        chat = server.chat_requests[0]
        assert chat.path == "/v1/chat/completions" and chat.headers["authorization"] == "Bearer sk-abc"
        assert chat.body is not None and chat.body["messages"][0]["content"] == "one two three"


def test_streaming_with_usage_and_multimodal_content() -> None:
    with FakeChatServer(reply=lambda request: "a streamed answer") as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="k", max_retries=0)
        stream = client.chat.completions.create(
            model="m",
            messages=[
                {
                    "role": "user",
                    "content": [
                        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                        {"type": "text", "text": "describe it"},
                    ],
                }
            ],
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "a streamed answer"
    assert chunks[-1].usage is not None and chunks[-1].usage.prompt_tokens == 2


def test_faults_in_order_then_fault_fn_then_normal() -> None:
    with FakeChatServer(
        reply=lambda request: "ok", fault_fn=lambda i, body: Fault.SERVER_ERROR if i == 3 else None
    ) as server:
        server.push_faults(Fault.RATE_LIMIT, "malformed_json", Fault.BAD_REQUEST)
        url = f"{server.base_url}/chat/completions"
        payload = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
        responses = [httpx.post(url, json=payload) for _ in range(5)]
    assert [r.status_code for r in responses] == [429, 200, 400, 500, 200]
    assert responses[0].headers["retry-after"] == "0"
    with pytest.raises(ValueError):
        responses[1].json()
    assert responses[4].json()["choices"][0]["message"]["content"] == "ok"
    assert server.calls == 5


def test_hang_outlasts_client_timeout_and_stop_is_prompt() -> None:
    server = FakeChatServer(hang_s=30.0).start()
    server.push_faults(Fault.TIMEOUT)
    client = openai.OpenAI(base_url=server.base_url, api_key="k", max_retries=0, timeout=0.2)
    with pytest.raises(openai.APITimeoutError):
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    started = time.perf_counter()
    server.stop()
    assert time.perf_counter() - started < 2


def test_latency_and_api_key_check() -> None:
    with FakeChatServer(latency_s=0.2, api_key="right") as server:
        good = openai.OpenAI(base_url=server.base_url, api_key="right", max_retries=0)
        started = time.perf_counter()
        good.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
        assert time.perf_counter() - started >= 0.2
        bad = openai.OpenAI(base_url=server.base_url, api_key="wrong", max_retries=0)
        with pytest.raises(openai.AuthenticationError):
            bad.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])


def test_reject_response_format() -> None:
    with FakeChatServer(reply=lambda request: "1", reject_response_format=True) as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="k", max_retries=0)
        with pytest.raises(openai.BadRequestError):
            client.chat.completions.create(
                model="m",
                messages=[{"role": "user", "content": "hi"}],
                response_format={"type": "json_object"},
            )
        plain = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
        assert plain.choices[0].message.content == "1"


def test_pytest_fixture(fake_chat_server: FakeChatServer) -> None:
    assert httpx.get(f"{fake_chat_server.base_url}/models").status_code == 200
