"""Convert MIMIC-IV-ECHO DICOM cines into the .mp4 clips MIMICEchoQA rows name.

MIMICEchoQA rows name videos such as ``mimic-iv-echo/0.1/files/p10/p10119872/s98097718/98097718_0047.mp4``;
PhysioNet distributes the same clip as ``.../98097718_0047.dcm``, a multi-frame ultrasound DICOM (JPEG
baseline or uncompressed; YBR_FULL_422, YBR_FULL, RGB, PALETTE COLOR or MONOCHROME). This module reads
each cine with pydicom (JPEG baseline through its Pillow plugin), turns every frame into 8-bit RGB and
writes H.264 with PyAV at the cine's own frame rate, taken from the header: FrameTime (ms), else
FrameTimeVector, else CineRate, else RecommendedDisplayFrameRate. Frames are neither dropped nor
resized (an odd width or height loses its last column or row, as yuv420p needs even sizes).

A frame time printed to a few decimals is read as the simplest rate it can stand for: "33.333" ms is
30 fps (time base 1/30, so 120 frames last exactly 4 s), "33.367" ms is 30000/1001 fps. Frame times
that vary (a FrameTimeVector with unequal steps) are written as per-frame timestamps.

Clips are written atomically (to ``<name>.partial``, then renamed), so a failure never leaves a
half-written file under the name a run reads. Unreadable or undecodable DICOMs are reported with the
reason and the rest are converted.

`data prepare` takes each clip the rows name from the first place that has it: the clip already where
the rows name it; the clip as PhysioNet's MIMICEchoQA release lays it out beside ``MIMICEchoQA.json``
(the row's path without its first folder, ``0.1/files/p10/...mp4``; linked, not converted, where a
download holds it); else the clip converted from its DICOM under ``--source``.
"""

from __future__ import annotations

import argparse
import os
import shutil
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np

from obv_eval.data.synth import X264_OPTIONS, _rgb_to_yuv420p
from obv_eval.media import MediaError, resolve_media_path

__all__ = [
    "ConvertedClip",
    "DicomError",
    "EchoPrepareReport",
    "FrameTiming",
    "convert_dicom",
    "dicom_twin",
    "frame_timing",
    "main",
    "prepare_echo",
    "rate_from_frame_time",
    "release_clip",
    "rgb_frames",
    "row_videos",
]

# Common video rates a rounded frame time may stand for, tried before the plain quotient.
_NTSC_RATES = tuple(Fraction(n * 1000, 1001) for n in (24, 30, 48, 60, 120))
# Encoder settings for clips made from real data: synth's quality (CRF 18, preset medium) without its
# single thread and "asm=0" (x264's plain C code), which make sample files byte-stable but are several
# times slower on full-size cines.
FAST_X264_OPTIONS = {
    key: value for key, value in X264_OPTIONS.items() if key not in {"threads", "x264-params"}
}


class DicomError(Exception):
    """A DICOM that cannot be turned into a clip (the message says why)."""


@dataclass(frozen=True)
class FrameTiming:
    """How long frames last: a constant ``rate`` (frames/s), or per-frame ``pts`` in ``time_base`` s."""

    rate: Fraction
    source: str  # the header attribute the timing came from
    pts: tuple[int, ...] | None = None
    time_base: Fraction | None = None


@dataclass(frozen=True)
class ConvertedClip:
    frames: int
    rate: Fraction
    width: int
    height: int
    timing_source: str


def _decimal_text(value: Any) -> str:
    """The number as the header printed it (pydicom keeps a DS's original string)."""
    original = getattr(value, "original_string", None)
    return str(original if original is not None else value).strip()


def _decimals(text: str) -> int:
    exponent = Decimal(text).as_tuple().exponent
    return max(0, -exponent) if isinstance(exponent, int) else 0


