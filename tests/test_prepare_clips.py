"""`data prepare` cuts exact clips from ordinary sources; the oracle is the ffmpeg/ffprobe CLI.

Sources are made with PyAV at the frame rates and time bases of real downloads (24, 25, 29.97, 30,
60 fps; 1/15360, 1/90000, 1/25; with and without B-frames; one variable frame rate) and cut; then
ffprobe reports each clip's rate, size, frame times and duration, compared with the row and with
ffmpeg's own cut of the same span. Frame content is checked too: each clip frame must be the source
frame on screen at start + k / fps (every synthetic frame carries its index as a grey marker).
"""

from __future__ import annotations

import itertools
import json
import shutil
import subprocess
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import pytest

from obv_eval.cli import main
from obv_eval.data.prepare import ClipFormat, cut_clip, prepare_clips
from obv_eval.data.synth import _rgb_to_yuv420p, read_marker, synthetic_frame

HAVE_FFPROBE = shutil.which("ffprobe") is not None and shutil.which("ffmpeg") is not None
needs_ffmpeg = pytest.mark.skipif(
    not HAVE_FFPROBE, reason="ffmpeg/ffprobe CLI not installed (scripts/test.sh installs Debian's ffmpeg)"
)

SECONDS, WIDTH, HEIGHT = 12, 160, 90
# (name, frame rate, time base, B-frames, variable frame rate)
SOURCES: list[tuple[str, Fraction, Fraction, bool, bool]] = [
    ("r24_tb15360_b", Fraction(24), Fraction(1, 15360), True, False),
    ("r25_tb25", Fraction(25), Fraction(1, 25), False, False),
    ("r2997_tb15360_b", Fraction(30000, 1001), Fraction(1, 15360), True, False),
    ("r30_tb15360_b", Fraction(30), Fraction(1, 15360), True, False),
    ("r60_tb90000_b", Fraction(60), Fraction(1, 90000), True, False),
    ("r4_tb15360", Fraction(4), Fraction(1, 15360), False, False),
    ("vfr30_tb90000_b", Fraction(30), Fraction(1, 90000), True, True),
]
PUBLISHED = ClipFormat(fps=Fraction(1), width=84, height=48)


def make_source(path: Path, rate: Fraction, time_base: Fraction, bframes: bool, vfr: bool) -> Path:
    """A short synthetic source; a variable rate alternates frame gaps of 0.5 and 1.5 frames."""
    options = {"preset": "veryfast", "crf": "23", "bf": "3" if bframes else "0"}
    with av.open(
        str(path), "w", format="mp4", options={"video_track_timescale": str(time_base.denominator)}
    ) as out:
        stream = out.add_stream("libx264", rate=rate, options=options)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        stream.codec_context.time_base = time_base
        time, index = Fraction(0), 0
        while time < SECONDS:
            rgb = synthetic_frame(index, WIDTH, HEIGHT, seed=3)
            frame = av.VideoFrame.from_ndarray(_rgb_to_yuv420p(rgb), format="yuv420p")
            frame.pts, frame.time_base = round(time / time_base), time_base
            out.mux(stream.encode(frame))
            step = 1 / rate
            if vfr:
                step *= Fraction(1, 2) if index % 3 == 0 else Fraction(3, 2)
            time, index = time + step, index + 1
        out.mux(stream.encode(None))
    return path


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("sources")
    return {name: make_source(folder / f"{name}.mp4", r, tb, b, v) for name, r, tb, b, v in SOURCES}


def ffprobe(path: Path) -> dict[str, Any]:
    command = [
        "ffprobe", "-v", "error", "-select_streams", "v:0", "-of", "json",
        "-show_entries", "stream=width,height,avg_frame_rate,r_frame_rate,nb_frames:format=duration",
        "-show_entries", "frame=best_effort_timestamp_time", str(path),
    ]  # fmt: skip
    info = json.loads(subprocess.run(command, capture_output=True, text=True, check=True).stdout)
    stream = info["streams"][0]
    return {
        "width": stream["width"],
        "height": stream["height"],
        "avg_frame_rate": Fraction(stream["avg_frame_rate"]),
        "r_frame_rate": Fraction(stream["r_frame_rate"]),
        "duration": float(info["format"]["duration"]),
        "times": [float(frame["best_effort_timestamp_time"]) for frame in info["frames"]],
    }


def ffmpeg_cut(source: Path, start: float, end: float, target: Path) -> Path:
    command = [
        "ffmpeg", "-v", "error", "-y", "-ss", str(start), "-to", str(end), "-i", str(source),
        "-an", "-c:v", "libx264", "-preset", "ultrafast", str(target),
    ]  # fmt: skip
    subprocess.run(command, check=True)
    return target


