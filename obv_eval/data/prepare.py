"""Cut downloaded source videos into a benchmark's clips by each row's `timestamp`.

SurgeryVideoQA and OpenBiomedVid rows name a YouTube `video_id`, a `[start, end]` range in
seconds and the clip file (`video`) the benchmark expects. Given a folder of downloaded source
videos (`<video_id>.mp4`, `.mkv`, `.webm` or `.mov`), this writes each clip once and reports what
it made, what was already there and which sources are missing. Nothing is downloaded here.

How a clip is cut (the same for constant and variable frame rate sources, any time base, B-frames):

- The source is decoded with PyAV and frames are chosen by presentation time, not by index:
  output frame k shows the source frame on screen at t_k = start + k / fps_out (times relative to
  the video stream's start, as players and `ffmpeg -ss` count them). The first frame is the one
  at `start`; there are `frame_count` frames when the row gives one consistent with its
  timestamp (the published clips sometimes include the frame at `end`), otherwise
  round((end - start) * fps_out), so the duration is within one frame of the row's span.
- Frames are encoded to H.264 (yuv420p) with explicit pts k in the time base 1 / fps_out, so
  timestamps run 0, 1/fps_out, 2/fps_out, ... whatever the source's time base was.
- By default the clip is written as the published one is described by its row
  (`video_metadata.original`: `fps` and `resolution`; SurgeryVideoQA's real rows say 1 fps at
  e.g. 840x476). With `keep_source_format` (CLI `--keep-source-format`) the clip keeps the
  source's average frame rate and size (rounded down to even).
- A clip is written to `<clip>.partial` and renamed into place when complete; on any error the
  partial file is removed, so a clip under its final name is always whole.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
from av.video.frame import PictureType, VideoFrame
from tqdm import tqdm

from obv_eval.media import MediaError, resolve_media_path

SOURCE_SUFFIXES = (".mp4", ".mkv", ".webm", ".mov")
ENCODER_OPTIONS = {"crf": "18", "preset": "medium"}
SEEK_MARGIN_S = 2  # seek to the keyframe at least this long before `start`, then decode forward


@dataclass
class PrepareReport:
    made: list[str] = field(default_factory=list)
    existing: list[str] = field(default_factory=list)
    missing_sources: dict[str, list[str]] = field(default_factory=dict)  # video_id -> clips it would give
    failed: dict[str, str] = field(default_factory=dict)  # clip -> reason

    @property
    def missing_clips(self) -> int:
        return sum(len(v) for v in self.missing_sources.values())

    def summary(self) -> str:
        return (
            f"{len(self.made)} clips made, {len(self.existing)} already there, "
            f"{self.missing_clips} clips skipped for "
            f"{len(self.missing_sources)} missing source videos, {len(self.failed)} failed"
        )


@dataclass(frozen=True)
class ClipFormat:
    """How the published clip is described by its row (None: take it from the source)."""

    fps: Fraction | None = None
    width: int | None = None
    height: int | None = None
    frame_count: int | None = None


@dataclass(frozen=True)
class ClipSpec:
    video_id: str
    start: float
    end: float
    clip: str
    published: ClipFormat = ClipFormat()


def as_rate(value: Any) -> Fraction | None:
    """A frame rate from a row (1.0, 29.97, 0.886...) as a Fraction (30000/1001-style rates survive)."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value <= 0
    ):
        return None
    return Fraction(value).limit_denominator(1001)


