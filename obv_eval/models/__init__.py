"""Model families: what obv-eval must know about a kind of checkpoint, one module per family.

The shape is vLLM's ``model_executor/models/`` and its architecture registry: each family says which
transformers class and processor load it, its frame and image rule (the one of its official
utilities), how its chat template takes a video, whether one prefill per clip (prefix KV reuse) is
exact for it, and how to build a tiny random-weight twin offline. A checkpoint's family comes from
its ``config.json`` ``model_type``; the conversation builder and the backends ask the family instead
of assuming Qwen2-VL.
"""

from __future__ import annotations

import functools
import importlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:  # imported when asked for: listing commands stay free of numpy and PyAV
    from obv_eval.media import ImageSettings, Video, VideoSettings

# How a family's position ids place a clip's frames in time:
# "frame-index": one temporal position per frame pair, whatever the clip's frame rate (Qwen2-VL);
# "absolute": positions in seconds, so the processor needs each clip's sampled fps (Qwen2.5-VL's
# second_per_grid_ts = temporal_patch_size / fps, times the config's tokens_per_second).
VideoTiming = Literal["frame-index", "absolute"]
VideoInput = Literal["video", "frames-as-images"]
TokenCount = Literal["qwen-grid", "processor"]


@dataclass(frozen=True)
class FrameRule:
    """A family's native frame and image rule: its settings and where they come from."""

    name: str  # recorded in provenance, e.g. "qwen-vl-utils-0.0.14"
    description: str  # one line for `obv-eval models` and docs
    # VideoSettings / ImageSettings fields where the rule differs from their (qwen-vl-utils) defaults
    video_fields: tuple[tuple[str, Any], ...] = ()
    image_fields: tuple[tuple[str, Any], ...] = ()

    def video(self) -> VideoSettings:
        from obv_eval.media import VideoSettings

        return VideoSettings(**dict(self.video_fields))

    def image(self) -> ImageSettings:
        from obv_eval.media import ImageSettings

        return ImageSettings(**dict(self.image_fields))


@dataclass(frozen=True)
class Family:
    name: str  # e.g. "qwen2_vl"
    title: str  # e.g. "Qwen2-VL"
    model_types: tuple[str, ...]  # config.json model_type values that are this family
    model_class: str  # transformers class that loads it (AutoModelForImageTextToText maps to it)
    processor_class: str  # transformers processor class
    frame_rule: FrameRule
    video_timing: VideoTiming
    # How the chat template takes a video: the content entry obv's conversation puts in the user turn,
    # and what the template renders for it (the processor then expands the pad token per frame pair).
    video_in_template: str
    # One prefill per clip (prefix KV reuse) in the transformers backend: on only where a test shows
    # the greedy tokens equal those of each prompt computed whole.
    prefix_reuse: bool
    prefix_reuse_note: str
    eos_token: str = "<|im_end|>"
    tiny_name: str | None = None  # registry name of its tiny twin
    build_tiny: Callable[[Path], Path] | None = field(default=None, repr=False, compare=False)
    tiny_version: str = "1"  # bump when build_tiny's output changes: the cache folder is keyed on it
    tiny_note: str = ""  # what the tiny twin does not share with the real checkpoints (registry listing)
    # How the processor takes a clip: "video" (the family's video processor), or "frames-as-images"
    # (Gemma 3 has no video input: each sampled frame becomes an image entry of the user turn).
    video_input: VideoInput = "video"
    # How the transformers backend counts a prompt's visual tokens before running the processor (for
    # batch budgets): "qwen-grid" from the frame sizes (patch 14 or 16, merge 2, temporal pairs), or
    # "processor": the processor's own output on that item, counted (families with tiles or pooling).
    token_count: TokenCount = "qwen-grid"
    # obv's per-clip vision-feature cache wraps the model's get_video_features(pixel_values_videos,
    # video_grid_thw) (the Qwen families' signature); off where the family's signature differs.
    feature_cache: bool = True
    # The family's processor arguments for an item, given its already-sampled clips (none for an item with
    # images only): e.g. the clips' metadata and do_sample_frames=False so the processor keeps obv's frames,
    # or do_resize=False for images already on the family's grid; None: family_processor_kwargs' rule.
    processor_kwargs: Callable[[Sequence[Video]], dict[str, Any]] | None = field(
        default=None, repr=False, compare=False
    )

    def template_kinds(self, kinds: Sequence[str], frame_counts: Sequence[int]) -> tuple[str, ...]:
        """The user turn's visual entries for these visuals (videos first, then images): a family with
        no video input gets one image entry per sampled frame, in order."""
        if self.video_input == "video":
            return tuple(kinds)
        counts = iter(frame_counts)
        expanded: list[str] = []
        for kind in kinds:
            expanded.extend(["image"] * next(counts) if kind == "video" else [kind])
        return tuple(expanded)

    def processor_visuals(
        self, videos: Sequence[Video], images: Sequence[Any]
    ) -> tuple[list[Any], list[Any]]:
        """(videos, images) as the processor takes them: frames-as-images families get each clip's frames
        as images ahead of the item's own images, matching template_kinds' order."""
        if self.video_input == "video":
            return [video.frames for video in videos], list(images)
        frames = [frame for video in videos for frame in video.frames]
        return [], frames + list(images)

    def describe(self, frame_policy: str = "native") -> dict[str, Any]:
        """What a run records about the family (results provenance); frame_policy: the run's policy
        (obv_eval.frame_policy: "native", the family's own rule; "common"; "train")."""
        return {
            "family": self.name,
            "model_class": self.model_class,
            "frame_policy": frame_policy,
            "frame_rule": self.frame_rule.name,
            "video_timing": self.video_timing,
            "prefix_reuse": self.prefix_reuse,
        }


