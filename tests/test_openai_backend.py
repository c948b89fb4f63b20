"""The OpenAI-compatible backend against a real local HTTP server with injected faults.

Every failure mode ends as that item's GenerationOutput(error=...), within the client's timeout and
retry budget: nothing hangs and nothing stops the run. The API key never leaves the HTTP header.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fake_chat_server import FakeChatServer, Fault, free_port
from PIL import Image

from obv_eval.backends.base import GenerationRequest, GenerationSettings, MediaSettings, load_visuals
from obv_eval.backends.openai_compat import (
    DEFAULT_MAX_PAYLOAD_BYTES,
    OpenAICompatBackend,
    build_chat_request,
    encode_jpeg,
    encode_png,
    image_part,
    payload_bytes,
    video_part,
)
from obv_eval.sources import SAMPLES_DIR, MediaRef

SECRET = "sk-test-SECRET123"
KEY_ENV = "OBV_TEST_OPENAI_KEY"
VIDEO = MediaRef("video", "Qm7_vB2xKpL_112_115.mp4", str(SAMPLES_DIR / "media" / "surgeryvqa"))
IMAGE = MediaRef("image", "synpic59536.jpg", str(SAMPLES_DIR / "media" / "vqarad"))


def _text_requests(n: int) -> list[GenerationRequest]:
    return [GenerationRequest(("obv_medqa", i), f"Question {i}?") for i in range(n)]


def _backend(fake: FakeChatServer, **kwargs: Any) -> OpenAICompatBackend:
    options: dict[str, Any] = {"max_retries": 1, "timeout_s": 5.0, "api_key_env": KEY_ENV} | kwargs
    return OpenAICompatBackend("fake-model", base_url=fake.base_url, **options)


def _decode(url: str) -> list[np.ndarray]:
    _, _, payload = url.partition(",")
    return [np.asarray(Image.open(io.BytesIO(base64.b64decode(chunk)))) for chunk in payload.split(",")]


# ---------------------------------------------------------------------------------------------------
# Normal replies


def test_replies_tokens_and_what_a_vllm_server_receives() -> None:
    with FakeChatServer(reply=lambda body: "  Liver edge. ") as server:
        backend = _backend(server, generation=GenerationSettings(max_new_tokens=9, seed=4))
        requests = [
            GenerationRequest(("obv_surgeryvqa", 0), "What is retracted?", (VIDEO,)),
            GenerationRequest(("obv_vqarad", 0), "Is it normal?", (IMAGE,)),
            *_text_requests(1),
        ]
        video, image, text = backend.generate(requests, progress=False)
        bodies = {json.dumps(r.body["messages"][0]["content"][-1]): r.body for r in server.chat_requests}
    assert (video.text, video.error) == ("Liver edge.", None)
    assert video.output_tokens == 2 and video.prompt_tokens == 3  # the server's usage, not a guess
    assert text.prompt_tokens == 2 and image.error is None

    sampled = load_visuals((VIDEO,), MediaSettings()).videos[0]
    body = bodies[json.dumps({"type": "text", "text": "What is retracted?"})]
    (part, question) = body["messages"][0]["content"]
    assert part["type"] == "video_url" and part["video_url"]["url"].startswith("data:video/jpeg;base64,")
    frames = _decode(part["video_url"]["url"])
    assert video.frames == [len(frames)] == [sampled.num_frames]
    assert frames[0].shape == sampled.frames[0].shape
    assert (
        np.abs(frames[0].astype(int) - sampled.frames[0].astype(int)).mean() < 3
    )  # JPEG q95 of the same frame
    assert question == {"type": "text", "text": "What is retracted?"}
    assert (body["temperature"], body["top_p"], body["max_tokens"], body["seed"]) == (0.0, 1.0, 9, 4)
    assert (body["top_k"], body["repetition_penalty"]) == (0, 1.0)  # overrides generation_config

    image_body = bodies[json.dumps({"type": "text", "text": "Is it normal?"})]
    url = image_body["messages"][0]["content"][0]["image_url"]["url"]
    assert url.startswith("data:image/png;base64,")
    (pixels,) = _decode(url)
    assert np.array_equal(pixels, np.asarray(load_visuals((IMAGE,), MediaSettings()).images[0]))  # lossless


def test_openai_api_gets_frames_as_images_and_only_standard_fields(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, SECRET)
    with FakeChatServer(reply=lambda body: "ok") as server:
        backend = _backend(server, server="openai")
        assert backend.video_mode == "frames"
        (output,) = backend.generate([GenerationRequest(("t", 0), "What?", (VIDEO,))], progress=False)
        (recorded,) = server.chat_requests
    assert output.error is None
    content = recorded.body["messages"][0]["content"]
    assert [p["type"] for p in content] == ["image_url"] * output.frames[0] + ["text"]
    assert all(p["image_url"]["url"].startswith("data:image/jpeg;base64,") for p in content[:-1])
    assert not {"top_k", "repetition_penalty", "min_p"} & set(recorded.body)  # OpenAI refuses these


def test_encoding_is_deterministic() -> None:
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 255, size=(56, 84, 3), dtype=np.uint8)
    assert encode_jpeg(frame) == encode_jpeg(frame.copy())
    assert encode_png(Image.fromarray(frame)) == encode_png(Image.fromarray(frame.copy()))
    first = build_chat_request(
        GenerationRequest(("t", 0), "q", (VIDEO,)), MediaSettings(), "m", GenerationSettings(), "video"
    )
    again = build_chat_request(
        GenerationRequest(("t", 0), "q", (VIDEO,)), MediaSettings(), "m", GenerationSettings(), "video"
    )
    assert first == again


# ---------------------------------------------------------------------------------------------------
# Faults: each fails its item alone, with a reason, in bounded time


def test_rate_limit_is_retried_then_succeeds() -> None:
    with FakeChatServer(reply=lambda body: "fine") as server:
        server.push_faults(Fault.RATE_LIMIT)
        (output,) = _backend(server).generate(_text_requests(1), progress=False)
        assert server.calls == 2
    assert (output.text, output.error) == ("fine", None)


@pytest.mark.parametrize(("fault", "status"), [(Fault.RATE_LIMIT, 429), (Fault.SERVER_ERROR, 500)])
def test_persistent_http_errors_fail_the_item_after_retries(fault: Fault, status: int) -> None:
    # Item 0 always fails; item 1 is answered: one bad item never stops the others.
    def faults(index: int, body: dict[str, Any]) -> Fault | None:
        return fault if "Question 0?" in json.dumps(body) else None

    with FakeChatServer(reply=lambda body: "fine", fault_fn=faults) as server:
        started = time.monotonic()
        bad, good = _backend(server, max_retries=2).generate(_text_requests(2), progress=False)
        elapsed = time.monotonic() - started
        calls = server.calls
    assert bad.error == f"HTTP {status} after 2 retries" and bad.text == ""
    assert (good.text, good.error) == ("fine", None)
    assert calls == 3 + 1
    assert elapsed < 5  # backoff 0.5 s then 1 s, at most


def test_bad_request_is_not_retried_and_says_why() -> None:
    with FakeChatServer() as server:
        server.push_faults(Fault.BAD_REQUEST)
        (output,) = _backend(server, max_retries=3).generate(_text_requests(1), progress=False)
        assert server.calls == 1
    assert output.error == "HTTP 400: Bad request."


def test_timeout_fails_the_item_without_hanging() -> None:
    with FakeChatServer(reply=lambda body: "late", hang_s=30) as server:
        server.push_faults(Fault.TIMEOUT, Fault.TIMEOUT)
        started = time.monotonic()
        (output,) = _backend(server, timeout_s=0.3, max_retries=1).generate(_text_requests(1), progress=False)
        elapsed = time.monotonic() - started
    assert output.error == "timeout (0.3 s) after 1 retries"
    assert elapsed < 5


def test_malformed_and_empty_bodies_fail_the_item() -> None:
    with FakeChatServer(reply=lambda body: None if "Question 1?" in json.dumps(body) else "ok") as server:
        server.push_faults(Fault.MALFORMED_JSON)
        outputs = _backend(server, concurrency=1).generate(_text_requests(3), progress=False)
    assert outputs[0].error == "malformed response body (not a chat completion)"
    assert outputs[1].error == "reply without content"
    assert (outputs[2].text, outputs[2].error) == ("ok", None)


def test_unreachable_server_fails_every_item_quickly() -> None:
    backend = OpenAICompatBackend(
        "m", base_url=f"http://127.0.0.1:{free_port()}/v1", max_retries=1, timeout_s=2, api_key_env=KEY_ENV
    )
    started = time.monotonic()
    outputs = backend.generate(_text_requests(3), progress=False)
    assert all(o.error == "connection error after 1 retries" for o in outputs)
    assert time.monotonic() - started < 5


def test_missing_media_fails_before_any_call(tmp_path: Path) -> None:
    with FakeChatServer() as server:
        request = GenerationRequest(("t", 0), "q", (MediaRef("video", "gone.mp4", str(tmp_path)),))
        (output,) = _backend(server).generate([request], progress=False)
        assert server.calls == 0
    assert output.error is not None and output.error.startswith("MediaError: video file not found")


def test_concurrency_is_bounded_and_results_keep_their_order() -> None:
    with FakeChatServer(
        reply=lambda body: body["messages"][0]["content"][-1]["text"], latency_s=0.2
    ) as server:
        started = time.monotonic()
        outputs = _backend(server, concurrency=4).generate(_text_requests(16), progress=False)
        elapsed = time.monotonic() - started
        in_flight = server.max_in_flight
    assert [o.text for o in outputs] == [f"Question {i}?" for i in range(16)]
    assert in_flight == 4
    assert 0.8 <= elapsed < 3  # 16 calls / 4 at a time x 0.2 s


# ---------------------------------------------------------------------------------------------------
# The API key


def test_api_key_reaches_only_the_authorization_header(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv(KEY_ENV, SECRET)
    caplog.set_level(logging.DEBUG)  # openai and httpx log requests at DEBUG
    with FakeChatServer(reply=lambda body: "ok", api_key=SECRET) as server:
        backend = _backend(server)
        good = backend.generate(_text_requests(1), progress=False)
        assert server.chat_requests[0].headers["authorization"] == f"Bearer {SECRET}"
    with FakeChatServer(api_key="sk-the-right-one") as server:  # its 401 message echoes the key it got
        bad = _backend(server).generate(_text_requests(1), progress=False)
    assert good[0].error is None
    assert bad[0].error is not None and bad[0].error.startswith("HTTP 401") and "[redacted]" in bad[0].error
    for text in (json.dumps(backend.describe()), repr(good), repr(bad), caplog.text, repr(vars(backend))):
        assert SECRET not in text


def test_the_openai_api_without_a_key_is_refused_up_front(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    with pytest.raises(ValueError, match=KEY_ENV):
        OpenAICompatBackend("gpt-4o", api_key_env=KEY_ENV)
    monkeypatch.setenv(KEY_ENV, SECRET)
    backend = OpenAICompatBackend("gpt-4o", api_key_env=KEY_ENV)
    assert backend.endpoint == "https://api.openai.com/v1" and backend.video_mode == "frames"
    assert SECRET not in json.dumps(backend.describe())


# ---------------------------------------------------------------------------------------------------
# The lmms-eval adapter end to end


def test_obv_openai_adapter_runs_a_task(samples_source: None) -> None:
    from lmms_eval.evaluator import simple_evaluate
    from lmms_eval.tasks import TaskManager
    from obv_eval.model_adapters.openai import ObvOpenAI

    from obv_eval.sources import tasks_package_dir

    with FakeChatServer(reply=lambda body: "Liver edge.") as server:
        server.push_faults(Fault.BAD_REQUEST)  # the first item fails alone
        adapter = ObvOpenAI(
            pretrained="fake-model", base_url=server.base_url, max_retries=0, progress=False, batch_size=1
        )
        manager = TaskManager(
            include_path=str(tasks_package_dir()), include_defaults=False, verbosity="ERROR"
        )
        output = simple_evaluate(
            model=adapter,
            tasks=["obv_surgeryvqa"],
            task_manager=manager,
            limit=3,
            log_samples=True,
            bootstrap_iters=0,
            verbosity="ERROR",
        )
        calls = server.calls
    assert output is not None and calls == 3
    errors = [o.error for o in adapter.outputs.values()]
    assert sorted(errors, key=str) == ["HTTP 400: Bad request.", None, None]
    assert all(o.frames and o.frames[0] >= 4 for o in adapter.outputs.values())
    assert adapter.backend.describe()["video_mode"] == "video"


def test_a_refused_key_stops_the_run_sending_requests(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, SECRET)
    with FakeChatServer(api_key="sk-the-right-one") as server:
        outputs = _backend(server, concurrency=1).generate(_text_requests(5), progress=False)
        sent = len(server.chat_requests)
    assert sent == 1  # one refusal, then nothing more reaches the server
    assert outputs[0].error is not None and outputs[0].error.startswith("HTTP 401")
    for later in outputs[1:]:
        assert later.error is not None and later.error.startswith("not sent: the server refused")
        assert SECRET not in later.error


# ---------------------------------------------------------------------------------------------------
# Encoded media in flight, bounded in bytes


def _noise_image(seed: int, side: int) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, (side, side, 3), dtype=np.uint8)
    return Image.fromarray(pixels, mode="RGB")


def _image_requests(images: list[Image.Image]) -> list[GenerationRequest]:
    return [GenerationRequest(("obv_vqarad", i), f"Image {i}?", (image,)) for i, image in enumerate(images)]


LATENCY_S = 0.3


class _InFlight:
    """Which requests the client held at once, seen from the fake server. Each reply is computed at
    least LATENCY_S after its request arrived and before the client can read it (and free its room), so
    requests whose windows [reply - LATENCY_S, reply] overlap were in flight together: never an overcount."""

    def __init__(self) -> None:
        self.windows: dict[str, tuple[float, int]] = {}  # question -> (reply time, body bytes)

    def reply(self, body: dict[str, Any]) -> str:
        question = body["messages"][0]["content"][-1]["text"]
        self.windows[question] = (time.monotonic(), len(json.dumps(body)))
        return question

    def together(self) -> tuple[int, int]:
        """Most requests, and their body bytes, in flight at once (the most overlapping windows meet at
        the start of one of them)."""
        best = (0, 0)
        for start, _ in ((end - LATENCY_S, n) for end, n in self.windows.values()):
            held = [n for end, n in self.windows.values() if end - LATENCY_S <= start <= end]
            best = max(best, (len(held), sum(held)))
        return best

    def beside(self, question: str) -> int:
        """Other requests whose windows overlap this one's."""
        end = self.windows[question][0]
        return sum(
            1
            for name, (t, _) in self.windows.items()
            if name != question and t - LATENCY_S <= end and t >= end - LATENCY_S
        )