def _positive_int(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return int(value) if value >= 1 and float(value).is_integer() else None


def published_format(row: Mapping[str, Any]) -> ClipFormat:
    """`video_metadata.original` of a row: fps, resolution and frame count, where present and sane."""
    metadata = row.get("video_metadata")
    original = metadata.get("original") if isinstance(metadata, Mapping) else None
    if not isinstance(original, Mapping):
        return ClipFormat()
    resolution = original.get("resolution")
    width = height = None
    if isinstance(resolution, Mapping):
        width, height = _positive_int(resolution.get("width")), _positive_int(resolution.get("height"))
        if width is None or height is None:
            width = height = None
    return ClipFormat(as_rate(original.get("fps")), width, height, _positive_int(original.get("frame_count")))


def clip_specs(rows: Iterable[Mapping[str, Any]]) -> list[ClipSpec]:
    """One spec per distinct clip file (several questions share a clip)."""
    specs: dict[str, ClipSpec] = {}
    for row in rows:
        clip, stamp = row.get("video"), row.get("timestamp")
        if not clip or not row.get("video_id") or not isinstance(stamp, list | tuple) or len(stamp) != 2:
            continue
        specs.setdefault(
            str(clip),
            ClipSpec(
                str(row["video_id"]), float(stamp[0]), float(stamp[1]), str(clip), published_format(row)
            ),
        )
    return sorted(specs.values(), key=lambda s: s.clip)


def find_source(source_dir: Path, video_id: str) -> Path | None:
    for suffix in SOURCE_SUFFIXES:
        candidate = source_dir / f"{video_id}{suffix}"
        if candidate.is_file() and candidate.stat().st_size > 0:
            return candidate
    return None


def _seconds(value: float) -> Fraction:
    return Fraction(value).limit_denominator(1_000_000)


def output_frame_count(start: float, end: float, fps: Fraction, published: ClipFormat | None) -> int:
    """Frames in the clip: the row's `frame_count` when it fits the span at this rate, else
    round(span * fps)."""
    span = (_seconds(end) - _seconds(start)) * fps
    if published is not None and published.frame_count is not None and abs(published.frame_count - span) <= 1:
        return published.frame_count
    return max(1, math.floor(span + Fraction(1, 2)))


class _SeekedPastStart(Exception):
    """The seek landed after the clip's start (an index that lies): decode from the beginning instead."""


def _select_frames(
    container: av.container.InputContainer,
    stream: av.video.stream.VideoStream,
    targets: list[Fraction],
    source_rate: Fraction,
    seek: bool,
) -> Iterator[VideoFrame]:
    """Yield, for each target time, the source frame on screen then (frames are shared when repeated)."""
    time_base = stream.time_base or Fraction(1, 90000)
    origin = stream.start_time or 0
    frame_s = 1 / source_rate
    # Timestamps are rounded to the time base: half a tick of slack, never more than a quarter frame.
    slack = min(Fraction(time_base) / 2 + Fraction(1, 1_000_000), frame_s / 4)
    seek_s = targets[0] - SEEK_MARGIN_S
    if seek and seek_s > 0:
        container.seek(origin + int(seek_s / time_base), stream=stream, backward=True)
    else:
        seek = False
    k, shown, last_time = 0, None, Fraction(0)
    for frame in container.decode(stream):
        pts = frame.pts if frame.pts is not None else frame.dts
        if pts is None:
            continue
        time = (pts - origin) * Fraction(time_base)
        if shown is not None and time <= last_time:
            continue  # a repeated or out-of-order timestamp: keep the frame already on screen
        while k < len(targets) and targets[k] + slack < time:
            if shown is None:  # the first decoded frame is already past the start
                if seek:
                    raise _SeekedPastStart
                if time - targets[k] > frame_s + slack:
                    raise MediaError(
                        f"the video starts at {float(time):.3f} s, after {float(targets[k]):.3f} s"
                    )
                yield frame  # a stream that starts a little late: its first frame stands in
            else:
                yield shown
            k += 1
        if k >= len(targets):
            return
        shown, last_time = frame, time
    if shown is None:
        raise MediaError("no decodable frames")
    source_end = last_time + frame_s
    while k < len(targets):
        if targets[k] >= source_end + slack + (targets[1] - targets[0] if len(targets) > 1 else 0):
            raise MediaError(
                f"the source ends at {float(source_end):.3f} s, before the clip's frame at "
                f"{float(targets[k]):.3f} s ({len(targets) - k} of {len(targets)} frames missing)"
            )
        yield shown  # at most one output frame past the source's last frame: hold it
        k += 1


def source_frame_rate(stream: av.video.stream.VideoStream) -> Fraction:
    """The source's frame rate: its nominal rate when the average agrees (constant frame rate, even
    when a 1/15360 time base rounds 30000/1001 timestamps), else the average (variable frame rate)."""
    average = Fraction(stream.average_rate) if stream.average_rate else None
    given = stream.guessed_rate or stream.base_rate
    nominal = Fraction(given) if given else None
    if average is None and nominal is None:
        raise MediaError("the video stream has no frame rate")
    if average is None or (nominal is not None and abs(nominal - average) <= average / 200):
        assert nominal is not None
        return nominal
    return average.limit_denominator(1001)


def _even(value: int) -> int:
    return max(2, value // 2 * 2)


def cut_clip(
    source: Path, start: float, end: float, target: Path, published: ClipFormat | None = None
) -> int:
    """Write the frames of `source` from `start` to `end` (seconds) into `target`; returns frames written.

    `published` (the row's description) sets the output rate, size and frame count; None keeps the
    source's average rate and size.
    """
    if end <= start:
        raise MediaError(f"timestamp [{start}, {end}] is empty")
    if start < 0:
        raise MediaError(f"timestamp [{start}, {end}] starts before 0")
    partial = target.with_name(target.name + ".partial")
    try:
        written = _cut(source, start, end, partial, published)
        os.replace(partial, target)  # a crash never leaves a half-written clip under the final name
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return written


def _cut(source: Path, start: float, end: float, partial: Path, published: ClipFormat | None) -> int:
    with av.open(str(source)) as container:
        if not container.streams.video:
            raise MediaError(f"{source.name} has no video stream")
        stream = container.streams.video[0]
        source_rate = source_frame_rate(stream)
        fps = published.fps if published is not None and published.fps is not None else source_rate
        width, height = stream.codec_context.width, stream.codec_context.height
        if published is not None and published.width is not None and published.height is not None:
            width, height = published.width, published.height
        width, height = _even(width), _even(height)
        count = output_frame_count(start, end, fps, published)
        targets = [_seconds(start) + Fraction(k) / fps for k in range(count)]
        frames = _select_frames(container, stream, targets, source_rate, seek=True)
        try:
            first = next(frames)
        except _SeekedPastStart:
            frames = _select_frames(container, stream, targets, source_rate, seek=False)
            first = next(frames)
        except StopIteration:
            raise MediaError(f"{source.name} has no frames at {start} s") from None
        time_base = 1 / fps
        written = 0
        with av.open(str(partial), mode="w", format="mp4") as output:
            encoder = output.add_stream("libx264", rate=fps, options=dict(ENCODER_OPTIONS))
            assert isinstance(encoder, av.video.stream.VideoStream)  # narrows the type for mypy
            encoder.width, encoder.height, encoder.pix_fmt = width, height, "yuv420p"
            encoder.codec_context.time_base = time_base
            for frame in _chain(first, frames):
                image = frame.reformat(width=width, height=height, format="yuv420p", interpolation="BICUBIC")
                image.pts, image.time_base = written, time_base
                image.pict_type = PictureType.NONE  # let the encoder place keyframes, not the source's
                output.mux(encoder.encode(image))
                written += 1
            output.mux(encoder.encode(None))
    if written != count:
        raise MediaError(f"{source.name}: wrote {written} of {count} frames for [{start}, {end}] s")
    return written


def _chain(first: VideoFrame, rest: Iterator[VideoFrame]) -> Iterator[VideoFrame]:
    yield first
    yield from rest


def prepare_clips(
    rows: Iterable[Mapping[str, Any]],
    source_dir: Path,
    out_dir: Path,
    progress: bool = True,
    keep_source_format: bool = False,
) -> PrepareReport:
    report = PrepareReport()
    out_dir.mkdir(parents=True, exist_ok=True)
    for spec in tqdm(clip_specs(rows), desc="cutting clips", disable=not progress):
        try:
            target = resolve_media_path(spec.clip, out_dir)
        except MediaError as error:
            report.failed[spec.clip] = str(error)
            continue
        target.with_name(target.name + ".partial").unlink(missing_ok=True)  # left by an interrupted run
        if target.exists() and target.stat().st_size > 0:
            report.existing.append(spec.clip)
            continue
        source = find_source(source_dir, spec.video_id)
        if source is None:
            report.missing_sources.setdefault(spec.video_id, []).append(spec.clip)
            continue
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            cut_clip(source, spec.start, spec.end, target, None if keep_source_format else spec.published)
            report.made.append(spec.clip)
        except (MediaError, av.error.FFmpegError, OSError, ValueError) as error:
            report.failed[spec.clip] = str(error)
    return report