class UnknownFamily(Exception):
    """A checkpoint whose model_type no family knows; the message is one line naming the known ones."""


# One module per family under obv_eval/models/, each defining FAMILY; the order is `obv-eval models`'.
# A family module imports nothing heavy at import time (transformers inside its functions), so listing
# commands stay fast.
FAMILY_MODULES = ("qwen2_vl", "qwen2_5_vl", "qwen3_vl", "llava_onevision", "internvl", "gemma3")


@functools.cache
def families() -> dict[str, Family]:
    """Every known family by name (imported here, so a family module is the one place it is defined)."""
    found: list[Family] = []
    for module in FAMILY_MODULES:
        name = f"obv_eval.models.{module}"
        try:
            found.append(importlib.import_module(name).FAMILY)
        except ModuleNotFoundError as error:
            if error.name != name:  # a family module that is there but imports something missing
                raise
    return {f.name: f for f in found}


def tiny_twin_dir(family: Family, cache_root: Path | None = None) -> Path:
    """A family's tiny random-weight twin, built into the model cache on first use."""
    from obv_eval.tiny_model import _cached_build

    if family.tiny_name is None or family.build_tiny is None:
        raise ValueError(f"{family.title} has no tiny twin")
    return _cached_build(family.tiny_name, family.build_tiny, cache_root, version=family.tiny_version)


def family_for_model_type(model_type: str) -> Family:
    for family in families().values():
        if model_type in family.model_types:
            return family
    known = ", ".join(t for f in families().values() for t in f.model_types)
    raise UnknownFamily(f"model_type {model_type!r} is not a known family (known: {known})")


def family_of_checkpoint(path: str | Path) -> Family:
    """The family of a checkpoint folder, from its config.json (a LoRA adapter: its base's)."""
    folder = Path(path)
    config = folder / "config.json"
    if not config.is_file():
        adapter = folder / "adapter_config.json"
        if adapter.is_file():
            base = json.loads(adapter.read_text(encoding="utf-8")).get("base_model_name_or_path")
            if base and (Path(base) / "config.json").is_file():
                return family_of_checkpoint(base)
        raise UnknownFamily(f"{folder}: no config.json, so its model family is unknown")
    try:
        model_type = json.loads(config.read_text(encoding="utf-8")).get("model_type")
    except (OSError, ValueError) as error:
        raise UnknownFamily(f"{config}: not readable JSON ({error})") from None
    if not isinstance(model_type, str):
        raise UnknownFamily(f"{config}: no model_type, so its model family is unknown")
    try:
        return family_for_model_type(model_type)
    except UnknownFamily as error:
        raise UnknownFamily(f"{folder}: {error}") from None


def family_of_processor(processor: Any) -> Family:
    """The family whose processor class this is (training has the processor, not the folder)."""
    name = type(processor).__name__
    for family in families().values():
        if family.processor_class == name:
            return family
    raise UnknownFamily(f"processor {name} is not a known family's")


def family_processor_kwargs(family: Family, videos: Sequence[Video]) -> dict[str, Any]:
    """The processor arguments of a family for an item whose clips (if any) obv_eval.media already sampled:
    the family's own (Family.processor_kwargs) where it has them, else the Qwen families' rule.

    Absolute time (Qwen2.5-VL): each clip's metadata, from which transformers takes the sampled fps
    (len(indices) / total_frames * source fps, qwen-vl-utils' sample_fps); without it transformers
    assumes 24 fps. Frame-index families need nothing, and get nothing (their inputs stay as they were).
    """
    if family.processor_kwargs is not None:
        return family.processor_kwargs(videos)
    if family.video_timing != "absolute" or not videos:
        return {}
    return {"video_metadata": video_metadata(videos)}


def video_metadata(videos: Sequence[Video]) -> list[dict[str, Any]]:
    """Each already-sampled clip as transformers' VideoMetadata: the processor takes its sampled fps from
    it (len(indices) / total_frames * source fps, qwen-vl-utils' sample_fps)."""
    return [
        {
            "total_num_frames": video.total_frames,
            "fps": video.source_fps,
            "duration": video.duration_s,
            "frames_indices": list(video.indices),
            "height": int(video.frames.shape[1]),
            "width": int(video.frames.shape[2]),
        }
        for video in videos
    ]
