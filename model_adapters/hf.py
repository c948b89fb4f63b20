"""lmms-eval model `obv_hf`: Qwen2-VL through the transformers backend (CPU, tests, fallback)."""

from __future__ import annotations

import dataclasses
from typing import Any

from obv_eval.model_adapters.base import ObvModel, media_settings, reject_unknown

from obv_eval.backends.base import GenerationSettings
from obv_eval.backends.hf import HFBackend
from obv_eval.backends.streaming import MiB, StreamSettings
from obv_eval.registry import resolve_model


class ObvHF(ObvModel):
    """Thin over obv_eval.backends.hf; every setting arrives through --model_args.

    data_parallel_size=N runs N copies on Ray actors (obv_eval.scaleout); ray_address joins a cluster.
    """

    adapter_id = "obv_hf"

    def __init__(
        self,
        pretrained: str = "tiny-qwen2vl",
        device: str = "cpu",
        dtype: str = "float32",
        batch_size: int | str = 8,
        max_new_tokens: int = 32,
        fps: float | None = None,  # None: the frame policy's (the family's native rule by default)
        min_frames: int | None = None,
        max_frames: int | None = None,
        frames: str = "native",
        max_visual_tokens: int | str | None = None,
        control: str | None = None,
        progress: bool = True,
        max_batch_tokens: int | str | None = None,
        prefetch_mb: int | str | None = None,
        prefix_reuse: bool | str = True,
        data_parallel_size: int | str = 1,
        ray_address: str | None = None,
        ray_verbose: bool | str = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(progress=progress)
        reject_unknown(self.adapter_id, kwargs)
        resolved = resolve_model(str(pretrained))
        if resolved.path is None:
            raise ValueError(f"obv_hf cannot run API model {pretrained!r}; use obv_openai")
        self.model_name = resolved.name
        self.resolved = resolved
        settings: dict[str, Any] = dict(
            model_path=resolved.path,
            device=device,
            dtype=dtype,
            batch_size=int(batch_size),
            generation=GenerationSettings(max_new_tokens=int(max_new_tokens)),
            media=media_settings(
                fps, min_frames, max_frames, frames, max_visual_tokens, control, model_path=resolved.path
            ),
            adapter_path=resolved.adapter_path,
            stream=stream_settings(max_batch_tokens, prefetch_mb),
            prefix_reuse=str(prefix_reuse).lower() not in ("false", "0", "no"),
        )
        if int(data_parallel_size) == 1:
            self.backend = HFBackend(**settings)
        else:  # N actors on Ray, each with its own model (a GPU each with device=cuda)
            from obv_eval.scaleout import scale_out

            self.backend = scale_out(
                "hf",
                settings,
                int(data_parallel_size),
                gpus_per_actor=1 if str(device).startswith("cuda") else 0,
                address=ray_address or None,
                verbose=_true(ray_verbose),
            )


def _true(value: bool | str) -> bool:
    return str(value).lower() in ("true", "1", "yes")


def stream_settings(max_batch_tokens: int | str | None, prefetch_mb: int | str | None) -> StreamSettings:
    """Streaming budgets from --model_args; unset ones keep StreamSettings' defaults."""
    changes: dict[str, int] = {}
    if max_batch_tokens not in (None, ""):
        tokens = int(max_batch_tokens)  # type: ignore[arg-type]
        changes["max_batch_tokens"] = tokens
        changes["max_batch_pixels"] = tokens * 2 * 28 * 28
        changes["max_batch_cache_tokens"] = 4 * tokens  # the default's ratio: one knob for memory
    if prefetch_mb not in (None, ""):
        changes["prefetch_bytes"] = int(prefetch_mb) * MiB  # type: ignore[arg-type]
    return dataclasses.replace(StreamSettings(), **changes)
