"""Peak RSS of a full `obv-eval` run as the task grows: memory must follow the batch, not the task.

Writes SurgeryVideoQA-shaped data (840x476 clips at 1 fps, several questions per clip) for each clip
count, runs `obv-eval --model tiny-qwen2vl --tasks surgeryvqa --data DIR` in a fresh process, samples
the peak RSS of that process tree with psutil, and prints every run and its ratio to the first.

    python benchmarks/memory_scaling.py                       # 10, 40, 160 clips of 20 s
    python benchmarks/memory_scaling.py --clips 10 40 --clip-seconds 8

Target: the largest run within 1.15x of the smallest.

What differs between sizes is bounded, not a per-clip leak: the transformers backend decodes clips
ahead of generation up to its prefetch budget (StreamSettings.prefetch_bytes, 256 MiB of frames). A
20 s clip here is 24 MB decoded, so 10 clips nearly fill the budget and larger runs add about one
clip; a 4 s clip is 4.8 MB, so the 10-clip run holds 48 MB and a run of 54 clips or more the full
256 MiB (measured: the RSS is flat through generation, and with the budget forced to 8 MiB the 4 s
runs at 10 and 40 clips peak at 1387 and 1376 MiB).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from obv_eval.data.synth import write_video

WIDTH, HEIGHT, FPS = 840, 476, 1


def _write_clip(source: Path, seconds: int, seed: int) -> None:
    write_video(source, num_frames=seconds * FPS, fps=FPS, width=WIDTH, height=HEIGHT, seed=seed)


def write_data(root: Path, clips: int, seconds: int, questions: int) -> None:
    """DIR/surgeryvqa/test.jsonl plus DIR/media/surgeryvqa/*.mp4 (clip files shared by its questions)."""
    media = root / "media" / "surgeryvqa"
    media.mkdir(parents=True)
    cache = root.parent / f"clips-{seconds}s"
    cache.mkdir(exist_ok=True)
    # Clips of the same index are the same bytes (a pure function of the seed): written once, in
    # parallel, then linked into each run's data.
    missing = [clip for clip in range(clips) if not (cache / f"clip{clip:04d}.mp4").exists()]
    with concurrent.futures.ProcessPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        for done in [pool.submit(_write_clip, cache / f"clip{c:04d}.mp4", seconds, c) for c in missing]:
            done.result()
    rows = []
    for clip in range(clips):
        name = f"clip{clip:04d}.mp4"
        (media / name).hardlink_to(cache / name)
        for question in range(questions):
            rows.append(
                {
                    "id": f"c{clip:04d}-q{question}",
                    "video": name,
                    "question": f"Question {question} about clip {clip}: what happens in this step?",
                    "answer": "The surgeon dissects the tissue.",
                    "video_id": f"v{clip:04d}",
                    "timestamp": [0, seconds],
                    "video_metadata": {
                        "original": {
                            "duration": seconds,
                            "fps": FPS,
                            "frame_count": seconds * FPS,
                            "resolution": {"width": WIDTH, "height": HEIGHT},
                        }
                    },
                }
            )
    (root / "surgeryvqa").mkdir()
    text = "".join(json.dumps(row) + "\n" for row in rows)
    (root / "surgeryvqa" / "test.jsonl").write_text(text, encoding="utf-8")


def peak_rss(command: list[str], interval: float = 0.05) -> tuple[int, float, int]:
    """(peak RSS of the process and its children in bytes, seconds, exit code)."""
    started = time.time()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    root = psutil.Process(process.pid)
    peak = 0
    while process.poll() is None:
        try:
            tree = [root, *root.children(recursive=True)]
            peak = max(peak, sum(p.memory_info().rss for p in tree if p.is_running()))
        except psutil.Error:
            pass
        time.sleep(interval)
    stderr = process.stderr.read().decode(errors="replace") if process.stderr else ""
    if process.returncode not in (0, 1):  # 1: a check failed (e.g. unscored items), the run completed
        print(stderr[-2000:], file=sys.stderr)
    return peak, time.time() - started, process.returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clips", type=int, nargs="+", default=[10, 40, 160])
    parser.add_argument("--clip-seconds", type=int, default=20)
    parser.add_argument("--questions", type=int, default=6, help="questions per clip")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--max-new-tokens", type=int, default=8)
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory(prefix="obv-memory-") as tmp:
        for clips in args.clips:
            data = Path(tmp) / f"data-{clips}"
            write_data(data, clips, args.clip_seconds, args.questions)
            command = [
                sys.executable, "-m", "obv_eval.cli", "--model", "tiny-qwen2vl", "--tasks", "surgeryvqa",
                "--data", str(data), "--output-dir", str(Path(tmp) / "runs"), "--run-id", f"c{clips}",
                "--batch-size", str(args.batch_size), "--max-new-tokens", str(args.max_new_tokens),
                "--no-progress",
            ]  # fmt: skip
            peak, seconds, code = peak_rss(command)
            rows.append((clips, clips * args.questions, peak, seconds, code))
            ratio = peak / rows[0][2]
            print(
                f"{clips:4d} clips x {args.questions} questions ({args.clip_seconds} s, {WIDTH}x{HEIGHT}, "
                f"{FPS} fps): peak RSS {peak / 2**20:7.0f} MiB, {seconds:6.1f} s, exit {code}, "
                f"ratio to {args.clips[0]} clips {ratio:.3f}",
                flush=True,
            )
    worst = max(peak for _, _, peak, _, _ in rows) / rows[0][2]
    print(f"largest / smallest peak RSS: {worst:.3f} (target <= 1.15)")
    return 0 if worst <= 1.15 and all(code in (0, 1) for *_, code in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
