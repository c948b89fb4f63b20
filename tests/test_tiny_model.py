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


# Hand-checked against Qwen2-VL-Instruct's tokenizer (FACTS.md section 4).
SYSTEM_IDS = [151644, 8948, 198, 2610, 525, 264, 10950, 17847, 13, 151645]


def test_tokenizer_is_qwen2vls_real_one(tiny_model_path: Path) -> None:
    tokenizer = AutoProcessor.from_pretrained(tiny_model_path).tokenizer
    ids = tokenizer("<|im_start|>system\nYou are a helpful assistant.<|im_end|>")["input_ids"]
    assert ids == SYSTEM_IDS
    vision = ["<|vision_start|>", "<|image_pad|>", "<|video_pad|>", "<|vision_end|>"]
    assert tokenizer.convert_tokens_to_ids(vision) == [151652, 151655, 151656, 151653]
    assert len(tokenizer) == 151657  # 151,643 BPE entries + Qwen2-VL's 14 added tokens
    config = AutoModelForImageTextToText.from_pretrained(tiny_model_path).config
    assert config.text_config.vocab_size == 151936


def test_rendered_prompts_tokenize_with_the_real_vocabulary(tiny_model_path: Path) -> None:
    processor = AutoProcessor.from_pretrained(tiny_model_path)
    rng = np.random.default_rng(0)
    video = rng.integers(0, 255, size=(4, 56, 56, 3), dtype=np.uint8)
    image = Image.fromarray(rng.integers(0, 255, size=(56, 56, 3), dtype=np.uint8))
    for kinds, media in ((["video"], {"videos": [video]}), (["image"], {"images": [image]}), ([], {})):
        prompt = render_prompt(processor, build_messages("Is there a mass?", kinds))  # type: ignore[arg-type]
        ids = processor(text=[prompt], return_tensors="pt", **media)["input_ids"][0].tolist()
        assert ids[: len(SYSTEM_IDS)] == SYSTEM_IDS
        # "Is there a mass?" in Qwen's vocabulary, then <|im_end|> \n <|im_start|> assistant \n
        assert ids[-10:] == [3872, 1052, 264, 3072, 30, 151645, 198, 151644, 77091, 198]
        if kinds:
            pad = 151656 if kinds == ["video"] else 151655
            start, end = ids.index(151652), ids.index(151653)
            assert set(ids[start + 1 : end]) == {pad}
            assert end - start - 1 > 0


def test_tokenizer_equals_one_built_from_qwen2vls_own_files(tiny_model_path: Path, realdata: Path) -> None:
    import json

    from transformers import Qwen2Tokenizer

    files = realdata / "qwen2-vl-2b"
    config = json.loads((files / "tokenizer_config.json").read_text())
    lines = (files / "merges.txt").read_text(encoding="utf-8").splitlines()
    merges = [tuple(line.split(" ")) for line in lines if line and not line.startswith("#version")]
    reference = Qwen2Tokenizer(
        vocab=json.loads((files / "vocab.json").read_text(encoding="utf-8")), merges=merges
    )
    reference.add_special_tokens(
        {"additional_special_tokens": [t["content"] for t in config["added_tokens_decoder"].values()]}
    )
    ours = AutoProcessor.from_pretrained(tiny_model_path)
    texts = [
        render_prompt(ours, build_messages("Which chamber?\nA. Left atrium\nB. Right", ["video"])),
        render_prompt(ours, build_messages("Ist das Gefäß erweitert? 这是什么 μm – 12.5%", ["image"])),
        "Context: Mitochondrial DNA (mtDNA) ... \t\n  β-blockers' effect?",
    ]
    for text in texts:
        assert ours.tokenizer(text)["input_ids"] == reference(text)["input_ids"]
    assert {int(k): v["content"] for k, v in config["added_tokens_decoder"].items()} == {
        i: ours.tokenizer.convert_ids_to_tokens(i) for i in range(151643, 151657)
    }
    assert ours.chat_template == (files / "chat_template_instruct.jinja").read_text()


def test_bundled_qwen2vl_files_are_the_published_ones(realdata: Path) -> None:
    from obv_eval.tiny_model import ASSETS

    for name in ("config.json", "preprocessor_config.json", "generation_config.json", "LICENSE"):
        assert (ASSETS / name).read_bytes() == (realdata / "qwen2-vl-2b" / name).read_bytes(), name
