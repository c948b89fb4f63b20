"""Compare a video clip with the row that describes it (`obv-eval data check`).

A SurgeryVideoQA / OpenBiomedVid row says what its clip should be: `timestamp` [start, end]
gives its span and `video_metadata.original` its `fps`, `frame_count` and `resolution`. A clip
that disagrees (cut from a 30 fps download, at the download's size, or with broken timestamps)
still decodes, but gives the model other frames than the published clip. These checks are
warnings: the item still runs and stays in the denominator; `data check` lists each mismatch.

The clip is read from its packets (no decoding): frame count, presentation times, rate, size. Only
where the row lists the size turned a quarter, the first frame is decoded for the display rotation.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av

from obv_eval.data.prepare import published_format
from obv_eval.media import MediaError

FPS_TOLERANCE = 0.01  # relative
ONE_QUESTION_PER_CLIP = "one question per clip"


@dataclass(frozen=True)
class ClipFacts:
    frames: int
    duration_s: float  # first frame's time to the end of the last frame
    fps: float  # frames / duration
    width: int
    height: int
    first_time_s: float
    monotonic: bool  # presentation times strictly increase (no repeated timestamps)


@functools.lru_cache(maxsize=4096)
def _probe_cached(path: str, _mtime_ns: int, _size: int) -> ClipFacts:
    try:
        with av.open(path) as container:
            if not container.streams.video:
                raise MediaError(f"{path} has no video stream")
            stream = container.streams.video[0]
            time_base = Fraction(stream.time_base or Fraction(1, 90000))
            stamps: list[tuple[int, int]] = []
            for packet in container.demux(stream):
                if packet.size > 0 and packet.pts is not None:
                    stamps.append((packet.pts, packet.duration or 0))
            width, height = stream.codec_context.width, stream.codec_context.height
    except av.error.FFmpegError as error:
        raise MediaError(f"cannot read {path}: {error}") from None
    if not stamps:
        raise MediaError(f"{path} has no video frames")
    stamps.sort()
    times = [pts for pts, _ in stamps]
    monotonic = all(b > a for a, b in itertools.pairwise(times))
    steps = [b - a for a, b in itertools.pairwise(times) if b > a]
    last_duration = stamps[-1][1] or (sorted(steps)[len(steps) // 2] if steps else 0)
    duration = float((times[-1] - times[0] + last_duration) * time_base)
    fps = len(times) / duration if duration > 0 else float("inf")
    return ClipFacts(len(times), duration, fps, width, height, float(times[0] * time_base), monotonic)


def probe_clip(path: Path) -> ClipFacts:
    """Frame count, duration, rate and size of a clip (cached per file version)."""
    stat = path.stat()
    return _probe_cached(str(path), stat.st_mtime_ns, stat.st_size)


def clip_mismatches(path: Path, row: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(kind, detail) for each way the clip at `path` disagrees with its row; [] when it agrees."""
    facts = probe_clip(path)
    out: list[tuple[str, str]] = []
    frame_s = 1 / facts.fps if facts.fps > 0 else 0.0
    if not facts.monotonic or facts.fps == float("inf"):
        out.append(("clip timing", f"{path.name}: presentation times repeat or go back (broken cut)"))
    stamp = row.get("timestamp")
    if isinstance(stamp, Sequence) and not isinstance(stamp, str) and len(stamp) == 2:
        try:
            span = float(stamp[1]) - float(stamp[0])
        except (TypeError, ValueError):
            span = None
        if span is not None and abs(facts.duration_s - span) > frame_s + 1e-3:
            out.append(
                (
                    "clip duration",
                    f"{path.name}: {facts.duration_s:.3f} s, the row's timestamp spans {span:g} s",
                )
            )
    published = published_format(row)
    if published.fps is not None and abs(facts.fps - float(published.fps)) > FPS_TOLERANCE * float(
        published.fps
    ):
        out.append(("clip fps", f"{path.name}: {facts.fps:.3f} fps, the row says {float(published.fps):g}"))
    if published.frame_count is not None and abs(facts.frames - published.frame_count) > 1:
        out.append(
            ("clip frame count", f"{path.name}: {facts.frames} frames, the row says {published.frame_count}")
        )
    listed = (published.width, published.height)
    # A clip stored sideways (display rotation of +-90 degrees): the row may list the size players show.
    shown_sideways = listed == (facts.height, facts.width) and _quarter_turned(path)
    if published.width is not None and listed != (facts.width, facts.height) and not shown_sideways:
        out.append(
            (
                "clip resolution",
                f"{path.name}: {facts.width}x{facts.height}, "
                f"the row says {published.width}x{published.height}",
            )
        )
    return out


def _quarter_turned(path: Path) -> bool:
    """Whether the clip's display matrix turns it by 90 or 270 degrees (read from its first frame:
    PyAV exposes the matrix on decoded frames only)."""
    try:
        with av.open(str(path)) as container:
            frame = next(container.decode(video=0), None)
    except av.error.FFmpegError:
        return False
    return frame is not None and math.isfinite(frame.rotation) and round(frame.rotation / 90) % 2 == 1


def one_question_per_clip(media: Sequence[object]) -> str | None:
    """A warning when every clip (the rows' media values) has exactly one question (the 470-row
    preprocessed SurgeryVideoQA file is such a subset of the benchmark's test split); else None."""
    clips = [value for value in media if isinstance(value, str) and value]
    if len(clips) < 2 or len(set(clips)) != len(clips):
        return None
    return (
        f"each of the {len(clips)} clips has exactly one question: this looks like the preprocessed "
        "one-question-per-clip file (a subset of the benchmark, about 2.6-2.9k questions over ~470 "
        "clips); use the full test split for comparable scores"
    )
