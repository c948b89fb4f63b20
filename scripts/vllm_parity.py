"""vLLM vs transformers on the tiny Qwen2-VL in fp32: greedy tokens must be identical.

For a video, an image and a text item (the bundled samples) it builds the request once
(obv_eval.backends.vllm.build_vllm_request: the prompt rendered by the checkpoint's chat template and
the frames sampled by obv_eval.media, passed as one video), then generates
  - with transformers: the transformers backend's model and greedy config, one item at a time;
  - with vLLM: LLM.generate with the vLLM backend's explicit SamplingParams;
and compares the token ids. It then runs both public backends over the same items and compares
their texts (with --data-parallel-size N the vLLM backend runs N worker engines).

Needs a machine with vLLM and a GPU (pip install 'obv-eval[vllm]'). Exit 0 when everything matches,
1 otherwise, 2 when vLLM is not installed.

    python scripts/vllm_parity.py [--max-new-tokens 16] [--data-parallel-size 1]
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

MAX_MODEL_LEN = 4096  # the tiny model's max_position_embeddings


def items() -> list[Any]:
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
    requests = items()
    hf = HFBackend(model_dir, dtype="float32", batch_size=1, generation=settings, media=media)
    engine_kwargs = {"enforce_eager": True}  # no CUDA graphs: faster start, nothing to capture for 3 items
    vllm = VLLMBackend(
        model_dir,
        dtype="float32",
        max_model_len=MAX_MODEL_LEN,
        gpu_memory_utilization=args.gpu_memory_utilization,
        generation=settings,
        media=media,
        engine_kwargs=engine_kwargs,
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
        del vllm  # free the GPU for the workers
        vllm = VLLMBackend(
            model_dir,
            dtype="float32",
            max_model_len=MAX_MODEL_LEN,
            data_parallel_size=args.data_parallel_size,
            gpu_memory_utilization=args.gpu_memory_utilization,
            generation=settings,
            media=media,
            engine_kwargs=engine_kwargs,
        )
    vllm_out = vllm.generate(requests, progress=False)
    rows = []
    for a, b in zip(hf_out, vllm_out, strict=True):
        fields = ("text", "prompt", "frames", "error", "prompt_tokens", "output_tokens")
        same = all(getattr(a, name) == getattr(b, name) for name in fields)
        ok &= same
        rows.append(
            [
                a.key[0],
                a.frames or "-",
                "yes" if same else "NO",
                repr(a.text[:40]),
                repr(b.text[:40]),
                b.error,
            ]
        )
    print()
    print(tabulate(rows, headers=["item", "frames", "identical", "hf text", "vllm text", "vllm error"]))
    print(f"\nvLLM parity: {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":  # vLLM starts worker processes: the guard keeps them from re-running this
    sys.exit(main())
