"""The transformers backend: a local checkpoint of a known model family (obv_eval.models), batched greedy
decoding on CPU or GPU."""

from __future__ import annotations

import copy
import functools
import hashlib
import itertools
import re
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import xxhash
from tqdm import tqdm

from obv_eval.backends.base import (
    GenerationOutput,
    GenerationRequest,
    GenerationSettings,
    LoadedVisuals,
    MediaSettings,
    decode_reply,
    over_context,
)
from obv_eval.backends.streaming import (
    Prefetcher,
    StreamSettings,
    fits,
    native_context,
    prompt_length,
    stream_order,
    visual_kinds,
    visual_pixels,
    visual_tokens,
    work_units,
)
from obv_eval.conversation import build_messages, render_prompt
from obv_eval.frame_policy import policy_name
from obv_eval.media import Video, release_video
from obv_eval.media import cache_budget as frame_cache_budget
from obv_eval.models import family_of_checkpoint, family_processor_kwargs
from obv_eval.profiling import enabled as profiling_enabled
from obv_eval.profiling import stage

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class _ClipCache:
    """Entries per distinct clip, least recently used out first, at most `max_bytes` in all.

    `retain_recent` keeps only the latest call's entries (the clip still being asked about).
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._cache: OrderedDict[Any, Any] = OrderedDict()
        self.bytes = 0
        self.hits = self.misses = 0
        self._recent: set[Any] = set()  # keys the latest call used

    @staticmethod
    def _size(entry: Any) -> int:
        raise NotImplementedError

    def retain_recent(self) -> None:
        """Forget every entry but those of the latest call (a finished clip is not needed again)."""
        for key in [key for key in self._cache if key not in self._recent]:
            self.bytes -= self._size(self._cache.pop(key))

    def _get(self, key: Any, local: dict[Any, Any], make: Callable[[], Any]) -> Any:
        """The entry for `key`: from this call (`local`), from the cache, or made and kept if it fits."""
        if key in local:
            self.hits += 1
        elif key in self._cache:
            self.hits += 1
            self._cache.move_to_end(key)
            local[key] = self._cache[key]
        else:
            self.misses += 1
            local[key] = entry = make()
            size = self._size(entry)
            if size <= self.max_bytes:
                self._cache[key] = entry
                self.bytes += size
                while self.bytes > self.max_bytes:
                    _, evicted = self._cache.popitem(last=False)
                    self.bytes -= self._size(evicted)
        return local[key]


class CachedVideoFeatures(_ClipCache):
    """The vision tower once per distinct clip, in place of the model's own `get_video_features`.

    Each video goes through the tower alone (its attention never crosses videos, and alone its
    features cannot depend on its batch-mates), keyed by its patches and grid; the per-video
    features are returned in order, as the model's own method returns them.
    """

    def __init__(self, compute: Callable[..., Any], max_bytes: int = 256 << 20) -> None:
        super().__init__(max_bytes)
        self.compute = compute

    @staticmethod
    def _size(entry: torch.Tensor) -> int:
        return entry.element_size() * entry.nelement()

    def __call__(self, pixel_values_videos: torch.Tensor, video_grid_thw: torch.Tensor, **kwargs: Any) -> Any:
        from transformers.modeling_outputs import BaseModelOutputWithPooling

        def encode(patches: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
            with stage("vision"):
                out = self.compute(patches, grid[None], **{**kwargs, "return_dict": True})
            return out.pooler_output[0]

        features = []
        local: dict[Any, Any] = {}  # repeats within this call
        sizes = video_grid_thw.prod(-1).tolist()
        for patches, grid in zip(torch.split(pixel_values_videos, sizes), video_grid_thw, strict=True):
            key = (
                xxhash.xxh3_128_hexdigest(patches.contiguous().cpu().numpy().tobytes()),
                tuple(grid.tolist()),
            )
            features.append(self._get(key, local, functools.partial(encode, patches, grid)))
        self._recent = set(local)
        # The model concatenates a tuple of per-video features here, as its own method returns them.
        return BaseModelOutputWithPooling(pooler_output=tuple(features))  # type: ignore[arg-type]


class CachedVideoProcessor(_ClipCache):
    """The processor's video step, once per distinct clip: several questions share a clip.

    Each video is processed on its own and the outputs concatenated in order, which is what the
    processor does for a batch (it flattens every video's patches and stacks them), so the inputs
    are the same as without the cache. Keyed by the frames' bytes and the processing options.
    """

    def __init__(self, inner: Any, max_bytes: int = 512 << 20) -> None:
        self.inner = inner
        super().__init__(max_bytes)

    @staticmethod
    def _size(entry: dict[str, Any]) -> int:
        return sum(t.element_size() * t.nelement() for t in entry.values() if isinstance(t, torch.Tensor))

    def __getattr__(self, name: str) -> Any:  # merge_size, patch_size, ...: the real processor's
        return getattr(self.inner, name)

    def __call__(self, videos: Any, **kwargs: Any) -> Any:
        from transformers import BatchFeature

        # Per-video metadata (absolute-time families: each clip's fps) goes with its own video.
        metadata = kwargs.pop("video_metadata", None) or [None] * len(videos)

        def process(frames: np.ndarray, meta: Any) -> dict[str, Any]:
            extra = {"video_metadata": [meta]} if meta is not None else {}
            out = self.inner([frames.copy()], **{**kwargs, **extra, "return_tensors": "pt"})
            return dict(out)  # Qwen: pixel_values_videos, video_grid_thw (+ video_metadata); others theirs

        options = repr(sorted((k, v) for k, v in kwargs.items() if k != "return_tensors"))
        parts = []
        local: dict[Any, Any] = {}  # repeats within this call
        for video, meta in zip(videos, metadata, strict=True):
            frames = np.ascontiguousarray(video)
            key = (hashlib.sha1(frames.data, usedforsecurity=False).hexdigest(), options, repr(meta))
            parts.append(self._get(key, local, functools.partial(process, frames, meta)))
        self._recent = set(local)
        tensors = [{k: v for k, v in part.items() if isinstance(v, torch.Tensor)} for part in parts]
        # One video (a clip's questions) needs no copy: its tensors are the cached ones, read-only here.
        merged: dict[str, Any] = dict(tensors[0])
        if len(parts) > 1:
            merged = {name: torch.cat([part[name] for part in tensors]) for name in tensors[0]}
        for name in parts[0]:  # per-video lists other than the metadata (e.g. a family's frame counts)
            if name not in merged and name != "video_metadata":
                merged[name] = [value for part in parts for value in part[name]]
        feature = BatchFeature(merged, tensor_type=kwargs.get("return_tensors"))
        if "video_metadata" in parts[0]:  # set after conversion, as the video processor does
            feature["video_metadata"] = [m for part in parts for m in part["video_metadata"]]
        return feature


class HFBackend:
    name = "transformers"

    def __init__(
        self,
        model_path: str | Path,
        *,
        device: str = "cpu",
        dtype: str = "float32",
        batch_size: int = 8,
        generation: GenerationSettings | None = None,
        media: MediaSettings | None = None,
        adapter_path: str | Path | None = None,
        stream: StreamSettings | None = None,
        prefix_reuse: bool = True,
    ) -> None:
        from transformers import AutoModelForImageTextToText, AutoProcessor

        if dtype not in _DTYPES:
            raise ValueError(f"dtype {dtype!r} is not one of {', '.join(_DTYPES)}")
        self.model_path = Path(model_path)
        self.device = device
        self.dtype = dtype
        self.batch_size = max(1, int(batch_size))
        self.generation = generation or GenerationSettings()
        self.stream = stream or StreamSettings()
        # The family says how frames are placed in time and whether one prefill per clip is exact for it.
        self.family = family_of_checkpoint(self.model_path)
        self.prefix_reuse = prefix_reuse and self.family.prefix_reuse
        # Without explicit settings, the family's native frame and image rule.
        rule = self.family.frame_rule
        self.media = media or MediaSettings(video=rule.video(), image=rule.image())
        self.native_context = native_context(self.model_path)
        self.processor = AutoProcessor.from_pretrained(self.model_path)
        self.processor.tokenizer.padding_side = "left"  # generation continues every row from its end
        # obv_eval.media already applied Qwen2-VL's pixel budgets (qwen-vl-utils' rules, per-frame
        # cap included), so the processor's own resize leaves the frames as they are.
        video_processor = getattr(self.processor, "video_processor", None)
        if video_processor is not None and hasattr(video_processor, "cap_pixels_per_frame"):
            video_processor.cap_pixels_per_frame = True
        if video_processor is not None and self.family.video_input == "video":
            self.processor.video_processor = CachedVideoProcessor(
                video_processor, self.stream.processor_cache_bytes
            )
        model = AutoModelForImageTextToText.from_pretrained(self.model_path, dtype=_DTYPES[dtype])
        if adapter_path is not None:
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, str(adapter_path)).merge_and_unload()
        self.model = model.to(device).eval()  # type: ignore[arg-type]  # transformers' wrapped .to()
        inner = getattr(self.model, "model", None)
        if self.family.feature_cache and inner is not None and hasattr(inner, "get_video_features"):
            inner.get_video_features = CachedVideoFeatures(
                inner.get_video_features, self.stream.feature_cache_bytes
            )
        self.prefetch_peak_bytes = 0
        tokenizer = self.processor.tokenizer
        self.eos_token_id = tokenizer.convert_tokens_to_ids(self.family.eos_token)
        pad = tokenizer.pad_token_id
        self.pad_token_id = pad if pad is not None else self.eos_token_id

    def describe(self) -> dict[str, Any]:
        import transformers

        return {
            "backend": self.name,
            "transformers": transformers.__version__,
            "torch": torch.__version__,
            "device": self.device,
            "dtype": self.dtype,
            "batch_size": self.batch_size,
            "native_context": self.native_context,
            "stream": self.stream.to_dict(),
            "prefix_reuse": self.prefix_reuse,
            "model_family": self.family.describe(policy_name(self.media.frame_policy)),
            "frame_cache_bytes": frame_cache_budget(),
            "prefetch_peak_bytes": self.prefetch_peak_bytes,
        }

    def _generation_config(self) -> Any:
        from transformers import GenerationConfig

        settings = self.generation
        if settings.do_sample or settings.num_beams != 1:
            raise ValueError("the transformers backend decodes greedily: do_sample=False, num_beams=1")
        return GenerationConfig(
            max_new_tokens=settings.max_new_tokens,
            do_sample=False,
            num_beams=1,
            repetition_penalty=settings.repetition_penalty,
            eos_token_id=self.eos_token_id,
            pad_token_id=self.pad_token_id,
            temperature=None,
            top_p=None,
            top_k=None,
        )

    def generate(
        self,
        requests: Sequence[GenerationRequest],
        progress: bool = True,
        on_batch: Callable[[list[GenerationOutput]], None] | None = None,
    ) -> list[GenerationOutput]:
        """Generate for every request; an item whose media cannot be loaded fails alone.

        `on_batch` receives each finished batch (a failed item is a batch of its own), so a caller
        can log outputs as they are produced.
        """
        outputs: dict[int, GenerationOutput] = {}
        prompts = self._prompts(requests)
        work = work_units(requests, stream_order(requests, prompts), self.batch_size)
        # No batch crosses a work unit (so engines that each take whole work units batch the same).
        units = [unit for part in work for unit in part]
        ends = set(itertools.accumulate(len(part) for part in work))
        config = self._generation_config()
        new_tokens = self.generation.max_new_tokens
        bar = tqdm(total=len(requests), desc="generating", disable=not progress)
        # The batch being built holds at most batch_size units; as many again load ahead of it.
        prefetch = Prefetcher(
            units, requests, self.media, self.stream.prefetch_bytes, max_units=2 * self.batch_size + 1
        )
        remaining: dict[int, int] = {}  # unit id -> its items not yet generated
        unit_bytes: dict[int, int] = {}
        batch: list[_Item] = []

        def emit(produced: list[GenerationOutput], indices: list[int]) -> None:
            for index, output in zip(indices, produced, strict=True):
                outputs[index] = output
            if on_batch:
                on_batch(produced)
            bar.update(len(produced))

        def done(items: list[_Item], produced: list[GenerationOutput]) -> None:
            emit(produced, [item.index for item in items])
            for item in items:
                remaining[item.unit] -= 1
                if remaining[item.unit] == 0:  # no pending item needs this clip's frames
                    prefetch.release(unit_bytes.pop(item.unit))
                    for video in item.visuals.videos:
                        release_video(video)
                    self._release_caches()

        def flush() -> None:
            if batch:
                done(batch, self._generate_batch(batch, config))
            batch.clear()

        for unit_id, loaded in enumerate(prefetch):
            if unit_id in ends:  # the previous work unit is complete
                flush()
            if loaded.visuals is None:
                for index in loaded.unit:  # a failed item is a batch of its own
                    emit([GenerationOutput(requests[index].key, "", error=loaded.error)], [index])
                prefetch.release(loaded.nbytes)
                continue
            remaining[unit_id] = len(loaded.unit)
            unit_bytes[unit_id] = loaded.nbytes
            pixels = visual_pixels(loaded.visuals)
            unit_prompts = [self._item_prompt(prompts[i], requests[i], loaded.visuals) for i in loaded.unit]
            tokens, length_of = self._visual_geometry(unit_prompts[0], loaded.visuals)
            items = []
            for index, prompt in zip(loaded.unit, unit_prompts, strict=True):
                length = length_of(prompt)
                items.append(_Item(index, requests[index], loaded.visuals, prompt, unit_id, tokens, length))
            plan = self._prefix_plan(items) if self.prefix_reuse and len(items) > 1 else None
            if plan is not None:  # the clip's questions share one prefill; nothing else joins them
                flush()
                for rows, produced in self._generate_with_prefix(plan, config):
                    done(rows, produced)
                del loaded, plan
                continue
            for item in items:
                lengths = [b.length + new_tokens for b in batch]
                taken = sum(visual_pixels(b.visuals) for b in batch)
                fit = fits(lengths, taken, length + new_tokens, pixels, self.stream, self.batch_size)
                if not fit or (batch and self._stack_key(batch[0]) != self._stack_key(item)):
                    flush()
                batch.append(item)
                if len(batch) >= self.batch_size:
                    flush()
            del loaded, items
        flush()
        bar.close()
        self.prefetch_peak_bytes = max(self.prefetch_peak_bytes, prefetch.peak)
        return [outputs[i] for i in range(len(requests))]

    def _prompts(self, requests: Sequence[GenerationRequest]) -> list[str]:
        """Each request's prompt, known before decoding (for a frames-as-images family: the order key only;
        its prompt is rendered again once the clip's frame count is known, _item_prompt)."""
        return [
            render_prompt(self.processor, build_messages(r.text, visual_kinds(r.visuals, self.media)))
            for r in requests
        ]

    def _stack_key(self, item: _Item) -> tuple[int, ...] | None:
        """Items batch together only where their videos stack: Qwen processors flatten every video's
        patches (any frame counts mix); the others stack (frames, ...) per video, so counts must agree."""
        if self.family.token_count == "qwen-grid":
            return None
        return tuple(len(video.indices) for video in item.visuals.videos)

    def _item_prompt(self, prompt: str, request: GenerationRequest, visuals: LoadedVisuals) -> str:
        if self.family.video_input == "video" or not visuals.videos:
            return prompt
        kinds = ["video"] * len(visuals.videos) + ["image"] * len(visuals.images)
        entries = self.family.template_kinds(kinds, [len(video.indices) for video in visuals.videos])
        return render_prompt(self.processor, build_messages(request.text, entries))  # type: ignore[arg-type]

    def _processor_inputs(self, visual_sets: Sequence[LoadedVisuals]) -> dict[str, Any]:
        """The processor's visual arguments for these items' visuals, in the family's form."""
        videos: list[Any] = []
        images: list[Any] = []  # per item (Gemma 3's processor needs them so); Qwen's take them flat
        for visuals in visual_sets:
            item_videos, item_images = self.family.processor_visuals(visuals.videos, visuals.images)
            videos += item_videos
            images.append(item_images)
        inputs: dict[str, Any] = {}
        clips = [video for v in visual_sets for video in v.videos]
        if clips or any(images):  # the family's arguments (for clips; Qwen3-VL's for images too)
            inputs.update(self._family_kwargs(clips))
        if videos:
            inputs["videos"] = videos
        if any(images):
            flat = self.family.token_count == "qwen-grid"
            inputs["images"] = [image for item in images for image in item] if flat else images
        return inputs

    def _visual_geometry(self, prompt: str, visuals: LoadedVisuals) -> tuple[int, Callable[[str], int]]:
        """(the unit's visual tokens, each prompt's length once its placeholders are expanded).

        Qwen-grid families: both from the frame sizes (no processor run). Others (tiles, pooling, frame
        labels): the processor runs once on the unit's first prompt, and the other questions on the same
        visuals differ from it only in their text.
        """
        tokenizer = self.processor.tokenizer
        if self.family.token_count == "qwen-grid":
            tokens = visual_tokens(visuals, *self._geometry)
            return tokens, lambda text: prompt_length(tokenizer, text, visuals, tokens)
        with stage("processor"):
            inputs = self._processor_inputs([visuals])
            out = self.processor(text=[prompt], return_tensors="pt", add_special_tokens=False, **inputs)
        ids = out["input_ids"][0]
        marks = out.get("mm_token_type_ids", out.get("token_type_ids"))
        if marks is not None:
            tokens = int((marks[0] != 0).sum())
        else:
            visual_ids = [getattr(self.processor, f"{k}_token_id", None) for k in ("image", "video")]
            tokens = int(sum(int((ids == t).sum()) for t in visual_ids if t is not None))
        extra = len(ids) - len(tokenizer(prompt, add_special_tokens=False)["input_ids"])
        return tokens, lambda text: len(tokenizer(text, add_special_tokens=False)["input_ids"]) + extra

    def work_units(self, requests: Sequence[GenerationRequest]) -> list[list[int]]:
        """Request indices per work unit: generated apart (by several engines, in any order) they give
        the outputs of one generate() over all the requests."""
        parts = work_units(requests, stream_order(requests, self._prompts(requests)), self.batch_size)
        return [[i for unit in part for i in unit] for part in parts]

    def _release_caches(self) -> None:
        """Processor outputs and vision features of finished clips go (those of the latest batch stay)."""
        processor = getattr(self.processor, "video_processor", None)
        features = getattr(getattr(self.model, "model", None), "get_video_features", None)
        for cache in (processor, features):
            if isinstance(cache, CachedVideoProcessor | CachedVideoFeatures):
                cache.retain_recent()

    def _family_kwargs(self, videos: Sequence[Video]) -> dict[str, Any]:
        """Processor arguments the family's video positions need (absolute time: each clip's fps)."""
        return family_processor_kwargs(self.family, videos)

    @property
    def _geometry(self) -> tuple[int, int, int]:
        video = getattr(self.processor, "video_processor", None)
        return (
            int(getattr(video, "patch_size", 14) or 14),
            int(getattr(video, "merge_size", 2) or 2),
            int(getattr(video, "temporal_patch_size", 2) or 2),
        )

    @torch.inference_mode()
    def _generate_batch(self, batch: list[_Item], config: Any) -> list[GenerationOutput]:
        with stage("processor"):
            inputs = self.processor(
                text=[item.prompt for item in batch],
                padding=True,
                return_tensors="pt",
                add_special_tokens=False,  # the chat template writes any <bos> itself (Gemma 3)
                **self._processor_inputs([item.visuals for item in batch]),
            ).to(self.device)

        def run() -> list[list[int]]:
            torch.manual_seed(self.generation.seed)
            generated = self._timed_generate(dict(inputs), config)
            return generated[:, inputs["input_ids"].shape[1] :].tolist()

        new_tokens = self.compute_tokens([item.request.key for item in batch], run)
        results = []
        for row, item in enumerate(batch):
            prompt_tokens = int(inputs["attention_mask"][row].sum())
            results.append(self._output(item, new_tokens[row], prompt_tokens, prompt_tokens))
        return results

    def _output(
        self, item: _Item, generated: list[int], prompt_tokens: int, prefill_tokens: int
    ) -> GenerationOutput:
        text, count = decode_reply(self.processor.tokenizer, generated, self.eos_token_id, self.pad_token_id)
        return GenerationOutput(
            key=item.request.key,
            text=text,
            prompt=item.prompt,
            prompt_tokens=prompt_tokens,
            prefill_tokens=prefill_tokens,
            output_tokens=count,
            frames=[len(video.indices) for video in item.visuals.videos],
            visual_tokens=item.visual_tokens,
            over_context=over_context(prompt_tokens, self.generation.max_new_tokens, self.native_context),
        )

    def _timed_generate(self, kwargs: dict[str, Any], config: Any) -> torch.Tensor:
        """model.generate; when profiling, its time split at the first token into prefill and decode steps."""
        if not profiling_enabled():
            return self.model.generate(**kwargs, generation_config=config)
        with _StageSplit() as streamer:
            return self.model.generate(**kwargs, generation_config=config, streamer=streamer)

    def _prefix_plan(self, items: list[_Item]) -> _PrefixPlan | None:
        """The clip's questions tokenized, and the prefix they share (system text and every visual token).

        None where reuse does not apply: a model without 3-D rotary state, a processor that does not mark
        visual tokens, or prompts whose shared part does not hold all of them.
        """
        inner = getattr(self.model, "model", None)
        if inner is None or not hasattr(inner, "rope_deltas"):
            return None
        visuals = items[0].visuals
        with stage("processor"):
            first = self.processor(
                text=[items[0].prompt],
                videos=[video.frames for video in visuals.videos] or None,
                images=list(visuals.images) or None,
                return_tensors="pt",
                add_special_tokens=False,
                **self._family_kwargs(visuals.videos),
            )
            if "mm_token_type_ids" not in first:
                return None
            tokenized = [(first["input_ids"][0], first["mm_token_type_ids"][0])]
            expand = _PlaceholderExpansion.of(self.processor.tokenizer, *tokenized[0])
            if expand is None or not expand.reproduces(items[0].prompt):
                # Not reproducible from the text alone: the processor for each question (pixels again).
                for item in items[1:]:
                    again = self.processor(
                        text=[item.prompt],
                        videos=[video.frames for video in visuals.videos] or None,
                        images=list(visuals.images) or None,
                        return_tensors="pt",
                        add_special_tokens=False,
                        **self._family_kwargs(visuals.videos),
                    )
                    tokenized.append((again["input_ids"][0], again["mm_token_type_ids"][0]))
            else:  # the other questions need only their tokens: the pixels are the first one's
                for item in items[1:]:
                    row = expand.tokenize(item.prompt)
                    if row is None:
                        return None
                    tokenized.append(row)
        ids = [row for row, _ in tokenized]
        kinds = [kind for _, kind in tokenized]
        shortest = min(len(row) for row in ids)
        shared = shortest - 1  # every question keeps at least one token of its own (its logits start it)
        for row in ids[1:]:
            differ = (row[:shared] != ids[0][:shared]).nonzero()
            if len(differ):
                shared = int(differ[0])
        if shared < 1 or any(bool(kind[shared:].any()) for kind in kinds):
            return None
        vision = {name: first[name] for name in _VISION_INPUTS if name in first}
        return _PrefixPlan(items, ids, kinds, shared, vision)

    def _generate_with_prefix(
        self, plan: _PrefixPlan, config: Any
    ) -> Iterator[tuple[list[_Item], list[GenerationOutput]]]:
        """The shared prefix computed once, then the questions in batches continuing from copies of its cache.

        Each question's tokens sit after the prefix with its padding between (masked), so its positions,
        3-D rotary ones included, are those of the item computed whole; greedy tokens are identical
        (tests/test_prefix_reuse.py).
        """
        from transformers import DynamicCache

        state: dict[str, Any] = {}

        def prefill() -> tuple[Any, torch.Tensor]:
            if "cache" not in state:
                shared = plan.shared
                cache = DynamicCache(config=self.model.config)
                inputs = {
                    "input_ids": plan.ids[0][None, :shared],
                    "attention_mask": torch.ones(1, shared, dtype=torch.long),
                    "mm_token_type_ids": plan.kinds[0][None, :shared],
                    **plan.vision,
                }
                inner = self.model.model
                inner.rope_deltas = None  # set by this forward where it has visual tokens
                with stage("prefill"), torch.inference_mode():
                    self.model(
                        **{k: v.to(self.device) for k, v in inputs.items()},
                        cache=cache,
                        use_cache=True,
                        logits_to_keep=1,
                    )
                # Text alone: positions are plain (a stale value from an earlier clip must not stay).
                deltas = inner.rope_deltas
                if deltas is None:
                    deltas = torch.zeros(1, 1, dtype=torch.long, device=self.device)
                state["cache"], state["deltas"] = cache, deltas
            return state["cache"], state["deltas"]

        order = list(range(len(plan.items)))
        while order:
            rows = [order.pop(0)]
            while order and plan.fits(
                [*rows, order[0]], self.generation.max_new_tokens, self.stream, self.batch_size
            ):
                rows.append(order.pop(0))
            last = not order
            items = [plan.items[r] for r in rows]

            def run(rows: list[int] = rows, last: bool = last) -> list[list[int]]:
                cache, deltas = prefill()
                batch_cache = cache if last else copy.deepcopy(cache)  # the last batch may consume it
                if len(rows) > 1:
                    batch_cache.batch_repeat_interleave(len(rows))
                inputs = plan.batch_inputs(rows, self.pad_token_id)
                self.model.model.rope_deltas = deltas
                torch.manual_seed(self.generation.seed)
                with torch.inference_mode():
                    generated = self._timed_generate(
                        {**{k: v.to(self.device) for k, v in inputs.items()}, "cache": batch_cache}, config
                    )
                return generated[:, inputs["input_ids"].shape[1] :].tolist()

            tokens = self.compute_tokens([item.request.key for item in items], run)
            produced = []
            for row, item, generated in zip(rows, items, tokens, strict=True):
                prompt_tokens = len(plan.ids[row])
                # the first question of the clip pays the shared prefix, every one its own tokens
                computed = prompt_tokens - (plan.shared if row else 0)
                produced.append(self._output(item, generated, prompt_tokens, computed))
            yield items, produced
        state.clear()

    def compute_tokens(
        self, keys: list[tuple[str, int]], run: Callable[[], list[list[int]]]
    ) -> list[list[int]]:
        """The generated token ids per row: the one place model compute (vision tower, prefill, decoding)
        happens. A benchmark measures the harness alone by replacing this with recorded outputs by key."""
        return run()


# The processor outputs the prefix's forward takes (the questions' batches need none: the cache has them);
# second_per_grid_ts places an absolute-time family's frames (Qwen2.5-VL), absent for Qwen2-VL.
_VISION_INPUTS = (
    "pixel_values_videos",
    "video_grid_thw",
    "pixel_values",
    "image_grid_thw",
    "second_per_grid_ts",
)


@dataclass
class _PlaceholderExpansion:
    """A question's tokens without the processor: each visual placeholder of its prompt expanded into as
    many tokens as the processor gave the first question on the same visuals. Used only where it
    reproduces the processor's own output for that first question exactly."""

    tokenizer: Any
    runs: list[tuple[str, int]]  # (placeholder, its token count) in prompt order
    kind_of: dict[int, int]  # placeholder token id -> its mm_token_type_ids value
    reference: tuple[torch.Tensor, torch.Tensor]  # the processor's ids and kinds for the first question

    @classmethod
    def of(cls, tokenizer: Any, ids: torch.Tensor, kinds: torch.Tensor) -> _PlaceholderExpansion | None:
        placeholders = {tokenizer.convert_tokens_to_ids(t): t for t in ("<|image_pad|>", "<|video_pad|>")}
        runs: list[tuple[str, int]] = []
        kind_of: dict[int, int] = {}
        previous = None
        for token, kind in zip(ids.tolist(), kinds.tolist(), strict=True):
            if token in placeholders:
                kind_of[token] = kind
                if token == previous:
                    runs[-1] = (runs[-1][0], runs[-1][1] + 1)
                else:
                    runs.append((placeholders[token], 1))
            previous = token
        if not runs:
            return None
        return cls(tokenizer, runs, kind_of, (ids, kinds))

    def tokenize(self, prompt: str) -> tuple[torch.Tensor, torch.Tensor] | None:
        parts = re.split(r"(<\|image_pad\|>|<\|video_pad\|>)", prompt)
        placeholders = parts[1::2]
        if placeholders != [name for name, _ in self.runs]:
            return None
        text = "".join(part * self.runs[i // 2][1] if i % 2 else part for i, part in enumerate(parts))
        ids = torch.tensor(self.tokenizer(text)["input_ids"], dtype=self.reference[0].dtype)
        kinds = torch.zeros_like(ids, dtype=self.reference[1].dtype)
        for token, kind in self.kind_of.items():
            kinds[ids == token] = kind
        return ids, kinds

    def reproduces(self, prompt: str) -> bool:
        """Whether this prompt (the first question's) comes out exactly as the processor made it."""
        row = self.tokenize(prompt)
        return row is not None and all(
            a.shape == b.shape and bool((a == b).all()) for a, b in zip(row, self.reference, strict=True)
        )


@dataclass
class _PrefixPlan:
    items: list[_Item]
    ids: list[torch.Tensor]  # each question's whole prompt, visual tokens expanded
    kinds: list[torch.Tensor]  # mm_token_type_ids: which of those tokens are visual
    shared: int  # the length of the prefix every question starts with
    vision: dict[str, torch.Tensor]

    def fits(self, rows: list[int], new_tokens: int, budgets: StreamSettings, batch_size: int) -> bool:
        """Whether these rows make one batch: the tokens it computes (the questions' own, padded) within
        max_batch_tokens, the whole prompts its KV cache holds within max_batch_cache_tokens."""
        longest = max(len(self.ids[r]) for r in rows) + new_tokens
        own = max(len(self.ids[r]) - self.shared for r in rows) + new_tokens
        return (
            len(rows) <= batch_size
            and len(rows) * own <= budgets.max_batch_tokens
            and len(rows) * longest <= budgets.max_batch_cache_tokens
        )

    def batch_inputs(self, rows: list[int], pad_token_id: int) -> dict[str, torch.Tensor]:
        """[prefix | padding | question] per row: the cache holds the prefix, the padding is masked."""
        width = max(len(self.ids[r]) for r in rows)
        shared = self.shared
        ids, mask, kinds = [], [], []
        for r in rows:
            row, kind, pad = self.ids[r], self.kinds[r], width - len(self.ids[r])
            ids.append(torch.cat([row[:shared], row.new_full((pad,), pad_token_id), row[shared:]]))
            kinds.append(torch.cat([kind[:shared], kind.new_zeros(pad), kind[shared:]]))
            ones = torch.ones(len(row), dtype=torch.long)
            mask.append(torch.cat([ones[:shared], ones.new_zeros(pad), ones[shared:]]))
        grids = {name: grid for name, grid in self.vision.items() if name.endswith("_grid_thw")}
        return {
            "input_ids": torch.stack(ids),
            "attention_mask": torch.stack(mask),
            "mm_token_type_ids": torch.stack(kinds),
            **grids,
        }


class _StageSplit:
    """A generate() streamer that times "prefill" up to the first new token and "decode_steps" after it."""

    def __init__(self) -> None:
        self._stages = ExitStack()
        self._puts = 0

    def __enter__(self) -> _StageSplit:
        return self

    def __exit__(self, *exc: object) -> None:
        self._stages.close()

    def put(self, value: torch.Tensor) -> None:
        self._puts += 1  # the first put is the prompt, before the prefill; the second the first token
        if self._puts == 1:
            self._stages.enter_context(stage("prefill"))
        elif self._puts == 2:
            self._stages.close()
            self._stages.enter_context(stage("decode_steps"))

    def end(self) -> None:
        self._stages.close()


@dataclass
class _Item:
    index: int
    request: GenerationRequest
    visuals: LoadedVisuals
    prompt: str
    unit: int
    visual_tokens: int
    length: int  # prompt tokens after the visual placeholders are expanded
