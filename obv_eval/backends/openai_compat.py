"""The OpenAI-compatible backend: a running vLLM server (`--base-url`) or the OpenAI API (gpt-4o).

The harness sends its own frames (obv_eval.media), so a served model sees exactly what the offline
backends see: a video as one ``video_url`` part holding a data URL of JPEG frames
(``data:video/jpeg;base64,<f1>,<f2>,...``, which vLLM's server turns back into a frame array without
re-sampling), or, for APIs and model families without video input (OpenAI, Gemma 3), as that many
``image_url`` parts. Images go as lossless PNG data URLs. The content order is
conversation.build_messages' (visuals, then text); the server renders it with the model's chat template.

Where the served model's family is known (obv_eval.models: an explicit family, the local processor's, the
registry entry named like the served model, or a checkpoint folder of that name), a request to a vLLM
server also carries what the transformers backend gives that family's processor (vllm_fields):
``mm_processor_kwargs`` (e.g. do_sample_frames=False) and, for a clip, ``media_io_kwargs`` with
num_frames -1 (the server keeps every frame sent) and, where the family places frames in time
(Qwen2.5-VL, Qwen3-VL), the clip's source fps, total frames and sampled indices, from which vLLM builds
its metadata as the offline backend passes it. The server must be started with
``--trust-request-mm-kwargs`` (vLLM refuses per-request media arguments otherwise: the first refusal
stops the run, each item failing with what to do). Qwen2-VL and an unknown family send nothing more.

Transport faults (connection errors, timeouts, 408/409/429/5xx) are retried with backoff by the
official ``openai`` client (``max_retries``); whatever still fails becomes that item's
GenerationOutput(error=...). Requests in flight are bounded twice: by count (``concurrency``) and by
the bytes of their encoded media (``max_payload_bytes``, the base64 data URLs: a clip's frames as JPEG
are megabytes, and a server holds each body until it answers). A request over the byte bound is sent
alone. The API key is read from the environment when a run starts and never appears in describe(),
outputs or error text.

Behind ``vllm serve --data-parallel-size N`` (``data_parallel_ranks=N``), every question on one clip
carries vLLM's ``X-data-parallel-rank`` header with the same rank (a sha256 of the clip's files, mod N),
so the rank whose prefix cache holds the clip answers them all.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import contextvars
import hashlib
import io
import json
import logging
import os
import sys
from collections import deque
from collections.abc import Callable, Sequence
from importlib import metadata
from typing import Any, Literal, cast

import numpy as np
import openai
from openai.types.chat import ChatCompletionMessageParam
from PIL import Image
from tqdm import tqdm

from obv_eval.backends.base import (
    GenerationOutput,
    GenerationRequest,
    GenerationSettings,
    LoadedVisuals,
    MediaSettings,
    load_visuals,
)
from obv_eval.backends.vllm import processor_kwargs
from obv_eval.conversation import ChatTemplater, Message, build_messages, render_prompt
from obv_eval.frame_policy import policy_name
from obv_eval.judge.config import OPENAI_BASE_URL, sanitize_endpoint
from obv_eval.media import MediaError
from obv_eval.models import Family, UnknownFamily, families, family_of_checkpoint, family_of_processor

log = logging.getLogger(__name__)

VideoMode = Literal["video", "frames"]
ServerKind = Literal["vllm", "openai"]
VIDEO_MODES: tuple[VideoMode, ...] = ("video", "frames")
SERVER_KINDS: tuple[ServerKind, ...] = ("vllm", "openai")
JPEG_QUALITY = 95
# Servers without their own key (a local vLLM) still need a non-empty bearer for the client.
_PLACEHOLDER_KEY = "EMPTY"
_RETRIED_STATUSES = frozenset({408, 409, 429}) | frozenset(range(500, 600))
# Refusals that every later request would meet too (bad key, no permission, no such model): after the
# first, the run sends nothing more, and each remaining item fails with the same reason.
_FATAL_STATUSES = frozenset({401, 403, 404})
# vLLM's server flag without which it refuses per-request media_io_kwargs and mm_processor_kwargs.
TRUST_FLAG = "--trust-request-mm-kwargs"
_MESSAGE_CHARS = 160
MiB = 1 << 20
# Encoded media of the requests in flight: 8 requests of 32 MiB each (a 2-minute clip at 840x476 is
# about 20 MiB of base64 JPEG at quality 95), far under what a vLLM server buffers.
DEFAULT_MAX_PAYLOAD_BYTES = 256 * MiB

# HTTP requests sent for the item handled by the current task (retries included), counted by an
# httpx event hook that runs in the task sending the request.
_attempts: contextvars.ContextVar[list[int] | None] = contextvars.ContextVar(
    "obv_openai_attempts", default=None
)


# ---------------------------------------------------------------------------------------------------
# Deterministic media encoding


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def encode_png(image: Image.Image) -> str:
    """Base64 PNG: lossless, and the same bytes for the same pixels (fixed compression, no metadata)."""
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="PNG", compress_level=6, optimize=False)
    return _b64(buffer.getvalue())


def encode_jpeg(frame: np.ndarray, quality: int = JPEG_QUALITY) -> str:
    """Base64 JPEG of one RGB frame, fixed quality and subsampling (same bytes for the same pixels)."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(frame), mode="RGB").save(
        buffer, format="JPEG", quality=quality, subsampling=0, optimize=False
    )
    return _b64(buffer.getvalue())


