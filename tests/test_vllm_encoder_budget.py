"""vLLM refuses a visual item over its encoder cache (max(max_num_batched_tokens, the model's profiled
tokens per item: 32,768 for Qwen2-VL)); the backend raises max_num_batched_tokens to the longest visual
item when vLLM's defaults (at most 16,384) could not hold it, so over-context clips run on vLLM too."""

from __future__ import annotations

from pathlib import Path

import pytest

from obv_eval.backends.base import GenerationRequest, MediaSettings
from obv_eval.backends.vllm import VLLM_DEFAULT_BATCHED_TOKENS_MAX, VLLMBackend
from obv_eval.data.synth import write_video
from obv_eval.sources import MediaRef


def _bare_backend(tiny_model_path: Path, **engine_kwargs: int) -> VLLMBackend:
    """The backend's planning state without vLLM (no engine is started)."""
    from transformers import AutoProcessor

    backend = object.__new__(VLLMBackend)
    backend.processor = AutoProcessor.from_pretrained(tiny_model_path)
    backend.media = MediaSettings()
    backend.engine_kwargs = dict(engine_kwargs)
    backend.longest_visual_item = 0
    return backend


def test_the_longest_visual_item_sets_the_batched_tokens(tiny_model_path: Path, tmp_path: Path) -> None:
    clip = write_video(tmp_path / "clip.mp4", 8, 2, 840, 476, seed=1)  # 8 frames: 4 x 510 tokens
    backend = _bare_backend(tiny_model_path)
    requests = [
        GenerationRequest(("t", 0), "What happens?", (MediaRef("video", clip.name, str(tmp_path)),)),
        GenerationRequest(("t", 1), "Name a bone."),
    ]
    backend.item_lengths(requests)
    assert backend.longest_visual_item == 4 * 510
    assert backend._batched_tokens() == {}  # within vLLM's defaults: left to vLLM

    backend.longest_visual_item = 33150  # a 130 s 1 fps 840x476 clip
    assert backend._batched_tokens() == {"max_num_batched_tokens": 33150}
    backend.longest_visual_item = VLLM_DEFAULT_BATCHED_TOKENS_MAX
    assert backend._batched_tokens() == {}


def test_an_explicit_engine_setting_wins(tiny_model_path: Path) -> None:
    backend = _bare_backend(tiny_model_path, max_num_batched_tokens=65536)
    backend.longest_visual_item = 40000
    assert backend._batched_tokens() == {}


@pytest.mark.parametrize("tokens", [16385, 115000])
def test_never_below_the_item(tiny_model_path: Path, tokens: int) -> None:
    backend = _bare_backend(tiny_model_path)
    backend.longest_visual_item = tokens
    assert backend._batched_tokens()["max_num_batched_tokens"] >= tokens