def _sent_bytes(request: GenerationRequest) -> int:
    """The encoded media the backend sends for this request (images are resized by the media rules)."""
    body = build_chat_request(request, MediaSettings(), "fake-model", GenerationSettings(), "video")
    return payload_bytes(body)


def _run(images: list[Image.Image], **options: Any) -> tuple[list[Any], _InFlight, OpenAICompatBackend, int]:
    probe = _InFlight()
    with FakeChatServer(reply=probe.reply, latency_s=LATENCY_S) as server:
        backend = _backend(server, concurrency=8, **options)
        outputs = backend.generate(_image_requests(images), progress=False)
        overhead = max(
            len(json.dumps(r.body)) - payload_bytes(r.body) for r in server.chat_requests if r.body
        )
    return outputs, probe, backend, overhead


def test_encoded_media_in_flight_stays_within_the_byte_bound() -> None:
    images = [_noise_image(seed, 96) for seed in range(8)]
    sizes = [_sent_bytes(request) for request in _image_requests(images)]
    size = max(sizes)
    budget = int(2.5 * min(sizes))  # room for two requests at a time, not three
    assert 3 * size > budget >= 2 * size

    outputs, probe, backend, overhead = _run(images, max_payload_bytes=budget)
    assert [o.text for o in outputs] == [f"Image {i}?" for i in range(8)]  # order and texts kept
    assert all(o.error is None for o in outputs)
    assert size < backend.peak_payload_bytes <= budget  # the backend's own accounting
    assert backend.describe()["max_payload_bytes"] == budget
    requests_in_flight, bytes_in_flight = probe.together()
    assert requests_in_flight == 2  # concurrency 8 would allow 8: the bytes bound it
    assert bytes_in_flight <= budget + requests_in_flight * overhead  # bodies = media + a little JSON

    # The same items without a tight bound: more requests overlap, the same outputs come back.
    unbounded, probe, backend, _ = _run(images)
    assert [o.text for o in unbounded] == [o.text for o in outputs]
    assert probe.together()[0] > 2
    assert backend.describe()["max_payload_bytes"] == DEFAULT_MAX_PAYLOAD_BYTES


