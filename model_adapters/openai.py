"""lmms-eval model `obv_openai`: a model behind an OpenAI-compatible API (a vLLM server, or gpt-4o).

--model obv_openai --model_args pretrained=gpt-4o                     # the OpenAI API, key in OPENAI_API_KEY
--model obv_openai --model_args pretrained=qwen2vl-7b,base_url=http://127.0.0.1:8000/v1
"""

from __future__ import annotations

from typing import Any, cast

from obv_eval.model_adapters.base import ObvModel, media_settings, reject_unknown

from obv_eval.backends.base import GenerationSettings
from obv_eval.backends.openai_compat import (
    DEFAULT_MAX_PAYLOAD_BYTES,
    MiB,
    OpenAICompatBackend,
    ServerKind,
    VideoMode,
    served_family,
)


class ObvOpenAI(ObvModel):
    """Thin over obv_eval.backends.openai_compat; every setting arrives through --model_args.

    `pretrained` is the model name the server knows (vLLM: its --served-model-name). `processor`
    (a checkpoint folder or registry name) optionally renders the prompt recorded per item.
    """

    adapter_id = "obv_openai"

    def __init__(
        self,
        pretrained: str = "gpt-4o",
        base_url: str | None = None,
        server: str | None = None,
        video_mode: str | None = None,
        api_key_env: str = "OPENAI_API_KEY",
        concurrency: int = 8,
        max_payload_mib: float = DEFAULT_MAX_PAYLOAD_BYTES / MiB,  # encoded media in flight
        timeout_s: float = 120.0,
        max_retries: int = 3,
        max_new_tokens: int = 32,
        seed: int = 0,
        fps: float | None = None,  # None: the frame policy's (the family's native rule by default)
        min_frames: int | None = None,
        max_frames: int | None = None,
        frames: str = "native",
        max_visual_tokens: int | str | None = None,
        control: str | None = None,
        processor: str | None = None,
        family: str | None = None,  # the served model's family (obv_eval.models), where nothing else says
        data_parallel_ranks: int | str = 0,  # vllm serve --data-parallel-size N: a clip to one rank
        progress: bool = True,
        batch_size: int | str | None = None,  # lmms-eval always passes these; concurrency bounds the calls
        device: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(progress=progress)
        reject_unknown(self.adapter_id, kwargs)
        self.model_name = str(pretrained)
        templater = None
        if processor:
            from transformers import AutoProcessor

            from obv_eval.registry import resolve_model

            resolved = resolve_model(str(processor))
            templater = AutoProcessor.from_pretrained(resolved.path) if resolved.path else None
        # The native frame rule of the served model's family (an explicit family=, the processor's, the
        # registry entry named like the served model, or a checkpoint folder of that name).
        known = served_family(self.model_name, family, templater)
        self.backend = OpenAICompatBackend(
            self.model_name,
            base_url=base_url or None,
            server=cast("ServerKind | None", server or None),  # the backend checks the value
            video_mode=cast("VideoMode | None", video_mode or None),
            api_key_env=api_key_env,
            concurrency=int(concurrency),
            max_payload_bytes=int(float(max_payload_mib) * MiB),
            timeout_s=float(timeout_s),
            max_retries=int(max_retries),
            generation=GenerationSettings(max_new_tokens=int(max_new_tokens), seed=int(seed)),
            media=media_settings(
                fps, min_frames, max_frames, frames, max_visual_tokens, control, family=known
            ),
            templater=templater,
            family=known,
            data_parallel_ranks=int(data_parallel_ranks or 0),
        )
