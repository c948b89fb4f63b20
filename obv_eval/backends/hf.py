"""The transformers backend: any local Qwen2-VL checkpoint folder, batched greedy decoding on CPU or GPU."""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable, Sequence
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
    load_visuals,
)
from obv_eval.conversation import build_messages, render_prompt
from obv_eval.media import MediaError

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class CachedVideoFeatures:
    """The vision tower once per distinct clip, in place of the model's own `get_video_features`.

    Each video goes through the tower alone (its attention never crosses videos, and alone its
    features cannot depend on its batch-mates), keyed by its patches and grid; the per-video
    features are returned in order, as the model's own method returns them.
    """

    def __init__(self, compute: Callable[..., Any], max_entries: int = 64) -> None:
        self.compute = compute
        self.max_entries = max_entries
        self._cache: OrderedDict[tuple[str, tuple[int, ...]], torch.Tensor] = OrderedDict()
        self.hits = self.misses = 0

    def __call__(self, pixel_values_videos: torch.Tensor, video_grid_thw: torch.Tensor, **kwargs: Any) -> Any:
        from transformers.modeling_outputs import BaseModelOutputWithPooling

        features = []
        sizes = video_grid_thw.prod(-1).tolist()
        for patches, grid in zip(torch.split(pixel_values_videos, sizes), video_grid_thw, strict=True):
            key = (
                xxhash.xxh3_128_hexdigest(patches.contiguous().cpu().numpy().tobytes()),
                tuple(grid.tolist()),
            )
            if key in self._cache:
                self.hits += 1
                self._cache.move_to_end(key)
            else:
                self.misses += 1
                out = self.compute(patches, grid[None], **{**kwargs, "return_dict": True})
                self._cache[key] = out.pooler_output[0]
                if len(self._cache) > self.max_entries:
                    self._cache.popitem(last=False)
            features.append(self._cache[key])
        # The model concatenates a tuple of per-video features here, as its own method returns them.
        return BaseModelOutputWithPooling(pooler_output=tuple(features))  # type: ignore[arg-type]


class CachedVideoProcessor:
    """The processor's video step, once per distinct clip: several questions share a clip.

    Each video is processed on its own and the outputs concatenated in order, which is what the
    processor does for a batch (it flattens every video's patches and stacks them), so the inputs
    are the same as without the cache. Keyed by the frames' bytes and the processing options.
    """

    def __init__(self, inner: Any, max_entries: int = 64) -> None:
        self.inner = inner
        self.max_entries = max_entries
        self._cache: OrderedDict[tuple[str, str], dict[str, torch.Tensor]] = OrderedDict()
        self.hits = self.misses = 0

    def __getattr__(self, name: str) -> Any:  # merge_size, patch_size, ...: the real processor's
        return getattr(self.inner, name)

    def __call__(self, videos: Any, **kwargs: Any) -> Any:
        from transformers import BatchFeature

        options = repr(sorted((k, v) for k, v in kwargs.items() if k != "return_tensors"))
        parts = []
        for video in videos:
            frames = np.ascontiguousarray(video)
            key = (hashlib.sha1(frames.data, usedforsecurity=False).hexdigest(), options)
            if key in self._cache:
                self.hits += 1
                self._cache.move_to_end(key)
            else:
                self.misses += 1
                out = self.inner([frames.copy()], **{**kwargs, "return_tensors": "pt"})
                self._cache[key] = {name: out[name] for name in ("pixel_values_videos", "video_grid_thw")}
                if len(self._cache) > self.max_entries:
                    self._cache.popitem(last=False)
            parts.append(self._cache[key])
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
        self.processor = AutoProcessor.from_pretrained(self.model_path)
        self.processor.tokenizer.padding_side = "left"  # generation continues every row from its end
        # obv_eval.media already applied Qwen2-VL's pixel budgets (qwen-vl-utils' rules, per-frame
        # cap included), so the processor's own resize leaves the frames as they are.
        video_processor = getattr(self.processor, "video_processor", None)
        if video_processor is not None and hasattr(video_processor, "cap_pixels_per_frame"):
            video_processor.cap_pixels_per_frame = True
        if video_processor is not None:
            self.processor.video_processor = CachedVideoProcessor(video_processor)
        model = AutoModelForImageTextToText.from_pretrained(self.model_path, dtype=_DTYPES[dtype])
        if adapter_path is not None:
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, str(adapter_path)).merge_and_unload()
        self.model = model.to(device).eval()  # type: ignore[arg-type]  # transformers' wrapped .to()
        inner = getattr(self.model, "model", None)
        if inner is not None and hasattr(inner, "get_video_features"):
            inner.get_video_features = CachedVideoFeatures(inner.get_video_features)
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
        ready: list[tuple[int, GenerationRequest, LoadedVisuals, str]] = []
        for index, request in enumerate(requests):
            try:
                visuals = load_visuals(request.visuals, self.media)
            except MediaError as error:
                outputs[index] = GenerationOutput(request.key, "", error=f"MediaError: {error}")
                if on_batch:
                    on_batch([outputs[index]])
                continue
            prompt = render_prompt(self.processor, build_messages(request.text, visuals.kinds))
            ready.append((index, request, visuals, prompt))

        # Batches of one modality and similar length waste the least padding; the order is fixed,
        # so the same items always meet the same batch-mates.
        ready.sort(key=lambda item: (item[2].kinds, len(item[3]), item[0]))
        config = self._generation_config()
        bar = tqdm(total=len(requests), desc="generating", disable=not progress, initial=len(outputs))
        for start in range(0, len(ready), self.batch_size):
            batch = ready[start : start + self.batch_size]
            produced = self._generate_batch(batch, config)
            for (index, *_), output in zip(batch, produced, strict=True):
                outputs[index] = output
            if on_batch:
                on_batch(produced)
            bar.update(len(batch))
        bar.close()
        return [outputs[i] for i in range(len(requests))]

    @torch.inference_mode()
    def _generate_batch(
        self, batch: list[tuple[int, GenerationRequest, LoadedVisuals, str]], config: Any
    ) -> list[GenerationOutput]:
        videos = [video.frames for _, _, visuals, _ in batch for video in visuals.videos]
        images = [image for _, _, visuals, _ in batch for image in visuals.images]
        inputs = self.processor(
            text=[prompt for *_, prompt in batch],
            videos=videos or None,
            images=images or None,
            padding=True,
            return_tensors="pt",
        ).to(self.device)
        torch.manual_seed(self.generation.seed)
        generated = self.model.generate(**inputs, generation_config=config)
        new_tokens = generated[:, inputs["input_ids"].shape[1] :]
        results = []
        for row, (_, request, visuals, prompt) in enumerate(batch):
            text, count = decode_reply(
                self.processor.tokenizer, new_tokens[row].tolist(), self.eos_token_id, self.pad_token_id
            )
            results.append(
                GenerationOutput(
                    key=request.key,
                    text=text,
                    prompt=prompt,
                    prompt_tokens=int(inputs["attention_mask"][row].sum()),
                    output_tokens=count,
                    frames=[len(video.indices) for video in visuals.videos],
                )
            )
        return results
