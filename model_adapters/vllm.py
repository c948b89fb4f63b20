"""lmms-eval model `obv_vllm`: Qwen2-VL through the vLLM offline backend (GPUs; needs obv-eval[vllm])."""

from __future__ import annotations

from typing import Any

from obv_eval.model_adapters.base import ObvModel, media_settings, reject_unknown

from obv_eval.backends.base import GenerationSettings
from obv_eval.backends.vllm import VLLMBackend
from obv_eval.registry import resolve_model


class ObvVLLM(ObvModel):
    """Thin over obv_eval.backends.vllm; every setting arrives through --model_args.

    data_parallel_size=N runs N engines on Ray actors (obv_eval.scaleout), each on tensor_parallel_size
    GPUs; 0: one engine per tensor_parallel_size GPUs of the Ray cluster. ray_address joins a cluster.
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
        fps: float | None = None,  # None: the frame policy's (the family's native rule by default)
        min_frames: int | None = None,
        max_frames: int | None = None,
        frames: str = "native",
        max_visual_tokens: int | str | None = None,
        control: str | None = None,
        progress: bool = True,
        batch_size: int | str | None = None,  # lmms-eval always passes these; vLLM schedules its own batches
        device: str | None = None,
        ray_address: str | None = None,
        ray_verbose: bool | str = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(progress=progress)
        reject_unknown(self.adapter_id, kwargs)
        resolved = resolve_model(str(pretrained))
        if resolved.path is None:
            raise ValueError(f"obv_vllm cannot run API model {pretrained!r}; use obv_openai")
        self.model_name = resolved.name
        self.resolved = resolved
        settings: dict[str, Any] = dict(
            model_path=resolved.path,
            dtype=dtype,
            max_model_len=int(max_model_len) if max_model_len not in (None, "", "None", "auto") else None,
            tensor_parallel_size=int(tensor_parallel_size),
            gpu_memory_utilization=float(gpu_memory_utilization),
            limit_mm_per_prompt={"image": int(max_images), "video": int(max_videos)},
            generation=GenerationSettings(max_new_tokens=int(max_new_tokens), seed=int(seed)),
            media=media_settings(
                fps, min_frames, max_frames, frames, max_visual_tokens, control, model_path=resolved.path
            ),
            adapter_path=resolved.adapter_path,
            seed=int(seed),
        )
        if int(data_parallel_size) == 1:
            self.backend = VLLMBackend(**settings)
        else:
            from obv_eval.scaleout import scale_out

            self.backend = scale_out(
                "vllm",
                settings,
                int(data_parallel_size),
                gpus_per_actor=int(tensor_parallel_size),
                address=ray_address or None,
                verbose=str(ray_verbose).lower() in ("true", "1", "yes"),
            )
