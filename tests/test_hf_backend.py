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


def test_the_clip_caches_stay_within_their_byte_budget_and_keep_only_the_latest_clip() -> None:
    from types import SimpleNamespace

    import torch

    calls: list[int] = []

    def tower(patches: torch.Tensor, grid: torch.Tensor, **_: object) -> SimpleNamespace:
        calls.append(int(patches[0, 0]))
        return SimpleNamespace(pooler_output=[patches.float() * 2])

    entry_bytes = 4 * 4 * 3  # one clip's features: 4 patches x 3 floats
    cache = CachedVideoFeatures(tower, max_bytes=2 * entry_bytes)
    grid = torch.tensor([[1, 2, 2]])
    clips = [torch.full((4, 3), float(i)) for i in range(3)]
    for clip in clips:
        cache(clip, grid)
    assert calls == [0, 1, 2] and cache.bytes == 2 * entry_bytes  # the oldest went, the budget holds
    out = cache(torch.cat([clips[2], clips[2]]), torch.cat([grid, grid]))
    assert calls == [0, 1, 2] and cache.hits == 2  # in the cache, then repeated within the call
    assert torch.equal(out.pooler_output[0], clips[2] * 2)
    cache.retain_recent()
    assert cache.bytes == entry_bytes  # only the latest call's clip stays
    cache(clips[1], grid)
    assert calls == [0, 1, 2, 1]  # clip 1 was forgotten
