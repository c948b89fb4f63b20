"""The transformers backend: any local Qwen2-VL checkpoint folder, batched greedy decoding on CPU or GPU."""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable, Sequence
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
)
from obv_eval.conversation import build_messages, render_prompt
from obv_eval.media import cache_budget as frame_cache_budget
from obv_eval.media import release_video
from obv_eval.profiling import stage

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class CachedVideoFeatures:
    """The vision tower once per distinct clip, in place of the model's own `get_video_features`.

    Each video goes through the tower alone (its attention never crosses videos, and alone its
    features cannot depend on its batch-mates), keyed by its patches and grid; the per-video
    features are returned in order, as the model's own method returns them.
    """

    def __init__(self, compute: Callable[..., Any], max_bytes: int = 256 << 20) -> None:
        self.compute = compute
        self.max_bytes = max_bytes
        self._cache: OrderedDict[tuple[str, tuple[int, ...]], torch.Tensor] = OrderedDict()
        self.bytes = 0
        self.hits = self.misses = 0
        self._recent: set[tuple[str, tuple[int, ...]]] = set()  # keys the latest call used

    def retain_recent(self) -> None:
        """Forget every entry but those of the latest call (a finished clip is not needed again)."""
        for key in [key for key in self._cache if key not in self._recent]:
            self._evict(key)

    def _evict(self, key: tuple[str, tuple[int, ...]]) -> None:
        entry = self._cache.pop(key)
        self.bytes -= self._nbytes(entry)

    def _put(self, key: tuple[str, tuple[int, ...]], value: torch.Tensor) -> None:
        size = value.element_size() * value.nelement()
        if size > self.max_bytes:
            return
        self._cache[key] = value
        self.bytes += size
        while self.bytes > self.max_bytes:
            _, evicted = self._cache.popitem(last=False)
            self.bytes -= self._nbytes(evicted)

    @staticmethod
    def _nbytes(entry: torch.Tensor) -> int:
        return entry.element_size() * entry.nelement()

    def __call__(self, pixel_values_videos: torch.Tensor, video_grid_thw: torch.Tensor, **kwargs: Any) -> Any:
        from transformers.modeling_outputs import BaseModelOutputWithPooling

        features = []
        local: dict[tuple[str, tuple[int, ...]], torch.Tensor] = {}  # repeats within this call
        sizes = video_grid_thw.prod(-1).tolist()
        for patches, grid in zip(torch.split(pixel_values_videos, sizes), video_grid_thw, strict=True):
            key = (
                xxhash.xxh3_128_hexdigest(patches.contiguous().cpu().numpy().tobytes()),
                tuple(grid.tolist()),
            )
            if key in local:
                self.hits += 1
            elif key in self._cache:
                self.hits += 1
                self._cache.move_to_end(key)
                local[key] = self._cache[key]
            else:
                self.misses += 1
                out = self.compute(patches, grid[None], **{**kwargs, "return_dict": True})
                local[key] = out.pooler_output[0]
                self._put(key, local[key])
            features.append(local[key])
        self._recent = set(local)
        # The model concatenates a tuple of per-video features here, as its own method returns them.
        return BaseModelOutputWithPooling(pooler_output=tuple(features))  # type: ignore[arg-type]