def image_part(image: Image.Image) -> dict[str, Any]:
    return {"type": "image_url", "image_url": {"url": "data:image/png;base64," + encode_png(image)}}


def frame_part(frame: np.ndarray, quality: int = JPEG_QUALITY) -> dict[str, Any]:
    return {
        "type": "image_url",
        "image_url": {"url": "data:image/jpeg;base64," + encode_jpeg(frame, quality)},
    }


def video_part(frames: np.ndarray, quality: int = JPEG_QUALITY) -> dict[str, Any]:
    """One video as vLLM's server accepts it: a data URL of comma-separated base64 JPEG frames."""
    url = "data:video/jpeg;base64," + ",".join(encode_jpeg(frame, quality) for frame in frames)
    return {"type": "video_url", "video_url": {"url": url}}


# ---------------------------------------------------------------------------------------------------
# Pure request building (golden-tested)


def chat_messages(
    text: str, visuals: LoadedVisuals, video_mode: VideoMode, jpeg_quality: int = JPEG_QUALITY
) -> list[Message]:
    """conversation.build_messages with each visual placeholder replaced by its data-URL part(s)."""
    if video_mode not in VIDEO_MODES:
        raise ValueError(f"video_mode {video_mode!r} is not one of {', '.join(VIDEO_MODES)}")
    videos, images = iter(visuals.videos), iter(visuals.images)
    messages = []
    for message in build_messages(text, visuals.kinds):
        content: list[dict[str, Any]] = []
        for part in message["content"]:
            if part["type"] == "video":
                frames = next(videos).frames
                if video_mode == "video":
                    content.append(video_part(frames, jpeg_quality))
                else:
                    content.extend(frame_part(frame, jpeg_quality) for frame in frames)
            elif part["type"] == "image":
                content.append(image_part(next(images)))
            else:
                content.append(dict(part))
        messages.append({**message, "content": content})
    return messages


def sampling_fields(settings: GenerationSettings, server: ServerKind) -> dict[str, Any]:
    """Greedy decoding, explicit. vLLM's server also applies the checkpoint's generation_config
    (Qwen2-VL-Instruct: top_k 1, repetition_penalty 1.05) unless told otherwise, so it gets vLLM's
    extra fields too; the OpenAI API refuses unknown fields, so it gets only the standard ones."""
    if settings.do_sample or settings.num_beams != 1:
        raise ValueError("the OpenAI-compatible backend decodes greedily: do_sample=False, num_beams=1")
    fields: dict[str, Any] = {
        "temperature": 0.0,
        "top_p": 1.0,
        "max_tokens": settings.max_new_tokens,
        "seed": settings.seed,
        "n": 1,
    }
    if server == "vllm":
        fields["extra_body"] = {
            "top_k": max(0, settings.top_k),
            "min_p": 0.0,
            "repetition_penalty": settings.repetition_penalty,
            "skip_special_tokens": True,
        }
    return fields


