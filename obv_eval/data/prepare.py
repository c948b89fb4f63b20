"""Cut downloaded source videos into a benchmark's clips by each row's `timestamp`.

SurgeryVideoQA and OpenBiomedVid rows name a YouTube `video_id`, a `[start, end]` range in
seconds and the clip file (`video`) the benchmark expects. Given a folder of downloaded source
videos (`<video_id>.mp4`, `.mkv` or `.webm`), this writes each clip once, re-encoded to H.264 so
every clip decodes the same way, and reports what it made, what was already there and which
sources are missing. Nothing is downloaded here.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
from tqdm import tqdm

from obv_eval.media import MediaError, resolve_media_path

SOURCE_SUFFIXES = (".mp4", ".mkv", ".webm", ".mov")


@dataclass
class PrepareReport:
    made: list[str] = field(default_factory=list)
    existing: list[str] = field(default_factory=list)
    missing_sources: dict[str, list[str]] = field(default_factory=dict)  # video_id -> clips it would give
    failed: dict[str, str] = field(default_factory=dict)  # clip -> reason

    def summary(self) -> str:
        return (
            f"{len(self.made)} clips made, {len(self.existing)} already there, "
            f"{sum(len(v) for v in self.missing_sources.values())} clips skipped for "
            f"{len(self.missing_sources)} missing source videos, {len(self.failed)} failed"
        )


@dataclass(frozen=True)
class ClipSpec:
    video_id: str
    start: float
    end: float
    clip: str


def clip_specs(rows: Iterable[Mapping[str, Any]]) -> list[ClipSpec]:
    """One spec per distinct clip file (several questions share a clip)."""
    specs: dict[str, ClipSpec] = {}
    for row in rows:
        clip, stamp = row.get("video"), row.get("timestamp")
        if not clip or not row.get("video_id") or not isinstance(stamp, list | tuple) or len(stamp) != 2:
            continue
        specs.setdefault(
            str(clip), ClipSpec(str(row["video_id"]), float(stamp[0]), float(stamp[1]), str(clip))
        )
    return sorted(specs.values(), key=lambda s: s.clip)


def find_source(source_dir: Path, video_id: str) -> Path | None:
    for suffix in SOURCE_SUFFIXES:
        candidate = source_dir / f"{video_id}{suffix}"
        if candidate.is_file() and candidate.stat().st_size > 0:
            return candidate
    return None


def cut_clip(source: Path, start: float, end: float, target: Path) -> int:
    """Re-encode the frames of `source` with start <= t < end into `target`; returns frames written."""
    if end <= start:
        raise MediaError(f"timestamp [{start}, {end}] is empty")
    partial = target.with_name(target.name + ".partial")
    written = 0
    with av.open(str(source)) as container:
        stream = container.streams.video[0]
        rate = stream.average_rate or Fraction(30)
        if stream.time_base is not None:  # land on the keyframe before start, then decode forward
            container.seek(int(max(0.0, start - 1.0) / stream.time_base), stream=stream, backward=True)
        with av.open(str(partial), mode="w", format="mp4") as output:
            encoder = output.add_stream("libx264", rate=rate)
            encoder.width, encoder.height = (
                stream.codec_context.width // 2 * 2,
                stream.codec_context.height // 2 * 2,
            )
            encoder.pix_fmt = "yuv420p"
            for frame in container.decode(stream):
                if frame.time is None or frame.time < start:
                    continue
                if frame.time >= end:
                    break
                image = frame.reformat(width=encoder.width, height=encoder.height, format="yuv420p")
                image.pts = written
                output.mux(encoder.encode(image))
                written += 1
            output.mux(encoder.encode(None))
    if written == 0:
        partial.unlink(missing_ok=True)
        raise MediaError(f"{source.name} has no frames in [{start}, {end}] s")
    os.replace(partial, target)  # a crash never leaves a half-written clip under the final name
    return written


def prepare_clips(
    rows: Iterable[Mapping[str, Any]], source_dir: Path, out_dir: Path, progress: bool = True
) -> PrepareReport:
    report = PrepareReport()
    out_dir.mkdir(parents=True, exist_ok=True)
    for spec in tqdm(clip_specs(rows), desc="cutting clips", disable=not progress):
        try:
            target = resolve_media_path(spec.clip, out_dir)
        except MediaError as error:
            report.failed[spec.clip] = str(error)
            continue
        if target.exists() and target.stat().st_size > 0:
            report.existing.append(spec.clip)
            continue
        source = find_source(source_dir, spec.video_id)
        if source is None:
            report.missing_sources.setdefault(spec.video_id, []).append(spec.clip)
            continue
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            cut_clip(source, spec.start, spec.end, target)
            report.made.append(spec.clip)
        except (MediaError, av.error.FFmpegError) as error:
            report.failed[spec.clip] = str(error)
    return report
