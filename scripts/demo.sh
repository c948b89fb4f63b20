#!/usr/bin/env bash
# The demo: the embedded tiny Qwen2-VL on the bundled samples of all seven benchmarks, offline.
# Arguments go to obv-eval: e.g. --model tiny-internvl3 for another family's tiny twin.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT"
obv-eval --model tiny-qwen2vl --tasks all "$@"
