"""Qwen3-VL (obv_eval.models.qwen3_vl): its tiny twin is a real Qwen3VLForConditionalGeneration with the real
tokenizer, chat template and processor settings, built deterministically offline; the family's frame rule is
qwen-vl-utils' with image_patch_size=16; the processor keeps obv's frames, times each frame pair from the
clip's metadata and inserts the visual tokens the model expects; greedy generation is deterministic on CPU."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from media_factories import use_pyav_for_qwen_vl_utils

from obv_eval.conversation import build_messages, render_prompt
from obv_eval.data.synth import write_video
from obv_eval.media import Video, VideoSettings, load_image, load_video
from obv_eval.models import families, family_of_checkpoint, qwen3_vl
from obv_eval.models.qwen3_vl import FAMILY
from obv_eval.sources import SAMPLES_DIR

CLIP = SAMPLES_DIR / "media" / "surgeryvqa" / "Qm7_vB2xKpL_112_115.mp4"
IMAGE = SAMPLES_DIR / "media" / "vqarad" / "synpic47783.jpg"
# Qwen3-VL-8B-Instruct's chat template as Qwen's GGUF of it ships it (pinned by TensorSharp's tests).
TEMPLATE_SHA256 = "3636d0f0bd6bef02654cdffdc447b79cb2cef8ab02cc75267345946291a489e4"


@pytest.fixture(scope="module")
def twin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return qwen3_vl.build_tiny(tmp_path_factory.mktemp("qwen3") / "tiny")


@pytest.fixture(scope="module")
def loaded(twin: Path) -> tuple[Any, Any]:
    from transformers import AutoModelForImageTextToText, AutoProcessor

    return AutoProcessor.from_pretrained(twin), AutoModelForImageTextToText.from_pretrained(twin).eval()


def test_the_twin_is_the_family_and_builds_byte_identically(twin: Path, tmp_path: Path) -> None:
    assert family_of_checkpoint(twin) is FAMILY
    assert families()["qwen3_vl"] is FAMILY
    again = qwen3_vl.build_tiny(tmp_path / "again")
    assert (again / "model.safetensors").read_bytes() == (twin / "model.safetensors").read_bytes()
    for name in ("config.json", "processor_config.json", "tokenizer.json", "chat_template.jinja"):
        assert (again / name).read_bytes() == (twin / name).read_bytes(), name


def test_loads_offline_as_the_real_classes_with_the_real_settings(loaded: tuple[Any, Any]) -> None:
    processor, model = loaded
    assert type(model).__name__ == FAMILY.model_class and type(processor).__name__ == FAMILY.processor_class
    assert type(processor.video_processor).__name__ == "Qwen3VLVideoProcessor"
    config = model.config
    assert (config.image_token_id, config.video_token_id) == (151655, 151656)
    assert (config.vision_start_token_id, config.vision_end_token_id) == (151652, 151653)
    vision = config.vision_config
    assert (vision.patch_size, vision.spatial_merge_size, vision.temporal_patch_size) == (16, 2, 2)
    assert vision.num_position_embeddings == 2304 and list(vision.deepstack_visual_indexes) == [0]
    assert config.text_config.rope_parameters["mrope_interleaved"] is True
    assert config.text_config.vocab_size == 151936
    assert processor.image_processor.size == {"shortest_edge": 65536, "longest_edge": 16777216}
    assert processor.video_processor.size == {"shortest_edge": 4096, "longest_edge": 25165824}
    assert list(processor.image_processor.image_mean) == [0.5, 0.5, 0.5]


def test_tokenizer_and_chat_template_are_qwen3_vl_instructs(twin: Path, loaded: tuple[Any, Any]) -> None:
    processor, _ = loaded
    tokenizer = processor.tokenizer
    template = (twin / "chat_template.jinja").read_bytes()
    assert len(template) == 5292 and hashlib.sha256(template).hexdigest() == TEMPLATE_SHA256
    assert len(tokenizer) == 151669
    assert tokenizer.convert_tokens_to_ids(["<|endoftext|>", "<|im_end|>", "<|video_pad|>", "</think>"]) == [
        151643,
        151645,
        151656,
        151668,
    ]
    assert tokenizer.eos_token == FAMILY.eos_token == "<|im_end|>" and tokenizer.pad_token == "<|endoftext|>"
    assert tokenizer("<think>x</think>")["input_ids"][0] == 151667  # an added token, not split into bytes

    # No default system prompt (Qwen2-VL's template adds one); the typed entries render the placeholders.
    video = render_prompt(processor, build_messages("What is shown?", ("video",)))
    assert video == (
        "<|im_start|>user\n<|vision_start|><|video_pad|><|vision_end|>What is shown?<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    image = render_prompt(processor, build_messages("Is it normal?", ("image",), system_prompt="Be brief."))
    assert image == (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n"
        "<|vision_start|><|image_pad|><|vision_end|>Is it normal?<|im_end|>\n<|im_start|>assistant\n"
    )


def test_frame_rule_is_qwen_vl_utils_with_patch_16(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    vp = pytest.importorskip("qwen_vl_utils.vision_process")
    use_pyav_for_qwen_vl_utils(vp, monkeypatch)
    small = write_video(tmp_path / "small.mp4", num_frames=30, fps=10, width=300, height=200, seed=3)
    for clip in (CLIP, small):
        ele = {"video": str(clip)}
        (reference, metadata), sample_fps = vp.fetch_video(
            ele, image_patch_size=16, return_video_sample_fps=True, return_video_metadata=True
        )
        video = load_video(clip, FAMILY.frame_rule.video())
        assert list(video.indices) == list(metadata["frames_indices"].tolist())
        assert video.sampled_fps == pytest.approx(sample_fps)
        assert tuple(reference.shape[2:]) == video.frames.shape[1:3]
        assert video.frames.shape[1] % 32 == 0 and video.frames.shape[2] % 32 == 0
    # The small clip is raised to qwen-vl-utils' per-frame minimum of 128 tokens of 32 x 32 pixels.
    assert video.frames.shape[1] * video.frames.shape[2] >= 128 * 32 * 32

    from PIL import Image

    tiny = tmp_path / "tiny.png"
    Image.fromarray(np.full((40, 50, 3), 90, np.uint8)).save(tiny)
    for path in (IMAGE, tiny):
        assert (
            load_image(path, FAMILY.frame_rule.image()).size
            == vp.fetch_image({"image": str(path)}, image_patch_size=16).size
        )
    assert load_image(tiny, FAMILY.frame_rule.image()).size == (96, 64)  # raised to >= 4 tokens of 32 x 32


def _video_inputs(processor: Any, video: Video, **kwargs: Any) -> Any:
    prompt = render_prompt(processor, build_messages("What is shown?", ("video",)))
    return processor(text=[prompt], videos=[video.frames], return_tensors="pt", **kwargs)


def test_processor_keeps_obvs_frames_times_each_pair_and_the_model_generates_deterministically(
    loaded: tuple[Any, Any],
) -> None:
    processor, model = loaded
    video = load_video(CLIP, FAMILY.frame_rule.video())
    assert FAMILY.processor_kwargs is qwen3_vl.processor_kwargs
    inputs = _video_inputs(processor, video, **qwen3_vl.processor_kwargs([video]))
    frames, height, width = video.frames.shape[:3]
    # Kept as sampled and sized: one temporal patch per frame pair, 16-pixel patches of obv's frame size.
    assert inputs["video_grid_thw"].tolist() == [[frames // 2, height // 16, width // 16]]
    per_pair = (height // 32) * (width // 32)
    assert int((inputs["input_ids"] == model.config.video_token_id).sum()) == frames // 2 * per_pair
    text = processor.tokenizer.decode(inputs["input_ids"][0])
    blocks = re.findall(r"<([\d.]+) seconds><\|vision_start\|>((?:<\|video_pad\|>)+)<\|vision_end\|>", text)
    # Each pair's time: the mean of its two frames' source times (from the clip's metadata, not 24 fps).
    seconds = [i / video.source_fps for i in video.indices]
    expected = [f"{(seconds[i] + seconds[i + 1]) / 2:.1f}" for i in range(0, frames, 2)]
    assert [t for t, _ in blocks] == expected
    assert all(len(pads) == per_pair * len("<|video_pad|>") for _, pads in blocks)
    untimed = _video_inputs(processor, video, do_sample_frames=False, do_resize=False)
    assert processor.tokenizer.decode(untimed["input_ids"][0]) != text  # without metadata: 24 fps assumed

    with torch.no_grad():
        first = model.generate(**inputs, max_new_tokens=6, do_sample=False)
        second = model.generate(**inputs, max_new_tokens=6, do_sample=False)
    assert torch.equal(first, second) and first.shape[1] == inputs["input_ids"].shape[1] + 6


def test_frames_off_the_32_pixel_grid_are_put_on_it_by_the_processor(loaded: tuple[Any, Any]) -> None:
    processor, _ = loaded
    native = load_video(CLIP, FAMILY.frame_rule.video())
    other = load_video(CLIP, VideoSettings())  # Qwen2-VL's rule: sides in multiples of 28
    assert qwen3_vl.processor_kwargs([native])["do_resize"] is False
    assert qwen3_vl.processor_kwargs([other])["do_resize"] is True
    frames, height, width = other.frames.shape[:3]
    assert height % 32 or width % 32  # patchify would fail on these as they are
    grid = _video_inputs(processor, other, **qwen3_vl.processor_kwargs([other]))["video_grid_thw"][0].tolist()
    assert grid[0] == frames // 2 and grid[1] % 2 == 0 and grid[2] % 2 == 0


def test_an_image_gets_one_token_per_32_pixel_square(loaded: tuple[Any, Any]) -> None:
    processor, model = loaded
    image = load_image(IMAGE, FAMILY.frame_rule.image())
    prompt = render_prompt(processor, build_messages("Is it normal?", ("image",)))
    inputs = processor(text=[prompt], images=[image], return_tensors="pt")
    assert inputs["image_grid_thw"].tolist() == [[1, image.height // 16, image.width // 16]]
    tokens = int((inputs["input_ids"] == model.config.image_token_id).sum())
    assert tokens == (image.height // 32) * (image.width // 32)
    with torch.no_grad():
        first = model.generate(**inputs, max_new_tokens=6, do_sample=False)
        second = model.generate(**inputs, max_new_tokens=6, do_sample=False)
    assert torch.equal(first, second)


def _scored_run(backend: Any, requests: list[Any]) -> tuple[list[str], list[int | None], torch.Tensor]:
    """Texts, prefill tokens and the scores of every generated step (a random tiny model's greedy tokens
    alone hide small differences)."""
    from obv_eval import media

    scores: list[torch.Tensor] = []

    def timed(kwargs: dict[str, Any], config: Any) -> torch.Tensor:
        out = backend.model.generate(
            **kwargs, generation_config=config, output_scores=True, return_dict_in_generate=True
        )
        scores.append(torch.stack(out.scores, 1))
        return out.sequences

    backend._timed_generate = timed
    media.clear_cache()
    outputs = backend.generate(requests, progress=False)
    assert not [o.error for o in outputs if o.error]
    return [o.text for o in outputs], [o.prefill_tokens for o in outputs], torch.cat(scores)


def test_one_prefill_per_clip_is_exact_in_fp32(twin: Path, tmp_path: Path) -> None:
    from obv_eval.backends.base import GenerationRequest, GenerationSettings, MediaSettings
    from obv_eval.backends.hf import HFBackend
    from obv_eval.sources import MediaRef

    # 6 frames at 6 fps: 4 sampled over one second, so the pairs sit at 0.2 s and 0.8 s.
    write_video(tmp_path / "short.mp4", num_frames=6, fps=6, width=224, height=168, seed=5)
    ref = MediaRef("video", "short.mp4", str(tmp_path))
    questions = ["What is shown?", "Is there bleeding?", "Describe the anatomy visible, in one sentence."]
    requests = [GenerationRequest(("video", i), q, (ref,)) for i, q in enumerate(questions)]
    native = MediaSettings(video=FAMILY.frame_rule.video(), image=FAMILY.frame_rule.image())
    settings = GenerationSettings(max_new_tokens=4)
    whole = HFBackend(twin, batch_size=1, generation=settings, prefix_reuse=False, media=native)
    reuse = HFBackend(twin, batch_size=2, generation=settings, media=native)
    assert reuse.prefix_reuse and not whole.prefix_reuse

    texts, whole_prefill, alone = _scored_run(whole, requests)
    shared_texts, shared_prefill, shared = _scored_run(reuse, requests)
    assert shared_prefill[0] == whole_prefill[0] and sum(shared_prefill) < sum(whole_prefill) / 2
    assert shared_texts == texts
    assert torch.allclose(shared, alone, atol=1e-5, rtol=0), (shared - alone).abs().max()

    # The comparison sees small changes: without each clip's metadata (24 fps assumed) the scores move.
    whole._family_kwargs = lambda videos: {"do_sample_frames": False, "do_resize": False}  # type: ignore[method-assign]
    _, _, untimed = _scored_run(whole, requests)
    assert (untimed - alone).abs().max() > 1e-4


def test_the_family_says_what_obv_needs_to_know() -> None:
    from obv_eval.registry import MODELS

    assert MODELS[FAMILY.tiny_name or ""].family == "qwen3_vl"
    assert FAMILY.video_timing == "absolute" and FAMILY.prefix_reuse
    assert FAMILY.token_count == "processor" and FAMILY.feature_cache is False
    settings = FAMILY.frame_rule.video()
    assert (settings.factor, settings.min_pixels, settings.max_pixels) == (32, 131072, 786432)
    assert settings.total_pixels == 117964800 and settings.fps == 2.0 and settings.sampler == "qwen-vl-utils"
    assert FAMILY.describe()["frame_rule"] == "qwen-vl-utils-0.0.14-patch16"