def vllm_fields(family: Family | None, visuals: LoadedVisuals, video_mode: VideoMode) -> dict[str, Any]:
    """vLLM's per-request fields for an item of this family: what the hf backend gives its processor
    beyond the frames (obv_eval.backends.vllm.processor_kwargs), in the server's terms.

    * ``mm_processor_kwargs``: the family's processor arguments (do_sample_frames=False, ...).
    * ``media_io_kwargs.video``, for a clip sent as a video_url: num_frames -1, so the server keeps every
      frame sent (its default keeps the first 32); and where the family places frames in time, the
      clip's fps, total frames and sampled indices, from which vLLM's server builds the clip's metadata
      (without them: 1 fps, indices 0..T-1, so Qwen2.5-VL's second_per_grid_ts and Qwen3-VL's
      timestamps would be wrong). One set per request, so one clip per request.

    Nothing for an unknown family or for Qwen2-VL (its requests stay as they were).
    """
    if family is None:
        return {}
    metadata, kwargs = processor_kwargs(family, visuals)
    fields: dict[str, Any] = {"mm_processor_kwargs": kwargs} if kwargs else {}
    if video_mode == "video" and visuals.videos and (metadata or kwargs):
        video: dict[str, Any] = {"num_frames": -1}
        if len(visuals.videos) > 1 and metadata:
            raise ValueError(f"{family.title} on a vLLM server takes one clip per request (its timing is)")
        if metadata:
            (clip,) = metadata
            video["fps"] = float(clip["fps"])
            video["total_num_frames"] = int(clip["total_num_frames"])
            video["duration"] = float(clip["duration"])
            video["frames_indices"] = [int(i) for i in clip["frames_indices"]]
        fields["media_io_kwargs"] = {"video": video}
    return fields


def chat_request(
    text: str,
    visuals: LoadedVisuals,
    model: str,
    settings: GenerationSettings,
    video_mode: VideoMode,
    server: ServerKind = "vllm",
    jpeg_quality: int = JPEG_QUALITY,
    family: Family | None = None,
) -> dict[str, Any]:
    """Keyword arguments of client.chat.completions.create for an item's already-loaded visuals."""
    body = {
        "model": model,
        "messages": chat_messages(text, visuals, video_mode, jpeg_quality),
        **sampling_fields(settings, server),
    }
    extra = vllm_fields(family, visuals, video_mode) if server == "vllm" else {}
    if extra:
        body["extra_body"] = {**body["extra_body"], **extra}
    return body


def build_chat_request(
    request: GenerationRequest,
    media: MediaSettings,
    model: str,
    settings: GenerationSettings,
    video_mode: VideoMode,
    server: ServerKind = "vllm",
    family: Family | None = None,
) -> dict[str, Any]:
    """What the backend sends for one item; raises MediaError when its media cannot be loaded."""
    visuals = load_visuals(request.visuals, media)
    return chat_request(request.text, visuals, model, settings, video_mode, server, family=family)


def served_family(
    model: str, family: Family | str | None = None, templater: ChatTemplater | None = None
) -> Family | None:
    """The served model's family where it is known: `family` (a Family or its name), else the local
    processor's, else the registry entry named `model`, else a checkpoint folder at `model` (vllm serve
    PATH names the model by its path); None when none says (requests then stay as for Qwen2-VL)."""
    if isinstance(family, Family):
        return family
    if family:
        known = families()
        if family not in known:
            raise ValueError(f"family {family!r} is not one of {', '.join(known)}")
        return known[family]
    if templater is not None:
        try:
            return family_of_processor(templater)
        except UnknownFamily:
            pass
    from obv_eval.registry import MODELS

    entry = MODELS.get(model)
    if entry is not None and entry.family is not None:
        return families().get(entry.family)
    if os.path.isfile(os.path.join(os.path.expanduser(model), "config.json")):
        try:
            return family_of_checkpoint(os.path.expanduser(model))
        except UnknownFamily:
            return None
    return None


