"""The transformers backend: any local Qwen2-VL checkpoint folder, batched greedy decoding on CPU or GPU."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
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
        model = AutoModelForImageTextToText.from_pretrained(self.model_path, dtype=_DTYPES[dtype])
        if adapter_path is not None:
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, str(adapter_path)).merge_and_unload()
        self.model = model.to(device).eval()  # type: ignore[arg-type]  # transformers' wrapped .to()
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
        # Cached frames are shared and read-only; torch wants its own writable copy.
        videos = [video.frames.copy() for _, _, visuals, _ in batch for video in visuals.videos]
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
