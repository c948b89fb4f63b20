"""One long-video policy: items over the native context run on the hf backend and are counted; the
vLLM path derives a max_model_len that fits the same items; a visual-token budget is available."""

from __future__ import annotations

from pathlib import Path

import pytest
from obv_eval.model_adapters.base import media_settings

from obv_eval.backends.base import GenerationRequest, GenerationSettings, MediaSettings, load_visuals
from obv_eval.backends.hf import HFBackend
from obv_eval.backends.streaming import derive_max_model_len, native_context, visual_tokens
from obv_eval.backends.vllm import VLLMBackend
from obv_eval.data.synth import write_video
from obv_eval.media import VideoSettings, frame_count, video_frame_size
from obv_eval.results import summarize_task
from obv_eval.sources import MediaRef
from obv_eval.train.config import STUDY_TRAIN_VIDEO

WIDTH, HEIGHT, FPS, SECONDS = 840, 476, 2, 10


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("long")
    return write_video(folder / "long.mp4", SECONDS * FPS, FPS, WIDTH, HEIGHT, seed=3)


def _expected_tokens(settings: VideoSettings) -> int:
    frames = frame_count(SECONDS * FPS, FPS, settings)
    height, width = video_frame_size(HEIGHT, WIDTH, frames, settings)
    return frames // 2 * (height // 28) * (width // 28)


def test_a_clip_over_the_native_context_runs_on_hf_and_is_counted(
    tiny_model_path: Path, long_clip: Path
) -> None:
    native = native_context(tiny_model_path)
    assert native is not None and _expected_tokens(VideoSettings()) > native  # the clip is over it
    requests = [
        GenerationRequest(
            ("surgeryvqa", 0), "What happens?", (MediaRef("video", long_clip.name, str(long_clip.parent)),)
        ),
        GenerationRequest(("medqa", 0), "Name a bone of the hand."),
    ]
    backend = HFBackend(tiny_model_path, batch_size=2, generation=GenerationSettings(max_new_tokens=4))
    long, short = backend.generate(requests, progress=False)
    assert long.error is None and long.prompt_tokens is not None and long.prompt_tokens > native
    assert long.visual_tokens == _expected_tokens(VideoSettings())
    assert long.over_context is True and short.over_context is False and short.visual_tokens == 0

    # The vLLM path (no vLLM needed for this part) counts the same prompt and fits its context to it.
    vllm = object.__new__(VLLMBackend)
    vllm.processor, vllm.media = backend.processor, backend.media
    lengths = vllm.item_lengths(requests)
    assert lengths == [long.prompt_tokens, short.prompt_tokens]
    assert derive_max_model_len(lengths, 4, native) == (long.prompt_tokens + 4, True)

    records = [
        {"task": "surgeryvqa", "doc_id": i, "status": "ok", "scores": {"accuracy": 0.0},
         "tokens": {"visual": o.visual_tokens}, "over_context": o.over_context}
        for i, o in enumerate((long, short))
    ]  # fmt: skip
    summary = summarize_task(records, "accuracy")
    assert summary["over_context"] == 1 and summary["visual_tokens_max"] == long.visual_tokens


def test_derived_context_length_rules() -> None:
    assert derive_max_model_len([100, 300], 32, 4096) == (332, False)
    assert derive_max_model_len([100, 5000], 32, 4096) == (5032, True)
    assert derive_max_model_len([100, 5000], 32, 4096, requested=2048) == (2048, False)
    assert derive_max_model_len([], 32, None) == (32, False)


def test_visual_token_budget_and_training_frames(long_clip: Path) -> None:
    assert media_settings(2.0, 4, 768, "train").video == STUDY_TRAIN_VIDEO
    ref = (MediaRef("video", long_clip.name, str(long_clip.parent)),)
    default = visual_tokens(load_visuals(ref, MediaSettings()))
    for budget in (512, 2048):
        settings = media_settings(2.0, 4, 768, "default", budget)
        tokens = visual_tokens(load_visuals(ref, settings))
        assert tokens <= budget < default
        assert tokens > budget // 2  # downscaled to fit, not far below the budget
    with pytest.raises(ValueError):
        media_settings(2.0, 4, 768, "sometimes")