def rate_from_frame_time(frame_time_ms: str) -> Fraction:
    """Frames per second for a frame time in ms as printed in a DICOM header (a DS string).

    An exact quotient with a small denominator is kept as is ("40" -> 25). Otherwise the printed value
    is taken as rounded to its last digit, and the rate is the first that the rounding interval holds of:
    a whole number, an NTSC rate (n*1000/1001), the quotient's nearest fraction with denominator <= 1001;
    failing all, the exact quotient.
    """
    try:
        frame_time = Fraction(Decimal(frame_time_ms))
    except (InvalidOperation, ValueError) as error:
        raise DicomError(f"frame time {frame_time_ms!r} is not a number") from error
    if frame_time <= 0:
        raise DicomError(f"frame time {frame_time_ms!r} ms is not positive")
    exact = 1000 / frame_time
    if exact.denominator <= 1001:
        return exact
    half_step = Fraction(1, 2 * 10 ** _decimals(frame_time_ms))
    low = 1000 / (frame_time + half_step)
    high = 1000 / (frame_time - half_step) if frame_time > half_step else exact * 2
    for candidate in (Fraction(round(exact)), *_NTSC_RATES, exact.limit_denominator(1001)):
        if low <= candidate <= high:
            return candidate
    return exact


def _positive_rate(value: Any, name: str) -> Fraction:
    try:
        rate = Fraction(Decimal(_decimal_text(value)))
    except (InvalidOperation, ValueError) as error:
        raise DicomError(f"{name} {value!r} is not a number") from error
    if rate <= 0:
        raise DicomError(f"{name} {value!r} is not positive")
    return rate


def frame_timing(ds: Any, num_frames: int) -> FrameTiming:
    """Frame timing from the header: FrameTime, FrameTimeVector, CineRate, RecommendedDisplayFrameRate."""
    frame_time = ds.get("FrameTime")
    if frame_time is not None and _decimal_text(frame_time):
        return FrameTiming(rate_from_frame_time(_decimal_text(frame_time)), "FrameTime")
    vector = ds.get("FrameTimeVector")
    if vector is not None:
        values = list(vector) if isinstance(vector, Sequence | np.ndarray) else [vector]
        texts = [_decimal_text(v) for v in values]
        # The first entry is the increment before frame 1 (0 by the standard); the rest are the steps.
        steps = texts[1:] if len(texts) == num_frames else texts
        if not steps:
            raise DicomError("FrameTimeVector has no frame increments")
        if len(steps) != num_frames - 1 and len(steps) != num_frames:
            raise DicomError(f"FrameTimeVector has {len(texts)} values for {num_frames} frames")
        if len({Fraction(Decimal(s)) for s in steps}) == 1:
            return FrameTiming(rate_from_frame_time(steps[0]), "FrameTimeVector")
        decimals = max(_decimals(s) for s in steps)
        time_base = Fraction(1, 1000 * 10**decimals)
        ticks = [int(Fraction(Decimal(s)) / 1000 / time_base) for s in steps[: num_frames - 1]]
        if min(ticks) <= 0:
            raise DicomError("FrameTimeVector has a step that is not positive")
        pts = [0]
        for tick in ticks:
            pts.append(pts[-1] + tick)
        mean_rate = Fraction(len(ticks)) / (pts[-1] * time_base)
        return FrameTiming(mean_rate, "FrameTimeVector (variable)", tuple(pts), time_base)
    for name in ("CineRate", "RecommendedDisplayFrameRate"):
        value = ds.get(name)
        if value is not None and _decimal_text(value):
            return FrameTiming(_positive_rate(value, name), name)
    raise DicomError(
        "no frame timing in the header (FrameTime, FrameTimeVector, CineRate, RecommendedDisplayFrameRate)"
    )


def _to_uint8_rgb(frames: np.ndarray, ds: Any) -> np.ndarray:
    """(N, H, W, 3) uint8 RGB from pydicom's decoded frames (YBR already converted to RGB by pydicom)."""
    from pydicom.pixels import apply_color_lut

    photometric = str(ds.get("PhotometricInterpretation", "")).strip()
    bits_stored = int(ds.get("BitsStored") or ds.get("BitsAllocated") or 8)
    if photometric == "PALETTE COLOR":
        rgb = apply_color_lut(frames, ds)
        lut_bits = int(ds.RedPaletteColorLookupTableDescriptor[2])
        return (rgb >> (lut_bits - 8) if lut_bits > 8 else rgb).astype(np.uint8)
    if frames.ndim == 4:  # RGB, or YBR_* that pydicom converted to RGB
        if frames.shape[-1] != 3:
            raise DicomError(f"{frames.shape[-1]} samples per pixel; expected 3")
        return (frames >> (bits_stored - 8) if bits_stored > 8 else frames).astype(np.uint8)
    if not photometric.startswith("MONOCHROME"):
        raise DicomError(f"photometric interpretation {photometric!r} is not supported")
    grey = frames.astype(np.float64)
    if frames.dtype != np.uint8:  # one linear map for the whole cine, so brightness does not flicker
        low, high = float(grey.min()), float(grey.max())
        grey = (grey - low) * (255.0 / (high - low)) if high > low else np.zeros_like(grey)
    if photometric == "MONOCHROME1":  # 0 is white
        grey = 255.0 - grey
    grey8 = np.clip(np.rint(grey), 0, 255).astype(np.uint8)
    return np.repeat(grey8[..., None], 3, axis=-1)


