"""LLaVA-OneVision (obv_eval.models.llava_onevision) on its tiny twin: the real tokenizer's added tokens and
chat template render obv's conversation, the processor expands a clip and an image to the number of visual
tokens the model's own feature functions produce, greedy generation is deterministic on CPU, the frame
rule picks the processor's own uniform positions, and two builds are byte-identical."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from obv_eval import media
from obv_eval.conversation import VisualKind, build_messages, render_prompt
from obv_eval.data.synth import read_marker, write_video
from obv_eval.models import families, family_of_checkpoint
from obv_eval.models import llava_onevision as llava
from obv_eval.registry import MODELS
from obv_eval.sources import SAMPLES_DIR
from obv_eval.tiny_model import qwen2vl_tokenizer

QUESTION = "What structure is retracted to expose the gallbladder?"
IMAGE = SAMPLES_DIR / "media" / "vqarad" / "synpic40096.jpg"
SHORT_CLIP = SAMPLES_DIR / "media" / "surgeryvqa" / "Qm7_vB2xKpL_112_115.mp4"  # 12 frames at 4 fps


@pytest.fixture(scope="module")
def twin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return llava.build_tiny(tmp_path_factory.mktemp("llava") / "tiny")


@pytest.fixture(scope="module")
def loaded(twin: Path) -> tuple[Any, Any]:
    from transformers import AutoModelForImageTextToText, AutoProcessor

    processor = AutoProcessor.from_pretrained(twin)
    model = AutoModelForImageTextToText.from_pretrained(twin).eval()
    return processor, model


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 40-frame echo-like clip (30 fps): the bundled sample clips have 8-16 frames, fewer than the 32
    this family samples (see test_a_clip_shorter_than_the_frame_count_fails_in_one_line)."""
    return write_video(
        tmp_path_factory.mktemp("clip") / "echo.mp4", 40, fps=30, width=160, height=120, seed=3
    )


def _greedy(model: Any, inputs: Any) -> list[int]:
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=4, do_sample=False)
    return [int(t) for t in out[0, inputs["input_ids"].shape[1] :]]


def test_the_twin_is_this_family_with_the_real_tokens(twin: Path, loaded: tuple[Any, Any]) -> None:
    processor, model = loaded
    assert family_of_checkpoint(twin) is llava.FAMILY is families()["llava_onevision"]
    assert MODELS[llava.TINY_NAME].family == "llava_onevision"
    assert type(processor).__name__ == llava.FAMILY.processor_class
    assert type(model).__name__ == llava.FAMILY.model_class
    tokenizer = processor.tokenizer
    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in llava.ADDED_TOKENS.values()}
    assert ids == {token: i for i, token in llava.ADDED_TOKENS.items()}
    assert tokenizer.eos_token == llava.FAMILY.eos_token and tokenizer.pad_token == "<|endoftext|>"
    assert (model.config.image_token_id, model.config.video_token_id) == (151646, 151647)
    # Qwen2's vocabulary (the same BPE as Qwen2-VL's tokenizer) but not Qwen2-VL's added tokens.
    text = "Echocardiogram: 二尖瓣 regurgitation, EF 35%."
    assert tokenizer(text)["input_ids"] == qwen2vl_tokenizer()(text)["input_ids"]
    assert tokenizer.convert_tokens_to_ids("<|object_ref_start|>") != 151646
    # Untied embeddings: random tied ones tend to repeat a single token.
    assert not torch.equal(model.get_input_embeddings().weight, model.get_output_embeddings().weight)


@pytest.mark.parametrize("kind, placeholder", [("video", "<video>"), ("image", "<image>")])
def test_the_chat_template_renders_obvs_conversation(
    loaded: tuple[Any, Any], kind: VisualKind, placeholder: str
) -> None:
    processor, _ = loaded
    prompt = render_prompt(processor, build_messages(QUESTION, (kind,)))
    # llava-hf's template: no default system prompt, the placeholder and a newline before the text.
    assert prompt == f"<|im_start|>user\n{placeholder}\n{QUESTION}<|im_end|>\n<|im_start|>assistant\n"
    system = render_prompt(processor, build_messages(QUESTION, (kind,), system_prompt="Be brief."))
    assert system.startswith("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n")