def test_a_request_over_the_byte_bound_is_sent_alone() -> None:
    images = [_noise_image(0, 64), _noise_image(1, 160), _noise_image(2, 64), _noise_image(3, 64)]
    sizes = [_sent_bytes(request) for request in _image_requests(images)]
    budget = sizes[0] + sizes[2] + sizes[3]  # the three small ones fit together
    assert sizes[1] > budget  # the large one does not fit at all

    outputs, probe, backend, _ = _run(images, max_payload_bytes=budget)
    assert [o.text for o in outputs] == [f"Image {i}?" for i in range(4)]
    assert all(o.error is None for o in outputs)
    assert probe.beside("Image 1?") == 0  # nothing else in flight beside it
    assert backend.peak_payload_bytes > budget  # it ran (alone), it was not refused


def test_payload_bytes_counts_the_data_urls() -> None:
    image = _noise_image(5, 32)
    frames = np.zeros((3, 28, 28, 3), dtype=np.uint8)
    body = {
        "messages": [
            {
                "role": "user",
                "content": [image_part(image), video_part(frames), {"type": "text", "text": "q"}],
            }
        ]
    }
    expected = len(body["messages"][0]["content"][0]["image_url"]["url"]) + len(
        body["messages"][0]["content"][1]["video_url"]["url"]
    )
    assert payload_bytes(body) == expected
    assert payload_bytes({"messages": [{"role": "user", "content": "text only"}]}) == 0
    with pytest.raises(ValueError, match="max_payload_bytes"):
        OpenAICompatBackend("m", base_url="http://127.0.0.1:1/v1", max_payload_bytes=0)


