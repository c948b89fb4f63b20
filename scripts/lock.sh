#!/usr/bin/env bash
# Refresh the lock files that scripts/env.sh installs from: the whole environment (dependencies, dev
# and train extras) resolved for Linux x86_64 and aarch64 on Python 3.11, with the torch/torchvision pair
# that each architecture needs. Needs the package index; run after changing pyproject.toml's dependencies.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
TOOLS="${TMPDIR:-/tmp}/obv-eval-lock-tools"
[ -x "$TOOLS/bin/uv" ] || { python3 -m venv "$TOOLS" && "$TOOLS/bin/pip" install --quiet uv; }
overrides="$(mktemp -d)"
trap 'rm -rf "$overrides"' EXIT
printf 'torch==2.14.1\ntorchvision==0.29.1\n' > "$overrides/x86_64.txt"   # CUDA build; runs on CPU
printf 'torch==2.9.1\ntorchvision==0.24.1\n' > "$overrides/aarch64.txt"   # CPU build
for arch in x86_64 aarch64; do
  "$TOOLS/bin/uv" pip compile pyproject.toml --extra dev --extra train --python-version 3.11 \
    --python-platform "$arch-manylinux_2_28" --override "$overrides/$arch.txt" --no-header --quiet \
    --output-file "requirements/lock-linux-$arch.txt"
  echo "wrote requirements/lock-linux-$arch.txt"
done
# The vLLM route (GPU machines, x86_64 only): vLLM's wheel pins its own torch/torchvision/transformers, so
# it gets a lock of its own, installed into a separate environment: pip install -c THIS -e '.[vllm,train]'.
"$TOOLS/bin/uv" pip compile pyproject.toml --extra vllm --extra train --python-version 3.11 \
  --python-platform x86_64-manylinux_2_28 --no-header --quiet \
  --output-file requirements/lock-vllm-linux-x86_64.txt
echo "wrote requirements/lock-vllm-linux-x86_64.txt"
