"""What every obv lmms-eval model shares: unpacking lmms-eval's requests for a generation backend.

A subclass only builds `self.backend` (anything with generate/describe and the generation and media
settings, see `Backend`); this class turns lmms-eval Instances into GenerationRequests, runs them,
keeps every GenerationOutput in `self.outputs` for the runner's per-item records, and reports failed
items through obv_eval.failures so they are scored 0 and counted, never dropped.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from lmms_eval.api.instance import GenerationResult, Instance, TokenCounts
from lmms_eval.api.model import lmms

from obv_eval.backends.base import (
    Backend,
    GenerationOutput,
    GenerationRequest,
    MediaSettings,
)
from obv_eval.controls import parse_control
from obv_eval.failures import failure_text
from obv_eval.frame_policy import (
    COMMON,
    NATIVE,
    FramePolicyError,
    image_settings,
    parse_frames,
    video_settings,
)
from obv_eval.generation_log import GenerationLog, generate_resumable
from obv_eval.media import VideoSettings
from obv_eval.models import Family, UnknownFamily, family_of_checkpoint
from obv_eval.sources import media_refs


def media_settings(
    fps: float | None = None,
    min_frames: int | None = None,
    max_frames: int | None = None,
    frames: str = NATIVE,
    max_visual_tokens: int | str | None = None,
    control: str | None = None,
    model_path: str | Path | None = None,
    family: Family | None = None,
) -> MediaSettings:
    """The frame sampler's settings from --model_args (strings arrive as numbers or text).

    frames (obv_eval.frame_policy): native (default; `default` is the same) is the rule of the model's
    family (`family`, or model_path's: the resolved checkpoint; none or an unknown one: qwen-vl-utils'
    defaults, the study's evaluation scripts), fps/min/max_frames overriding it where given. common or
    common:fps=F,max_frames=N,max_pixels=P: the same frames and per-frame pixel budget for every model
    (';' separates the keys too, for lmms-eval's comma-separated model_args). train: the study's training
    frames (obv_eval.train.config.STUDY_TRAIN_VIDEO: 1 fps, at most 420 frames, 16,384 visual tokens per
    clip). max_visual_tokens=N: a visual-token budget per clip (frames are downscaled until the clip
    fits, down to 2 x 2 merged patches, as training does). control=NAME: a control run
    (obv_eval.controls: blind, blank, single-frame, shuffled, frames=N).
    """
    policy = parse_frames(frames)
    family = family or _family(model_path)  # a served model's family, or its checkpoint's
    if policy.name == COMMON:
        # The adapters pass VideoSettings' own defaults when nothing is given: only other values clash.
        given = {"fps": fps, "min_frames": min_frames, "max_frames": max_frames}
        clash = [k for k, v in given.items() if v is not None and v != getattr(VideoSettings, k)]
        if clash:
            raise FramePolicyError(
                f"{', '.join(clash)} and frames=common both set the frames: put them in the spec "
                "(frames=common:fps=F;max_frames=N;max_pixels=P)"
            )
        if max_visual_tokens not in (None, "", "None"):
            raise FramePolicyError(
                "max_visual_tokens does not combine with frames=common (its max_pixels is the budget; "
                "a token budget would size each family differently)"
            )
        fps = min_frames = max_frames = None
    video = video_settings(policy, family, fps, min_frames, max_frames)
    if max_visual_tokens not in (None, "", "None"):
        budget = int(max_visual_tokens)  # type: ignore[arg-type]
        if budget < 1:
            raise ValueError(f"max_visual_tokens must be positive, got {budget}")
        merged = video.factor * video.factor  # pixels per visual token of a frame pair
        video = dataclasses.replace(
            video, min_pixels=min(video.min_pixels, 4 * merged), total_pixels=budget * merged
        )
    chosen = parse_control(control) if control not in (None, "", "None") else None
    return MediaSettings(
        video=video, image=image_settings(policy, family), control=chosen, frame_policy=policy.spec
    )


def _family(model_path: str | Path | None) -> Family | None:
    """The checkpoint's family; None for an API model or a folder no family knows (the backend that
    loads it refuses the latter with its own line)."""
    if model_path is None:
        return None
    try:
        return family_of_checkpoint(model_path)
    except UnknownFamily:
        return None


class ObvModel(lmms):
    """Base of obv_hf, obv_vllm and obv_openai; subclasses set `adapter_id` and `backend`."""

    is_simple = True
    adapter_id = "obv"
    backend: Backend

    def __init__(self, progress: bool = True) -> None:
        super().__init__()
        self.progress = bool(progress)
        self.outputs: dict[tuple[str, int], GenerationOutput] = {}
        # Set by the runner: outputs are logged as produced, and a resumed run reuses them.
        self.generation_log: GenerationLog | None = None

    def generate_until(self, requests: list[Instance]) -> list[GenerationResult]:
        prepared: list[GenerationRequest] = []
        failures: dict[int, str] = {}
        for index, request in enumerate(requests):
            context, gen_kwargs, doc_to_visual, doc_id, task, split = request.args
            self._check_gen_kwargs(gen_kwargs)
            try:
                with media_refs():  # the files themselves, for obv's loaders and caches
                    visuals = doc_to_visual(self.task_dict[task][split][doc_id]) or []
            except Exception as error:  # a bad row must fail its item, not the run
                failures[index] = f"{type(error).__name__}: {error}"
                visuals = []
            prepared.append(GenerationRequest((task, int(doc_id)), str(context), tuple(visuals)))
        todo = [req for i, req in enumerate(prepared) if i not in failures]
        produced = generate_resumable(self.backend, todo, self.generation_log, self.progress)
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
            raise ValueError(f"{self.adapter_id} decodes greedily; the task asked for sampling")
        budget = gen_kwargs.get("max_new_tokens")
        if budget is not None and int(budget) != self.backend.generation.max_new_tokens:
            self.backend.generation = dataclasses.replace(self.backend.generation, max_new_tokens=int(budget))

    def loglikelihood(self, requests: list[Instance]) -> list[tuple[float, bool]]:
        raise NotImplementedError("obv tasks are generative; loglikelihood is not supported")

    def generate_until_multi_round(self, requests: list[Instance]) -> list[str]:
        raise NotImplementedError("obv tasks are single-turn")


def reject_unknown(adapter_id: str, kwargs: dict[str, Any]) -> None:
    if kwargs:
        raise ValueError(f"{adapter_id}: unknown model_args {sorted(kwargs)}")
