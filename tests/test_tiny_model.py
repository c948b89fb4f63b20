"""The embedded default model is a real Qwen2-VL that generates from video, image and text."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from transformers import AutoModelForImageTextToText, AutoProcessor, Qwen2VLForConditionalGeneration

from obv_eval.conversation import build_messages, render_prompt
from obv_eval.tiny_model import build_tiny_model


def _digest(folder: Path) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()
    }


def test_tiny_model_is_a_real_qwen2vl(tiny_model_path: Path) -> None:
    model = AutoModelForImageTextToText.from_pretrained(tiny_model_path)
    processor = AutoProcessor.from_pretrained(tiny_model_path)
    assert isinstance(model, Qwen2VLForConditionalGeneration)
    assert type(processor).__name__ == "Qwen2VLProcessor"
    assert model.config.tie_word_embeddings is False


def test_build_is_deterministic(tmp_path: Path) -> None:
    first, second = build_tiny_model(tmp_path / "a"), build_tiny_model(tmp_path / "b")
    assert _digest(first) == _digest(second)


def test_chat_template_renders_like_qwen2vl_instruct(tiny_model_path: Path) -> None:
    processor = AutoProcessor.from_pretrained(tiny_model_path)
    text = render_prompt(processor, build_messages("What is shown?", ["video"]))
    assert text == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\n<|vision_start|><|video_pad|><|vision_end|>What is shown?<|im_end|>\n"
        "<|im_start|>assistant\n"
    )


def _generate(path: Path, kinds: list[str], videos: list[np.ndarray], images: list[Image.Image]) -> list[int]:
    processor = AutoProcessor.from_pretrained(path)
    model = AutoModelForImageTextToText.from_pretrained(path).eval()
    prompt = render_prompt(processor, build_messages("Describe it.", kinds))  # type: ignore[arg-type]
    inputs = processor(text=[prompt], videos=videos or None, images=images or None, return_tensors="pt")
    with torch.inference_mode():
        out = model.generate(**inputs, max_new_tokens=8, do_sample=False)
    return out[0, inputs["input_ids"].shape[1] :].tolist()


def test_generates_from_video_image_and_text(tiny_model_path: Path) -> None:
    rng = np.random.default_rng(0)
    video = rng.integers(0, 255, size=(4, 56, 56, 3), dtype=np.uint8)
    image = Image.fromarray(rng.integers(0, 255, size=(56, 56, 3), dtype=np.uint8))
    for kinds, videos, images in ((["video"], [video], []), (["image"], [], [image]), ([], [], [])):
        tokens = _generate(tiny_model_path, kinds, videos, images)
        assert len(tokens) > 0
        # Greedy and seeded weights: the same input gives the same tokens.
        assert tokens == _generate(tiny_model_path, kinds, videos, images)


def test_visual_input_changes_the_output(tiny_model_path: Path) -> None:
    # The vision tower is wired in: two different videos lead to different logits.
    processor = AutoProcessor.from_pretrained(tiny_model_path)
    model = AutoModelForImageTextToText.from_pretrained(tiny_model_path).eval()
    prompt = render_prompt(processor, build_messages("Describe it.", ["video"]))
    logits = []
    for value in (0, 255):
        video = np.full((4, 56, 56, 3), value, dtype=np.uint8)
        inputs = processor(text=[prompt], videos=[video], return_tensors="pt")
        with torch.inference_mode():
            logits.append(model(**inputs).logits[0, -1])
    assert not torch.allclose(logits[0], logits[1])