def rgb_frames(ds: Any, indices: Iterable[int] | None = None) -> np.ndarray:
    """The cine's frames (or those at ``indices``) as (N, H, W, 3) uint8 RGB."""
    from pydicom.pixels import iter_pixels

    decoded = list(iter_pixels(ds, indices=indices, as_rgb=True))
    if not decoded:
        raise DicomError("no frames decoded")
    return _to_uint8_rgb(np.stack(decoded), ds)


def _downscale(frames: np.ndarray, factor: int) -> np.ndarray:
    """Integer box filter (exact integer arithmetic, so the result is the same everywhere)."""
    if factor == 1:
        return frames
    n, height, width, channels = frames.shape
    height, width = height // factor, width // factor
    blocks = frames[:, : height * factor, : width * factor].astype(np.int32)
    sums = blocks.reshape(n, height, factor, width, factor, channels).sum(axis=(2, 4))
    return ((sums + factor * factor // 2) // (factor * factor)).astype(np.uint8)


def _yuv_frame(rgb: np.ndarray, bitexact: bool) -> av.VideoFrame:
    """A BT.601 limited-range yuv420p frame: synth's integer conversion when the bytes must be stable,
    else FFmpeg's swscale (the same matrix and chroma averaging, many times faster)."""
    if bitexact:
        return av.VideoFrame.from_ndarray(_rgb_to_yuv420p(rgb), format="yuv420p")
    frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
    # AREA: chroma averaged over each 2x2 block as synth does (the default bilinear smears colour edges)
    return frame.reformat(format="yuv420p", dst_colorspace="ITU601", interpolation="AREA")


def _read(source: Path) -> Any:
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        ds = pydicom.dcmread(source)
    except InvalidDicomError as error:
        raise DicomError(f"not a DICOM file: {error}") from error
    except Exception as error:  # truncated or malformed files fail in many ways inside pydicom
        raise DicomError(f"not a readable DICOM file: {type(error).__name__}: {error}") from error
    if "PixelData" not in ds:
        raise DicomError("no pixel data")
    return ds


def convert_dicom(
    source: Path,
    target: Path,
    *,
    first_frame: int = 0,
    max_frames: int | None = None,
    downscale: int = 1,
    bitexact: bool = False,
) -> ConvertedClip:
    """Write the cine ``source`` as an H.264 mp4 at ``target`` (atomically); returns what was written.

    ``first_frame``/``max_frames``/``downscale`` cut and shrink the clip (the bundled samples use them;
    ``data prepare`` keeps every frame at full size). ``bitexact`` uses x264's plain C code so the bytes
    are the same on every machine (slower).
    """
    ds = _read(source)
    num_frames = int(ds.get("NumberOfFrames") or 1)
    timing = frame_timing(ds, num_frames)
    stop = num_frames if max_frames is None else min(num_frames, first_frame + max_frames)
    if not 0 <= first_frame < stop:
        raise DicomError(f"frames [{first_frame}, {stop}) are outside the cine's {num_frames} frames")
    try:
        frames = rgb_frames(ds, range(first_frame, stop) if (first_frame, stop) != (0, num_frames) else None)
    except DicomError:
        raise
    except Exception as error:  # pydicom raises many types for bad or unsupported pixel data
        raise DicomError(f"pixel data cannot be decoded: {type(error).__name__}: {error}") from error
    if len(frames) != stop - first_frame:
        raise DicomError(f"decoded {len(frames)} frames, the header says {stop - first_frame}")
    frames = _downscale(frames, downscale)
    height, width = frames.shape[1] // 2 * 2, frames.shape[2] // 2 * 2
    if height < 2 or width < 2:
        raise DicomError(f"frames of {frames.shape[2]}x{frames.shape[1]} are too small for H.264")
    pts = None if timing.pts is None else [p - timing.pts[first_frame] for p in timing.pts[first_frame:stop]]
    partial = target.with_name(target.name + ".partial")
    codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
    options = dict(X264_OPTIONS if bitexact else FAST_X264_OPTIONS) if codec == "libx264" else {}
    try:
        with av.open(str(partial), mode="w", format="mp4", container_options={"fflags": "+bitexact"}) as out:
            stream = out.add_stream(codec, rate=timing.rate, options=options)
            assert isinstance(stream, av.video.stream.VideoStream)  # narrows the type for mypy
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            if pts is not None and timing.time_base is not None:
                stream.codec_context.time_base = timing.time_base
            for index, rgb in enumerate(frames):
                frame = _yuv_frame(np.ascontiguousarray(rgb[:height, :width]), bitexact)
                frame.pts = index if pts is None else pts[index]
                if pts is not None and timing.time_base is not None:
                    frame.time_base = timing.time_base
                out.mux(stream.encode(frame))
            out.mux(stream.encode(None))
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    return ConvertedClip(len(frames), timing.rate, width, height, timing.source)


# --------------------------------------------------------------------------------------------------
# `obv-eval data prepare mimicechoqa`


@dataclass
class EchoPrepareReport:
    made: list[str] = field(default_factory=list)  # converted from their DICOMs
    from_release: list[str] = field(default_factory=list)  # linked from the release's own clips
    existing: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # neither in the release nor a DICOM under --source
    failed: dict[str, str] = field(default_factory=dict)  # clip -> reason

    def summary(self) -> str:
        return (
            f"{len(self.made)} clips made from DICOMs, {len(self.from_release)} taken from the release, "
            f"{len(self.existing)} already there, {len(self.missing)} missing, {len(self.failed)} failed"
        )


def row_videos(rows: Iterable[Mapping[str, Any]]) -> list[str]:
    """Distinct video paths the rows name (``video``, or a ``videos`` list), sorted."""
    names: set[str] = set()
    for row in rows:
        video = row.get("video")
        if isinstance(video, str) and video:
            names.add(video)
        videos = row.get("videos")
        if isinstance(videos, list):
            names.update(v for v in videos if isinstance(v, str) and v)
    return sorted(names)


def dicom_twin(video: str, source_dir: Path) -> Path | None:
    """The DICOM a clip comes from: the row's path with .dcm, under ``source_dir`` or a folder of it.

    ``source_dir`` may be the folder holding ``mimic-iv-echo/``, the ``0.1`` release folder, its
    ``files`` folder, or any folder below: the path is tried with its leading parts dropped one by one.
    """
    parts = Path(video).with_suffix(".dcm").parts
    for start in range(len(parts)):
        candidate = source_dir.joinpath(*parts[start:])
        if candidate.is_file():
            return candidate
    return None


def release_clip(video: str, release_dir: Path) -> Path | None:
    """The clip as the PhysioNet release lays it out beside MIMICEchoQA.json, if it is there.

    The release's rows name ``mimic-iv-echo/0.1/files/p10/.../98097718_0047.mp4``; a download that
    ships the clips keeps them at ``0.1/files/p10/.../98097718_0047.mp4`` in the json's folder."""
    parts = Path(video).parts
    if len(parts) < 2:
        return None
    try:
        candidate = resolve_media_path(str(Path(*parts[1:])), release_dir)
    except MediaError:
        return None
    return candidate if candidate.is_file() and candidate.stat().st_size > 0 else None


def _link_or_copy(source: Path, target: Path) -> None:
    """``target`` as a hard link to ``source`` (a copy across file systems), placed atomically."""
    partial = target.with_name(target.name + ".partial")
    partial.unlink(missing_ok=True)
    try:
        try:
            os.link(source, partial)
        except OSError:
            shutil.copyfile(source, partial)
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)


def prepare_echo(
    rows: Iterable[Mapping[str, Any]],
    source_dir: Path | None,
    out_dir: Path,
    progress: bool = True,
    release_dir: Path | None = None,
) -> EchoPrepareReport:
    """Put every clip the rows name under ``out_dir``: kept if there, else from the release's own clips
    under ``release_dir``, else converted from its DICOM under ``source_dir``."""
    from tqdm import tqdm

    report = EchoPrepareReport()
    out_dir.mkdir(parents=True, exist_ok=True)
    for video in tqdm(row_videos(rows), desc="echo clips", disable=not progress):
        try:
            target = resolve_media_path(video, out_dir)
        except MediaError as error:
            report.failed[video] = str(error)
            continue
        if target.exists() and target.stat().st_size > 0:
            report.existing.append(video)
            continue
        shipped = None if release_dir is None else release_clip(video, release_dir)
        source = None if shipped is not None or source_dir is None else dicom_twin(video, source_dir)
        if shipped is None and source is None:
            report.missing.append(video)
            continue
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            if shipped is not None:
                _link_or_copy(shipped, target)
                report.from_release.append(video)
            elif source is not None:
                convert_dicom(source, target)
                report.made.append(video)
        except (DicomError, av.error.FFmpegError, OSError) as error:
            report.failed[video] = f"{shipped or source}: {error}"
    return report


def main(argv: Sequence[str]) -> int:
    """`obv-eval data prepare mimicechoqa`: exit 0 all clips there, 1 some missing/failed, 2 usage."""
    from obv_eval.benchmarks import BENCHMARKS
    from obv_eval.release_formats import release_rows_file
    from obv_eval.sources import DataSourceError, media_root
    from obv_eval.tasking import load_rows, read_json_rows
    from obv_eval.usage import CHECK_FAILED, UsageError, add_source_arguments, data_source

    parser = argparse.ArgumentParser(
        prog="obv-eval data prepare",
        description="Make the mp4 clips MIMICEchoQA rows name: from the PhysioNet release's own clips where "
        "the download has them, else from MIMIC-IV-ECHO's DICOM cines (every frame, the size and the frame "
        "rate in the DICOM header kept).",
    )
    parser.add_argument("dataset", choices=("mimicechoqa",))
    parser.add_argument(
        "--source",
        type=Path,
        help="folder of the MIMIC-IV-ECHO DICOMs in PhysioNet's layout (mimic-iv-echo/0.1/files/p10/...dcm; "
        "the folder holding mimic-iv-echo/, the version folder or its files/ folder all work); needed unless "
        "--data holds the release with its clips",
    )
    parser.add_argument("--rows", type=Path, help="rows file (.jsonl/.json/.parquet); default: from --data")
    parser.add_argument("--out", type=Path, help="clip folder; default: the dataset's video root")
    parser.add_argument(
        "--allow-missing", action="store_true", help="exit 0 when clips are missing (a partial set)"
    )
    parser.add_argument("--no-progress", action="store_true")
    add_source_arguments(parser)
    args = parser.parse_args(argv)
    if args.source is not None and not args.source.is_dir():
        raise UsageError(f"--source {args.source}: not a folder")
    source = data_source(args)
    release = release_rows_file("mimicechoqa", source.root) if source.kind == "local" else None
    if args.source is None and release is None:
        raise UsageError(
            "give --source DIR, the MIMIC-IV-ECHO DICOMs to convert (or --data DIR holding the PhysioNet "
            "release, MIMICEchoQA.json, where its download has the clips)"
        )
    if args.rows is not None:
        if not args.rows.is_file():
            raise UsageError(f"--rows {args.rows}: no such file")
        if args.rows.suffix == ".parquet":
            import datasets

            rows: Sequence[Mapping[str, Any]] = list(datasets.Dataset.from_parquet(str(args.rows)))
        else:
            rows = read_json_rows(args.rows)
    else:
        try:
            rows = list(load_rows(BENCHMARKS["mimicechoqa"], source))
        except DataSourceError as error:
            raise UsageError(str(error)) from error
    out = args.out or media_root("mimicechoqa", "video", source)
    if out is None:
        raise UsageError("no clip folder: pass --out DIR (or --video-root / --data DIR)")
    report = prepare_echo(
        rows,
        args.source,
        Path(out),
        progress=not args.no_progress,
        release_dir=None if release is None else release.parent,
    )
    print(f"mimicechoqa: {report.summary()} -> {out}")
    for video in report.missing:
        where = f"no DICOM for it under {args.source}" if args.source else "not in the release; no --source"
        print(f"  missing {video} ({where})")
    for video, reason in sorted(report.failed.items()):
        print(f"  failed {video}: {reason}")
    if report.missing and not args.allow_missing:
        print(
            f"  {len(report.missing)} clips not made: download their DICOMs (docs/mimicechoqa.md) "
            "or pass --allow-missing"
        )
    return CHECK_FAILED if report.failed or (report.missing and not args.allow_missing) else 0
