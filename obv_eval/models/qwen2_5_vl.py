"""Qwen2.5-VL: Qwen2-VL's successor (3B, 7B, 72B), and its tiny twin `tiny-qwen2.5-vl`.

* class and processor: ``Qwen2_5_VLForConditionalGeneration``, ``Qwen2_5_VLProcessor`` with Qwen2-VL's
  image and video processors (transformers maps ``qwen2_5_vl`` to ``Qwen2VLImageProcessor`` and
  ``Qwen2VLVideoProcessor``);
* frames and images: qwen-vl-utils 0.0.14, the same rule as Qwen2-VL (2 fps, 28-pixel factor: patch
  14, merge 2), which is what Qwen2.5-VL's model card uses (``process_vision_info``);
* video positions in absolute time: the processor turns each clip's sampled fps into
  ``second_per_grid_ts = temporal_patch_size / fps`` and the model steps the temporal position id by
  ``tokens_per_second * second_per_grid_ts`` per frame pair. transformers reads the fps from the video
  metadata (``VideoMetadata.sampled_fps``, 24 when none is given), so the backends pass each clip's
  metadata (source fps, total frames, sampled indices): sampled_fps is then qwen-vl-utils' ``sample_fps``;
* chat template: Qwen2.5-VL-Instruct's is Qwen2-VL-Instruct's (same default system prompt, same
  ``<|vision_start|><|video_pad|><|vision_end|>`` for a video entry);
* prefix reuse: exact (tests/test_families.py), once the prefix's forward also gets ``second_per_grid_ts``.

The tiny twin is a real ``Qwen2_5_VLForConditionalGeneration`` with Qwen2-VL's real tokenizer (the
Qwen2 vocabulary; Qwen2.5-VL has the same 151,643 entries and added tokens 151643-151656) and processor
settings, a scaled-down copy of Qwen2.5-VL-3B-Instruct's config (its token ids, ``tokens_per_second``
2, window attention of 112 pixels with full attention in the last block, M-RoPE), seeded random weights.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from obv_eval.models import Family
from obv_eval.models.qwen2_vl import QWEN_VL_UTILS, VIDEO_IN_TEMPLATE
from obv_eval.tiny_model import (
    ASSETS,
    qwen_processor,
    save_random_model,
)

TINY_NAME = "tiny-qwen2.5-vl"
# Bump when anything below changes what gets built: the cache folder is keyed on it.
TINY_VERSION = "1"


def processor() -> Any:
    """A Qwen2_5_VLProcessor with the real tokenizer, chat template and preprocessor settings."""
    from transformers import Qwen2_5_VLProcessor

    return qwen_processor(Qwen2_5_VLProcessor)


def build_tiny(out_dir: Path) -> Path:
    """Build tiny-qwen2.5-vl (real tokenizer and processor, tiny random weights) into `out_dir`."""
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    real = json.loads((ASSETS / "config.json").read_text())  # the token ids are Qwen2-VL's and 2.5's
    config = Qwen2_5_VLConfig(
        text_config={
            "vocab_size": real["vocab_size"],
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,  # head size 32, as tiny-qwen2vl (vLLM's CPU kernels take it)
            "num_key_value_heads": 1,
            "max_position_embeddings": 4096,
            "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [4, 6, 6]},
            "bos_token_id": real["bos_token_id"],
            "eos_token_id": real["eos_token_id"],
            "pad_token_id": real["bos_token_id"],
        },
        vision_config={
            "depth": 2,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_heads": 2,
            "out_hidden_size": 64,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "tokens_per_second": 2,  # Qwen2.5-VL-3B/7B-Instruct's value
            "window_size": 112,
            "fullatt_block_indexes": [1],  # the real 32 blocks: full attention in every 8th, last included
        },
        image_token_id=real["image_token_id"],
        video_token_id=real["video_token_id"],
        vision_start_token_id=real["vision_start_token_id"],
        vision_end_token_id=real["vision_end_token_id"],
        tie_word_embeddings=False,  # tied random embeddings only ever generate newlines
    )
    return save_random_model(out_dir, config, Qwen2_5_VLForConditionalGeneration, processor())


FAMILY = Family(
    name="qwen2_5_vl",
    title="Qwen2.5-VL",
    model_types=("qwen2_5_vl",),
    model_class="Qwen2_5_VLForConditionalGeneration",
    processor_class="Qwen2_5_VLProcessor",
    frame_rule=QWEN_VL_UTILS,
    video_timing="absolute",
    video_in_template=VIDEO_IN_TEMPLATE,
    prefix_reuse=True,
    prefix_reuse_note="exact: greedy tokens equal whole prompts in fp32 (tests/test_families.py)",
    tiny_name=TINY_NAME,
    build_tiny=build_tiny,
    tiny_version=TINY_VERSION,
)
