"""The vLLM offline backend: the same items, prompts and frames as the transformers backend, on GPUs.

Every item is rendered by conversation.render_prompt through the checkpoint's own processor and its
frames come from obv_eval.media, passed to vLLM as its family (obv_eval.models) takes them:

* frame-index families (Qwen2-VL): the VIDEO input, one ``(T, H, W, 3)`` array per clip, so Qwen2-VL keeps
  its video position encoding and vLLM never re-samples;
* families that place frames in time (Qwen2.5-VL's absolute-time positions, Qwen3-VL's timestamps): one
  ``(frames, metadata)`` tuple per clip, vLLM's form for already-sampled frames (its Qwen2.5-VL and
  Qwen3-VL refuse a video without metadata): source fps, total frames, the sampled indices and
  ``do_sample_frames=False``, from which vLLM's processors compute the clip's ``second_per_grid_ts`` or
  frame timestamps exactly as transformers does for the hf backend (obv_eval.models.family_processor_kwargs);
* frames-as-images families (Gemma 3, no video input): each sampled frame as one IMAGE input, the prompt
  holding one image entry per frame (Family.template_kinds), as the hf backend renders it.

Sampling parameters are built by hand with every field explicit, so the checkpoint's generation_config
cannot change results.

Data parallelism (vLLM refuses ``LLM(data_parallel_size>1)`` offline) is obv_eval.scaleout: one such
backend per Ray actor, each on its own GPUs, fed whole work units.
"""

from __future__ import annotations

import concurrent.futures
import functools
import importlib.util
import json
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from PIL import Image
from tqdm import tqdm

from obv_eval import controls
from obv_eval.backends.base import (
    GenerationOutput,
    GenerationRequest,
    GenerationSettings,
    LoadedVisuals,
    MediaSettings,
    decode_reply,
    load_visuals,
    over_context,
)
from obv_eval.backends.streaming import (
    clip_group,
    derive_max_model_len,
    native_context,
    prompt_length,
    stream_order,
    visual_tokens,
)
from obv_eval.conversation import ChatTemplater, build_messages, render_prompt
from obv_eval.frame_policy import policy_name
from obv_eval.media import MediaError
from obv_eval.models import Family, family_of_checkpoint, family_of_processor, family_processor_kwargs

VLLM_EXTRA_HINT = "the vLLM backend needs the extra: pip install 'obv-eval[vllm]'"
DTYPES = ("float32", "bfloat16", "float16")
# vLLM sizes its encoder cache as max(max_num_batched_tokens, the model's profiled tokens per item,
# 32,768 for Qwen2-VL at its default pixel limits) and refuses a visual item above it. Its default
# max_num_batched_tokens is at most 16,384 on any device; above that, the backend raises it to the
# longest visual item so every item the transformers backend runs fits (never lowered).
VLLM_DEFAULT_BATCHED_TOKENS_MAX = 16384
TOKENIZATION = {"add_special_tokens": False}  # LLM.generate's tokenization_kwargs


class VLLMUnavailable(ImportError):
    """vLLM is not installed here."""


def require_vllm() -> None:
    if importlib.util.find_spec("vllm") is None:
        raise VLLMUnavailable(VLLM_EXTRA_HINT)


# ---------------------------------------------------------------------------------------------------
# Pure request building (golden-tested)


def sampling_params_dict(settings: GenerationSettings, stop_token_ids: Sequence[int] = ()) -> dict[str, Any]:
    """Keyword arguments of vllm.SamplingParams: greedy, every field explicit.

    A hand-built SamplingParams ignores the checkpoint's generation_config (Qwen2-VL-Instruct's sets
    top_k 1, top_p 0.001, repetition_penalty 1.05), so nothing here is left to a default.
    """
    if settings.do_sample or settings.num_beams != 1:
        raise ValueError("the vLLM backend decodes greedily: do_sample=False, num_beams=1")
    return {
        "n": 1,
        "temperature": 0.0,  # greedy
        "top_p": 1.0,
        "top_k": max(0, settings.top_k),  # 0 disables top-k (vLLM >= 0.9; -1 was the older spelling)
        "min_p": 0.0,
        "seed": settings.seed,
        "max_tokens": settings.max_new_tokens,
        "min_tokens": 0,
        "repetition_penalty": settings.repetition_penalty,
        "presence_penalty": 0.0,
        "frequency_penalty": 0.0,
        "stop_token_ids": list(stop_token_ids),  # <|im_end|>, as the transformers backend stops
        "ignore_eos": False,
        "skip_special_tokens": True,
    }


