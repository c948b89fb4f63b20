"""lmms-eval model `obv_hf`: Qwen2-VL through the transformers backend (CPU, tests, fallback)."""

from __future__ import annotations

from typing import Any

from lmms_eval.api.instance import GenerationResult, Instance, TokenCounts
from lmms_eval.api.model import lmms

from obv_eval.backends.base import GenerationOutput, GenerationRequest, GenerationSettings, MediaSettings
from obv_eval.backends.hf import HFBackend
from obv_eval.failures import failure_text
from obv_eval.media import ImageSettings, VideoSettings
from obv_eval.registry import resolve_model


class ObvHF(lmms):
    """Thin over obv_eval.backends.hf; every setting arrives through --model_args."""

    is_simple = True

    def __init__(
        self,
        pretrained: str = "tiny-qwen2vl",
        device: str = "cpu",
        dtype: str = "float32",
        batch_size: int | str = 4,
        max_new_tokens: int = 32,
        fps: float = VideoSettings.fps,
        min_frames: int = VideoSettings.min_frames,
        max_frames: int = VideoSettings.max_frames,
        progress: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__()
        if kwargs:
            raise ValueError(f"obv_hf: unknown model_args {sorted(kwargs)}")
        resolved = resolve_model(str(pretrained))
        if resolved.path is None:
            raise ValueError(f"obv_hf cannot run API model {pretrained!r}; use obv_openai")
        self.model_name = resolved.name
        self.resolved = resolved
        self.progress = bool(progress)
        media = MediaSettings(
            video=VideoSettings(fps=float(fps), min_frames=int(min_frames), max_frames=int(max_frames)),
            image=ImageSettings(),
        )
        self.backend = HFBackend(
            resolved.path,
            device=device,
            dtype=dtype,
            batch_size=int(batch_size),
            generation=GenerationSettings(max_new_tokens=int(max_new_tokens)),
            media=media,
            adapter_path=resolved.adapter_path,
        )
        self.outputs: dict[tuple[str, int], GenerationOutput] = {}

    def generate_until(self, requests: list[Instance]) -> list[GenerationResult]:
        prepared: list[GenerationRequest] = []
        failures: dict[int, str] = {}
        for index, request in enumerate(requests):
            context, gen_kwargs, doc_to_visual, doc_id, task, split = request.args
            self._check_gen_kwargs(gen_kwargs)
            try:
                visuals = doc_to_visual(self.task_dict[task][split][doc_id]) or []
            except Exception as error:  # a bad row must fail its item, not the run
                failures[index] = f"{type(error).__name__}: {error}"
                visuals = []
            prepared.append(GenerationRequest((task, int(doc_id)), str(context), tuple(visuals)))
        todo = [req for i, req in enumerate(prepared) if i not in failures]
        produced = {out.key: out for out in self.backend.generate(todo, progress=self.progress)}
        results = []
        for index, request in enumerate(prepared):
            if index in failures:
                output = GenerationOutput(request.key, "", error=failures[index])
            else:
                output = produced[request.key]
            self.outputs[request.key] = output
            text = failure_text(output.error) if output.error else output.text
            results.append(GenerationResult(text, TokenCounts(output.prompt_tokens, output.output_tokens)))
        return results

    def _check_gen_kwargs(self, gen_kwargs: dict[str, Any]) -> None:
        # The task's token budget wins; anything that would stop greedy decoding is refused.
        if gen_kwargs.get("do_sample") or float(gen_kwargs.get("temperature", 0) or 0) > 0:
            raise ValueError("obv_hf decodes greedily; the task asked for sampling")
        budget = gen_kwargs.get("max_new_tokens")
        if budget is not None and int(budget) != self.backend.generation.max_new_tokens:
            self.backend.generation = GenerationSettings(max_new_tokens=int(budget))

    def loglikelihood(self, requests: list[Instance]) -> list[tuple[float, bool]]:
        raise NotImplementedError("obv tasks are generative; loglikelihood is not supported")

    def generate_until_multi_round(self, requests: list[Instance]) -> list[str]:
        raise NotImplementedError("obv tasks are single-turn")