# ---------------------------------------------------------------------------------------------------
# Behind `vllm serve --data-parallel-size N`: a clip's questions go to one rank


def test_each_clips_questions_carry_one_data_parallel_rank(tmp_path: Path) -> None:
    from obv_eval.data.synth import write_video

    requests = []
    for clip in range(6):
        write_video(tmp_path / f"clip{clip}.mp4", num_frames=4, fps=2, width=56, height=56, seed=clip)
        ref = MediaRef("video", f"clip{clip}.mp4", str(tmp_path))
        for q in range(3):
            requests.append(GenerationRequest(("v", len(requests)), f"Q{q} on clip {clip}?", (ref,)))
    requests += _text_requests(4)
    with FakeChatServer(reply=lambda body: "ok") as server:
        outputs = _backend(server, data_parallel_ranks=2).generate(requests, progress=False)
        sent = [(r.body["messages"][0]["content"][-1], r.headers) for r in server.chat_requests]
    assert all(o.error is None for o in outputs)
    ranks: dict[str, set[str]] = {}
    for content, headers in sent:
        text = content["text"] if isinstance(content, dict) else str(content)
        clip = text.rsplit(" ", 1)[-1].rstrip("?") if "clip" in text else text
        ranks.setdefault(clip, set()).add(headers["x-data-parallel-rank"])
    clips = {name: got for name, got in ranks.items() if name.isdigit()}
    assert len(clips) == 6 and all(len(got) == 1 for got in clips.values())  # one rank per clip
    assert set().union(*clips.values()) == {"0", "1"}  # both ranks serve clips
    assert set().union(*ranks.values()) <= {"0", "1"}
    # Without the option no header is sent (a server without data parallelism may refuse it).
    with FakeChatServer(reply=lambda body: "ok") as server:
        _backend(server).generate(requests[:2], progress=False)
        assert all("x-data-parallel-rank" not in r.headers for r in server.chat_requests)
