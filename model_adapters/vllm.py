"""lmms-eval model `obv_vllm`: Qwen2-VL through the vLLM offline backend (GPUs; needs obv-eval[vllm])."""

from __future__ import annotations

from typing import Any

from obv_eval.model_adapters.base import ObvModel, media_settings, reject_unknown

from obv_eval.backends.base import GenerationSettings
from obv_eval.backends.vllm import VLLMBackend
from obv_eval.media import VideoSettings
from obv_eval.registry import resolve_model


class ObvVLLM(ObvModel):
    """Thin over obv_eval.backends.vllm; every setting arrives through --model_args.

    data_parallel_size=0 runs one engine per group of tensor_parallel_size visible GPUs.
    """

    adapter_id = "obv_vllm"

    def __init__(
        self,
        pretrained: str = "tiny-qwen2vl",
        dtype: str = "bfloat16",
        max_model_len: int | str | None = None,  # None: fit to the longest item
        tensor_parallel_size: int = 1,
        data_parallel_size: int = 1,
        gpu_memory_utilization: float = 0.9,
        max_images: int = 1,
        max_videos: int = 1,
        max_new_tokens: int = 32,
        seed: int = 0,
        fps: float = VideoSettings.fps,
        min_frames: int = VideoSettings.min_frames,
        max_frames: int = VideoSettings.max_frames,
        frames: str = "default",
        max_visual_tokens: int | str | None = None,
        progress: bool = True,
        batch_size: int | str | None = None,  # lmms-eval always passes these; vLLM schedules its own batches
        device: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(progress=progress)
        reject_unknown(self.adapter_id, kwargs)
        resolved = resolve_model(str(pretrained))
        if resolved.path is None:
            raise ValueError(f"obv_vllm cannot run API model {pretrained!r}; use obv_openai")
        self.model_name = resolved.name
        self.resolved = resolved
        self.backend = VLLMBackend(
            resolved.path,
            dtype=dtype,
            max_model_len=int(max_model_len) if max_model_len not in (None, "", "None", "auto") else None,
            tensor_parallel_size=int(tensor_parallel_size),
            data_parallel_size=int(data_parallel_size),
            gpu_memory_utilization=float(gpu_memory_utilization),
            limit_mm_per_prompt={"image": int(max_images), "video": int(max_videos)},
            generation=GenerationSettings(max_new_tokens=int(max_new_tokens), seed=int(seed)),
            media=media_settings(fps, min_frames, max_frames, frames, max_visual_tokens),
            adapter_path=resolved.adapter_path,
            seed=int(seed),
        )
