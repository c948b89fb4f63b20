"""The frame sampler and image loader for the whole project (evaluation backends and training).

This module decodes and caches; the rule it applies is a model family's (obv_eval.models). Both
families today (Qwen2-VL, Qwen2.5-VL) use qwen-vl-utils 0.0.14's rule, in obv_eval.models.qwen_vl_utils
and re-exported here: 2 fps, 4..768 frames in pairs, evenly spaced indices, sides in multiples of 28
within per-frame and per-video pixel budgets; images resized by the same ``smart_resize``, after
``fetch_image``'s RGB conversion (RGBA composited on white), which is here.

Beyond qwen-vl-utils (docs/media.md): images get their EXIF orientation applied (as transformers'
``load_image`` does), 16-bit and float images are mapped to 8 bits over their own range instead of being
clipped (``_to_8bit``), and a video's display rotation is applied to its frames (as torchcodec does).

Videos are decoded with PyAV once per (file content, settings) and cached in memory (LRU by bytes), and
optionally on disk in ``$OBV_EVAL_FRAME_CACHE`` (npz files).
"""

from __future__ import annotations

import bisect
import dataclasses
import hashlib
import io
import json
import math
import os
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# The rule itself (constants, pure functions) is the Qwen families' and lives with them; re-exported here.
from obv_eval.models.qwen_vl_utils import (
    FRAME_FACTOR,
    IMAGE_FACTOR,
    IMAGE_MAX_PIXELS,
    IMAGE_MIN_PIXELS,
    MAX_RATIO,
    VIDEO_MAX_PIXELS,
    VIDEO_MIN_PIXELS,
    VIDEO_TOTAL_PIXELS,
    frame_count,
    sample_frame_indices,
    smart_resize,
    video_frame_size,
    video_max_pixels,
)
from obv_eval.profiling import stage

__all__ = [
    "DECODE_VERSION",
    "FRAME_FACTOR",
    "IMAGE_FACTOR",
    "IMAGE_MAX_PIXELS",
    "IMAGE_MIN_PIXELS",
    "MAX_RATIO",
    "VIDEO_MAX_PIXELS",
    "VIDEO_MIN_PIXELS",
    "VIDEO_TOTAL_PIXELS",
    "ImageAdjustments",
    "ImageSettings",
    "MediaError",
    "Video",
    "VideoSettings",
    "cache_budget",
    "cache_stats",
    "clear_cache",
    "frame_count",
    "load_image",
    "load_image_with_adjustments",
    "load_video",
    "release_video",
    "resolve_media_path",
    "sample_frame_indices",
    "smart_resize",
    "video_frame_size",
]

# Bump when the frame rules (indices, sizes) change: it is part of every settings fingerprint.
_SAMPLER_VERSION = 1
# Bump when the pixels decoded from a file change (2: a video's display rotation is applied): part of
# the on-disk frame cache's key, so entries written before a change are never read after it.
DECODE_VERSION = 2
_IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"})
_VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv"})


class MediaError(Exception):
    """A media file or setting that cannot be used; the message says what is wrong and how to mend it."""


