#!/usr/bin/env bash
# The test suite: lint, types, tests (no network, no GPU), and the regression gate on the demo.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT"
# The clip tests' oracle is the ffmpeg/ffprobe CLI (Debian's ffmpeg); without it they skip with a reason.
if ! command -v ffprobe >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get install -y -qq ffmpeg >/dev/null 2>&1 \
      || { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq ffmpeg >/dev/null 2>&1; } \
      || echo "warning: could not install ffmpeg; the clip tests that need ffprobe will skip" >&2
  else
    echo "note: ffprobe not found (install ffmpeg as root); the clip tests that need it will skip" >&2
  fi
fi
# The report's browser test loads pages in Debian's headless chromium; without it that test skips.
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get install -y -qq chromium >/dev/null 2>&1 \
      || { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq chromium >/dev/null 2>&1; } \
      || echo "warning: could not install chromium; the report's browser test will skip" >&2
  else
    echo "note: chromium not found (install it as root); the report's browser test will skip" >&2
  fi
fi
ruff check .
ruff format --check .
mypy obv_eval
pytest -q "$@"
