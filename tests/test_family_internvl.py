"""InternVL3 (obv_eval.models.internvl) on its tiny twin: the -hf checkpoints' tokenizer ids and chat
template, obv's conversation through that template, frames and images from obv_eval.media through the
real processor (one 448-px tile of 256 tokens per frame; images tiled), greedy generation on CPU, the
frame rule against the processor's own sampler, and a deterministic build."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import av
import pytest
import torch
from PIL import Image
from transformers import AutoModelForImageTextToText, AutoProcessor, InternVLVideoProcessor
from transformers.video_utils import VideoMetadata

from obv_eval import media
from obv_eval.backends.base import GenerationRequest, GenerationSettings, MediaSettings
from obv_eval.backends.hf import HFBackend
from obv_eval.conversation import build_messages, render_prompt
from obv_eval.models import families, family_of_checkpoint, internvl
from obv_eval.models.internvl import FAMILY, IMAGE_SEQ_LENGTH, IMAGE_TOKEN_ID
from obv_eval.sources import SAMPLES_DIR, MediaRef
from obv_eval.tiny_model import _qwen_tokenizer_json

CLIP = SAMPLES_DIR / "media" / "surgeryvqa" / "Qm7_vB2xKpL_112_115.mp4"
IMAGE = SAMPLES_DIR / "media" / "vqarad" / "synpic40096.jpg"


@pytest.fixture(scope="module")
def twin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return internvl.build_tiny(tmp_path_factory.mktemp("internvl") / "twin")


@pytest.fixture(scope="module")
def loaded(twin: Path) -> tuple[Any, Any]:
    return AutoProcessor.from_pretrained(twin), AutoModelForImageTextToText.from_pretrained(twin).eval()


def _greedy(model: Any, inputs: Any) -> list[int]:
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=4, do_sample=False)
    return [int(t) for t in out[0, inputs["input_ids"].shape[1] :]]


def test_the_twin_is_the_family_with_the_real_token_ids(twin: Path, loaded: tuple[Any, Any]) -> None:
    assert family_of_checkpoint(twin) is FAMILY and families()["internvl"] is FAMILY
    processor, model = loaded
    assert type(model).__name__ == FAMILY.model_class and type(processor).__name__ == FAMILY.processor_class
    config = json.loads((twin / "config.json").read_text())
    assert config["image_token_id"] == IMAGE_TOKEN_ID and config["downsample_ratio"] == 0.5
    assert config["vision_config"]["image_size"] == [448, 448] and config["vision_config"]["patch_size"] == [
        14,
        14,
    ]
    # 256 tokens per tile: (448 / 14)^2 patches, pixel-shuffled by 0.5 in each direction
    assert config["image_seq_length"] == IMAGE_SEQ_LENGTH == (448 // 14) ** 2 // 4
    tok = processor.tokenizer
    ids = {
        t: tok.convert_tokens_to_ids(t)
        for t in ("<|endoftext|>", "<|im_end|>", "<img>", "</img>", "<IMG_CONTEXT>")
    }
    assert ids == {
        "<|endoftext|>": 151643,
        "<|im_end|>": 151645,
        "<img>": 151665,
        "</img>": 151666,
        "<IMG_CONTEXT>": 151667,
    }
    assert tok.convert_tokens_to_ids("</box>") == config["text_config"]["vocab_size"] - 1 == 151673
    assert tok.eos_token == FAMILY.eos_token and model.generation_config.eos_token_id == 151645
    # The real Qwen2 vocabulary and merges
    ours = json.loads((twin / "tokenizer.json").read_text())["model"]
    theirs = json.loads(_qwen_tokenizer_json().read_text())["model"]
    assert ours["vocab"] == theirs["vocab"] and ours["merges"] == theirs["merges"]
    from obv_eval.registry import MODELS

    assert MODELS[FAMILY.tiny_name or ""].family == "internvl"


def test_the_chat_template_renders_obvs_conversation(twin: Path, loaded: tuple[Any, Any]) -> None:
    processor, _ = loaded
    assert (twin / "chat_template.jinja").read_text() == internvl.CHAT_TEMPLATE
    assert len(internvl.CHAT_TEMPLATE.encode()) == 481  # the size of the -hf repos' chat_template.jinja
    video = render_prompt(processor, build_messages("Is there bleeding?", ("video",)))
    assert video == "<|im_start|>user\n<video>\nIs there bleeding?<|im_end|>\n<|im_start|>assistant\n"
    image = render_prompt(processor, build_messages("What organ?", ("image",), system_prompt="Be brief."))
    assert image == (
        "<|im_start|>system\nBe brief.<|im_end|>\n"
        "<|im_start|>user\n<IMG_CONTEXT>\nWhat organ?<|im_end|>\n<|im_start|>assistant\n"
    )


def test_a_clip_is_one_tile_per_frame_and_generates_deterministically(loaded: tuple[Any, Any]) -> None:
    processor, model = loaded
    video = media.load_video(CLIP, FAMILY.frame_rule.video())
    assert video.num_frames == internvl.NUM_FRAMES
    text = render_prompt(processor, build_messages("What is shown?", ("video",)))
    inputs = processor(
        text=[text], videos=[video.frames], return_tensors="pt", **FAMILY.processor_kwargs([video])
    )  # type: ignore[misc]
    assert tuple(inputs["pixel_values"].shape) == (video.num_frames, 3, 448, 448)
    ids = inputs["input_ids"][0].tolist()
    assert ids.count(IMAGE_TOKEN_ID) == IMAGE_SEQ_LENGTH * video.num_frames
    rendered = processor.tokenizer.decode(ids)
    frames = [
        f"Frame{i + 1}: <img>" + "<IMG_CONTEXT>" * IMAGE_SEQ_LENGTH + "</img>"
        for i in range(video.num_frames)
    ]
    assert "<|im_start|>user\n" + "\n".join(frames) + "\nWhat is shown?<|im_end|>" in rendered
    first = _greedy(model, inputs)
    assert len(first) == 4 and _greedy(model, inputs) == first


def _official_tiles(width: int, height: int, max_num: int = 12) -> int:
    """InternVL's dynamic_preprocess (model card): the grid of at most max_num 448-px tiles whose aspect
    ratio is closest to the image's (ties to the larger grid when the image is big), plus a thumbnail."""
    aspect = width / height
    grids = sorted(
        {
            (i, j)
            for n in range(1, max_num + 1)
            for i in range(1, n + 1)
            for j in range(1, n + 1)
            if i * j <= max_num
        },
        key=lambda g: g[0] * g[1],
    )
    best, best_diff = (1, 1), float("inf")
    for i, j in grids:
        diff = abs(aspect - i / j)
        if diff < best_diff:
            best, best_diff = (i, j), diff
        elif diff == best_diff and width * height > 0.5 * 448 * 448 * i * j:
            best = (i, j)
    tiles = best[0] * best[1]
    return tiles + 1 if tiles > 1 else tiles


