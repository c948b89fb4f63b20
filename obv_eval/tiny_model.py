"""The embedded default model `tiny-qwen2vl`: a random-weight Qwen2-VL built offline.

It is a real `Qwen2VLForConditionalGeneration` with a real `Qwen2VLProcessor` (image and video
processors, a byte-level BPE tokenizer trained here on seeded text, and a chat template that
renders like Qwen2-VL-Instruct's). Everything is derived from fixed seeds, so two builds on any
machine give the same tokenizer and the same weights, and greedy generation is reproducible.
The folder is built once into the cache and reused.
"""

from __future__ import annotations

import os
import random
import shutil
import tempfile
from pathlib import Path

from filelock import FileLock

# Bump when anything below changes what gets built: the cache folder is keyed on it.
TINY_MODEL_VERSION = "2"
TINY_MODEL_NAME = "tiny-qwen2vl"
_SEED = 1234

# Qwen2-VL-Instruct's chat template (system prompt defaulted, vision placeholders per item).
QWEN2VL_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# In Qwen2-VL's order, so the ids keep Qwen's relative layout.
QWEN2VL_SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
]

_WORDS = [
    "the",
    "a",
    "of",
    "and",
    "in",
    "is",
    "with",
    "to",
    "on",
    "left",
    "right",
    "ventricle",
    "atrium",
    "valve",
    "mitral",
    "aortic",
    "tricuspid",
    "apical",
    "parasternal",
    "view",
    "long",
    "short",
    "axis",
    "echo",
    "ultrasound",
    "ct",
    "mri",
    "x-ray",
    "scan",
    "surgery",
    "incision",
    "laparoscopic",
    "suture",
    "grasper",
    "scissors",
    "clip",
    "cautery",
    "gallbladder",
    "liver",
    "artery",
    "vein",
    "duct",
    "normal",
    "dilated",
    "enlarged",
    "hypertrophy",
    "effusion",
    "yes",
    "no",
    "maybe",
    "what",
    "which",
    "where",
    "how",
    "is",
    "there",
    "lesion",
    "tumor",
    "mass",
    "lung",
    "heart",
    "kidney",
    "brain",
    "bone",
    "fracture",
    "cell",
    "tissue",
    "stain",
    "biopsy",
    "patient",
    "year",
    "old",
    "man",
    "woman",
    "presents",
    "with",
    "pain",
    "fever",
    "history",
    "examination",
    "diagnosis",
    "treatment",
    "answer",
    "option",
    "question",
    "describe",
    "video",
    "image",
    "shows",
    "showing",
    "A",
    "B",
    "C",
    "D",
    "0",
    "1",
    "2",
    "3",
    "4",
    "5",
    "6",
    "7",
    "8",
    "9",
]


def default_cache_root() -> Path:
    """Where obv-eval keeps what it builds: $OBV_EVAL_HOME, else ~/.cache/obv-eval."""
    return Path(os.environ.get("OBV_EVAL_HOME", Path.home() / ".cache" / "obv-eval"))


def tiny_model_dir(cache_root: Path | None = None) -> Path:
    """Return the tiny model's folder, building it first if it is not in the cache."""
    root = cache_root or default_cache_root()
    target = root / "models" / f"{TINY_MODEL_NAME}-v{TINY_MODEL_VERSION}"
    if (target / "config.json").exists():
        return target
    root.mkdir(parents=True, exist_ok=True)
    with FileLock(str(root / f".{TINY_MODEL_NAME}.lock")):
        if not (target / "config.json").exists():
            # Build beside the target and rename, so a crash never leaves half a model.
            staging = Path(tempfile.mkdtemp(prefix=".tiny-build-", dir=root))
            try:
                build_tiny_model(staging)
                target.parent.mkdir(parents=True, exist_ok=True)
                staging.rename(target)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
    return target


def _training_corpus(n_lines: int = 4000) -> list[str]:
    rng = random.Random(_SEED)
    return [" ".join(rng.choice(_WORDS) for _ in range(rng.randint(3, 14))) for _ in range(n_lines)]


def build_tiny_model(out_dir: Path) -> Path:
    """Build the tiny Qwen2-VL (tokenizer, processor, weights) into `out_dir`."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import (
        GenerationConfig,
        PreTrainedTokenizerFast,
        Qwen2VLConfig,
        Qwen2VLForConditionalGeneration,
        Qwen2VLImageProcessor,
        Qwen2VLProcessor,
        Qwen2VLVideoProcessor,
    )

    out_dir.mkdir(parents=True, exist_ok=True)

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=700,
        min_frequency=2,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(_training_corpus(), trainer=trainer)
    bpe.add_special_tokens(QWEN2VL_SPECIAL_TOKENS)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        padding_side="left",
        extra_special_tokens={"image_token": "<|image_pad|>", "video_token": "<|video_pad|>"},
    )
    tokenizer.chat_template = QWEN2VL_CHAT_TEMPLATE

    # Pixel budgets wide open: obv_eval.media already resized the frames to Qwen2-VL's grid,
    # and the processor must not resize them a second time.
    size = {"shortest_edge": 28 * 28, "longest_edge": 4096 * 28 * 28}
    processor = Qwen2VLProcessor(
        image_processor=Qwen2VLImageProcessor(size=size),
        video_processor=Qwen2VLVideoProcessor(size=size),
        tokenizer=tokenizer,
        chat_template=QWEN2VL_CHAT_TEMPLATE,
    )

    def token_id(token: str) -> int:
        found = tokenizer.convert_tokens_to_ids(token)
        assert isinstance(found, int), token
        return found

    vocab_size = -(-len(tokenizer) // 64) * 64  # padded to a multiple of 64 like real checkpoints
    config = Qwen2VLConfig(
        text_config={
            "vocab_size": vocab_size,
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            # head size 32: the smallest that vLLM's CPU attention kernels take (16 is refused)
            "num_attention_heads": 2,
            "num_key_value_heads": 1,
            "max_position_embeddings": 4096,
            "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [4, 6, 6]},
            "bos_token_id": token_id("<|endoftext|>"),
            "eos_token_id": token_id("<|im_end|>"),
            "pad_token_id": token_id("<|endoftext|>"),
        },
        vision_config={
            "depth": 2,
            "embed_dim": 32,
            "hidden_size": 64,
            "num_heads": 2,
            "mlp_ratio": 2,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
        },
        image_token_id=token_id("<|image_pad|>"),
        video_token_id=token_id("<|video_pad|>"),
        vision_start_token_id=token_id("<|vision_start|>"),
        vision_end_token_id=token_id("<|vision_end|>"),
        # Tied random embeddings only ever generate newlines.
        tie_word_embeddings=False,
    )
    torch.manual_seed(_SEED)
    model = Qwen2VLForConditionalGeneration(config).eval()
    model.generation_config = GenerationConfig(
        do_sample=False,
        eos_token_id=token_id("<|im_end|>"),
        pad_token_id=token_id("<|endoftext|>"),
    )
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    return out_dir