def processor_kwargs(family: Family, visuals: LoadedVisuals) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """What the hf backend gives the family's processor for an item beyond its frames and images
    (family_processor_kwargs, for any item with visuals), split as vLLM takes it: each clip's metadata (none
    for frame-index families such as Qwen2-VL) and the other processor arguments (vLLM's
    mm_processor_kwargs, e.g. do_sample_frames=False)."""
    if not visuals.videos and not visuals.images:
        return [], {}
    kwargs = dict(family_processor_kwargs(family, visuals.videos))
    metadata = kwargs.pop("video_metadata", None) or []
    return [dict(m) for m in metadata], kwargs


def template_entries(family: Family, visuals: LoadedVisuals) -> tuple[Any, ...]:
    """The user turn's visual entries: a frames-as-images family gets one image entry per frame."""
    return family.template_kinds(visuals.kinds, [video.num_frames for video in visuals.videos])


def vllm_inputs(
    text: str, visuals: LoadedVisuals, templater: ChatTemplater, family: Family | None = None
) -> dict[str, Any]:
    """The prompt dict for LLM.generate from an item's already-loaded visuals, in the family's form
    (None: the family of `templater`, the checkpoint's processor)."""
    family = family or family_of_processor(templater)
    prompt = render_prompt(templater, build_messages(text, template_entries(family, visuals)))
    metadata, kwargs = processor_kwargs(family, visuals)
    data: dict[str, Any] = {}
    if family.video_input == "frames-as-images":
        # Each clip's frames as images ahead of the item's own images, the order of template_entries.
        frames = [Image.fromarray(frame) for video in visuals.videos for frame in video.frames]
        if frames or visuals.images:
            data["image"] = frames + list(visuals.images)
    else:
        if visuals.videos:
            # (T, H, W, 3) uint8, used as given; with its metadata where the family places frames in
            # time, do_sample_frames=False being vLLM's mark of frames sampled before it
            data["video"] = [
                (video.frames, {**metadata[i], "do_sample_frames": False}) if metadata else video.frames
                for i, video in enumerate(visuals.videos)
            ]
        if visuals.images:
            data["image"] = list(visuals.images)
    request: dict[str, Any] = {"prompt": prompt}
    if data:
        request["multi_modal_data"] = data
    if kwargs:
        request["mm_processor_kwargs"] = kwargs
    return request


def build_vllm_request(
    request: GenerationRequest,
    templater: ChatTemplater,
    media: MediaSettings,
    family: Family | None = None,
) -> dict[str, Any]:
    """What the backend sends to vLLM for one item; raises MediaError when its media cannot be loaded."""
    return vllm_inputs(request.text, load_visuals(request.visuals, media), templater, family)


def mm_limits(family: Family, limits: dict[str, int], media: MediaSettings) -> dict[str, int]:
    """vLLM's limit_mm_per_prompt for this family: a frames-as-images family's clips arrive as images,
    up to the frame rule's most frames each (its fixed count where it has one: vLLM sizes its profiling
    run by these limits, so they are kept as tight as the rule allows)."""
    if family.video_input != "frames-as-images":
        return dict(limits)
    video = controls.video_settings(media.control, media.video)  # a frames=N control samples N
    most = video.nframes or video.max_frames
    return {"image": limits.get("image", 0) + limits.get("video", 0) * most}


# ---------------------------------------------------------------------------------------------------
# The backend


