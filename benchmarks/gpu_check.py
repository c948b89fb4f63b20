"""GPU check: Qwen2-VL-2B's real architecture with random weights, SurgeryVideoQA-sized inputs.

Measures on the transformers backend in bf16, without downloading anything:
  * prefill: tokens/s, model FLOP utilisation (MFU) against --peak-tflops (H200: 790), peak memory;
  * q questions about one clip, each computed whole vs the shared prefix (system text + the clip's
    visual tokens) computed once and its past_key_values reused: time, and whether the greedy tokens
    are equal;
  * one training step (forward + backward + AdamW) on a packed --train-tokens sequence: tokens/s, MFU.

Needs only torch and transformers (no PyAV, lmms-eval, vLLM or obv_eval imports). Inputs are random
pixel tensors of the grid Qwen2-VL's processor would make for a 60 s, 1 fps, 840x476 clip (60 frames
-> grid 30 x 34 x 60 -> 15,300 visual tokens). `--tiny` shrinks the model and inputs to run on a CPU.

    python benchmarks/gpu_check.py                   # on the GPU machine
    python benchmarks/gpu_check.py --tiny --device cpu   # smoke run (tests/test_gpu_check.py)
"""

from __future__ import annotations

import argparse
import copy
import inspect
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch

HERE = Path(__file__).resolve().parent
REALDATA = Path(os.environ.get("OBV_EVAL_REALDATA", HERE.parent.parent / "shared" / "realdata"))
CONFIG_CANDIDATES = (
    REALDATA / "qwen2-vl-2b" / "config.json",
    HERE / "qwen2-vl-2b-config.json",  # a copy of that file (Apache-2.0, see qwen2-vl-2b-LICENSE)
)
PATCH, MERGE, TEMPORAL = 14, 2, 2


def load_config(path: Path | None, tiny: bool) -> Any:
    from transformers import Qwen2VLConfig

    source = path or next((p for p in CONFIG_CANDIDATES if p.is_file()), None)
    if source is None:
        raise SystemExit("no Qwen2-VL-2B config.json: pass --config PATH")
    raw = json.loads(Path(source).read_text(encoding="utf-8"))
    if tiny:
        raw.update(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4)
        raw.update(num_key_value_heads=2, rope_scaling={"type": "mrope", "mrope_section": [2, 3, 3]})
        raw["vision_config"] = {**raw["vision_config"], "depth": 2, "embed_dim": 32, "num_heads": 2}
        raw["vision_config"]["hidden_size"] = 64
    config = Qwen2VLConfig(**raw)
    config._attn_implementation = "sdpa"
    return config, str(source)


def video_grid(frames: int, height: int, width: int) -> tuple[int, int, int]:
    """(t, h, w) in patches, as Qwen2-VL's processor makes it (sizes rounded to multiples of 28)."""
    factor = PATCH * MERGE
    h = max(factor, round(height / factor) * factor)
    w = max(factor, round(width / factor) * factor)
    return frames // TEMPORAL, h // PATCH, w // PATCH


def param_count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def prefill_flops(model: Any, config: Any, seq: int, grid: tuple[int, int, int]) -> float:
    """Matmul FLOPs of one forward: 2 x params x tokens, plus attention (causal text; per-frame vision)."""
    text = config.text_config if hasattr(config, "text_config") else config
    vision = config.vision_config
    visual = model.model.visual if hasattr(model, "model") else model.visual
    n_vision = param_count(visual)
    n_text = param_count(model) - n_vision - text.vocab_size * text.hidden_size  # embeddings: lookups
    t, h, w = grid
    patches = t * h * w
    flops = 2.0 * n_text * seq + 2.0 * n_vision * patches
    flops += 2.0 * text.num_hidden_layers * seq * seq * text.hidden_size  # QK^T and AV, causal half
    flops += 4.0 * vision.depth * t * (h * w) ** 2 * vision.embed_dim  # full attention within a frame pair
    return flops


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(device: torch.device, fn: Any) -> tuple[float, Any]:
    sync(device)
    started = time.perf_counter()
    out = fn()
    sync(device)
    return time.perf_counter() - started, out


