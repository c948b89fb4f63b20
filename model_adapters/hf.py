"""lmms-eval model `obv_hf`: Qwen2-VL through the transformers backend (CPU, tests, fallback)."""

from __future__ import annotations

from typing import Any

from obv_eval.model_adapters.base import ObvModel, media_settings, reject_unknown

from obv_eval.backends.base import GenerationSettings
from obv_eval.backends.hf import HFBackend
from obv_eval.media import VideoSettings
from obv_eval.registry import resolve_model


class ObvHF(ObvModel):
    """Thin over obv_eval.backends.hf; every setting arrives through --model_args."""

    adapter_id = "obv_hf"

    def __init__(
        self,
        pretrained: str = "tiny-qwen2vl",
        device: str = "cpu",
        dtype: str = "float32",
        batch_size: int | str = 4,
        max_new_tokens: int = 32,
        fps: float = VideoSettings.fps,
        min_frames: int = VideoSettings.min_frames,
        max_frames: int = VideoSettings.max_frames,
        progress: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(progress=progress)
        reject_unknown(self.adapter_id, kwargs)
        resolved = resolve_model(str(pretrained))
        if resolved.path is None:
            raise ValueError(f"obv_hf cannot run API model {pretrained!r}; use obv_openai")
        self.model_name = resolved.name
        self.resolved = resolved
        self.backend = HFBackend(
            resolved.path,
            device=device,
            dtype=dtype,
            batch_size=int(batch_size),
            generation=GenerationSettings(max_new_tokens=int(max_new_tokens)),
            media=media_settings(fps, min_frames, max_frames),
            adapter_path=resolved.adapter_path,
        )