def source_timeline(path: Path) -> list[tuple[float, int]]:
    """(presentation time, marker) of every source frame, as PyAV decodes them."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        origin = stream.start_time or 0
        return [
            (float((frame.pts - origin) * stream.time_base), read_marker(frame.to_ndarray(format="rgb24")))
            for frame in container.decode(stream)
        ]


def expected_markers(timeline: list[tuple[float, int]], start: float, fps: Fraction, count: int) -> list[int]:
    """Marker of the source frame on screen at start + k / fps (a tick of slack for rounded times)."""
    out = []
    for k in range(count):
        t = start + float(k / fps) + 1e-4
        out.append([marker for time, marker in timeline if time <= t][-1])
    return out


def clip_markers(path: Path) -> list[int]:
    with av.open(str(path)) as container:
        return [read_marker(frame.to_ndarray(format="rgb24")) for frame in container.decode(video=0)]


def source_frame_s(name: str) -> float:
    rate = next(r for n, r, _, _, v in SOURCES if n == name)
    return float(1 / rate) * (1.5 if name.startswith("vfr") else 1)  # the longest gap of the VFR source


@needs_ffmpeg
@pytest.mark.parametrize("name", [s[0] for s in SOURCES])
def test_default_clip_is_the_published_one(name: str, sources: dict[str, Path], tmp_path: Path) -> None:
    start, end = 2.0, 8.0
    clip = tmp_path / "clip.mp4"
    written = cut_clip(sources[name], start, end, clip, PUBLISHED)
    probe = ffprobe(clip)
    reference = ffprobe(ffmpeg_cut(sources[name], start, end, tmp_path / "ffmpeg.mp4"))
    frame_s = source_frame_s(name)
    assert (probe["width"], probe["height"]) == (PUBLISHED.width, PUBLISHED.height)
    assert probe["avg_frame_rate"] == 1 and probe["r_frame_rate"] == 1
    assert len(probe["times"]) == written == round(end - start)
    assert probe["times"][0] == 0 and all(b > a for a, b in itertools.pairwise(probe["times"]))
    assert abs(probe["duration"] - (end - start)) <= frame_s
    assert abs(probe["duration"] - reference["duration"]) <= frame_s
    assert not (tmp_path / "clip.mp4.partial").exists()
    wanted = expected_markers(source_timeline(sources[name]), start, Fraction(1), written)
    assert clip_markers(clip) == wanted


@needs_ffmpeg
@pytest.mark.parametrize("name", [s[0] for s in SOURCES])
def test_source_fidelity_cut_matches_ffmpeg(name: str, sources: dict[str, Path], tmp_path: Path) -> None:
    start, end = 2.5, 7.25  # not on 1 s boundaries
    clip = tmp_path / "clip.mp4"
    written = cut_clip(sources[name], start, end, clip, None)
    probe, source = ffprobe(clip), ffprobe(sources[name])
    reference = ffprobe(ffmpeg_cut(sources[name], start, end, tmp_path / "ffmpeg.mp4"))
    frame_s = source_frame_s(name)
    assert (probe["width"], probe["height"]) == (WIDTH, HEIGHT)
    if not name.startswith("vfr"):  # a constant rate source keeps its nominal rate (30000/1001 stays exact)
        assert probe["avg_frame_rate"] == source["r_frame_rate"]
    times = probe["times"]
    assert len(times) == written and times[0] == 0 and all(b > a for a, b in itertools.pairwise(times))
    assert abs(probe["duration"] - (end - start)) <= frame_s
    assert abs(probe["duration"] - reference["duration"]) <= frame_s
    rate = Fraction(probe["avg_frame_rate"])
    got, wanted = clip_markers(clip), expected_markers(source_timeline(sources[name]), start, rate, written)
    assert got == wanted and len(set(got)) > 1  # the selected frames, not one frozen frame


def test_missing_sources_exit_1_unless_allowed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = tmp_path / "rows.jsonl"
    rows.write_text(
        "".join(
            json.dumps({"video_id": v, "timestamp": [0, 1], "video": f"{v}_0_1.mp4"}) + "\n" for v in "ab"
        )
    )
    (tmp_path / "src").mkdir()
    argv = ["data", "prepare", "openbiomedvid", "--source-videos", str(tmp_path / "src"), "--rows", str(rows),
            "--out", str(tmp_path / "out"), "--no-progress"]  # fmt: skip
    assert main(argv) == 1
    out = capsys.readouterr().out
    assert (
        "missing source a: 1 clips" in out and "missing source b: 1 clips" in out and "--allow-missing" in out
    )
    assert main([*argv, "--allow-missing"]) == 0
    assert list((tmp_path / "out").iterdir()) == []


def test_failed_cuts_leave_nothing_behind(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "src"
    src.mkdir()
    make_source(src / "short.mp4", Fraction(25), Fraction(1, 25), False, False)  # 12 s
    (src / "junk.mp4").write_bytes(b"not a video" * 100)
    rows = [
        {"video_id": "short", "timestamp": [2, 30], "video": "short_2_30.mp4"},  # past the source's end
        {"video_id": "junk", "timestamp": [0, 2], "video": "junk_0_2.mp4"},
        {"video_id": "short", "timestamp": [1, 3], "video": "short_1_3.mp4",
         "video_metadata": {"original": {"fps": 1.0, "frame_count": 3,
                                         "resolution": {"width": 84, "height": 48}}}},
    ]  # fmt: skip
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "junk_0_2.mp4.partial").write_bytes(b"left by an interrupted run")
    report = prepare_clips(rows, src, tmp_path / "out", progress=False)
    assert report.made == ["short_1_3.mp4"]
    assert set(report.failed) == {"short_2_30.mp4", "junk_0_2.mp4"}
    assert "ends at" in report.failed["short_2_30.mp4"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["short_1_3.mp4"]  # no .partial
    # The row's frame_count (3 at 1 fps over a 2 s span: the frame at `end` included) is honoured.
    with av.open(str(tmp_path / "out" / "short_1_3.mp4")) as container:
        assert sum(1 for _ in container.decode(video=0)) == 3
    rows_file = tmp_path / "rows.jsonl"
    rows_file.write_text("".join(json.dumps(row) + "\n" for row in rows[:2]))
    argv = ["data", "prepare", "openbiomedvid", "--source-videos", str(src), "--rows", str(rows_file),
            "--out", str(tmp_path / "out"), "--no-progress", "--allow-missing"]  # fmt: skip
    assert main(argv) == 1  # failures always fail, --allow-missing or not
    assert "failed junk_0_2.mp4" in capsys.readouterr().out