def peak_gib(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def build_inputs(
    config: Any, grid: tuple[int, int, int], questions: int, q_len: int, seed: int
) -> dict[str, Any]:
    generator = torch.Generator().manual_seed(seed)
    t, h, w = grid
    visual_tokens = t * h * w // MERGE**2
    text_vocab = 151_643  # ids below the special tokens
    system = torch.randint(0, text_vocab, (20,), generator=generator)
    prefix = torch.cat(
        [
            system,
            torch.tensor([config.vision_start_token_id]),
            torch.full((visual_tokens,), config.video_token_id),
            torch.tensor([config.vision_end_token_id]),
        ]
    )
    tails = [torch.randint(0, text_vocab, (q_len,), generator=generator) for _ in range(questions)]
    pixels = torch.randn(t * h * w, 3 * TEMPORAL * PATCH * PATCH, generator=generator)
    return {"prefix": prefix, "tails": tails, "pixels": pixels, "grid": torch.tensor([list(grid)])}


def visual_kwargs(model: Any, config: Any, ids: torch.Tensor, inputs: dict[str, Any]) -> dict[str, Any]:
    """pixel_values_videos and video_grid_thw, and mm_token_type_ids where transformers asks for it
    (newer releases compute the 3-D rotary positions from it: 0 text, 1 image, 2 video)."""
    extra: dict[str, Any] = {
        "pixel_values_videos": inputs["pixels"].to(ids.device, model.dtype),
        "video_grid_thw": inputs["grid"].to(ids.device),
    }
    if "mm_token_type_ids" in inspect.signature(model.forward).parameters:
        extra["mm_token_type_ids"] = (ids == config.video_token_id).long() * 2
    return extra


def check_prefill(model: Any, config: Any, inputs: dict[str, Any], device: torch.device, args: Any) -> dict:
    ids = torch.cat([inputs["prefix"], inputs["tails"][0]]).unsqueeze(0).to(device)
    extra = visual_kwargs(model, config, ids, inputs)

    def forward() -> Any:
        with torch.inference_mode():
            return model(input_ids=ids, use_cache=True, **extra)

    forward()  # warm-up (kernels, allocator)
    reset_peak(device)
    seconds, _ = timed(device, forward)
    flops = prefill_flops(model, config, ids.shape[1], tuple(inputs["grid"][0].tolist()))
    return {
        "tokens": ids.shape[1],
        "visual_tokens": int((ids == config.video_token_id).sum()),
        "seconds": round(seconds, 4),
        "tokens_per_s": round(ids.shape[1] / seconds, 1),
        "tflop": round(flops / 1e12, 2),
        "mfu": round(flops / seconds / (args.peak_tflops * 1e12), 4),
        "peak_gib": peak_gib(device),
    }


def check_prefix_reuse(
    model: Any, config: Any, inputs: dict[str, Any], device: torch.device, args: Any
) -> dict:
    prefix = inputs["prefix"].unsqueeze(0).to(device)
    gen = {"max_new_tokens": args.new_tokens, "do_sample": False, "min_new_tokens": args.new_tokens}

    def whole() -> list[list[int]]:
        answers = []
        for tail in inputs["tails"]:
            ids = torch.cat([prefix[0], tail.to(device)]).unsqueeze(0)
            out = model.generate(input_ids=ids, **visual_kwargs(model, config, ids, inputs), **gen)
            answers.append(out[0, ids.shape[1] :].tolist())
        return answers

    cached: list[int] = []

    def reused() -> list[list[int]]:
        with torch.inference_mode():
            shared = model(input_ids=prefix, use_cache=True, **visual_kwargs(model, config, prefix, inputs))
        cached.append(shared.past_key_values.get_seq_length())
        answers = []
        for tail in inputs["tails"]:
            ids = torch.cat([prefix[0], tail.to(device)]).unsqueeze(0)
            cache = copy.deepcopy(shared.past_key_values)  # each question extends its own copy
            # The visual tokens are in the cache: no pixels again. Positions after the prefix come from
            # the rope deltas the prefix's forward left on the model (the same for every question).
            out = model.generate(input_ids=ids, past_key_values=cache, **gen)
            answers.append(out[0, ids.shape[1] :].tolist())
        return answers

    with torch.inference_mode():
        whole()  # warm-up
        reset_peak(device)
        whole_s, whole_tokens = timed(device, whole)
        whole_peak = peak_gib(device)
        reset_peak(device)
        reused_s, reused_tokens = timed(device, reused)
        reused_peak = peak_gib(device)
    q = len(inputs["tails"])
    prefill_whole = q * (prefix.shape[1] + len(inputs["tails"][0]))
    prefill_reused = prefix.shape[1] + q * len(inputs["tails"][0])
    return {
        "questions": q,
        "new_tokens": args.new_tokens,
        "whole_seconds": round(whole_s, 4),
        "reused_seconds": round(reused_s, 4),
        "speedup": round(whole_s / reused_s, 2),
        "prefill_tokens_whole": prefill_whole,
        "prefill_tokens_reused": prefill_reused,
        "prefix_cached_tokens": cached[-1],
        "greedy_tokens_equal": whole_tokens == reused_tokens,
        "questions_equal": sum(a == b for a, b in zip(whole_tokens, reused_tokens, strict=True)),
        "peak_gib_whole": whole_peak,
        "peak_gib_reused": reused_peak,
    }


def check_train_step(model: Any, config: Any, device: torch.device, args: Any) -> dict:
    text = config.text_config if hasattr(config, "text_config") else config
    generator = torch.Generator().manual_seed(1)
    ids = torch.randint(0, 151_643, (1, args.train_tokens), generator=generator).to(device)
    # Packed: several documents in one row, positions restarting at each (as obv-train packs them).
    lengths = [args.train_tokens // 4] * 3 + [args.train_tokens - 3 * (args.train_tokens // 4)]
    positions = torch.cat([torch.arange(n) for n in lengths]).unsqueeze(0).to(device)
    model.train()
    if args.gradient_checkpointing:
        model.gradient_checkpointing_enable()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)

    def step() -> float:
        out = model(input_ids=ids, position_ids=positions, labels=ids, use_cache=False)
        out.loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return float(out.loss)

    step()  # warm-up (also allocates the optimizer state)
    reset_peak(device)
    seconds, loss = timed(device, step)
    visual = model.model.visual if hasattr(model, "model") else model.visual
    n_text = param_count(model) - param_count(visual) - text.vocab_size * text.hidden_size
    # 3 x forward: forward, and backward's two matmuls per weight; attention within each document.
    flops = 3 * (
        2.0 * n_text * args.train_tokens + 2.0 * text.vocab_size * text.hidden_size * args.train_tokens
    )
    flops += 3 * 2.0 * text.num_hidden_layers * sum(n * n for n in lengths) * text.hidden_size
    model.eval()
    return {
        "tokens": args.train_tokens,
        "seconds": round(seconds, 4),
        "tokens_per_s": round(args.train_tokens / seconds, 1),
        "mfu": round(flops / seconds / (args.peak_tflops * 1e12), 4),
        "loss": round(loss, 4),
        "peak_gib": peak_gib(device),
        "note": "sdpa attention sees the whole packed row (no per-document mask); FLOPs count per document",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--config", type=Path, help="Qwen2-VL-2B config.json (default: shared copy, then ours)"
    )
    parser.add_argument("--tiny", action="store_true", help="tiny model and inputs (a CPU smoke run)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="bfloat16", choices=("bfloat16", "float32"))
    parser.add_argument("--frames", type=int, default=60, help="sampled frames (60 s at 1 fps)")
    parser.add_argument("--height", type=int, default=476)
    parser.add_argument("--width", type=int, default=840)
    parser.add_argument("--questions", type=int, default=6, help="questions per clip (SurgeryVideoQA: ~6)")
    parser.add_argument("--question-tokens", type=int, default=24)
    parser.add_argument("--new-tokens", type=int, default=16)
    parser.add_argument("--train-tokens", type=int, default=16_384)
    parser.add_argument("--gradient-checkpointing", action="store_true")
    parser.add_argument("--peak-tflops", type=float, default=790.0, help="dense bf16 peak (H200: 790)")
    parser.add_argument("--skip", nargs="*", default=[], choices=("prefill", "reuse", "train"))
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    if args.tiny:
        args.frames, args.height, args.width = 4, 56, 56
        args.questions, args.question_tokens, args.new_tokens, args.train_tokens = 3, 6, 4, 256

    import transformers
    from transformers import Qwen2VLForConditionalGeneration

    device = torch.device(args.device)
    dtype = getattr(torch, args.dtype)
    torch.manual_seed(0)
    config, config_source = load_config(args.config, args.tiny)
    started = time.perf_counter()
    with torch.device(device):
        model = Qwen2VLForConditionalGeneration(config).to(dtype)
    model.eval()
    report: dict[str, Any] = {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "dtype": args.dtype,
        "config": config_source,
        "tiny": args.tiny,
        "parameters": param_count(model),
        "build_seconds": round(time.perf_counter() - started, 2),
        "peak_tflops": args.peak_tflops,
    }
    grid = video_grid(args.frames, args.height, args.width)
    report["video_grid_thw"] = list(grid)
    inputs = build_inputs(config, grid, args.questions, args.question_tokens, seed=0)
    for name, run in (
        ("prefill", lambda: check_prefill(model, config, inputs, device, args)),
        ("reuse", lambda: check_prefix_reuse(model, config, inputs, device, args)),
        ("train", lambda: check_train_step(model, config, device, args)),
    ):
        if name in args.skip:
            continue
        started = time.perf_counter()
        report[name] = run()
        print(f"{name}: {json.dumps(report[name])} ({time.perf_counter() - started:.1f} s)", flush=True)
    text = json.dumps(report, indent=2)
    if args.json:
        args.json.write_text(text + "\n", encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