def served_model_root(
    endpoint: str, model: str, api_key_env: str = "OPENAI_API_KEY", timeout_s: float = 10.0
) -> str | None:
    """What the server at `endpoint` says it serves under the name `model`: vLLM's ``root`` in
    ``GET /v1/models`` (the checkpoint path or hub id it was started with). None where the server lists
    no root for it or cannot be asked; a run's identity then holds the name alone."""
    import httpx

    key = os.environ.get(api_key_env) or _PLACEHOLDER_KEY
    try:
        response = httpx.get(
            f"{endpoint.rstrip('/')}/models", headers={"Authorization": f"Bearer {key}"}, timeout=timeout_s
        )
        response.raise_for_status()
        listed = response.json().get("data") or []
    except (httpx.HTTPError, ValueError, AttributeError):
        return None
    for card in listed:
        if isinstance(card, dict) and card.get("id") == model and isinstance(card.get("root"), str):
            return str(card["root"])
    return None


def payload_bytes(body: dict[str, Any]) -> int:
    """Bytes of the encoded media (data URLs) in a request body built by chat_request."""
    total = 0
    for message in body.get("messages", ()):
        content = message.get("content")
        if not isinstance(content, list):
            continue
        for part in content:
            for field in ("image_url", "video_url"):
                url = (part.get(field) or {}).get("url") if isinstance(part, dict) else None
                if isinstance(url, str):
                    total += len(url)
    return total


class ByteBudget:
    """Bytes in flight, granted first come first served: a reservation waits until it fits beside
    those held, or until nothing is held (a request larger than the budget then runs alone)."""

    def __init__(self, budget: int) -> None:
        if budget < 1:
            raise ValueError(f"the byte budget must be positive, got {budget}")
        self.budget = int(budget)
        self.held = 0
        self.peak = 0
        self._waiting: deque[object] = deque()
        self._changed = asyncio.Condition()

    def _fits(self, ticket: object, nbytes: int) -> bool:
        return self._waiting[0] is ticket and (self.held == 0 or self.held + nbytes <= self.budget)

    async def acquire(self, nbytes: int) -> None:
        ticket = object()
        async with self._changed:
            self._waiting.append(ticket)
            try:
                await self._changed.wait_for(lambda: self._fits(ticket, nbytes))
            finally:
                self._waiting.remove(ticket)
                self._changed.notify_all()  # the next in line may fit now
            self.held += nbytes
            self.peak = max(self.peak, self.held)

    async def release(self, nbytes: int) -> None:
        async with self._changed:
            self.held -= nbytes
            self._changed.notify_all()


# ---------------------------------------------------------------------------------------------------
# The backend