def test_a_clip_becomes_the_video_tokens_the_model_expects(loaded: tuple[Any, Any], clip: Path) -> None:
    processor, model = loaded
    video = media.load_video(clip, llava.FAMILY.frame_rule.video())
    assert video.frames.shape == (32, 120, 160, 3)  # 32 frames at the decoded size: the processor resizes
    # The processor keeps obv's frames: the marker each frame carries is its sampled index.
    assert [read_marker(frame) for frame in video.frames] == [i % 30 for i in video.indices]
    prompt = render_prompt(processor, build_messages(QUESTION, ("video",)))
    inputs = processor(
        text=[prompt], videos=[video.frames], return_tensors="pt", **llava.processor_kwargs([video])
    )
    assert tuple(inputs["pixel_values_videos"].shape) == (1, 32, 3, 384, 384)
    count = int((inputs["input_ids"] == llava.VIDEO_TOKEN_ID).sum())
    assert count == 32 * 196 + 1  # 14 x 14 pooled features per frame and one newline
    with torch.no_grad():
        features = model.model.get_video_features(inputs["pixel_values_videos"]).pooler_output
    assert features.shape[1] == count
    first = _greedy(model, inputs)
    assert len(first) >= 1 and _greedy(model, inputs) == first


def test_an_image_becomes_the_anyres_tokens_the_model_expects(loaded: tuple[Any, Any]) -> None:
    processor, model = loaded
    image = media.load_image(IMAGE, llava.FAMILY.frame_rule.image())
    with Image.open(IMAGE) as original:
        assert image.size == original.size  # kept as decoded: the processor tiles it (anyres-9)
    prompt = render_prompt(processor, build_messages(QUESTION, ("image",)))
    inputs = processor(text=[prompt], images=[image], return_tensors="pt")
    count = int((inputs["input_ids"] == llava.IMAGE_TOKEN_ID).sum())
    with torch.no_grad():
        features = model.model.get_image_features(
            inputs["pixel_values"], inputs["image_sizes"], vision_feature_select_strategy="full"
        ).pooler_output
    assert count == sum(f.shape[0] for f in features) and count > 729  # base tile plus the grid
    first = _greedy(model, inputs)
    assert len(first) >= 1 and _greedy(model, inputs) == first


@pytest.mark.parametrize("total, fps", [(40, 30.0), (97, 25.0), (3000, 29.97)])
def test_the_frame_rule_is_lmms_evals_linspace(total: int, fps: float) -> None:
    from transformers import LlavaOnevisionVideoProcessor
    from transformers.video_utils import VideoMetadata

    ours = media.sample_frame_indices(total, fps, llava.FAMILY.frame_rule.video())
    lmms = np.linspace(0, total - 1, llava.NATIVE_FRAMES, dtype=int)  # lmms-eval's llava_onevision
    assert ours == [int(i) for i in lmms]
    # The processor's own sampler picks frames at most one sampling step away from these.
    metadata = VideoMetadata(total_num_frames=total, fps=fps)
    theirs = LlavaOnevisionVideoProcessor().sample_frames(metadata, num_frames=llava.NATIVE_FRAMES)
    assert np.abs(np.array(theirs) - np.array(ours)).max() <= total / llava.NATIVE_FRAMES


def test_a_clip_shorter_than_the_frame_count_repeats_frames_as_lmms_eval() -> None:
    video = media.load_video(SHORT_CLIP, llava.FAMILY.frame_rule.video())
    assert video.num_frames == llava.NATIVE_FRAMES
    assert list(video.indices) == [int(i) for i in np.linspace(0, video.total_frames - 1, 32, dtype=int)]
    assert len(set(video.indices)) == video.total_frames < llava.NATIVE_FRAMES


def test_two_builds_are_byte_identical(twin: Path, tmp_path: Path) -> None:
    again = llava.build_tiny(tmp_path / "again")
    for name in ("model.safetensors", "config.json", "tokenizer.json", "processor_config.json"):
        assert (again / name).read_bytes() == (twin / name).read_bytes(), name