def _fingerprint(kind: str, settings: VideoSettings | ImageSettings) -> str:
    fields = settings.to_dict()
    payload = json.dumps({"kind": kind, "version": _SAMPLER_VERSION, **fields}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


# "qwen-vl-utils": fps sampling, frame counts in pairs (smart_nframes), round(linspace) positions;
# "uniform": transformers' default_sample_indices_fn, i * total // n (LLaVA-OneVision's processor);
# "linspace": lmms-eval's np.linspace(0, total - 1, n, dtype=int) (repeats frames of a clip shorter than n);
# "linspace-unique": lmms-eval's load_video, the same positions over min(n, total) frames (each frame once);
# "midpoint": the middle frame of each of n equal segments, (2i + 1) * total // 2n (InternVL's processor).
VIDEO_SAMPLERS = ("qwen-vl-utils", "uniform", "linspace", "linspace-unique", "midpoint")


def _without_defaults(settings: VideoSettings | ImageSettings, optional: tuple[str, ...]) -> dict[str, Any]:
    fields = dataclasses.asdict(settings)
    defaults = {f.name: f.default for f in dataclasses.fields(settings)}
    return {k: v for k, v in fields.items() if k not in optional or v != defaults[k]}


@dataclass(frozen=True)
class VideoSettings:
    """Frame sampling and sizing for one video; defaults are qwen-vl-utils' defaults.

    ``nframes``, when set, replaces fps sampling (rounded to a multiple of 2, as there).
    ``max_pixels`` can only lower the per-frame budget that ``total_pixels`` and ``VIDEO_MAX_PIXELS``
    allow, as in qwen-vl-utils, so values above ``VIDEO_MAX_PIXELS`` are refused rather than ignored.
    """

    fps: float = 2.0
    min_frames: int = 4
    max_frames: int = 768
    nframes: int | None = None
    min_pixels: int = VIDEO_MIN_PIXELS
    max_pixels: int = VIDEO_MAX_PIXELS
    total_pixels: int = VIDEO_TOTAL_PIXELS
    # The fields below let other model families' rules (obv_eval.models) use the same decoder and caches;
    # at their defaults (Qwen2-VL's rule) they are left out of to_dict(), so records and cache keys made
    # before they existed stay the same.
    factor: int = IMAGE_FACTOR  # frame sides are multiples of this (Qwen3-VL: 32 = patch 16 x merge 2)
    # How frames are chosen (VIDEO_SAMPLERS); every sampler but "qwen-vl-utils" takes `nframes` frames.
    sampler: str = "qwen-vl-utils"
    resize: bool = True  # False: frames kept at their decoded size, the model's processor resizes them

    def __post_init__(self) -> None:
        if self.sampler not in VIDEO_SAMPLERS:
            known = ", ".join(VIDEO_SAMPLERS)
            raise ValueError(f"VideoSettings.sampler must be one of {known}, got {self.sampler!r}")
        if self.sampler != "qwen-vl-utils" and (self.nframes is None or self.nframes < 1):
            raise ValueError(f"VideoSettings.sampler {self.sampler!r} needs nframes >= 1")
        if self.factor < 1:
            raise ValueError(f"VideoSettings.factor must be positive, got {self.factor}")
        if not (math.isfinite(self.fps) and self.fps > 0):
            raise ValueError(f"VideoSettings.fps must be a positive number, got {self.fps}")
        if not 1 <= self.min_frames <= self.max_frames:
            raise ValueError(
                f"VideoSettings needs 1 <= min_frames <= max_frames, got {self.min_frames}, {self.max_frames}"
            )
        if self.sampler == "qwen-vl-utils" and self.nframes is not None and self.nframes < FRAME_FACTOR:
            raise ValueError(f"VideoSettings.nframes must be at least {FRAME_FACTOR}, got {self.nframes}")
        cap = video_max_pixels(self.factor)
        if not 1 <= self.min_pixels <= self.max_pixels <= cap:
            raise ValueError(
                f"VideoSettings needs 1 <= min_pixels <= max_pixels <= {cap} (qwen-vl-utils' "
                f"per-frame cap), got min_pixels={self.min_pixels}, max_pixels={self.max_pixels}"
            )
        if self.total_pixels < 1:
            raise ValueError(f"VideoSettings.total_pixels must be positive, got {self.total_pixels}")

    def to_dict(self) -> dict[str, Any]:
        """The settings as recorded: the family fields only where they differ from Qwen2-VL's rule."""
        return _without_defaults(self, ("factor", "sampler", "resize"))

    def fingerprint(self) -> str:
        """Stable short hash of the settings (and of the sampler version), for cache keys and records."""
        return _fingerprint("video", self)


@dataclass(frozen=True)
class ImageSettings:
    """Image sizing; defaults are qwen-vl-utils' ``fetch_image`` defaults for Qwen2-VL."""

    min_pixels: int = IMAGE_MIN_PIXELS
    max_pixels: int = IMAGE_MAX_PIXELS
    factor: int = IMAGE_FACTOR  # as VideoSettings.factor
    resize: bool = True  # False: the image as decoded (upright, 8-bit RGB); the model's processor resizes it

    def __post_init__(self) -> None:
        if not 1 <= self.min_pixels <= self.max_pixels:
            raise ValueError(
                f"ImageSettings needs 1 <= min_pixels <= max_pixels, got {self.min_pixels}, {self.max_pixels}"
            )
        if self.factor < 1:
            raise ValueError(f"ImageSettings.factor must be positive, got {self.factor}")

    def to_dict(self) -> dict[str, Any]:
        return _without_defaults(self, ("factor", "resize"))

    def fingerprint(self) -> str:
        return _fingerprint("image", self)


# ---------------------------------------------------------------------------------------------------
# Paths and files


def resolve_media_path(path: str | Path, root: str | Path | None) -> Path:
    """Where a dataset's media path points: relative paths resolve under ``root``.

    With a root, the result must stay inside it: '..' components or absolute paths that lead outside
    raise MediaError, and so does a symlink (of the file or of a folder on the way) whose target lies
    outside the root: links are resolved before the containment check. The root itself may be a link.
    """
    text = str(path)
    if text.startswith("file://"):
        text = text[len("file://") :]
    if not text:
        raise MediaError("empty media path; the dataset row has no file name")
    if "\x00" in text:  # the OS refuses such a name (ValueError deep in os.stat): say so for this item
        raise MediaError(f"media path {text!r} holds a NUL byte; fix the dataset row's file name")
    candidate = Path(text)
    if root is None:
        return candidate
    root_path = Path(os.path.normpath(os.path.abspath(root)))
    resolved = Path(os.path.normpath(os.path.abspath(root_path / candidate)))
    if resolved != root_path and root_path not in resolved.parents:
        raise MediaError(
            f"media path {text!r} escapes the media root {str(root_path)!r}; dataset paths must stay "
            "inside the root (remove '..' or the absolute prefix, or point the root higher)"
        )
    real_root, real = Path(os.path.realpath(root_path)), Path(os.path.realpath(resolved))
    if real != real_root and real_root not in real.parents:
        raise MediaError(
            f"media path {text!r} escapes the media root {str(root_path)!r} through a symlink (it leads to "
            f"{str(real)!r}); dataset paths must stay inside the root (copy the file in, or point the root "
            "at the real folder)"
        )
    return resolved


def _check_file(path: Path, kind: str) -> None:
    if not path.exists():
        raise MediaError(f"{kind} file not found: {path}; check the path and the media root")
    if not path.is_file():
        raise MediaError(f"{kind} path is not a file: {path}; point it at the {kind} file itself")
    if path.stat().st_size == 0:
        raise MediaError(f"{kind} file is empty (0 bytes): {path}; the download or cut failed, re-create it")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------------------
# Video decoding


@dataclass(frozen=True, eq=False)
class Video:
    """Sampled, resized frames of one clip plus what a model needs to place them in time.

    ``frames`` is read-only because cached videos are shared between callers.
    """

    frames: np.ndarray = field(repr=False)  # uint8 (T, H, W, 3), already at video_frame_size
    indices: tuple[int, ...]  # source frame index of each row of ``frames``
    source_fps: float
    total_frames: int
    duration_s: float  # total_frames / source_fps
    sampled_fps: float  # nframes / duration_s, qwen-vl-utils' sample_fps (temporal positions)
    content_hash: str  # sha256 of the file bytes
    settings_fingerprint: str = field(default="")
    # Degrees counterclockwise (0, 90, 180 or 270) the stored frames were turned to show them as players
    # do (the display matrix, rounded to a multiple of 90): 0 for most files; ``frames`` are turned.
    rotation: int = 0

    @property
    def num_frames(self) -> int:
        return len(self.indices)

    @property
    def nbytes(self) -> int:
        return int(self.frames.nbytes)


def _stream_fps(stream: av.video.stream.VideoStream) -> float:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate:
            return float(rate)
    if stream.frames and stream.duration and stream.time_base:
        return float(stream.frames / (stream.duration * Fraction(stream.time_base)))
    raise MediaError("video stream has no frame rate; re-encode it with a constant frame rate")


def _open_video(path: Path) -> av.container.InputContainer:
    try:
        return av.open(str(path), mode="r")
    except av.error.FFmpegError as exc:
        raise MediaError(
            f"cannot read {path} as a video ({exc.strerror or exc}); the file is corrupt or not a "
            "video, re-download or re-encode it (e.g. ffmpeg -i in -c:v libx264 out.mp4)"
        ) from None


def _probe(path: Path) -> tuple[float, int]:
    """Frame rate and frame count from the container, counting packets when the header has no count."""
    with _open_video(path) as container:
        if not container.streams.video:
            raise MediaError(f"{path} has no video stream (audio only?); use a file with video")
        stream = container.streams.video[0]
        fps = _stream_fps(stream)
        count = int(stream.frames)
        if count <= 0:
            try:
                count = sum(1 for packet in container.demux(stream) if packet.size > 0)
            except av.error.FFmpegError as exc:
                raise MediaError(f"cannot read {path}: {exc}; the file is corrupt, re-download it") from None
    return fps, count


def _upright_rgb(frame: av.VideoFrame) -> tuple[np.ndarray, int]:
    """The frame as RGB, turned as players show it, and the counterclockwise degrees it was turned.

    A phone or scanner may store frames sideways with a display matrix saying how to show them
    (ffprobe: "displaymatrix: rotation of -90.00 degrees"). FFmpeg's player and command line, and
    torchcodec (0.11 and later, qwen-vl-utils' and transformers' first-choice reader) turn the frames
    upright; PyAV, decord and torchvision return them as stored. We turn them, as torchcodec does: by
    the matrix's rotation rounded to the nearest 90 degrees (a mirror flip in the matrix is ignored).
    PyAV reports the rotation on every decoded frame (FFmpeg copies the stream's matrix onto it).
    """
    rgb = frame.to_ndarray(format="rgb24")
    rotation = frame.rotation
    quarter_turns = round(rotation / 90) % 4 if math.isfinite(rotation) else 0
    if quarter_turns == 0:
        return rgb, 0
    # np.rot90 turns counterclockwise, the sense of PyAV's (and av_display_rotation_get's) angle.
    return np.ascontiguousarray(np.rot90(rgb, quarter_turns)), quarter_turns * 90


def _iter_rgb_frames(path: Path, wanted: set[int]) -> Iterator[tuple[int, np.ndarray | None, int]]:
    """Decode every frame of the first video stream; upright RGB arrays (and their rotation) only for
    the wanted indices."""
    with _open_video(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"  # frame/slice threading: faster, same pixels
        try:
            for index, frame in enumerate(container.decode(stream)):
                if index in wanted:
                    yield index, *_upright_rgb(frame)
                else:
                    yield index, None, 0
        except av.error.FFmpegError as exc:
            raise MediaError(f"cannot decode {path}: {exc}; the file is corrupt, re-download it") from None


class _NotSeekable(Exception):
    """The stream's timestamps do not allow frame-exact seeking; decode it through instead."""


# A seek restarts decoding at a keyframe; it pays off once it skips at least this many frames.
SEEK_MIN_SKIP = 8


@dataclass(frozen=True)
class _FrameIndex:
    """The video stream's frames in display order, from the packets (no decoding)."""

    pts: tuple[int, ...]  # presentation timestamp of display frame i
    keyframes: tuple[int, ...]  # display indices of the keyframes, ascending
    position: dict[int, int]  # pts -> display index

    @property
    def keyframe_interval(self) -> float:
        return len(self.pts) / max(1, len(self.keyframes))


def _frame_index(path: Path) -> _FrameIndex | None:
    """Timestamps and keyframes of every frame; None when frames cannot be found by timestamp."""
    pts: list[int] = []
    keys: list[int] = []
    with _open_video(path) as container:
        stream = container.streams.video[0]
        for packet in container.demux(stream):
            if packet.size == 0:
                continue
            if packet.pts is None:
                return None
            pts.append(int(packet.pts))
            if packet.is_keyframe:
                keys.append(int(packet.pts))
    order = sorted(pts)
    position = {p: i for i, p in enumerate(order)}
    if len(position) != len(order) or not keys or position[min(keys)] != 0:
        return None  # repeated timestamps, or a first frame that is not a keyframe
    return _FrameIndex(tuple(order), tuple(sorted(position[k] for k in keys)), position)


def _iter_rgb_frames_seeking(
    path: Path, wanted: list[int], index: _FrameIndex
) -> Iterator[tuple[int, np.ndarray, int]]:
    """Upright RGB arrays (and their rotation) of the ``wanted`` display indices, seeking past gaps
    that hold a keyframe.

    Per wanted frame: when a keyframe lies more than SEEK_MIN_SKIP frames past the last frame decoded,
    seek to the last keyframe at or before the wanted frame and decode forward from there; otherwise
    keep decoding through. Dense sampling (gaps shorter than the keyframe interval) so decodes through
    like a full decode. Frames are matched by timestamp, so they are the full decode's frames; leading
    frames of an open GOP (before the keyframe) are never taken. Raises _NotSeekable when the decoder
    disagrees with the packet index.
    """
    with _open_video(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        frames = container.decode(stream)
        position = -1  # display index of the last frame decoded
        floor = index.pts[0]  # frames before the last seek's keyframe are not trusted
        for target in wanted:
            key = index.keyframes[bisect.bisect_right(index.keyframes, target) - 1]
            if key - position > SEEK_MIN_SKIP:
                container.seek(index.pts[key], stream=stream, backward=True, any_frame=False)
                with _lock:
                    _stats["seeks"] += 1
                frames = container.decode(stream)
                floor = index.pts[key]
            for frame in frames:
                if frame.pts is None:
                    raise _NotSeekable("a decoded frame has no timestamp")
                if frame.pts < floor:
                    continue
                found = index.position.get(int(frame.pts))
                if found is None or found > target:
                    raise _NotSeekable(f"decoder gave timestamp {frame.pts}, expected {index.pts[target]}")
                position = found
                if found == target:
                    yield target, *_upright_rgb(frame)
                    break
            else:
                raise _NotSeekable(f"stream ended before frame {target}")


def _decode_sparse(
    path: Path, settings: VideoSettings, fps: float, expected: int
) -> tuple[list[int], dict[int, np.ndarray], int]:
    """Sampled indices, their resized frames and their rotation by seeking; _NotSeekable when it
    cannot be exact."""
    index = _frame_index(path)
    if index is None or len(index.pts) != expected:
        raise _NotSeekable("packet count differs from the header's frame count")
    indices = sample_frame_indices(expected, fps, settings)
    kept: dict[int, np.ndarray] = {}
    size: tuple[int, int] | None = None
    rotation = 0
    try:
        for target, rgb, turned in _iter_rgb_frames_seeking(path, sorted(set(indices)), index):
            if size is None:
                size = _frame_size(rgb.shape[0], rgb.shape[1], len(indices), settings, path)
                rotation = turned
            kept[target] = _resize_frame(rgb, *size)
    except av.error.FFmpegError as exc:
        raise _NotSeekable(str(exc)) from None
    return indices, kept, rotation


def _resize_frame(rgb: np.ndarray, height: int, width: int) -> np.ndarray:
    if rgb.shape[0] == height and rgb.shape[1] == width:
        return rgb
    with stage("resize"):
        image = Image.fromarray(rgb, mode="RGB").resize((width, height), Image.Resampling.BICUBIC)
        return np.asarray(image)


def _decode_video(path: Path, settings: VideoSettings, content_hash: str, strategy: str = "auto") -> Video:
    """``strategy``: "auto" seeks to keyframes where the sampled frames are sparse (same frames as
    "full", which decodes every frame); anything unusual about the stream falls back to "full"."""
    fps, expected = _probe(path)
    total = expected
    if strategy == "auto":
        try:
            sparse_indices, sparse_frames, rotation = _decode_sparse(path, settings, fps, expected)
        except _NotSeekable:
            pass
        else:
            with _lock:
                _stats["decodes"] += 1
            return _video(sparse_frames, sparse_indices, fps, total, content_hash, settings, rotation)
    # Decode once with indices from the header's count; if the decoder yields a different number of
    # frames (bad header, broken tail), sample again from the true count.
    for _attempt in range(2):
        indices = sample_frame_indices(total, fps, settings)
        wanted = set(indices)
        kept: dict[int, np.ndarray] = {}
        size: tuple[int, int] | None = None
        rotation = 0
        decoded = 0
        for index, rgb, turned in _iter_rgb_frames(path, wanted):
            decoded = index + 1
            if rgb is None:
                continue
            if size is None:  # sized (and, in the display matrix's sense, upright) by its first frame
                size = _frame_size(rgb.shape[0], rgb.shape[1], len(indices), settings, path)
                rotation = turned
            kept[index] = _resize_frame(rgb, *size)
        with _lock:
            _stats["decodes"] += 1
        if decoded == total:
            break
        if decoded < FRAME_FACTOR:
            raise MediaError(f"{path} decoded to {decoded} frame(s); the file is corrupt, re-download it")
        total = decoded
    else:
        raise MediaError(f"{path} decodes to a different number of frames each time; re-encode it")
    return _video(kept, indices, fps, total, content_hash, settings, rotation)


def _video(
    kept: dict[int, np.ndarray],
    indices: list[int],
    fps: float,
    total: int,
    content_hash: str,
    settings: VideoSettings,
    rotation: int,
) -> Video:
    frames = np.stack([kept[i] for i in indices])
    frames.flags.writeable = False
    duration = total / fps
    return Video(
        frames=frames,
        indices=tuple(indices),
        source_fps=fps,
        total_frames=total,
        duration_s=duration,
        sampled_fps=len(indices) / duration,
        content_hash=content_hash,
        settings_fingerprint=settings.fingerprint(),
        rotation=rotation,
    )


def _frame_size(
    height: int, width: int, nframes: int, settings: VideoSettings, path: Path
) -> tuple[int, int]:
    try:
        return video_frame_size(height, width, nframes, settings)
    except ValueError as exc:
        raise MediaError(f"{path}: {exc}") from None


# ---------------------------------------------------------------------------------------------------
# Cache


def _cache_budget() -> int:
    # 256 MiB: backends visit a clip's questions together, so a small cache serves them all.
    return int(os.environ.get("OBV_EVAL_FRAME_CACHE_BYTES", 1 << 28))


def release_video(video: Video) -> None:
    """Drop a clip from the in-memory cache (a backend that has answered all its questions)."""
    global _cached_bytes
    with _lock:
        cached = _videos.pop((video.content_hash, video.settings_fingerprint), None)
        if cached is not None:
            _cached_bytes -= cached.nbytes


def cache_budget() -> int:
    """Bytes the in-memory frame cache may hold ($OBV_EVAL_FRAME_CACHE_BYTES, default 256 MiB)."""
    return _cache_budget()


_lock = threading.Lock()
_videos: OrderedDict[tuple[str, str], Video] = OrderedDict()
_cached_bytes = 0
_stats: dict[str, int] = {"hits": 0, "misses": 0, "decodes": 0, "disk_hits": 0, "seeks": 0}


def clear_cache() -> None:
    """Drop every cached video and reset the counters (the on-disk cache is left alone)."""
    global _cached_bytes
    with _lock:
        _videos.clear()
        _cached_bytes = 0
        for key in _stats:
            _stats[key] = 0


def cache_stats() -> dict[str, int]:
    """Counters since the last clear.

    hits / misses: in-memory lookups; disk_hits: misses served from ``$OBV_EVAL_FRAME_CACHE``;
    decodes: decode passes over a file; seeks: keyframe seeks within them (sparse sampling);
    entries / bytes: what the in-memory cache holds now.
    """
    with _lock:
        return {**_stats, "entries": len(_videos), "bytes": _cached_bytes}


def _cache_get(key: tuple[str, str]) -> Video | None:
    with _lock:
        video = _videos.get(key)
        if video is None:
            _stats["misses"] += 1
            return None
        _videos.move_to_end(key)
        _stats["hits"] += 1
        return video


def _cache_put(key: tuple[str, str], video: Video) -> None:
    global _cached_bytes
    budget = _cache_budget()
    if video.nbytes > budget:
        return  # larger than the whole budget: caching it would evict everything for nothing
    with _lock:
        if key in _videos:
            return
        _videos[key] = video
        _cached_bytes += video.nbytes
        while _cached_bytes > budget:
            _, evicted = _videos.popitem(last=False)
            _cached_bytes -= evicted.nbytes


def _disk_cache_path(key: tuple[str, str]) -> Path | None:
    folder = os.environ.get("OBV_EVAL_FRAME_CACHE")
    return Path(folder) / f"{key[0]}_{key[1]}_d{DECODE_VERSION}.npz" if folder else None


def _disk_load(key: tuple[str, str]) -> Video | None:
    path = _disk_cache_path(key)
    if path is None or not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            frames = np.array(data["frames"])
            indices = tuple(int(i) for i in data["indices"])
            fps = float(data["source_fps"])
            total = int(data["total_frames"])
            rotation = int(data["rotation"])
    except (OSError, ValueError, KeyError):
        return None  # unreadable or partial entry: decode again and overwrite it
    frames.flags.writeable = False
    duration = total / fps
    return Video(frames, indices, fps, total, duration, len(indices) / duration, key[0], key[1], rotation)


def _disk_store(key: tuple[str, str], video: Video) -> None:
    path = _disk_cache_path(key)
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    np.savez(
        buffer,
        frames=video.frames,
        indices=np.asarray(video.indices, dtype=np.int64),
        source_fps=np.float64(video.source_fps),
        total_frames=np.int64(video.total_frames),
        rotation=np.int64(video.rotation),
    )
    # Write then rename, so concurrent readers never see a half-written file.
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(fd, "wb") as handle:
        handle.write(buffer.getvalue())
    os.replace(tmp, path)


def load_video(
    path: str | Path, settings: VideoSettings = VideoSettings(), root: str | Path | None = None
) -> Video:
    """Decode a clip and return Qwen2-VL's sampled, resized frames.

    Cached by (sha256 of the file bytes, settings fingerprint): the same clip asked twice, or a copy of it
    under another name, is decoded once per process (and once per cache folder with OBV_EVAL_FRAME_CACHE).
    """
    resolved = resolve_media_path(path, root)
    if resolved.suffix.lower() in _IMAGE_SUFFIXES:
        raise MediaError(f"{resolved} is an image, not a video; load it with load_image")
    _check_file(resolved, "video")
    with stage("decode"):  # hashing, cache lookups and decoding; resizing counts as "resize"
        key = (_sha256(resolved), settings.fingerprint())
        video = _cache_get(key)
        if video is not None:
            return video
        video = _disk_load(key)
        if video is not None:
            with _lock:
                _stats["disk_hits"] += 1
        else:
            video = _decode_video(resolved, settings, key[0])
            _disk_store(key, video)
        _cache_put(key, video)
        return video


# ---------------------------------------------------------------------------------------------------
# Images


_TRUNCATED_POLICY_LOCK = threading.Lock()
# Pillow modes whose values do not fit 8 bits: 16-bit greyscale (PNG, TIFF, DICOM exports), 32-bit
# integer and 32-bit float. ``convert("RGB")`` (qwen-vl-utils' and transformers' conversion) clips
# them at 255, which turns a 16-bit radiograph white; they are mapped over their own range instead.
_HIGH_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I", "F"})
_EXIF_ORIENTATION = 0x0112  # EXIF tag 274; 1 = stored upright, 2..8 = mirrored and/or turned


@dataclass(frozen=True)
class ImageAdjustments:
    """What load_image did to an image beyond Qwen2-VL's RGB conversion and resize (for `data check`)."""

    mode: str  # Pillow mode of the decoded image, e.g. "RGB", "L", "I;16", "F"
    value_range: tuple[float, float] | None = None  # (min, max) mapped onto 0..255; None: 8-bit image
    orientation: int = 1  # EXIF orientation applied (1: none)
    stored_size: tuple[int, int] = (0, 0)  # (width, height) as stored, before the orientation

    @property
    def changed(self) -> bool:
        return self.value_range is not None or self.orientation != 1


def _decode_image_fully(path: Path) -> tuple[Image.Image, int]:
    """Every pixel decoded, or an error: our own Pillow policy, never lmms-eval's; upright per EXIF.

    lmms-eval sets ``PIL.ImageFile.LOAD_TRUNCATED_IMAGES = True`` at import, which pads a truncated
    file with grey and reports success. Here the file is first verified (PNG: every chunk's CRC and
    the end marker) and then decoded with the flag off, so a cut or corrupt image fails its item.
    The EXIF orientation is applied on the opened file (a copy of a TIFF loses its tags) and returned
    beside the image.
    """
    from PIL import ImageFile

    with Image.open(path) as probe:
        probe.verify()
    with _TRUNCATED_POLICY_LOCK:
        inherited = ImageFile.LOAD_TRUNCATED_IMAGES
        ImageFile.LOAD_TRUNCATED_IMAGES = False
        try:
            with Image.open(path) as opened:
                # Read before loading: Pillow's TIFF loader turns the image itself and drops the tag.
                orientation = _orientation(opened)
                opened.load()
                upright, _ = _upright(opened)
                return (opened.copy() if upright is opened else upright), orientation
        finally:
            ImageFile.LOAD_TRUNCATED_IMAGES = inherited


def _orientation(image: Image.Image) -> int:
    try:
        value = int(image.getexif().get(_EXIF_ORIENTATION, 1))
    except Exception:  # a malformed EXIF block (Pillow raises many kinds): show the image as stored
        return 1
    return value if 1 <= value <= 8 else 1


def _upright(image: Image.Image) -> tuple[Image.Image, int]:
    """The image as viewers show it and its EXIF orientation: the orientation applied with
    ``PIL.ImageOps.exif_transpose`` (as transformers' ``load_image`` does), the same object when the
    image has none."""
    orientation = _orientation(image)
    if orientation == 1:
        return image, 1
    return ImageOps.exif_transpose(image), orientation


def _to_8bit(image: Image.Image) -> tuple[Image.Image, tuple[float, float]]:
    """A 16-bit, 32-bit integer or float greyscale image as 8-bit greyscale over its own range.

    The mapping: lo and hi are the smallest and largest finite pixel values; each pixel v becomes
    round((clip(v, lo, hi) - lo) * 255 / (hi - lo)) (round half to even), so lo -> 0 and hi -> 255.
    NaN becomes 0; +inf and -inf clip to 255 and 0. An image with one value (hi == lo), or with no
    finite value, becomes all 0: no division by zero. No window from DICOM tags is applied: the file
    has none, and its own range keeps every grey level it uses.
    """
    values = np.asarray(image).astype(np.float64)
    finite = values[np.isfinite(values)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
    if hi > lo:
        scaled = (np.clip(values, lo, hi) - lo) * (255.0 / (hi - lo))
        levels = np.rint(np.nan_to_num(scaled, nan=0.0)).astype(np.uint8)
    else:
        levels = np.zeros(values.shape, dtype=np.uint8)
    return Image.fromarray(levels), (lo, hi)


def _to_rgb(image: Image.Image) -> Image.Image:
    # qwen-vl-utils composites RGBA on white (a black background would change what the model sees).
    if image.mode == "RGBA":
        background = Image.new("RGB", image.size, (255, 255, 255))
        background.paste(image, mask=image.split()[3])
        return background
    return image.convert("RGB")


def load_image_with_adjustments(
    image: str | Path | Image.Image, settings: ImageSettings = ImageSettings(), root: str | Path | None = None
) -> tuple[Image.Image, ImageAdjustments]:
    """load_image's image and what was done to it beyond Qwen2-VL's conversion (see ImageAdjustments)."""
    if isinstance(image, Image.Image):
        source, orientation = _upright(image)
        name = "<PIL image>"
    elif isinstance(image, str | Path):
        path = resolve_media_path(image, root)
        if path.suffix.lower() in _VIDEO_SUFFIXES:
            raise MediaError(f"{path} is a video, not an image; load it with load_video")
        _check_file(path, "image")
        name = str(path)
        try:
            with stage("decode"):
                source, orientation = _decode_image_fully(path)
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
            raise MediaError(
                f"cannot read {path} as an image ({exc}); the file is corrupt or not an image, re-create it"
            ) from None
    else:
        raise MediaError(
            f"unsupported image input of type {type(image).__name__}; pass a path or a PIL image"
        )
    # Orientations 5 to 8 swap width and height.
    stored = (source.height, source.width) if orientation >= 5 else source.size
    adjustments = ImageAdjustments(source.mode, None, orientation, stored)
    if source.mode in _HIGH_BIT_MODES:
        source, value_range = _to_8bit(source)
        adjustments = dataclasses.replace(adjustments, value_range=value_range)
    rgb = _to_rgb(source)
    if not settings.resize:
        return rgb, adjustments
    try:
        height, width = smart_resize(
            rgb.height, rgb.width, settings.factor, settings.min_pixels, settings.max_pixels
        )
    except ValueError as exc:
        raise MediaError(f"{name}: {exc}") from None
    if rgb.size != (width, height):
        with stage("resize"):
            rgb = rgb.resize((width, height), Image.Resampling.BICUBIC)
    return rgb, adjustments


def load_image(
    image: str | Path | Image.Image, settings: ImageSettings = ImageSettings(), root: str | Path | None = None
) -> Image.Image:
    """An RGB image resized as Qwen2-VL's processor expects (qwen-vl-utils ``fetch_image``).

    Two steps go beyond qwen-vl-utils 0.0.14's ``fetch_image`` (which does neither): the EXIF
    orientation is applied as transformers' ``load_image`` and every viewer do, and 16-bit or float
    images are mapped to 8 bits over their own range (_to_8bit) instead of being clipped at 255.
    8-bit images without an orientation tag come out exactly as before.
    """
    return load_image_with_adjustments(image, settings, root)[0]