class VLLMBackend:
    name = "vllm"
    longest_visual_item = 0  # the most visual tokens of one item seen by item_lengths (per instance)

    def __init__(
        self,
        model_path: str | Path,
        *,
        dtype: str = "bfloat16",
        max_model_len: int | None = None,
        tensor_parallel_size: int = 1,
        gpu_memory_utilization: float = 0.9,
        limit_mm_per_prompt: dict[str, int] | None = None,
        generation: GenerationSettings | None = None,
        media: MediaSettings | None = None,
        adapter_path: str | Path | None = None,
        seed: int = 0,
        chunk_size: int = 256,
        chunk_bytes: int = 1 << 30,
        engine_kwargs: dict[str, Any] | None = None,
    ) -> None:
        require_vllm()
        from transformers import AutoProcessor

        if dtype not in DTYPES:
            raise ValueError(f"dtype {dtype!r} is not one of {', '.join(DTYPES)}")
        self.model_path = Path(model_path)
        self.adapter_path = Path(adapter_path) if adapter_path is not None else None
        self.dtype = dtype
        # None: derived from the longest item when the engine starts (see derive_max_model_len).
        self.requested_max_model_len = int(max_model_len) if max_model_len else None
        self.max_model_len = self.requested_max_model_len
        self.allow_long = False
        self.longest_visual_item = 0
        self.native_context = native_context(self.model_path)
        self.tensor_parallel_size = int(tensor_parallel_size)
        self.gpu_memory_utilization = float(gpu_memory_utilization)
        self.generation = generation or GenerationSettings()
        self.media = media or MediaSettings()
        # The family says how the frames and the prompt go to vLLM (vllm_inputs) and its end-of-turn token.
        self.family = family_of_checkpoint(self.model_path)
        limits = limit_mm_per_prompt or {"video": 1, "image": 1}
        self.limit_mm_per_prompt = mm_limits(self.family, limits, self.media)
        self.seed = int(seed)
        self.chunk_size = max(1, int(chunk_size))  # at most this many items' frames per chunk
        self.chunk_bytes = max(1, int(chunk_bytes))  # and at most about this many bytes of frames
        self.engine_kwargs = dict(engine_kwargs or {})
        self.prompt_tokens = self.cached_tokens = 0  # over this backend's runs, for the hit rate
        self._processor_tokens: dict[tuple[str, int], int] = {}  # visual tokens counted by the processor
        # The same processor (and chat template) the transformers backend renders with.
        self.processor = AutoProcessor.from_pretrained(self.model_path)
        self.eos_token_id = int(self.processor.tokenizer.convert_tokens_to_ids(self.family.eos_token))
        self.llm: Any = None
        self.lora_request: Any = None
        if self.max_model_len is not None:
            self._start_engine()

    @functools.cached_property
    def family(self) -> Family:
        """The checkpoint's family, set by __init__ from its config.json; a backend holding only its
        planning state (processor and media, no __init__: tests, tools) takes its processor's."""
        return family_of_processor(self.processor)

    def _batched_tokens(self) -> dict[str, int]:
        """max_num_batched_tokens when the longest visual item needs more than vLLM's defaults give."""
        if "max_num_batched_tokens" in self.engine_kwargs:
            return {}
        if self.longest_visual_item > VLLM_DEFAULT_BATCHED_TOKENS_MAX:
            return {"max_num_batched_tokens": self.longest_visual_item}
        return {}

    def engine_args(self) -> dict[str, Any]:
        """Keyword arguments of vllm.LLM for this backend."""
        args: dict[str, Any] = {
            "model": str(self.model_path),
            "dtype": self.dtype,
            "max_model_len": self.max_model_len,
            "limit_mm_per_prompt": self.limit_mm_per_prompt,
            "tensor_parallel_size": self.tensor_parallel_size,
            "gpu_memory_utilization": self.gpu_memory_utilization,
            "seed": self.seed,
            "generation_config": "vllm",  # never take defaults from the checkpoint's generation_config
            # A clip's questions share its prefix (system text + visual tokens): computed once, then cached.
            "enable_prefix_caching": True,
        }
        if self.adapter_path is not None:
            args["enable_lora"] = True
            args["max_lora_rank"] = _lora_rank(self.adapter_path)
        return {**args, **self._batched_tokens(), **self.engine_kwargs}

    def item_lengths(self, requests: Sequence[GenerationRequest]) -> list[int]:
        """Each item's prompt tokens (visual + text) as the processor will count them; media failures
        count 0. Frames are loaded one item at a time and dropped."""
        lengths = []
        for request in requests:
            try:
                visuals = load_visuals(request.visuals, self.media)
            except MediaError:
                lengths.append(0)
                continue
            entries = template_entries(self.family, visuals)
            prompt = render_prompt(self.processor, build_messages(request.text, entries))
            tokens, length = self._visual_length(prompt, visuals)
            if self.family.token_count != "qwen-grid":  # the processor ran: kept for the output's record
                self._processor_tokens[request.key] = tokens
            self.longest_visual_item = max(self.longest_visual_item, tokens)
            lengths.append(length)
        return lengths

    def _visual_length(self, prompt: str, visuals: LoadedVisuals) -> tuple[int, int]:
        """(visual tokens, prompt tokens) of an item: Qwen-grid families from the frame sizes, others
        (tiles, pooling, frame labels) from the processor's own output on it."""
        tokenizer = self.processor.tokenizer
        if self.family.token_count == "qwen-grid":
            tokens = visual_tokens(visuals)
            return tokens, prompt_length(tokenizer, prompt, visuals, tokens)
        videos, images = self.family.processor_visuals(visuals.videos, visuals.images)
        inputs: dict[str, Any] = {"videos": videos} if videos else {}
        if visuals.videos or visuals.images:  # as the hf backend: the family's arguments for any visual
            inputs.update(family_processor_kwargs(self.family, visuals.videos))
        if images:
            inputs["images"] = [images]  # one item's images, nested as the hf backend gives these families
        # Tokenized as vLLM will (TOKENIZATION): the prompt's own <bos>, no second.
        ids = self.processor(text=[prompt], return_tensors="pt", **TOKENIZATION, **inputs)["input_ids"][0]
        text = len(tokenizer(prompt, add_special_tokens=False)["input_ids"])
        return max(0, len(ids) - text), len(ids)

    def fit_to(self, requests: Sequence[GenerationRequest]) -> dict[str, Any]:
        """The engine settings fit to all these items, for engines that each see a part of them
        (obv_eval.scaleout): max_model_len and the longest visual item, as one engine would derive."""
        if self.requested_max_model_len is not None:
            return {}
        lengths = self.item_lengths(requests)
        length, _ = derive_max_model_len(lengths, self.generation.max_new_tokens, self.native_context)
        return {"max_model_len": length, "longest_visual_item": self.longest_visual_item}

    def adopt(self, shared: dict[str, Any]) -> None:
        """Settings from fit_to: the engine starts (or restarts) with at least these."""
        self.longest_visual_item = max(self.longest_visual_item, int(shared.get("longest_visual_item", 0)))
        if "max_model_len" in shared and self.requested_max_model_len is None:
            self.max_model_len = max(self.max_model_len or 0, int(shared["max_model_len"]))

    def _ensure_engine(self, requests: Sequence[GenerationRequest]) -> None:
        """Start (or restart, for longer items) the engine with max_model_len fit to these items."""
        if self.requested_max_model_len is None:
            batched = self._batched_tokens()
            lengths = self.item_lengths(requests)
            needed, _ = derive_max_model_len(lengths, self.generation.max_new_tokens, self.native_context)
            fits = self.max_model_len is not None and needed <= self.max_model_len
            if self.llm is not None and fits and self._batched_tokens() == batched:
                return
            self.max_model_len = max(needed, self.max_model_len or 0)
        elif self.llm is not None:
            return
        _, self.allow_long = derive_max_model_len([], 0, self.native_context, self.max_model_len)
        self.llm = None
        self._start_engine()

    def _start_engine(self) -> None:
        from vllm import LLM

        if self.allow_long:  # vLLM's documented switch for lengths above max_position_embeddings
            os.environ["VLLM_ALLOW_LONG_MAX_MODEL_LEN"] = "1"
        self.llm = LLM(**self.engine_args())
        if self.adapter_path is not None:
            from vllm.lora.request import LoRARequest

            self.lora_request = LoRARequest("adapter", 1, str(self.adapter_path))

    def describe(self) -> dict[str, Any]:
        return {
            "backend": self.name,
            "vllm": _version("vllm"),
            "transformers": _version("transformers"),
            "model_family": self.family.describe(policy_name(self.media.frame_policy)),
            "dtype": self.dtype,
            "max_model_len": self.max_model_len,
            "max_model_len_derived": self.requested_max_model_len is None,
            "allow_long_max_model_len": self.allow_long,
            "max_num_batched_tokens": self.engine_args().get("max_num_batched_tokens"),
            "native_context": self.native_context,
            "chunk_size": self.chunk_size,
            "chunk_bytes": self.chunk_bytes,
            "tensor_parallel_size": self.tensor_parallel_size,
            "limit_mm_per_prompt": self.limit_mm_per_prompt,
            "lora": self.adapter_path is not None,
            "seed": self.seed,
            "sampling": sampling_params_dict(self.generation, [self.eos_token_id]),
            # From vLLM's per-request num_cached_tokens: the share of prompt tokens the prefix cache served.
            "prefix_cache_hit_rate": round(self.cached_tokens / self.prompt_tokens, 4)
            if self.prompt_tokens
            else None,
        }

    # -- generation ---------------------------------------------------------------------------
    def generate(
        self,
        requests: Sequence[GenerationRequest],
        progress: bool = True,
        on_batch: Callable[[list[GenerationOutput]], None] | None = None,
    ) -> list[GenerationOutput]:
        """Generate for every request; an item whose media or prompt fails, fails alone."""
        from vllm import SamplingParams

        self._ensure_engine(requests)

        # Built per call: the lmms-eval adapter may set a task's token budget between calls.
        self._sampling_params = SamplingParams(**sampling_params_dict(self.generation, [self.eos_token_id]))
        # Questions on one clip go together, so a clip's frames are decoded once and shared.
        prompts = [request.text for request in requests]
        order = [i for unit in stream_order(requests, prompts) for i in unit]
        ordered = [requests[i] for i in order]
        produced: dict[int, GenerationOutput] = {}
        bar = tqdm(total=len(requests), desc="generating (vLLM)", disable=not progress)
        # Frames for the next chunk are decoded (CPU) while the engine generates the current one (GPU):
        # at most two chunks, each of about chunk_bytes of frames (or chunk_size items), are held.
        with concurrent.futures.ThreadPoolExecutor(max_workers=1) as loader:
            pending = loader.submit(self._prepare, ordered, 0) if ordered else None
            while pending is not None:
                prepared, next_start = pending.result()
                more = next_start < len(ordered)
                pending = loader.submit(self._prepare, ordered, next_start) if more else None
                for output in self._generate_prepared(prepared):
                    produced[id(output)] = output
                    if on_batch:
                        on_batch([output])  # items are independent here: each is a batch of one
                    bar.update(1)
                del prepared
        bar.close()
        by_key = {output.key: output for output in produced.values()}
        self._count_cached(by_key.values())
        return [by_key[request.key] for request in requests]

    def _count_cached(self, outputs: Iterable[GenerationOutput]) -> None:
        for output in outputs:
            if output.prompt_tokens is not None and output.prefill_tokens is not None:
                self.prompt_tokens += output.prompt_tokens
                self.cached_tokens += output.prompt_tokens - output.prefill_tokens

    def _prepare(self, requests: Sequence[GenerationRequest], start: int) -> tuple[list[_Prepared], int]:
        """Inputs (or media failures) of the items from `start` until the chunk holds chunk_bytes of
        frames or chunk_size items; returns them and where the next chunk starts."""
        prepared: list[_Prepared] = []
        held: dict[int, int] = {}  # distinct frame arrays (a clip's questions share one)
        index = start
        while index < len(requests) and len(prepared) < self.chunk_size:
            if prepared and sum(held.values()) >= self.chunk_bytes:
                break
            request = requests[index]
            index += 1
            try:
                visuals = load_visuals(request.visuals, self.media)
            except MediaError as error:
                prepared.append(_Prepared(request, error=f"MediaError: {error}"))
                continue
            for video in visuals.videos:
                held[id(video.frames)] = video.nbytes
            frames = [video.num_frames for video in visuals.videos]
            inputs = vllm_inputs(request.text, visuals, self.processor, self.family)
            if self.family.token_count == "qwen-grid":
                tokens = visual_tokens(visuals)
            elif request.key in self._processor_tokens:
                tokens = self._processor_tokens[request.key]
            else:
                tokens = self._visual_length(inputs["prompt"], visuals)[0]
            prepared.append(_Prepared(request, inputs, frames, tokens=tokens))
        return prepared, index

    def _generate_prepared(self, chunk: list[_Prepared]) -> list[GenerationOutput]:
        ready = [(index, item.inputs) for index, item in enumerate(chunk) if item.inputs is not None]
        results: dict[int, Any] = {}
        # The first question on each clip goes first: its prefix is then in vLLM's cache for the others
        # (requests scheduled in the same step would each compute it).
        seen: set[Any] = set()
        waves: list[list[tuple[int, dict[str, Any]]]] = [[], []]
        for index, inputs in ready:
            group = clip_group(chunk[index].request)
            waves[1 if group is not None and group in seen else 0].append((index, inputs))
            seen.add(group)
        for wave in waves:
            if not wave:
                continue
            prompts = [inputs for _, inputs in wave]
            try:
                batch = self._run(prompts)
            except Exception:
                # vLLM rejects a whole batch for one bad prompt (too long, too many visuals): run
                # the items one by one so only the bad one fails.
                batch = [self._run_one(prompt) for prompt in prompts]
            results.update({index: result for (index, _), result in zip(wave, batch, strict=True)})
        outputs = []
        for index, item in enumerate(chunk):
            key = item.request.key
            if item.inputs is None:
                outputs.append(GenerationOutput(key, "", error=item.error))
            elif isinstance(results[index], str):
                prompt = item.inputs["prompt"]
                outputs.append(
                    GenerationOutput(key, "", prompt=prompt, frames=item.frames, error=results[index])
                )
            else:
                output = _to_output(
                    key,
                    item.inputs["prompt"],
                    item.frames,
                    results[index],
                    self.processor.tokenizer,
                    self.eos_token_id,
                )
                output.visual_tokens = item.tokens
                output.over_context = over_context(
                    output.prompt_tokens, self.generation.max_new_tokens, self.native_context
                )
                outputs.append(output)
        return outputs

    def _run(self, prompts: list[dict[str, Any]]) -> list[Any]:
        return list(
            self.llm.generate(
                prompts,
                self._sampling_params,
                use_tqdm=False,
                lora_request=self.lora_request,
                # The rendered prompt is the whole text, its chat template's <bos> included (Gemma 3): no
                # second one, as vLLM's server tokenizes chat prompts (the Qwen tokenizers add none anyway).
                tokenization_kwargs=TOKENIZATION,
            )
        )

    def _run_one(self, prompt: dict[str, Any]) -> Any:
        try:
            return self._run([prompt])[0]
        except Exception as error:  # this item's own failure, recorded with its reason
            return f"{type(error).__name__}: {' '.join(str(error).split())[:300]}"


