"""benchmarks/gpu_check.py runs as it is: a CPU smoke run of its --tiny mode (the GPU figures need a GPU)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"


def test_gpu_check_tiny_smoke_run(tmp_path: Path) -> None:
    out = tmp_path / "gpu_check.json"
    # Run the script as __main__, then list the top-level modules it imported.
    probe = (
        "import json, runpy, sys\n"
        "script, out = sys.argv[1:]\n"
        "sys.argv = [script, '--tiny', '--device', 'cpu', '--dtype', 'float32', '--json', out]\n"
        "try:\n    runpy.run_path(script, run_name='__main__')\nexcept SystemExit as stop:\n"
        "    assert not stop.code, stop.code\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe, str(SCRIPT), str(out)], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(out.read_text(encoding="utf-8"))
    assert report["tiny"] and report["video_grid_thw"] == [2, 4, 4]
    assert report["prefill"]["visual_tokens"] == 2 * 4 * 4 // 4
    assert report["prefill"]["tokens_per_s"] > 0 and report["prefill"]["tflop"] >= 0
    reuse = report["reuse"]
    prefix = report["prefill"]["tokens"] - 6  # the tiny question is 6 tokens
    assert reuse["prefix_cached_tokens"] == prefix  # the shared prefix really sat in the cache
    assert reuse["prefill_tokens_reused"] == prefix + reuse["questions"] * 6
    assert reuse["greedy_tokens_equal"] is True and reuse["questions_equal"] == reuse["questions"]
    train = report["train"]
    assert train["tokens"] == 256 and train["loss"] > 0 and train["tokens_per_s"] > 0
    # Nothing that the GPU machine lacks was imported.
    loaded = set(json.loads(done.stdout.strip().splitlines()[-1]))
    assert not loaded & {"av", "lmms_eval", "vllm", "obv_eval"}


def test_grid_matches_the_processors_rounding() -> None:
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    # SurgeryVideoQA-shaped: 60 frames of 840x476 -> 30 x 34 x 60 patches -> 15,300 visual tokens.
    assert module.video_grid(60, 476, 840) == (30, 34, 60)
    assert module.video_grid(4, 50, 60) == (2, 4, 4)  # rounded to multiples of 28
