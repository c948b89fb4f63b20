"""Gemma 3 / MedGemma (obv_eval.models.gemma3) on its tiny twin: real token ids and chat template, a clip
as frames-as-images, the processor's 256 soft tokens per image, deterministic greedy generation on CPU
and a deterministic build."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from obv_eval import media
from obv_eval.conversation import build_messages, render_prompt
from obv_eval.models import families, family_of_checkpoint, gemma3
from obv_eval.models.gemma3 import FAMILY, FRAMES, SPECIAL_TOKENS, TOKENS_PER_IMAGE
from obv_eval.sources import SAMPLES_DIR

CLIP = SAMPLES_DIR / "media" / "surgeryvqa" / "Qm7_vB2xKpL_112_115.mp4"  # 12 frames, 84 x 56
CLIP_FRAMES = 12  # fewer than FRAMES: every frame, once
IMAGE = SAMPLES_DIR / "media" / "vqarad" / "synpic40096.jpg"
QUESTION = "  What instrument is used?  "  # the template trims text entries


@pytest.fixture(scope="module")
def twin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return gemma3.build_tiny(tmp_path_factory.mktemp("gemma3") / "tiny-gemma3")


@pytest.fixture(scope="module")
def loaded(twin: Path) -> tuple[Any, Any]:
    from transformers import AutoModelForImageTextToText, AutoProcessor

    processor = AutoProcessor.from_pretrained(twin)
    model = AutoModelForImageTextToText.from_pretrained(twin).eval()
    return processor, model


def test_the_twin_is_this_family_with_the_real_ids(twin: Path, loaded: tuple[Any, Any]) -> None:
    assert families()["gemma3"] is FAMILY
    assert family_of_checkpoint(twin) is FAMILY
    processor, model = loaded
    assert type(processor).__name__ == FAMILY.processor_class
    assert type(model).__name__ == FAMILY.model_class
    config = json.loads((twin / "config.json").read_text())
    assert config["architectures"] == [FAMILY.model_class] and config["model_type"] == "gemma3"
    assert (config["boi_token_index"], config["eoi_token_index"], config["image_token_index"]) == (
        255999,
        256000,
        262144,
    )
    assert config["mm_tokens_per_image"] == TOKENS_PER_IMAGE and config["eos_token_id"] == [1, 106]
    assert config["text_config"]["layer_types"] == ["sliding_attention", "full_attention"]
    assert config["vision_config"]["patch_size"] == 14
    tokenizer = processor.tokenizer
    assert tokenizer.convert_tokens_to_ids(list(SPECIAL_TOKENS)) == list(SPECIAL_TOKENS.values())
    image_ids = (tokenizer.boi_token_id, tokenizer.image_token_id, tokenizer.eoi_token_id)
    assert image_ids == (255999, 262144, 256000)
    generation = json.loads((twin / "generation_config.json").read_text())
    assert generation["eos_token_id"] == [1, 106] and generation["do_sample"] is False
    assert tokenizer.convert_tokens_to_ids(FAMILY.eos_token) == 106


def test_the_template_renders_obv_conversations(loaded: tuple[Any, Any]) -> None:
    processor, _ = loaded
    image = render_prompt(processor, build_messages(QUESTION, ("image",)))
    assert image == (
        "<bos><start_of_turn>user\n<start_of_image>What instrument is used?<end_of_turn>\n"
        "<start_of_turn>model\n"
    )
    # The template has no video entry: a {"type": "video"} would leave the clip out of the prompt ...
    assert "<start_of_image>" not in render_prompt(processor, build_messages(QUESTION, ("video",)))
    # ... so a clip is one image entry per frame, in order, before the question.
    entries = FAMILY.template_kinds(["video"], [CLIP_FRAMES])
    assert entries == ("image",) * CLIP_FRAMES
    clip = render_prompt(processor, build_messages(QUESTION, entries))  # type: ignore[arg-type]
    assert clip == image.replace("<start_of_image>", "<start_of_image>" * CLIP_FRAMES)
    # A system prompt is folded into the first user turn (Gemma 3 has no system role).
    system = render_prompt(processor, build_messages("Hi", (), system_prompt="Be brief."))
    assert system == "<bos><start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n<start_of_turn>model\n"


def _frames(video: media.Video) -> list[Image.Image]:
    return [Image.fromarray(np.ascontiguousarray(frame)) for frame in video.frames]


def _check_inputs(inputs: Any, images: int) -> None:
    ids = inputs["input_ids"][0].tolist()
    assert ids[0] == SPECIAL_TOKENS["<bos>"] and ids.count(SPECIAL_TOKENS["<bos>"]) == 1
    assert ids.count(SPECIAL_TOKENS["<image_soft_token>"]) == images * TOKENS_PER_IMAGE
    assert ids.count(SPECIAL_TOKENS["<start_of_image>"]) == images
    assert ids.count(SPECIAL_TOKENS["<end_of_image>"]) == images
    assert int(inputs["token_type_ids"].sum()) == images * TOKENS_PER_IMAGE
    assert tuple(inputs["pixel_values"].shape) == (images, 3, gemma3.TINY_IMAGE_SIZE, gemma3.TINY_IMAGE_SIZE)


def _greedy_twice(model: Any, inputs: Any) -> list[int]:
    runs = []
    for _ in range(2):
        with torch.no_grad():
            out = model.generate(**inputs, max_new_tokens=6, do_sample=False)
        runs.append(out[0, inputs["input_ids"].shape[1] :].tolist())
    assert runs[0] == runs[1] and len(runs[0]) > 0
    return runs[0]


def test_a_clip_is_frames_as_images_with_256_tokens_each(loaded: tuple[Any, Any]) -> None:
    processor, model = loaded
    video = media.load_video(CLIP, FAMILY.frame_rule.video())
    assert video.indices == tuple(range(CLIP_FRAMES))
    assert video.frames.shape[1:3] == (56, 84)  # kept at the decoded size: the processor resizes
    prompt = render_prompt(processor, build_messages(QUESTION, ("image",) * CLIP_FRAMES))
    inputs = processor(
        text=[prompt],
        images=[_frames(video)],
        return_tensors="pt",
        add_special_tokens=False,  # the template wrote <bos>; the Gemma tokenizer would add another
        **FAMILY.processor_kwargs([video]),  # type: ignore[misc]
    )
    _check_inputs(inputs, CLIP_FRAMES)
    reply = _greedy_twice(model, inputs)
    assert processor.decode(reply, skip_special_tokens=True).strip()  # replies decode to text


def test_an_image_gets_256_tokens(loaded: tuple[Any, Any]) -> None:
    processor, model = loaded
    image = media.load_image(IMAGE, FAMILY.frame_rule.image())
    assert image.size == Image.open(IMAGE).size  # resize=False: the processor resizes to 896 (448 here)
    prompt = render_prompt(processor, build_messages(QUESTION, ("image",)))
    inputs = processor(text=[prompt], images=[[image]], return_tensors="pt", add_special_tokens=False)
    _check_inputs(inputs, 1)
    _greedy_twice(model, inputs)
    # Left as the processor's default, the Gemma tokenizer adds its own <bos> to the rendered one.
    doubled = processor(text=[prompt], images=[[image]], return_tensors="pt")["input_ids"][0].tolist()
    assert doubled[:2] == [SPECIAL_TOKENS["<bos>"]] * 2


def test_the_frame_rule_is_lmms_evals_gemma3_rule() -> None:
    from lmms_eval.models.model_utils.load_video import _compute_sample_count, _compute_uniform_indices

    settings = FAMILY.frame_rule.video()
    for total in (1, 2, 8, 12, 16, 31, 32, 33, 60, 91, 1800, 10_001):
        ours = media.sample_frame_indices(total, 30.0, settings)
        # lmms-eval's gemma3 (read_video, num_frm=32): min(total, 32) frames, each once.
        lmms = _compute_uniform_indices(total, _compute_sample_count(total, FRAMES, None, 30.0)).tolist()
        assert ours == lmms and len(ours) == min(total, FRAMES)
    # LLaVA-OneVision's "linspace" would repeat frames of a short clip; this rule does not.
    assert media.sample_frame_indices(12, 30.0, settings) == list(range(12))


def test_the_build_is_deterministic(twin: Path, tmp_path: Path) -> None:
    again = gemma3.build_tiny(tmp_path / "again")
    for name in ("model.safetensors", "config.json", "tokenizer.json", "generation_config.json"):
        assert (again / name).read_bytes() == (twin / name).read_bytes(), name