@dataclass
class _Prepared:
    request: GenerationRequest
    inputs: dict[str, Any] | None = None  # None: the media failed
    frames: list[int] = field(default_factory=list)
    error: str | None = None
    tokens: int | None = None  # visual tokens


def _to_output(
    key: tuple[str, int], prompt: str, frames: list[int], result: Any, tokenizer: Any, eos_id: int
) -> GenerationOutput:
    text, count = decode_reply(tokenizer, result.outputs[0].token_ids, eos_id, tokenizer.pad_token_id)
    return GenerationOutput(
        key=key,
        text=text,
        prompt=prompt,
        prompt_tokens=len(result.prompt_token_ids or []),
        prefill_tokens=len(result.prompt_token_ids or []) - int(getattr(result, "num_cached_tokens", 0) or 0),
        output_tokens=count,
        frames=frames,
    )


def _lora_rank(adapter_path: Path) -> int:
    """vLLM needs max_lora_rank >= the adapter's rank (its default, 16, is too small for many)."""
    config = json.loads((adapter_path / "adapter_config.json").read_text())
    ranks = [int(config.get("r", 16)), *(int(r) for r in (config.get("rank_pattern") or {}).values())]
    # vLLM accepts only these ranks; take the smallest that fits.
    for allowed in (8, 16, 32, 64, 128, 256, 320, 512):
        if allowed >= max(ranks):
            return allowed
    raise ValueError(f"LoRA rank {max(ranks)} in {adapter_path} is above vLLM's maximum (512)")


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None
