"""Qwen2-VL: the study's family and obv-eval's first.

* class and processor: ``Qwen2VLForConditionalGeneration``, ``Qwen2VLProcessor`` (image and video
  processors ``Qwen2VLImageProcessor`` / ``Qwen2VLVideoProcessor``);
* frames and images: qwen-vl-utils 0.0.14 (``obv_eval.models.qwen_vl_utils``: 2 fps, 4..768 frames in
  pairs, 28-pixel factor, per-frame and per-video pixel budgets), decoded and cached by obv_eval.media;
* video positions: one temporal position id per frame pair (no absolute time);
* chat template: a ``{"type": "video"}`` entry renders ``<|vision_start|><|video_pad|><|vision_end|>``,
  which the processor expands to one pad per merged patch;
* prefix reuse: exact (tests/test_prefix_reuse.py); the tiny twin is obv_eval.tiny_model's.
"""

from __future__ import annotations

from obv_eval.models import Family, FrameRule
from obv_eval.tiny_model import TINY_MODEL_NAME, build_tiny_model

QWEN_VL_UTILS = FrameRule(
    name="qwen-vl-utils-0.0.14",
    description="qwen-vl-utils 0.0.14: 2 fps, 4..768 frames in pairs, sides multiples of 28 px",
)

VIDEO_IN_TEMPLATE = (
    '{"type": "video"} in the user turn -> <|vision_start|><|video_pad|><|vision_end|>, expanded by the '
    "processor to one <|video_pad|> per 2x2-merged patch of each frame pair"
)

FAMILY = Family(
    name="qwen2_vl",
    title="Qwen2-VL",
    model_types=("qwen2_vl",),
    model_class="Qwen2VLForConditionalGeneration",
    processor_class="Qwen2VLProcessor",
    frame_rule=QWEN_VL_UTILS,
    video_timing="frame-index",
    video_in_template=VIDEO_IN_TEMPLATE,
    prefix_reuse=True,
    prefix_reuse_note="exact: greedy tokens equal whole prompts in fp32 (tests/test_prefix_reuse.py)",
    tiny_name=TINY_MODEL_NAME,
    build_tiny=build_tiny_model,
)
