"""What every backend takes and gives back, and the media loading they share."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from PIL import Image

from obv_eval import controls
from obv_eval.conversation import VisualKind
from obv_eval.media import ImageSettings, MediaError, Video, VideoSettings, load_image, load_video
from obv_eval.sources import MediaRef

Visual = MediaRef | Image.Image


@dataclass(frozen=True)
class GenerationSettings:
    """Greedy decoding, every field explicit so a checkpoint's generation_config cannot change results."""

    max_new_tokens: int = 32
    do_sample: bool = False
    num_beams: int = 1
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    repetition_penalty: float = 1.0
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class MediaSettings:
    video: VideoSettings = field(default_factory=VideoSettings)
    image: ImageSettings = field(default_factory=ImageSettings)
    control: str | None = None  # obv_eval.controls: blind, blank, single-frame, shuffled, frames=N
    frame_policy: str = "native"  # obv_eval.frame_policy: native, train, or a common policy's spec

    def to_dict(self) -> dict[str, Any]:
        settings: dict[str, Any] = {"video": self.video.to_dict(), "image": self.image.to_dict()}
        if self.control is not None:  # a full run's settings (and its identity) stay as they were
            settings["control"] = self.control
        # A common policy's spec is part of the record; native and train runs keep the record they had.
        if self.frame_policy.partition(":")[0] == "common":
            settings["frame_policy"] = self.frame_policy
        return settings


@dataclass(frozen=True)
class GenerationRequest:
    key: tuple[str, int]  # (task, doc_id)
    text: str
    visuals: tuple[Visual, ...] = ()


@dataclass
class GenerationOutput:
    key: tuple[str, int]
    text: str
    prompt: str = ""
    prompt_tokens: int | None = None
    prefill_tokens: int | None = None  # prompt tokens this item computed (a shared prefix counts once)
    output_tokens: int | None = None
    frames: list[int] = field(default_factory=list)  # sampled frames per video
    error: str | None = None
    visual_tokens: int | None = None  # the item's visual tokens (all its videos and images)
    over_context: bool | None = None  # prompt + max_new_tokens above the model's native context


def over_context(prompt_tokens: int | None, max_new_tokens: int, native: int | None) -> bool | None:
    """Whether an item may run past the model's max_position_embeddings (None: unknown)."""
    if prompt_tokens is None or native is None:
        return None
    return prompt_tokens + max_new_tokens > native


class Backend(Protocol):
    """What the adapters and the generation log need of a backend (transformers, vLLM, OpenAI)."""

    generation: GenerationSettings
    media: MediaSettings

    def generate(
        self,
        requests: Sequence[GenerationRequest],
        progress: bool = ...,
        on_batch: Callable[[list[GenerationOutput]], None] | None = ...,
    ) -> list[GenerationOutput]: ...

    def describe(self) -> dict[str, Any]: ...


def decode_reply(
    tokenizer: Any, token_ids: Sequence[int], eos_id: int, pad_id: int | None
) -> tuple[str, int]:
    """The reply text and its token count: up to and including the first end-of-turn token.

    Every backend decodes with the checkpoint's own tokenizer here, so the same tokens always give
    the same text (vLLM's incremental detokenizer, for one, drops a trailing partial character).
    """
    tokens = list(token_ids)
    if eos_id in tokens:
        tokens = tokens[: tokens.index(eos_id) + 1]
    while tokens and pad_id is not None and tokens[-1] == pad_id:
        tokens.pop()
    return str(tokenizer.decode(tokens, skip_special_tokens=True)).strip(), len(tokens)


@dataclass(frozen=True)
class LoadedVisuals:
    kinds: tuple[VisualKind, ...]
    videos: tuple[Video, ...]
    images: tuple[Image.Image, ...]


def load_visuals(visuals: tuple[Visual, ...], settings: MediaSettings) -> LoadedVisuals:
    """Decode an item's visuals with THE frame sampler, as the run's control shows them (the one place
    a control applies, for every backend); raises MediaError with the reason."""
    if not controls.keeps_visuals(settings.control):
        return LoadedVisuals((), (), ())  # blind: nothing is read, the question goes alone
    video_settings = controls.video_settings(settings.control, settings.video)
    kinds: list[VisualKind] = []
    videos: list[Video] = []
    images: list[Image.Image] = []
    for visual in visuals:
        if isinstance(visual, MediaRef) and visual.root is None and not os.path.isabs(visual.path):
            raise MediaError(
                f"relative {visual.kind} path {visual.path!r} but no {visual.kind} root is configured; "
                f"pass --{visual.kind}-root DIR (or set OBV_EVAL_{visual.kind.upper()}_ROOT)"
            )
        if isinstance(visual, Image.Image):
            images.append(load_image(visual, settings.image))
            kinds.append("image")
        elif isinstance(visual, MediaRef) and visual.kind == "video":
            videos.append(load_video(visual.path, video_settings, root=visual.root))
            kinds.append("video")
        elif isinstance(visual, MediaRef):
            images.append(load_image(visual.path, settings.image, root=visual.root))
            kinds.append("image")
        else:
            raise MediaError(
                f"unsupported visual {type(visual).__name__}; expected a MediaRef or a PIL image"
            )
    # Videos first, then images: the order the conversation lays them out.
    ordered: list[VisualKind] = sorted(kinds, key=lambda kind: 0 if kind == "video" else 1)
    shown_videos, shown_images = controls.apply(settings.control, tuple(videos), tuple(images))
    return LoadedVisuals(tuple(ordered), shown_videos, shown_images)
