"""Packing efficiency of obv-train on OpenBiomedVid-like sample lengths, against padded batches.

Synthetic clips shaped like the dataset (22,668 clips, most under 2 minutes, about 3.5 QA pairs per clip),
each giving the study's two samples (caption, multi-turn QA). Visual tokens come from obv_eval.media's
own rules (frame count and frame size for the training video settings), so they are what training would
measure. Reported for three ways of feeding the samples:

    naive      random order, batches of --batch samples padded to the longest
    grouped    length-sorted batches of --batch samples padded to the longest (length-grouped batching)
    packed     obv-train: best-fit-decreasing packs of at most --max-tokens tokens, one pack per step

efficiency = real tokens / tokens processed (padding is the waste); fill = real tokens / (sequences x
max tokens), what a fixed token budget per step buys. Target: packed fill >= 95%.

    python benchmarks/packing_efficiency.py [--clips 5000] [--max-tokens 16384] [--visual-tokens 16384]
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the package, uninstalled

from obv_eval.media import IMAGE_FACTOR, VideoSettings, frame_count, video_frame_size
from obv_eval.train.config import STUDY_TRAIN_VIDEO
from obv_eval.train.packing import pack_lengths, packing_stats, singleton_packs

TARGET_FILL = 0.95
RESOLUTIONS = [((1280, 720), 0.50), ((1920, 1080), 0.25), ((640, 360), 0.15), ((854, 480), 0.10)]
TEMPLATE_TOKENS = 21  # system turn and the first user turn's markers, Qwen2-VL chat template
TURN_TOKENS = 10  # <|im_start|>user ... <|im_end|> markers of one extra turn pair


def visual_tokens(duration_s: float, fps: float, width: int, height: int, settings: VideoSettings) -> int:
    total = max(2, round(duration_s * fps))
    nframes = frame_count(total, fps, settings)
    h, w = video_frame_size(height, width, nframes, settings)
    return nframes // 2 * (h // IMAGE_FACTOR) * (w // IMAGE_FACTOR)


def synthetic_lengths(clips: int, settings: VideoSettings, seed: int = 0) -> list[int]:
    rng = random.Random(seed)
    sizes, weights = zip(*RESOLUTIONS, strict=True)
    lengths: list[int] = []
    for _ in range(clips):
        duration = min(600.0, max(2.0, rng.lognormvariate(math.log(45), 0.8)))  # ~89% under 2 minutes
        width, height = rng.choices(sizes, weights)[0]
        video = visual_tokens(duration, rng.choice((24.0, 25.0, 30.0)), width, height, settings)
        caption = round(rng.lognormvariate(math.log(120), 0.5))
        lengths.append(TEMPLATE_TOKENS + video + 15 + caption)  # caption sample: prompt + caption
        pairs = max(1, min(12, round(rng.gauss(3.5, 1.5))))
        qa = sum(round(rng.lognormvariate(math.log(16), 0.4)) + round(rng.lognormvariate(math.log(8), 0.7))
                 for _ in range(pairs))  # fmt: skip
        lengths.append(TEMPLATE_TOKENS + video + qa + TURN_TOKENS * (pairs - 1))
    return lengths


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clips", type=int, default=5000)
    parser.add_argument("--max-tokens", type=int, default=16384)
    parser.add_argument("--visual-tokens", type=int, default=16384, help="visual token budget per clip")
    parser.add_argument("--batch", type=int, default=8, help="samples per padded batch (naive, grouped)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    settings = dataclasses.replace(STUDY_TRAIN_VIDEO, total_pixels=args.visual_tokens * IMAGE_FACTOR**2)
    every = synthetic_lengths(args.clips, settings, args.seed)
    lengths = [n for n in every if n <= args.max_tokens]
    over = len(every) - len(lengths)
    print(
        f"{args.clips} clips -> {len(every)} samples; visual budget {args.visual_tokens} tokens per clip; "
        f"{over} samples ({over / len(every):.1%}) over {args.max_tokens} tokens are skipped and counted"
    )

    order = list(range(len(lengths)))
    random.Random(args.seed).shuffle(order)
    shuffled = [lengths[i] for i in order]
    naive = packing_stats(singleton_packs(len(shuffled)), shuffled, args.max_tokens, args.batch)
    by_length = sorted(lengths)
    grouped = packing_stats(singleton_packs(len(by_length)), by_length, args.max_tokens, args.batch)
    packs = pack_lengths(lengths, args.max_tokens)
    packed = packing_stats(packs, lengths, args.max_tokens, 1)

    print(f"{'strategy':<10} {'sequences':>10} {'efficiency':>11} {'fill':>7}")
    for name, stats in (("naive", naive), ("grouped", grouped), ("packed", packed)):
        print(f"{name:<10} {stats.sequences:>10} {stats.padding_efficiency:>11.1%} {stats.fill:>7.1%}")
    print(f"packed: {len(lengths) / len(packs):.2f} samples per sequence; target fill >= {TARGET_FILL:.0%}")
    return 0 if packed.fill >= TARGET_FILL else 1


if __name__ == "__main__":
    raise SystemExit(main())
