"""Qwen2-VL's and Qwen2.5-VL's frame and image rule, as qwen-vl-utils 0.0.14 implements it
(``qwen_vl_utils/vision_process.py``); pure functions, no I/O (obv_eval.media decodes and caches).

* frames: ``smart_nframes`` (2 fps, 4..768 frames, counts rounded down to a multiple of 2) and
  evenly spaced indices ``round(linspace(0, total - 1, n))`` computed in float32 like ``torch.linspace``;
* frame size: ``smart_resize`` to multiples of 28 (patch 14 x merge 2) within a per-frame pixel budget
  that shrinks as the frame count grows (``fetch_video``);
* images: ``smart_resize`` bounds (``fetch_image``; its RGB conversion is obv_eval.media's).

qwen-vl-utils is not imported (it needs torchvision and network helpers); tests cross-check against it.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from obv_eval.media import VideoSettings

# Constants of qwen-vl-utils 0.0.14 for Qwen2-VL (image_patch_size=14, SPATIAL_MERGE_SIZE=2).
IMAGE_FACTOR = 28  # one merged visual token covers 28 x 28 pixels
FRAME_FACTOR = 2  # frames are grouped in temporal pairs (temporal_patch_size=2)
MAX_RATIO = 200
IMAGE_MIN_PIXELS = 4 * IMAGE_FACTOR**2  # IMAGE_MIN_TOKEN_NUM * 28^2 = 3,136
IMAGE_MAX_PIXELS = 16384 * IMAGE_FACTOR**2  # IMAGE_MAX_TOKEN_NUM * 28^2 = 12,845,056
VIDEO_MIN_PIXELS = 128 * IMAGE_FACTOR**2  # VIDEO_MIN_TOKEN_NUM * 28^2 = 100,352 per frame
VIDEO_MAX_PIXELS = 768 * IMAGE_FACTOR**2  # VIDEO_MAX_TOKEN_NUM * 28^2 = 602,112 per frame
# MODEL_SEQ_LEN (128,000 unless the environment overrides it there) * 28^2 * 0.9 = 90,316,800 per video.
VIDEO_TOTAL_PIXELS = 128000 * IMAGE_FACTOR**2 * 9 // 10
VIDEO_MAX_TOKEN_NUM = 768  # per frame; VIDEO_MAX_PIXELS is it times 28^2


def video_max_pixels(factor: int) -> int:
    """qwen-vl-utils' per-frame pixel cap for a family's factor (fetch_video's VIDEO_FRAME_MAX_PIXELS)."""
    return VIDEO_MAX_TOKEN_NUM * factor**2


def _round_by_factor(number: float, factor: int) -> int:
    return round(number / factor) * factor  # Python's round: half to even, as qwen-vl-utils


def _ceil_by_factor(number: float, factor: int) -> int:
    return math.ceil(number / factor) * factor


def _floor_by_factor(number: float, factor: int) -> int:
    return math.floor(number / factor) * factor


def frame_count(total_frames: int, video_fps: float, settings: VideoSettings) -> int:
    """Number of frames Qwen2-VL samples from a clip (qwen-vl-utils ``smart_nframes``)."""
    from obv_eval.media import MediaError  # media imports this module: its error, imported when raised

    if settings.sampler != "qwen-vl-utils":  # a fixed count, no pairs
        if total_frames < 1:
            raise MediaError("video has no frames; re-encode the file")
        if settings.sampler == "linspace":  # repeats frames of a shorter clip, as lmms-eval does
            return int(settings.nframes or 1)
        # A clip shorter than nframes gives every frame once (transformers' samplers would refuse it).
        return min(int(settings.nframes or 1), total_frames)
    if total_frames < FRAME_FACTOR:
        raise MediaError(
            f"video has {total_frames} frame(s); Qwen2-VL needs at least {FRAME_FACTOR}: "
            "re-cut the clip longer or pass a single frame as an image"
        )
    if settings.nframes is not None:
        nframes = _round_by_factor(settings.nframes, FRAME_FACTOR)
    else:
        if not (math.isfinite(video_fps) and video_fps > 0):
            raise MediaError(f"video frame rate must be positive, got {video_fps}; re-encode the file")
        min_frames = _ceil_by_factor(settings.min_frames, FRAME_FACTOR)
        # qwen-vl-utils caps max_frames by total_frames here too; the min() below makes that equivalent.
        max_frames = _floor_by_factor(settings.max_frames, FRAME_FACTOR)
        wanted = total_frames / video_fps * settings.fps
        nframes = _floor_by_factor(min(min(max(wanted, min_frames), max_frames), total_frames), FRAME_FACTOR)
    if not FRAME_FACTOR <= nframes <= total_frames:
        raise MediaError(
            f"cannot sample {nframes} frames from a {total_frames}-frame video; "
            f"ask for at most {total_frames} (nframes) or sample by fps"
        )
    return nframes


def sample_frame_indices(total_frames: int, video_fps: float, settings: VideoSettings) -> list[int]:
    """Indices of the frames Qwen2-VL sees: ``round(linspace(0, total_frames - 1, n))``.

    qwen-vl-utils uses ``torch.linspace`` (float32, first half counted up from 0, second half counted
    down from the end) and ``round`` (half to even). The same float32 arithmetic here gives identical
    indices for clips up to at least 12,000 frames; beyond that torch's vectorised kernel (which depends
    on the CPU) can differ from it by one frame at a few positions.
    """
    nframes = frame_count(total_frames, video_fps, settings)
    positions = np.arange(nframes, dtype=np.int64)
    if settings.sampler == "uniform":
        return [int(i) for i in positions * total_frames // nframes]
    if settings.sampler == "midpoint":
        return [int(i) for i in (2 * positions + 1) * total_frames // (2 * nframes)]
    if settings.sampler in ("linspace", "linspace-unique"):  # nframes <= total for the latter: distinct
        return [int(i) for i in np.linspace(0, total_frames - 1, nframes, dtype=int)]
    end = np.float32(total_frames - 1)
    step = np.float32(end / np.float32(nframes - 1))
    half = nframes // 2
    first = np.float32(0) + step * positions[:half].astype(np.float32)
    second = end - step * (nframes - 1 - positions[half:]).astype(np.float32)
    values = np.concatenate([first, second]).astype(np.float32)
    return [int(i) for i in np.rint(values)]


def smart_resize(
    height: int,
    width: int,
    factor: int = IMAGE_FACTOR,
    min_pixels: float = IMAGE_MIN_PIXELS,
    max_pixels: float = IMAGE_MAX_PIXELS,
) -> tuple[int, int]:
    """(height, width) rounded to multiples of ``factor`` with area in [min_pixels, max_pixels].

    Keeps the aspect ratio as closely as possible (qwen-vl-utils ``smart_resize``). Raises ValueError
    for non-positive sizes, min_pixels > max_pixels, or an aspect ratio above 200.
    """
    if height <= 0 or width <= 0:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    if max_pixels < min_pixels:
        raise ValueError(f"max_pixels ({max_pixels}) must be >= min_pixels ({min_pixels})")
    if max(height, width) / min(height, width) > MAX_RATIO:
        raise ValueError(
            f"aspect ratio {max(height, width) / min(height, width):.1f} of {width}x{height} exceeds "
            f"{MAX_RATIO}; crop or pad the image"
        )
    h_bar = max(factor, _round_by_factor(height, factor))
    w_bar = max(factor, _round_by_factor(width, factor))
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = _floor_by_factor(height / beta, factor)
        w_bar = _floor_by_factor(width / beta, factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = _ceil_by_factor(height * beta, factor)
        w_bar = _ceil_by_factor(width * beta, factor)
    return h_bar, w_bar


def video_frame_size(height: int, width: int, nframes: int, settings: VideoSettings) -> tuple[int, int]:
    """(height, width) of every sampled frame (qwen-vl-utils ``fetch_video``'s resize step).

    The per-frame budget is the video budget shared out over the frame pairs, capped at
    ``video_max_pixels(factor)`` but never below 1.05 x ``min_pixels``, then lowered to
    ``settings.max_pixels``. Settings with ``resize`` off keep the decoded size (the processor resizes).
    """
    if nframes < 1:
        raise ValueError(f"nframes must be positive, got {nframes}")
    if not settings.resize:
        return height, width
    cap = video_max_pixels(settings.factor)
    budget = max(min(cap, settings.total_pixels / nframes * FRAME_FACTOR), int(settings.min_pixels * 1.05))
    max_pixels = min(settings.max_pixels, budget)
    return smart_resize(height, width, settings.factor, settings.min_pixels, max_pixels)
