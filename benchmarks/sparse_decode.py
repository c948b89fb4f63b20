"""Sparse decoding vs a full decode vs the ffmpeg CLI (the floor), each run in a fresh process.

Cases (sources written with PyAV, 640x360 H.264 with B-frames):
  sparse: 32 frames from a 10-minute 30 fps clip with 2-second keyframe intervals (a frame cap);
  dense:  2 fps from a 2-minute 30 fps clip with a long GOP (250 frames).
Sides: "seek" (obv_eval.media's default: keyframe seeks where gaps allow), "full" (decode every frame,
the previous behaviour), "ffmpeg" (the ffmpeg CLI extracting the same frames with a select filter,
RGB to a pipe; no resize). Runs are interleaved, every run is printed, and the median ratios.

    python benchmarks/sparse_decode.py --runs 3 [--workdir /tmp/obv-sparse]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

CASES = {
    "sparse": {"seconds": 600, "gop": 60, "nframes": 32},
    "dense": {"seconds": 120, "gop": 250, "nframes": None},  # fps=2 sampling
}
SIZE = (640, 360)
FPS = 30


def make_video(path: Path, seconds: int, gop: int) -> None:
    import av
    import numpy as np

    rng = np.random.default_rng(0)
    width, height = SIZE
    base = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
    tmp = path.with_suffix(".tmp.mp4")
    with av.open(str(tmp), "w") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {
            "preset": "ultrafast",
            "x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0:bframes=3:b-adapt=0",
        }
        stream.thread_type = "AUTO"
        for i in range(seconds * FPS):
            image = np.roll(base, (i * 3) % width, axis=1)
            image[(i % height), :] = 255  # a moving line: content changes every frame
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = i
            frame.time_base = Fraction(1, FPS)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    tmp.rename(path)


def settings_for(case: str) -> object:
    from obv_eval.media import VideoSettings

    nframes = CASES[case]["nframes"]
    return VideoSettings(nframes=nframes) if nframes else VideoSettings(fps=2.0)


def one_side(side: str, case: str, video: Path) -> dict[str, object]:
    """Runs in a fresh process: the time to get the case's frames one way."""
    from obv_eval import media

    settings = settings_for(case)
    fps, total = media._probe(video)
    indices = media.sample_frame_indices(total, fps, settings)  # type: ignore[arg-type]
    started = time.perf_counter()
    if side == "ffmpeg":
        # Groups of 16 terms: ffmpeg's expression parser refuses one long sum.
        groups = [indices[i : i + 16] for i in range(0, len(indices), 16)]
        select = "+".join("(" + "+".join(f"eq(n\\,{i})" for i in group) + ")" for group in groups)
        command = ["ffmpeg", "-v", "error", "-threads", "0", "-i", str(video), "-vf", f"select='{select}'"]
        done = subprocess.run(
            [*command, "-vsync", "0", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
            capture_output=True,
            check=True,
        )
        got = len(done.stdout) // (SIZE[0] * SIZE[1] * 3)
    else:
        strategy = "auto" if side == "seek" else "full"
        frames = media._decode_video(video, settings, "bench", strategy=strategy)  # type: ignore[arg-type]
        got = frames.num_frames
    elapsed = time.perf_counter() - started
    return {
        "side": side,
        "case": case,
        "seconds": elapsed,
        "frames": got,
        "seeks": media.cache_stats()["seeks"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/obv-sparse-decode"))
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--side", help=argparse.SUPPRESS)  # internal: one measurement in this process
    parser.add_argument("--case", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:
        print(json.dumps(one_side(args.side, args.case, args.workdir / f"{args.case}.mp4")))
        return 0
    args.workdir.mkdir(parents=True, exist_ok=True)
    sides = ["full", "seek"] + (["ffmpeg"] if shutil.which("ffmpeg") else [])
    if "ffmpeg" not in sides:
        print("ffmpeg CLI not found (apt-get install ffmpeg): no floor", file=sys.stderr)
    for case in args.cases:
        video = args.workdir / f"{case}.mp4"
        if not video.exists():
            started = time.perf_counter()
            make_video(video, CASES[case]["seconds"], CASES[case]["gop"])  # type: ignore[arg-type]
            print(f"made {video} in {time.perf_counter() - started:.0f} s", file=sys.stderr)
        times: dict[str, list[float]] = {side: [] for side in sides}
        for run in range(args.runs):
            for side in sides:  # interleaved: full, seek, ffmpeg, full, seek, ...
                out = subprocess.run(
                    [
                        sys.executable,
                        __file__,
                        "--side",
                        side,
                        "--case",
                        case,
                        "--workdir",
                        str(args.workdir),
                    ],
                    capture_output=True,
                    text=True,
                    check=True,
                )
                result = json.loads(out.stdout.strip().splitlines()[-1])
                times[side].append(result["seconds"])
                print(
                    f"{case} run {run + 1} {side:6s} {result['seconds']:7.3f} s  "
                    f"frames {result['frames']}  seeks {result['seeks']}"
                )
        median = {side: statistics.median(values) for side, values in times.items()}
        line = f"{case}: median full {median['full']:.3f} s, seek {median['seek']:.3f} s"
        line += f" -> seek is {median['full'] / median['seek']:.2f}x full"
        if "ffmpeg" in median:
            floor = median["ffmpeg"]
            line += f"; ffmpeg CLI {floor:.3f} s (seek / ffmpeg {median['seek'] / floor:.2f})"
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
