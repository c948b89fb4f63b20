#!/usr/bin/env bash
# The test suite: lint, types, tests (no network, no GPU), and the regression gate on the demo.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT"
ruff check .
ruff format --check .
mypy obv_eval
pytest -q "$@"
