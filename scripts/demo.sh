#!/usr/bin/env bash
# The demo: the embedded tiny Qwen2-VL on the bundled samples of all seven benchmarks, offline.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT"
obv-eval --model tiny-qwen2vl --tasks all "$@"
