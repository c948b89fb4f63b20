"""A real HTTP server that speaks the OpenAI chat-completions protocol, for tests and benchmarks.

It listens on 127.0.0.1 (a free port) in a background thread and answers
``POST /v1/chat/completions`` (plain and ``stream: true``) and ``GET /v1/models`` in the OpenAI
response format, usage included. Behaviour is scriptable:

- ``reply``: a function (request JSON) -> reply text (``None`` gives ``content: null``);
- faults, one per call: pushed in order with :meth:`FakeChatServer.push_faults`, or chosen by
  ``fault_fn(call_index, request_json)``: HTTP 429 (``retry-after: 0``), HTTP 500, a hang longer
  than the client timeout, a 200 with a malformed JSON body, HTTP 400;
- ``latency_s``: a fixed delay before every answer;
- ``reject_response_format``: answer 400 to requests carrying ``response_format`` (as servers
  without structured outputs do);
- ``api_key``: when set, requests without ``Authorization: Bearer <api_key>`` get 401 (whose
  message echoes the key received, as a careless server might).

Every request is recorded (path, headers, JSON body); chat calls are counted, faults included,
and ``max_in_flight`` is the most calls answered at once.
Only the standard library is used, so it runs wherever the tests run.

Use it as a context manager::

    with FakeChatServer(reply=lambda req: '{"verdict": 1}', latency_s=0.2) as server:
        client = OpenAI(base_url=server.base_url, api_key="sk-test")

or the ``fake_chat_server`` fixture: list this module in ``pytest_plugins`` of the root conftest,
or ``from fake_chat_server import fake_chat_server_fixture  # noqa: F401`` in a test module.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

ReplyFn = Callable[[dict[str, Any]], str | None]


class Fault(StrEnum):
    """Failure injected into one chat-completions call."""

    RATE_LIMIT = "429"
    SERVER_ERROR = "500"
    BAD_REQUEST = "400"
    TIMEOUT = "timeout"  # hangs for ``hang_s`` before answering (set it above the client timeout)
    MALFORMED_JSON = "malformed_json"  # status 200, body that is not JSON


FaultFn = Callable[[int, dict[str, Any]], Fault | None]


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]  # lower-cased names
    body: dict[str, Any] | None


def default_reply(request: dict[str, Any]) -> str:
    return "Hello from the fake chat server."


def count_tokens(text: str) -> int:
    """Whitespace token count: deterministic stand-in for a tokenizer."""
    return len(text.split())


def _prompt_text(request: dict[str, Any]) -> str:
    parts: list[str] = []
    for message in request.get("messages") or []:
        content = message.get("content")
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, list):  # multimodal: count only text parts
            parts.extend(p.get("text", "") for p in content if isinstance(p, dict))
    return "\n".join(parts)


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # a hanging handler must not block shutdown
    fake: FakeChatServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that timed out close their socket; writing to it afterwards is expected here.
        pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like real servers
    disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms Nagle stall
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # silence per-request stderr lines
        pass

    def do_GET(self) -> None:
        fake = self.server.fake
        fake._record(self, None)
        if self.path.rstrip("/") != "/v1/models":
            self._send_json(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})
            return
        self._send_json(
            200,
            {
                "object": "list",
                "data": [
                    {"id": fake.model, "object": "model", "created": 0, "owned_by": "fake"}
                    | ({"root": fake.root} if fake.root is not None else {})
                ],
            },
        )

    def do_POST(self) -> None:
        fake = self.server.fake
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else {}
        except json.JSONDecodeError:
            fake._record(self, None)
            self._send_json(400, _error("request body is not JSON", "invalid_request_error", 400))
            return
        index = fake._record(self, body)
        if self.path.rstrip("/") != "/v1/chat/completions":
            self._send_json(404, _error(f"no route {self.path}", "not_found", 404))
            return
        auth = self.headers.get("authorization") or ""
        if fake.api_key is not None and auth != f"Bearer {fake.api_key}":
            # Echoes the key it got, as a careless server might: callers must not pass it on.
            message = f"Incorrect API key provided: {auth.removeprefix('Bearer ')}."
            self._send_json(401, _error(message, "invalid_request_error", 401))
            return
        with fake._in_flight():
            self._answer(fake, index, body)

    def _answer(self, fake: FakeChatServer, index: int, body: dict[str, Any]) -> None:
        if fake.latency_s:
            time.sleep(fake.latency_s)
        fault = fake._next_fault(index, body)
        if fault is Fault.RATE_LIMIT:
            self._send_json(
                429, _error("Rate limit reached.", "rate_limit_exceeded", 429), {"retry-after": "0"}
            )
        elif fault is Fault.SERVER_ERROR:
            self._send_json(500, _error("The server had an error.", "server_error", 500))
        elif fault is Fault.BAD_REQUEST:
            self._send_json(400, _error("Bad request.", "invalid_request_error", 400))
        elif fault is Fault.TIMEOUT:
            fake._stopping.wait(fake.hang_s)
            self._send_json(200, fake._completion(body))
        elif fault is Fault.MALFORMED_JSON:
            self._send_bytes(200, b'{"id": "chatcmpl-broken", "choices": [', "application/json")
        elif fake.reject_response_format and "response_format" in body:
            self._send_json(
                400, _error("response_format is not supported by this server.", "BadRequestError", 400)
            )
        elif body.get("stream"):
            self._send_stream(fake, body)
        else:
            self._send_json(200, fake._completion(body))

    def _send_stream(self, fake: FakeChatServer, body: dict[str, Any]) -> None:
        completion = fake._completion(body)
        base = {k: completion[k] for k in ("id", "created", "model")} | {"object": "chat.completion.chunk"}
        text = completion["choices"][0]["message"]["content"]
        chunks = [
            base | {"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]},
            base | {"choices": [{"index": 0, "delta": {"content": text}}]},
            base | {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
        ]
        if (body.get("stream_options") or {}).get("include_usage"):
            chunks.append(base | {"choices": [], "usage": completion["usage"]})
        payload = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"
        self._send_bytes(200, payload.encode(), "text/event-stream")

    def _send_json(self, status: int, obj: Any, headers: dict[str, str] | None = None) -> None:
        self._send_bytes(status, json.dumps(obj).encode(), "application/json", headers)

    def _send_bytes(
        self, status: int, data: bytes, content_type: str, headers: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)


def _error(message: str, kind: str, code: int) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


class FakeChatServer:
    """OpenAI-compatible chat server on 127.0.0.1 with scripted replies and injected faults."""

    def __init__(
        self,
        reply: ReplyFn = default_reply,
        *,
        latency_s: float = 0.0,
        hang_s: float = 5.0,
        model: str = "fake-model",
        reject_response_format: bool = False,
        api_key: str | None = None,
        fault_fn: FaultFn | None = None,
        served_model: str | None = None,
        system_fingerprint: str = "fake",
        root: str | None = None,
    ) -> None:
        self.reply = reply
        # what the answer says answered: the requested name unless ``served_model`` is set (a
        # server that maps a name to a snapshot, as the OpenAI API maps "gpt-4o")
        self.served_model = served_model
        self.system_fingerprint = system_fingerprint
        self.latency_s = latency_s
        self.hang_s = hang_s
        self.model = model
        self.root = root  # vLLM's /v1/models "root": the checkpoint served under `model`
        self.reject_response_format = reject_response_format
        self.api_key = api_key
        self.fault_fn = fault_fn
        self.requests: list[RecordedRequest] = []
        self.calls = 0  # chat-completions POSTs, faulted ones included
        self.max_in_flight = 0  # most chat calls being answered at once
        self._in_flight_now = 0
        self._faults: deque[Fault] = deque()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- scripting ----------------------------------------------------------------------------
    def push_faults(self, *faults: Fault | str) -> None:
        """Queue faults; each chat call consumes one, in order, before ``fault_fn`` is asked."""
        with self._lock:
            self._faults.extend(Fault(f) for f in faults)

    def reset(self) -> None:
        """Forget recorded requests, the call count and queued faults."""
        with self._lock:
            self.requests.clear()
            self.calls = 0
            self.max_in_flight = 0
            self._faults.clear()

    @property
    def chat_requests(self) -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self.requests if r.method == "POST"]

    # -- lifecycle ----------------------------------------------------------------------------
    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("server not started")
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> FakeChatServer:
        httpd = _Server(("127.0.0.1", 0), _Handler)  # port 0: the OS picks a free port
        httpd.fake = self
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, name="fake-chat-server", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # wakes handlers that simulate a hang
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeChatServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- used by the handler ------------------------------------------------------------------
    def _record(self, handler: BaseHTTPRequestHandler, body: dict[str, Any] | None) -> int:
        headers = {k.lower(): v for k, v in handler.headers.items()}
        with self._lock:
            self.requests.append(RecordedRequest(handler.command, handler.path, headers, body))
            if handler.command != "POST":
                return -1
            index = self.calls
            self.calls += 1
            return index

    @contextlib.contextmanager
    def _in_flight(self) -> Iterator[None]:
        with self._lock:
            self._in_flight_now += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight_now)
        try:
            yield
        finally:
            with self._lock:
                self._in_flight_now -= 1

    def _next_fault(self, index: int, body: dict[str, Any]) -> Fault | None:
        with self._lock:
            if self._faults:
                return self._faults.popleft()
        return self.fault_fn(index, body) if self.fault_fn is not None else None

    def _completion(self, body: dict[str, Any]) -> dict[str, Any]:
        text = self.reply(body)
        prompt_tokens = count_tokens(_prompt_text(body))
        completion_tokens = count_tokens(text or "")
        return {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "created": 0,
            "model": self.served_model or body.get("model", self.model),
            "system_fingerprint": self.system_fingerprint,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": "stop",
                    "logprobs": None,
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }


def free_port() -> int:
    """A port that was free a moment ago (for tests that need a refused connection)."""
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(name="fake_chat_server")
def fake_chat_server_fixture() -> Iterator[FakeChatServer]:
    """A started :class:`FakeChatServer`; set ``reply``/``latency_s``/faults on it in the test."""
    with FakeChatServer() as server:
        yield server