class CachedVideoProcessor:
    """The processor's video step, once per distinct clip: several questions share a clip.

    Each video is processed on its own and the outputs concatenated in order, which is what the
    processor does for a batch (it flattens every video's patches and stacks them), so the inputs
    are the same as without the cache. Keyed by the frames' bytes and the processing options.
    """

    def __init__(self, inner: Any, max_bytes: int = 512 << 20) -> None:
        self.inner = inner
        self.max_bytes = max_bytes
        self._cache: OrderedDict[tuple[str, str], dict[str, torch.Tensor]] = OrderedDict()
        self.bytes = 0
        self.hits = self.misses = 0
        self._recent: set[tuple[str, str]] = set()  # keys the latest call used

    def retain_recent(self) -> None:
        """Forget every entry but those of the latest call (a finished clip is not needed again)."""
        for key in [key for key in self._cache if key not in self._recent]:
            self._evict(key)

    def _evict(self, key: tuple[str, str]) -> None:
        entry = self._cache.pop(key)
        self.bytes -= self._nbytes(entry)

    @staticmethod
    def _size(entry: dict[str, torch.Tensor]) -> int:
        return sum(t.element_size() * t.nelement() for t in entry.values())

    def _put(self, key: tuple[str, str], entry: dict[str, torch.Tensor]) -> None:
        size = self._size(entry)
        if size > self.max_bytes:
            return
        self._cache[key] = entry
        self.bytes += size
        while self.bytes > self.max_bytes:
            _, evicted = self._cache.popitem(last=False)
            self.bytes -= self._size(evicted)

    _nbytes = _size

    def __getattr__(self, name: str) -> Any:  # merge_size, patch_size, ...: the real processor's
        return getattr(self.inner, name)

    def __call__(self, videos: Any, **kwargs: Any) -> Any:
        from transformers import BatchFeature

        options = repr(sorted((k, v) for k, v in kwargs.items() if k != "return_tensors"))
        parts = []
        local: dict[tuple[str, str], dict[str, torch.Tensor]] = {}  # repeats within this call
        for video in videos:
            frames = np.ascontiguousarray(video)
            key = (hashlib.sha1(frames.data, usedforsecurity=False).hexdigest(), options)
            if key in local:
                self.hits += 1
            elif key in self._cache:
                self.hits += 1
                self._cache.move_to_end(key)
                local[key] = self._cache[key]
            else:
                self.misses += 1
                out = self.inner([frames.copy()], **{**kwargs, "return_tensors": "pt"})
                local[key] = {name: out[name] for name in ("pixel_values_videos", "video_grid_thw")}
                self._put(key, local[key])
            parts.append(local[key])
        self._recent = set(local)
        merged = {name: torch.cat([part[name] for part in parts]) for name in parts[0]}
        return BatchFeature(merged, tensor_type=kwargs.get("return_tensors"))


