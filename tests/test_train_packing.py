"""Packing: bins within the budget, exact token accounting, and no attention across packed samples."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import AutoModelForImageTextToText, AutoProcessor

from obv_eval.media import load_video
from obv_eval.sources import SAMPLES_DIR
from obv_eval.train.config import STUDY_TRAIN_VIDEO
from obv_eval.train.data import EncodedSample, TrainSample, build_samples, encode_sample, load_train_rows
from obv_eval.train.packing import (
    PackCollator,
    concat_samples,
    pack_lengths,
    packing_stats,
    plan_samples,
    prepare_packed_inputs,
)

MEDIA = SAMPLES_DIR / "media" / "openbiomedvid"


@pytest.fixture(scope="module")
def processor(tiny_model_path: Path) -> Any:
    return AutoProcessor.from_pretrained(tiny_model_path)


@pytest.fixture(scope="module")
def model(tiny_model_path: Path) -> Any:
    return AutoModelForImageTextToText.from_pretrained(tiny_model_path).eval()


@pytest.fixture(scope="module")
def encoded(processor: Any) -> list[EncodedSample]:
    samples = build_samples(load_train_rows("samples")[0][:2]).samples
    return [encode_sample(processor, s, load_video(s.video, STUDY_TRAIN_VIDEO, root=MEDIA)) for s in samples]


def test_bins_respect_the_budget_and_hold_every_sample_once() -> None:
    rng = random.Random(0)
    lengths = [rng.randint(1, 1000) for _ in range(500)]
    packs = pack_lengths(lengths, 1000)
    assert sorted(i for pack in packs for i in pack) == list(range(500))
    assert all(sum(lengths[i] for i in pack) <= 1000 for pack in packs)
    assert packs == pack_lengths(lengths, 1000)  # deterministic
    # Items over half the budget each need a bin of their own; best fit decreasing needs hardly more.
    lower_bound = max(-(-sum(lengths) // 1000), sum(length > 500 for length in lengths))
    assert len(packs) <= lower_bound + 5


def test_best_fit_fills_the_tightest_bin() -> None:
    assert pack_lengths([6, 4, 5, 5], 10) == [[0, 1], [2, 3]]
    with pytest.raises(ValueError, match="over the budget"):
        pack_lengths([11], 10)


def test_packing_stats_count_padding_and_fill() -> None:
    stats = packing_stats([[0], [1], [2]], [10, 6, 4], budget=10, batch_size=2)
    # Device batches [10, 6] and [4]: 2 x 10 + 1 x 4 tokens computed.
    assert (stats.real_tokens, stats.processed_tokens, stats.sequences) == (20, 24, 3)
    assert stats.padding_efficiency == pytest.approx(20 / 24) and stats.fill == pytest.approx(20 / 30)


def _logits(model: Any, batch: dict[str, Any]) -> torch.Tensor:
    with torch.no_grad():
        return model(**prepare_packed_inputs(model, batch)).logits


def test_a_packed_row_computes_exactly_what_its_samples_compute_alone(
    model: Any, processor: Any, encoded: list[EncodedSample]
) -> None:
    collate = PackCollator(processor.tokenizer.pad_token_id)
    alone = [_logits(model, collate([concat_samples([e])]))[0] for e in encoded]
    packed = _logits(model, collate([concat_samples(encoded)]))[0]
    start = 0
    for sample, reference in zip(encoded, alone, strict=True):
        torch.testing.assert_close(packed[start : start + sample.length], reference, rtol=1e-5, atol=1e-5)
        start += sample.length
    # The control: the same row with ordinary causal positions lets later samples see earlier ones.
    batch = collate([concat_samples(encoded)])
    batch.pop("seq_lens")
    with torch.no_grad():
        leaky = model(**batch).logits[0]
    assert not torch.allclose(leaky[encoded[0].length :], packed[encoded[0].length :], atol=1e-3)


def test_single_samples_match_the_models_own_positions(
    model: Any, processor: Any, encoded: list[EncodedSample]
) -> None:
    sample = encoded[0]
    ours = _logits(model, PackCollator(processor.tokenizer.pad_token_id)([concat_samples([sample])]))[0]
    with torch.no_grad():
        theirs = model(
            input_ids=sample.input_ids[None],
            mm_token_type_ids=sample.mm_token_type_ids[None],
            pixel_values_videos=sample.pixel_values_videos,
            video_grid_thw=sample.video_grid_thw,
            use_cache=False,
        ).logits[0]
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)


def test_padded_rows_do_not_change_the_real_tokens(
    model: Any, processor: Any, encoded: list[EncodedSample]
) -> None:
    collate = PackCollator(processor.tokenizer.pad_token_id)
    batch = collate([concat_samples([encoded[0]]), concat_samples([encoded[1]])])
    assert batch["input_ids"].shape[0] == 2 and "attention_mask" not in batch
    both = _logits(model, batch)
    for row, sample in enumerate(encoded[:2]):
        alone = _logits(model, collate([concat_samples([sample])]))[0]
        torch.testing.assert_close(both[row, : sample.length], alone, rtol=1e-5, atol=1e-5)


def test_over_length_and_unreadable_samples_are_counted_not_dropped(processor: Any) -> None:
    samples = build_samples(load_train_rows("samples")[0][:2]).samples
    missing = TrainSample("gone:qa", "gone", "qa", "gone.mp4", (("Q?", "A"),))
    # The limit sits at the shortest sample's length, measured with the real tokenizer: some over it.
    lengths = plan_samples(samples, processor, MEDIA, STUDY_TRAIN_VIDEO, max_tokens=10**6, progress=False)
    limit = min(lengths.lengths)
    assert max(lengths.lengths) > limit
    plan = plan_samples(
        [*samples, missing], processor, MEDIA, STUDY_TRAIN_VIDEO, max_tokens=limit, progress=False
    )
    assert plan.counts()["kept"] + plan.counts()["over_length"] == len(samples)
    assert plan.kept and plan.over_length and all(item["tokens"] > limit for item in plan.over_length)
    assert all(length <= limit for length in plan.lengths)
    assert [item["sample"] for item in plan.media_failed] == ["gone:qa"]
    assert "not found" in plan.media_failed[0]["error"]