class OpenAICompatBackend:
    name = "openai-compatible"

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        server: ServerKind | None = None,
        video_mode: VideoMode | None = None,
        api_key_env: str = "OPENAI_API_KEY",
        concurrency: int = 8,
        timeout_s: float = 120.0,
        max_retries: int = 3,
        generation: GenerationSettings | None = None,
        media: MediaSettings | None = None,
        templater: ChatTemplater | None = None,
        jpeg_quality: int = JPEG_QUALITY,
        max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
        data_parallel_ranks: int = 0,
        family: Family | str | None = None,
    ) -> None:
        """`server` defaults to "openai" without a base_url and "vllm" with one; `video_mode` to
        "video" for vLLM (the model's video input) and "frames" for OpenAI and for families without
        video input (Gemma 3). `templater` (the served checkpoint's processor, when it is local) renders
        the prompt recorded with each output (the server renders its own) and tells the family.
        `family` (a name from obv_eval.models) says it where nothing else does (served_family)."""
        self.model = model
        self.server: ServerKind = server or ("openai" if base_url is None else "vllm")
        if self.server not in SERVER_KINDS:
            raise ValueError(f"server {self.server!r} is not one of {', '.join(SERVER_KINDS)}")
        # What the family changes is vLLM's to read; the OpenAI API's models are no checkpoint family.
        self.family = served_family(model, family, templater) if self.server == "vllm" else None
        images_only = self.family is not None and self.family.video_input == "frames-as-images"
        default_mode: VideoMode = "video" if self.server == "vllm" and not images_only else "frames"
        self.video_mode: VideoMode = video_mode or default_mode
        if self.video_mode not in VIDEO_MODES:
            raise ValueError(f"video_mode {self.video_mode!r} is not one of {', '.join(VIDEO_MODES)}")
        if images_only and self.video_mode == "video" and self.family is not None:
            raise ValueError(f"{self.family.title} takes no video input: video_mode must be 'frames'")
        # Explicit even for the OpenAI API, so OPENAI_BASE_URL in the environment cannot redirect it.
        self.endpoint = sanitize_endpoint(base_url or OPENAI_BASE_URL)
        self.api_key_env = api_key_env
        if base_url is None and not os.environ.get(api_key_env):
            raise ValueError(f"the OpenAI API needs a key: set {api_key_env} (or pass a --base-url server)")
        if concurrency < 1 or max_retries < 0 or timeout_s <= 0 or max_payload_bytes < 1:
            raise ValueError(
                "concurrency >= 1, max_retries >= 0, timeout_s > 0 and max_payload_bytes >= 1 are required"
            )
        if data_parallel_ranks < 0:
            raise ValueError(
                f"data_parallel_ranks must be 0 (no pinning) or positive, got {data_parallel_ranks}"
            )
        self.data_parallel_ranks = int(data_parallel_ranks)
        self.concurrency = int(concurrency)
        self.max_payload_bytes = int(max_payload_bytes)
        self.peak_payload_bytes = 0  # most encoded media bytes in flight at once in the last run
        self.stopped: str | None = None  # why no further request is sent (a fatal refusal), if one came
        self.timeout_s = float(timeout_s)
        self.max_retries = int(max_retries)
        self.generation = generation or GenerationSettings()
        self.media = media or MediaSettings()
        self.templater = templater
        self.jpeg_quality = int(jpeg_quality)
        # What answered, per request that returned a completion: ``response.model`` (the snapshot
        # behind a name such as "gpt-4o") and ``system_fingerprint``; part of describe().
        self.response_models: dict[str, int] = {}
        self.system_fingerprints: dict[str, int] = {}

    def describe(self) -> dict[str, Any]:
        """Provenance: what answered and how. Never the key."""
        policy = policy_name(self.media.frame_policy)
        return {
            "backend": self.name,
            "server": self.server,
            "model": self.model,
            "endpoint": self.endpoint,
            "video_mode": self.video_mode,
            **({"model_family": self.family.describe(policy)} if self.family is not None else {}),
            "jpeg_quality": self.jpeg_quality,
            "concurrency": self.concurrency,
            "max_payload_bytes": self.max_payload_bytes,
            "data_parallel_ranks": self.data_parallel_ranks,
            "timeout_s": self.timeout_s,
            "max_retries": self.max_retries,
            "openai": _version("openai"),
            "sampling": sampling_fields(self.generation, self.server),
            "response_models": dict(self.response_models),
            "system_fingerprints": dict(self.system_fingerprints),
        }

    def generate(
        self,
        requests: Sequence[GenerationRequest],
        progress: bool = True,
        on_batch: Callable[[list[GenerationOutput]], None] | None = None,
    ) -> list[GenerationOutput]:
        """One output per request, in order; a failed call or unreadable media fails that item alone."""
        coroutine = self.agenerate(requests, progress, on_batch)
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(coroutine)
        # Called from inside an event loop (a notebook): run ours in a thread of its own.
        with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
            return pool.submit(asyncio.run, coroutine).result()

    async def agenerate(
        self,
        requests: Sequence[GenerationRequest],
        progress: bool = True,
        on_batch: Callable[[list[GenerationOutput]], None] | None = None,
    ) -> list[GenerationOutput]:
        async def count_request(request: object) -> None:  # an httpx request; only counted
            counter = _attempts.get()
            if counter is not None:
                counter[0] += 1

        api_key = os.environ.get(self.api_key_env) or _PLACEHOLDER_KEY
        client = openai.AsyncOpenAI(
            api_key=api_key,
            base_url=self.endpoint,
            timeout=self.timeout_s,
            max_retries=self.max_retries,
            http_client=openai.DefaultAsyncHttpxClient(event_hooks={"request": [count_request]}),
        )
        semaphore = asyncio.Semaphore(self.concurrency)
        payload = ByteBudget(self.max_payload_bytes)
        bar = tqdm(total=len(requests), desc=f"generating ({self.model})", disable=not progress)

        async def run_one(request: GenerationRequest) -> GenerationOutput:
            async with semaphore:
                output = await self._one(client, request, payload)
            if on_batch:
                on_batch([output])  # items are independent here: each is a batch of one
            bar.update(1)
            return output

        try:
            async with client:
                return list(await asyncio.gather(*(run_one(request) for request in requests)))
        finally:
            self.peak_payload_bytes = payload.peak
            bar.close()

    async def _one(
        self, client: openai.AsyncOpenAI, request: GenerationRequest, payload: ByteBudget
    ) -> GenerationOutput:
        try:
            # Decoding is blocking CPU work: off the event loop, so other items' calls proceed.
            visuals = await asyncio.to_thread(load_visuals, request.visuals, self.media)
        except MediaError as error:
            return GenerationOutput(request.key, "", error=f"MediaError: {error}")
        frames = [video.num_frames for video in visuals.videos]
        prompt = self._prompt_record(request.text, visuals)
        if self.stopped is not None:
            reason = f"not sent: {self.stopped}"
            return GenerationOutput(request.key, "", prompt=prompt, frames=frames, error=reason)
        try:
            body = await asyncio.to_thread(
                chat_request,
                request.text,
                visuals,
                self.model,
                self.generation,
                self.video_mode,
                self.server,
                self.jpeg_quality,
                self.family,
            )
            del visuals  # the frames are encoded in the body now
            size = payload_bytes(body)
            await payload.acquire(size)
            try:
                if self.stopped is not None:  # refused while this request waited for room
                    raise _CallFailed(f"not sent: {self.stopped}")
                text, usage = await self._call(client, body, self.rank_headers(request))
            finally:
                await payload.release(size)
        except _CallFailed as failure:
            return GenerationOutput(request.key, "", prompt=prompt, frames=frames, error=failure.reason)
        except Exception as error:  # anything unexpected fails this item, never the run
            reason = f"{type(error).__name__}: {self._redact(str(error))[:_MESSAGE_CHARS]}"
            return GenerationOutput(request.key, "", prompt=prompt, frames=frames, error=reason)
        return GenerationOutput(
            request.key, text, prompt=prompt, prompt_tokens=usage[0], output_tokens=usage[1], frames=frames
        )

    def rank_headers(self, request: GenerationRequest) -> dict[str, str]:
        """vLLM's X-data-parallel-rank for this item: one rank for every question on a clip."""
        if not self.data_parallel_ranks:
            return {}
        return {"X-data-parallel-rank": str(clip_rank(request, self.data_parallel_ranks))}

    async def _call(
        self, client: openai.AsyncOpenAI, body: dict[str, Any], headers: dict[str, str] | None = None
    ) -> tuple[str, tuple[int | None, int | None]]:
        counter = [0]
        _attempts.set(counter)  # each item runs in its own task: the value stays local to it
        messages = cast("list[ChatCompletionMessageParam]", body.pop("messages"))
        try:
            response = await client.chat.completions.create(
                messages=messages, extra_headers=headers or None, **body
            )
        except openai.APIStatusError as error:
            retries = max(counter[0] - 1, 0)
            if error.status_code in _RETRIED_STATUSES:
                raise _CallFailed(f"HTTP {error.status_code} after {retries} retries") from None
            # Not retried (bad model name, bad request, bad key): the server's message says what to mend.
            message = error.body.get("message") if isinstance(error.body, dict) else None
            text = " ".join(str(message or error.message).split())
            detail = self._redact(text)[:_MESSAGE_CHARS]
            # A server started without the flag refuses every request carrying the family's fields.
            untrusted = error.status_code == 400 and TRUST_FLAG in text
            if untrusted:
                detail = (
                    f"the server refuses this family's per-request media fields: restart it with {TRUST_FLAG}"
                )
            reason = f"HTTP {error.status_code}: {detail}"
            if (error.status_code in _FATAL_STATUSES or untrusted) and self.stopped is None:
                self.stopped = f"the server refused an earlier request ({reason})"
                print(f"obv-eval: {reason}; sending no further requests", file=sys.stderr)
            raise _CallFailed(reason) from None
        except openai.APITimeoutError:
            retries = max(counter[0] - 1, 0)
            raise _CallFailed(f"timeout ({self.timeout_s:g} s) after {retries} retries") from None
        except openai.APIConnectionError:
            retries = max(counter[0] - 1, 0)
            raise _CallFailed(f"connection error after {retries} retries") from None
        except (json.JSONDecodeError, openai.APIResponseValidationError):
            raise _CallFailed("malformed response body (not a chat completion)") from None
        for counts, value in (
            (self.response_models, getattr(response, "model", None)),
            (self.system_fingerprints, getattr(response, "system_fingerprint", None)),
        ):
            name = str(value) if value else "not recorded"
            counts[name] = counts.get(name, 0) + 1
        if not getattr(response, "choices", None):
            raise _CallFailed("malformed response body (no choices)")
        message = response.choices[0].message
        if message.content is None:
            refusal = (
                f": refusal {self._redact(message.refusal)[:_MESSAGE_CHARS]!r}" if message.refusal else ""
            )
            raise _CallFailed(f"reply without content{refusal}")
        usage = response.usage
        tokens = (usage.prompt_tokens, usage.completion_tokens) if usage is not None else (None, None)
        return message.content.strip(), tokens

    def _prompt_record(self, text: str, visuals: LoadedVisuals) -> str:
        kinds: Sequence[Any] = visuals.kinds
        if self.family is not None:  # a frames-as-images family: one image entry per frame, as sent
            kinds = self.family.template_kinds(visuals.kinds, [video.num_frames for video in visuals.videos])
        messages = build_messages(text, kinds)
        if self.templater is not None:
            return render_prompt(self.templater, messages)
        # Without the checkpoint's template, the conversation itself (visual placeholders, no payload).
        return json.dumps(messages, ensure_ascii=False)

    def _redact(self, text: str) -> str:
        from obv_eval.redaction import configured_secrets, redact

        return redact(text, configured_secrets(self.api_key_env))


class _CallFailed(Exception):
    """A call that failed for good; ``reason`` is safe to record (no key, no body)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def clip_rank(request: GenerationRequest, ranks: int) -> int:
    """A stable rank in [0, ranks) for the item's clip: sha256 of its visuals' kinds and paths as the rows
    name them (the same on every machine and run; Python's hash() is salted per process). An item with
    no clip (text, images) is spread by its own key."""
    from obv_eval.backends.streaming import clip_group

    group = clip_group(request)
    if group is not None:
        identity = "\0".join(f"{getattr(v, 'kind', '')}:{getattr(v, 'path', '')}" for v in group)
    else:
        identity = f"item\0{request.key[0]}\0{request.key[1]}"
    return int.from_bytes(hashlib.sha256(identity.encode("utf-8")).digest()[:8], "big") % ranks


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None
