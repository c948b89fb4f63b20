#!/usr/bin/env bash
# Create (once) and activate the project's virtual environment in .venv, with everything installed.
# Sourced by scripts/demo.sh and scripts/test.sh; safe to run again (it only installs what changed).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${OBV_EVAL_VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3

# pip's own output (and setuptools' editable-install warnings) goes to a log; one line here, and the
# whole log only when an install fails. OBV_EVAL_VERBOSE=1 shows pip's output as it runs.
_obv_pip() {
  if [ "${OBV_EVAL_VERBOSE:-0}" = "1" ]; then
    "$VENV/bin/python" -m pip install "$@"
    return
  fi
  local log="$VENV/pip-install.log"
  echo "obv-eval: pip install $* (log: $log)" >&2
  if ! "$VENV/bin/python" -m pip install "$@" >"$log" 2>&1; then
    cat "$log" >&2
    echo "obv-eval: pip install failed; the log above is also in $log" >&2
    return 1
  fi
}

# A first install writes about 8 GB (torch with its CUDA libraries) and unpacks wheels in the temporary
# folder: say so before pip runs out of space half-way.
_obv_check_space() {
  local dir free_gb
  for dir in "$(dirname "$VENV")" "${TMPDIR:-/tmp}"; do
    free_gb=$(df -Pk "$dir" 2>/dev/null | awk 'NR==2 {print int($4 / 1048576)}')
    if [ -n "$free_gb" ] && [ "$free_gb" -lt 10 ]; then
      echo "obv-eval: warning: ${free_gb} GB free at $dir; installing the environment needs about 10 GB" >&2
    fi
  done
}

if [ ! -x "$VENV/bin/python" ]; then
  _obv_check_space
  echo "creating $VENV" >&2
  "$PYTHON" -m venv "$VENV"
  _obv_pip --quiet --upgrade pip
fi
# Every package at the version of the lock for this architecture (scripts/lock.sh refreshes it), so two
# installs a month apart resolve to the same processors and tokenizers. torch and torchvision must be a
# matching pair (transformers' Qwen2-VL video processor needs torchvision): installed first, from the lock.
LOCK="$ROOT/requirements/lock-linux-$(uname -m).txt"
[ -f "$LOCK" ] || { echo "obv-eval: no lock file for $(uname -m) ($LOCK); see scripts/lock.sh" >&2; exit 2; }
if ! "$VENV/bin/python" -c "import torch, torchvision" >/dev/null 2>&1; then
  _obv_pip --quiet -c "$LOCK" torch torchvision
fi
STAMP="$VENV/.obv-eval-installed"
if [ ! -f "$STAMP" ] || [ "$ROOT/pyproject.toml" -nt "$STAMP" ] || [ "$LOCK" -nt "$STAMP" ]; then
  _obv_pip --quiet -c "$LOCK" -e "$ROOT[dev,train]"
  touch "$STAMP"
fi
export PATH="$VENV/bin:$PATH"
