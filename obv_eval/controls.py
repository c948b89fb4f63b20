"""Controls: runs that take something away from the visuals, to ask whether the model is looking.

A control is a run setting (``--control NAME``, ``MediaSettings.control``) applied in one place, where
an item's visuals are loaded (``obv_eval.backends.base.load_visuals``), so the transformers, vLLM and
OpenAI backends all see the same thing (docs/controls.md):

* ``blind``: no visual at all; the same question and options as text only;
* ``blank``: the same number of frames (or the image) at the same size, every pixel black;
* ``single-frame``: the middle sampled frame only, repeated to fill one temporal patch (Qwen2-VL
  groups frames in pairs), at the full run's frame size;
* ``shuffled``: the full run's frames in a seeded random order (never the original order);
* ``frames=N``: N evenly spaced frames, sampled by the frame sampler itself (``nframes=N``).

Image tasks take ``blind`` and ``blank``; text tasks have nothing to remove and are refused.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re

import numpy as np
from PIL import Image

from obv_eval.media import FRAME_FACTOR, Video, VideoSettings

BLIND = "blind"
BLANK = "blank"
SINGLE_FRAME = "single-frame"
SHUFFLED = "shuffled"
NAMED = (BLIND, BLANK, SINGLE_FRAME, SHUFFLED)
IMAGE_CONTROLS = (BLIND, BLANK)
# The shuffled order is drawn from this seed and the clip's content: the same clip, the same order.
SHUFFLE_SEED = 0
_FRAMES = re.compile(r"frames=(\d+)")


class ControlError(ValueError):
    """A control that does not exist or does not apply; the message is one line for the user."""


def parse_control(text: str) -> str:
    """The canonical spelling of a control (``blind``, ``frames=8``); ControlError otherwise."""
    value = text.strip().lower()
    if value in NAMED:
        return value
    match = _FRAMES.fullmatch(value)
    if match is None:
        raise ControlError(
            f"unknown control {text!r}; valid: {', '.join(NAMED)}, frames=N (N even, at least 2)"
        )
    count = int(match.group(1))
    if count < FRAME_FACTOR or count % FRAME_FACTOR:
        raise ControlError(
            f"control frames={count}: N must be even and at least {FRAME_FACTOR} "
            "(Qwen2-VL takes frames in temporal pairs)"
        )
    return f"frames={count}"


def frame_count(control: str | None) -> int | None:
    """N of ``frames=N``; None for every other control."""
    match = _FRAMES.fullmatch(control or "")
    return int(match.group(1)) if match else None


def refusal(control: str, modality: str) -> str | None:
    """Why a task of this modality cannot run under the control (None: it can)."""
    if modality == "text":
        return "text tasks have no visual to remove"
    if modality == "image" and control not in IMAGE_CONTROLS:
        return f"image tasks take only {' and '.join(IMAGE_CONTROLS)}"
    return None


def run_suffix(control: str) -> str:
    """What a control run adds to its run id, so it never shares a folder with the full run."""
    return "control-" + control.replace("=", "-")


def keeps_visuals(control: str | None) -> bool:
    """Whether the conversation still holds visual placeholders under this control."""
    return control != BLIND


def video_settings(control: str | None, settings: VideoSettings) -> VideoSettings:
    """The frame sampler's settings under the control: ``frames=N`` samples N frames evenly."""
    count = frame_count(control)
    return settings if count is None else dataclasses.replace(settings, nframes=count)


def apply(
    control: str | None, videos: tuple[Video, ...], images: tuple[Image.Image, ...]
) -> tuple[tuple[Video, ...], tuple[Image.Image, ...]]:
    """An item's loaded videos and images as the control shows them (new objects: cached frames stay)."""
    if control is None or frame_count(control) is not None:
        return videos, images
    if control == BLIND:
        return (), ()
    if control == BLANK:
        blank_images = tuple(Image.new("RGB", image.size) for image in images)
        return tuple(_with_frames(v, np.zeros_like(v.frames), v.indices) for v in videos), blank_images
    if control == SINGLE_FRAME:
        return tuple(_single_frame(video) for video in videos), images
    if control == SHUFFLED:
        return tuple(_shuffled(video) for video in videos), images
    raise ControlError(f"unknown control {control!r}")


def _with_frames(video: Video, frames: np.ndarray, indices: tuple[int, ...]) -> Video:
    frames.flags.writeable = False
    return dataclasses.replace(
        video, frames=frames, indices=indices, sampled_fps=len(indices) / video.duration_s
    )


def _single_frame(video: Video) -> Video:
    middle = len(video.indices) // 2
    frames = np.repeat(video.frames[middle : middle + 1], FRAME_FACTOR, axis=0)
    return _with_frames(video, frames, (video.indices[middle],) * FRAME_FACTOR)


def shuffle_order(count: int, content_hash: str) -> list[int]:
    """A seeded permutation of ``count`` frames that is never the identity (for two or more)."""
    seed = int.from_bytes(hashlib.sha256(f"{SHUFFLE_SEED}:{content_hash}".encode()).digest()[:8], "big")
    rng = np.random.default_rng(seed)
    order = list(range(count))
    if count < 2:
        return order
    while order == sorted(order):
        order = [int(i) for i in rng.permutation(count)]
    return order


def _shuffled(video: Video) -> Video:
    order = shuffle_order(len(video.indices), video.content_hash)
    frames = np.ascontiguousarray(video.frames[order])
    return _with_frames(video, frames, tuple(video.indices[i] for i in order))