def test_an_image_is_tiled_at_its_decoded_size_and_generates_deterministically(
    loaded: tuple[Any, Any],
) -> None:
    processor, model = loaded
    image = media.load_image(IMAGE, FAMILY.frame_rule.image())
    with Image.open(IMAGE) as original:
        assert image.size == original.size  # not resized by obv: the processor tiles it
    text = render_prompt(processor, build_messages("What organ?", ("image",)))
    inputs = processor(text=[text], images=[image], return_tensors="pt")
    tiles = inputs["pixel_values"].shape[0]
    assert tiles == _official_tiles(*image.size) and tiles > 1
    assert inputs["input_ids"][0].tolist().count(IMAGE_TOKEN_ID) == IMAGE_SEQ_LENGTH * tiles
    first = _greedy(model, inputs)
    assert _greedy(model, inputs) == first


def test_the_frame_rule_is_the_processors_sampler() -> None:
    settings = FAMILY.frame_rule.video()
    assert (settings.sampler, settings.nframes, settings.resize) == ("midpoint", internvl.NUM_FRAMES, False)
    sampler = InternVLVideoProcessor()
    for total in range(internvl.NUM_FRAMES, 400):
        theirs = sampler.sample_frames(VideoMetadata(total_num_frames=total, fps=25.0), num_frames=8).tolist()
        assert internvl.processor_sample_indices(total) == theirs
        assert media.sample_frame_indices(total, 25.0, settings) == theirs
    # Frames at their decoded size: the video processor makes each one 448-px tile.
    with av.open(str(CLIP)) as container:
        stream = container.streams.video[0]
        size = (stream.height, stream.width)
    assert media.load_video(CLIP, settings).frames.shape[1:3] == size


def test_the_frame_rule_takes_the_processors_frames() -> None:
    video = media.load_video(CLIP, FAMILY.frame_rule.video())
    assert list(video.indices) == internvl.processor_sample_indices(video.total_frames)


def test_the_transformers_backend_runs_the_native_rule_batched_as_alone(twin: Path) -> None:
    native = MediaSettings(FAMILY.frame_rule.video(), FAMILY.frame_rule.image())
    clip = MediaRef("video", CLIP.name, str(CLIP.parent))
    requests = [
        GenerationRequest(("v", 0), "What is shown?", (clip,)),
        GenerationRequest(("v", 1), "Which instrument is used?", (clip,)),
        GenerationRequest(("i", 0), "What organ?", (MediaRef("image", IMAGE.name, str(IMAGE.parent)),)),
        GenerationRequest(("t", 0), "Hello?", ()),
    ]
    settings = GenerationSettings(max_new_tokens=2)
    batched = HFBackend(twin, batch_size=2, generation=settings, media=native).generate(
        requests, progress=False
    )
    assert [o.error for o in batched] == [None] * 4
    n = internvl.NUM_FRAMES
    assert [o.frames for o in batched] == [[n], [n], [], []]
    with Image.open(IMAGE) as original:
        tiles = _official_tiles(*original.size)
    per_clip = IMAGE_SEQ_LENGTH * n
    assert [o.visual_tokens for o in batched] == [per_clip, per_clip, IMAGE_SEQ_LENGTH * tiles, 0]
    alone = HFBackend(twin, batch_size=1, generation=settings, media=native).generate(
        requests, progress=False
    )
    assert [o.text for o in alone] == [o.text for o in batched]


def test_two_builds_are_byte_identical(twin: Path, tmp_path: Path) -> None:
    again = internvl.build_tiny(tmp_path / "again")
    names = sorted(p.name for p in twin.iterdir())
    assert names == sorted(p.name for p in again.iterdir()) and "model.safetensors" in names
    for name in names:
        assert (twin / name).read_bytes() == (again / name).read_bytes(), name
