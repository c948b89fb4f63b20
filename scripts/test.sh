#!/usr/bin/env bash
# The test suite: lint, types, tests (no network, no GPU), and the regression gate on the demo.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT"
# Debian tools some tests need (without them those tests skip with a reason):
# need COMMAND PACKAGE WHAT -- installs PACKAGE with apt when COMMAND is missing and we are root.
need() {
  command -v "$1" >/dev/null 2>&1 && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get install -y -qq "$2" >/dev/null 2>&1 \
      || { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq "$2" >/dev/null 2>&1; } \
      || echo "warning: could not install $2; $3 will skip" >&2
  else
    echo "note: $1 not found (install $2 as root); $3 will skip" >&2
  fi
}
need ffprobe ffmpeg "the clip tests that use the ffmpeg/ffprobe CLI as their oracle"
need chromium chromium "the report's browser test"
ruff check .
ruff format --check .
mypy obv_eval
pytest -q "$@"