class HFBackend:
    name = "transformers"

    def __init__(
        self,
        model_path: str | Path,
        *,
        device: str = "cpu",
        dtype: str = "float32",
        batch_size: int = 4,
        generation: GenerationSettings | None = None,
        media: MediaSettings | None = None,
        adapter_path: str | Path | None = None,
        stream: StreamSettings | None = None,
    ) -> None:
        from transformers import AutoModelForImageTextToText, AutoProcessor

        if dtype not in _DTYPES:
            raise ValueError(f"dtype {dtype!r} is not one of {', '.join(_DTYPES)}")
        self.model_path = Path(model_path)
        self.device = device
        self.dtype = dtype
        self.batch_size = max(1, int(batch_size))
        self.generation = generation or GenerationSettings()
        self.media = media or MediaSettings()
        self.stream = stream or StreamSettings()
        self.native_context = native_context(self.model_path)
        self.processor = AutoProcessor.from_pretrained(self.model_path)
        self.processor.tokenizer.padding_side = "left"  # generation continues every row from its end
        # obv_eval.media already applied Qwen2-VL's pixel budgets (qwen-vl-utils' rules, per-frame
        # cap included), so the processor's own resize leaves the frames as they are.
        video_processor = getattr(self.processor, "video_processor", None)
        if video_processor is not None and hasattr(video_processor, "cap_pixels_per_frame"):
            video_processor.cap_pixels_per_frame = True
        if video_processor is not None:
            self.processor.video_processor = CachedVideoProcessor(
                video_processor, self.stream.processor_cache_bytes
            )
        model = AutoModelForImageTextToText.from_pretrained(self.model_path, dtype=_DTYPES[dtype])
        if adapter_path is not None:
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, str(adapter_path)).merge_and_unload()
        self.model = model.to(device).eval()  # type: ignore[arg-type]  # transformers' wrapped .to()
        inner = getattr(self.model, "model", None)
        if inner is not None and hasattr(inner, "get_video_features"):
            inner.get_video_features = CachedVideoFeatures(
                inner.get_video_features, self.stream.feature_cache_bytes
            )
        self.prefetch_peak_bytes = 0
        self.eos_token_id = self.processor.tokenizer.convert_tokens_to_ids("<|im_end|>")
        self.pad_token_id = self.processor.tokenizer.pad_token_id

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
        prompts = [
            render_prompt(self.processor, build_messages(r.text, visual_kinds(r.visuals))) for r in requests
        ]
        units = stream_order(requests, prompts)
        config = self._generation_config()
        new_tokens = self.generation.max_new_tokens
        bar = tqdm(total=len(requests), desc="generating", disable=not progress)
        prefetch = Prefetcher(units, requests, self.media, self.stream.prefetch_bytes)
        remaining: dict[int, int] = {}  # unit id -> its items not yet generated
        unit_bytes: dict[int, int] = {}
        batch: list[_Item] = []

        def emit(produced: list[GenerationOutput], indices: list[int]) -> None:
            for index, output in zip(indices, produced, strict=True):
                outputs[index] = output
            if on_batch:
                on_batch(produced)
            bar.update(len(produced))

        def flush() -> None:
            if not batch:
                return
            produced = self._generate_batch(batch, config)
            emit(produced, [item.index for item in batch])
            for item in batch:
                remaining[item.unit] -= 1
                if remaining[item.unit] == 0:  # no pending item needs this clip's frames
                    prefetch.release(unit_bytes.pop(item.unit))
                    for video in item.visuals.videos:
                        release_video(video)
                    self._release_caches()
            batch.clear()

        for unit_id, loaded in enumerate(prefetch):
            if loaded.visuals is None:
                for index in loaded.unit:  # a failed item is a batch of its own
                    emit([GenerationOutput(requests[index].key, "", error=loaded.error)], [index])
                prefetch.release(loaded.nbytes)
                continue
            remaining[unit_id] = len(loaded.unit)
            unit_bytes[unit_id] = loaded.nbytes
            tokens = visual_tokens(loaded.visuals, *self._geometry)
            pixels = visual_pixels(loaded.visuals)
            for index in loaded.unit:
                prompt = prompts[index]
                length = prompt_length(self.processor.tokenizer, prompt, loaded.visuals, tokens)
                item = _Item(index, requests[index], loaded.visuals, prompt, unit_id, tokens, length)
                lengths = [b.length + new_tokens for b in batch]
                taken = sum(visual_pixels(b.visuals) for b in batch)
                if not fits(lengths, taken, length + new_tokens, pixels, self.stream, self.batch_size):
                    flush()
                batch.append(item)
                if len(batch) >= self.batch_size:
                    flush()
            del loaded
        flush()
        bar.close()
        self.prefetch_peak_bytes = max(self.prefetch_peak_bytes, prefetch.peak)
        return [outputs[i] for i in range(len(requests))]

    def _release_caches(self) -> None:
        """Processor outputs and vision features of finished clips go (those of the latest batch stay)."""
        processor = getattr(self.processor, "video_processor", None)
        features = getattr(getattr(self.model, "model", None), "get_video_features", None)
        for cache in (processor, features):
            if isinstance(cache, CachedVideoProcessor | CachedVideoFeatures):
                cache.retain_recent()

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
        videos = [video.frames for item in batch for video in item.visuals.videos]
        images = [image for item in batch for image in item.visuals.images]
        with stage("processor"):
            inputs = self.processor(
                text=[item.prompt for item in batch],
                videos=videos or None,
                images=images or None,
                padding=True,
                return_tensors="pt",
            ).to(self.device)

        def run() -> list[list[int]]:
            torch.manual_seed(self.generation.seed)
            with stage("generate"):
                generated = self.model.generate(**inputs, generation_config=config)
            return generated[:, inputs["input_ids"].shape[1] :].tolist()

        new_tokens = self.compute_tokens([item.request.key for item in batch], run)
        results = []
        for row, item in enumerate(batch):
            text, count = decode_reply(
                self.processor.tokenizer, new_tokens[row], self.eos_token_id, self.pad_token_id
            )
            prompt_tokens = int(inputs["attention_mask"][row].sum())
            results.append(
                GenerationOutput(
                    key=item.request.key,
                    text=text,
                    prompt=item.prompt,
                    prompt_tokens=prompt_tokens,
                    output_tokens=count,
                    frames=[len(video.indices) for video in item.visuals.videos],
                    visual_tokens=item.visual_tokens,
                    over_context=over_context(
                        prompt_tokens, self.generation.max_new_tokens, self.native_context
                    ),
                )
            )
        return results

    def compute_tokens(
        self, keys: list[tuple[str, int]], run: Callable[[], list[list[int]]]
    ) -> list[list[int]]:
        """The generated token ids per row: the one place model compute (vision tower, prefill, decoding)
        happens. A benchmark measures the harness alone by replacing this with recorded outputs by key."""
        return run()


@dataclass
class _Item:
    index: int
    request: GenerationRequest
    visuals: LoadedVisuals
    prompt: str
    unit: int
    visual_tokens: int
    length: int  # prompt tokens after the visual placeholders are expanded
