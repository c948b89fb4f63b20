"""The transformers backend processes and encodes each clip once, with the same answers as without caching."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from obv_eval.backends.base import GenerationRequest, GenerationSettings
from obv_eval.backends.hf import CachedVideoFeatures, CachedVideoProcessor, HFBackend
from obv_eval.sources import SAMPLES_DIR, MediaRef


def _items() -> list[GenerationRequest]:
    rows = [json.loads(line) for line in (SAMPLES_DIR / "surgeryvqa" / "test.jsonl").read_text().splitlines()]
    root = str(SAMPLES_DIR / "media" / "surgeryvqa")
    return [
        GenerationRequest(("obv_surgeryvqa", i), row["question"], (MediaRef("video", row["video"], root),))
        for i, row in enumerate(rows)
    ]


@pytest.mark.parametrize("prefix_reuse", [True, False])
def test_each_clip_is_processed_and_encoded_once_with_unchanged_answers(
    tiny_model_path: Path, prefix_reuse: bool
) -> None:
    items = _items()
    clips = len({item.visuals[0].path for item in items})  # type: ignore[union-attr]
    assert clips < len(items)  # several questions share a clip
    settings = GenerationSettings(max_new_tokens=8)
    cached = HFBackend(tiny_model_path, batch_size=3, generation=settings, prefix_reuse=prefix_reuse)
    processor = cached.processor.video_processor
    features = cached.model.model.get_video_features
    assert isinstance(processor, CachedVideoProcessor) and isinstance(features, CachedVideoFeatures)
    with_cache = cached.generate(items, progress=False)
    # With prefix reuse the other questions are tokenized from the first one's expansion and the tower's
    # features live in the clip's KV cache: neither is asked twice.
    repeats = 0 if prefix_reuse else len(items) - clips
    assert (processor.misses, processor.hits) == (clips, repeats)
    assert (features.misses, features.hits) == (clips, repeats)

    plain = HFBackend(tiny_model_path, batch_size=1, generation=settings)
    plain.processor.video_processor = plain.processor.video_processor.inner
    del plain.model.model.get_video_features  # back to the model's own method
    without_cache = plain.generate(items, progress=False)
    assert [o.text for o in with_cache] == [o.text for o in without_cache]
    assert [o.prompt_tokens for o in with_cache] == [o.prompt_tokens for o in without_cache]
