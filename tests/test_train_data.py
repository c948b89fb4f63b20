"""Training samples: the study's two samples per clip, and a loss mask over the assistant turns only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from transformers import AutoProcessor

from obv_eval.media import load_video
from obv_eval.sources import SAMPLES_DIR
from obv_eval.train.config import STUDY_TRAIN_VIDEO, config_from_dict, load_config
from obv_eval.train.data import (
    CAPTION_PROMPTS,
    IGNORE_INDEX,
    assistant_labels,
    build_samples,
    caption_prompt,
    encode_sample,
    load_train_rows,
    planned_length,
)

MEDIA = SAMPLES_DIR / "media" / "openbiomedvid"


@pytest.fixture(scope="module")
def processor(tiny_model_path: Path) -> Any:
    return AutoProcessor.from_pretrained(tiny_model_path)


@pytest.fixture(scope="module")
def rows() -> list[dict[str, Any]]:
    return load_train_rows("samples")[0]


def test_bundled_rows_load_with_their_media_root(rows: list[dict[str, Any]]) -> None:
    loaded, root, description = load_train_rows("samples")
    assert root == MEDIA and description.startswith("samples")
    assert len(loaded) == 6 and all((MEDIA / row["video"]).is_file() for row in loaded)


def test_caption_prompt_is_fixed_by_clip_id_and_varies_across_clips() -> None:
    chosen = {caption_prompt(f"clip-{i}") for i in range(200)}
    assert caption_prompt("clip-7") == caption_prompt("clip-7")
    assert chosen <= set(CAPTION_PROMPTS) and len(chosen) == len(CAPTION_PROMPTS) == 20


def test_each_clip_gives_a_caption_sample_and_a_multi_turn_qa_sample(rows: list[dict[str, Any]]) -> None:
    samples = build_samples(rows)
    assert samples.clips == 6 and not samples.invalid_rows
    by_id = {s.sample_id: s for s in samples.samples}
    row = rows[2]  # three QA pairs
    caption, qa = by_id[f"{row['id']}:caption"], by_id[f"{row['id']}:qa"]
    assert caption.turns == ((caption_prompt(row["id"]), row["caption"]),)
    assert qa.turns == tuple((p["question"], p["answer"]) for p in row["qa_pairs"])
    assert len(qa.turns) == 3 and caption.video == qa.video == row["video"]


def test_unusable_rows_are_listed_with_a_reason_not_dropped() -> None:
    samples = build_samples(
        [
            {"id": "a", "video": "a.mp4", "caption": "", "qa_pairs": []},
            {"id": "b", "caption": "text"},
            {"id": "c", "video": "c.mp4", "caption": "", "qa_pairs": [{"question": "Q?", "answer": "A"}]},
        ]
    )
    assert [s.sample_id for s in samples.samples] == ["c:qa"]
    assert samples.invalid_rows == [
        {"row": "a", "reason": "no caption and no question/answer pairs"},
        {"row": "b", "reason": "missing video"},
    ]


def _spans(labels: list[int]) -> list[list[int]]:
    spans: list[list[int]] = []
    previous = IGNORE_INDEX
    for label in labels:
        if label != IGNORE_INDEX:
            if previous == IGNORE_INDEX:
                spans.append([])
            spans[-1].append(label)
        previous = label
    return spans


def test_labels_cover_exactly_the_answers_and_their_im_end(
    processor: Any, rows: list[dict[str, Any]]
) -> None:
    sample = next(s for s in build_samples(rows).samples if len(s.turns) == 3)
    encoded = encode_sample(processor, sample, load_video(sample.video, STUDY_TRAIN_VIDEO, root=MEDIA))
    labels = encoded.labels.tolist()
    ids = encoded.input_ids.tolist()
    assert all(label in (IGNORE_INDEX, token) for label, token in zip(labels, ids, strict=True))
    decoded = [processor.tokenizer.decode(span) for span in _spans(labels)]
    assert decoded == [f"{answer}<|im_end|>" for _, answer in sample.turns]
    # Nothing else: the questions, the system prompt and the video tokens are all masked.
    video_token = processor.tokenizer.convert_tokens_to_ids("<|video_pad|>")
    assert all(
        label == IGNORE_INDEX for label, token in zip(labels, ids, strict=True) if token == video_token
    )


def test_a_turn_count_mismatch_is_an_error_not_an_empty_mask(processor: Any) -> None:
    ids = processor.tokenizer.encode("<|im_start|>user\nhi<|im_end|>\n", add_special_tokens=False)
    with pytest.raises(ValueError, match="found 0 assistant turns"):
        assistant_labels(ids, processor.tokenizer, expected_turns=1)


def test_measured_length_is_the_encoded_length(processor: Any, rows: list[dict[str, Any]]) -> None:
    for sample in build_samples(rows[:2]).samples:
        video = load_video(sample.video, STUDY_TRAIN_VIDEO, root=MEDIA)
        assert planned_length(processor, sample, video) == encode_sample(processor, sample, video).length


def test_study_config_holds_the_study_recipe() -> None:
    config = load_config("study_full_ft")
    assert (config.method, config.freeze_vision, config.learning_rate, config.lr_scheduler_type) == (
        "full",
        False,
        1e-5,
        "cosine",
    )
    assert (config.warmup_ratio, config.num_train_epochs, config.bf16, config.gradient_checkpointing) == (
        0.1,
        1,
        True,
        True,
    )
    assert (config.max_tokens, config.per_device_train_batch_size, config.gradient_accumulation_steps) == (
        16384,
        1,
        8,
    )
    assert config.seed == 42 and config.video == STUDY_TRAIN_VIDEO
    assert (config.video.fps, config.video.max_frames, config.video.total_pixels // 28**2) == (
        1.0,
        420,
        16384,
    )


def test_config_refuses_unknown_keys_and_packed_batches_over_one() -> None:
    with pytest.raises(ValueError, match="unknown key"):
        config_from_dict({"learning_rte": 1e-5})
    with pytest.raises(ValueError, match="packing needs per_device_train_batch_size 1"):
        config_from_dict({"per_device_train_batch_size": 2})
    assert config_from_dict({"video": {"fps": 2.0}}).video.max_frames == 420  # nested keys merge


@pytest.mark.parametrize("suffix", [".jsonl", ".json", ".csv"])
def test_rows_files_with_a_byte_order_mark_give_the_same_samples(
    rows: list[dict[str, Any]], tmp_path: Path, suffix: str
) -> None:
    """Spreadsheet tools write a BOM; CSV cells hold the pairs as JSON text."""
    import csv
    import io
    import json

    if suffix == ".jsonl":
        text = "".join(json.dumps(row) + "\n" for row in rows)
    elif suffix == ".json":
        text = json.dumps(rows)
    else:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
        writer.writeheader()
        for row in rows:
            writer.writerow({k: json.dumps(v) if isinstance(v, list | dict) else v for k, v in row.items()})
        text = buffer.getvalue()
    path = tmp_path / f"train{suffix}"
    path.write_text(text, encoding="utf-8-sig")
    loaded, root, _ = load_train_rows(str(path), video_root=str(MEDIA))
    assert root == MEDIA
    assert build_samples(loaded).samples == build_samples(rows).samples
    assert len(build_samples(loaded).samples) == len(build_samples(rows).samples) > 6
