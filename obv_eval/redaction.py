"""Secret redaction for everything a run writes: records, results, the judge cache, logs and errors.

One rule, used everywhere: a configured secret (an API key read from the environment) is replaced
by ``[redacted]`` wherever it appears, in any letter case, and so is every fragment of it of at
least ``MIN_FRAGMENT`` characters (a truncated or lower-cased copy in a server's error message).
A secret shorter than that is matched whole, case-insensitively.

The secrets are the values of the environment variables named by the caller (the judge's
``--judge-api-key-env``, the backend's key variable) plus ``OPENAI_API_KEY`` and every variable
whose name ends in ``API_KEY``, ``_TOKEN`` or ``_SECRET`` (at least ``MIN_FRAGMENT`` characters long).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from typing import Any

REDACTED = "[redacted]"
MIN_FRAGMENT = 8
_SECRET_NAME = re.compile(r"(API_KEY|_TOKEN|_SECRET)$")
_extra_envs: set[str] = {"OPENAI_API_KEY"}


def register_secret_env(name: str | None) -> None:
    """Treat the value of environment variable ``name`` as a secret from now on (in this process)."""
    if name:
        _extra_envs.add(name)


def configured_secrets(*env_names: str | None) -> list[str]:
    """The secret values in the environment: the named variables, the registered ones, and keys/tokens."""
    names = {n for n in env_names if n} | _extra_envs
    secrets = {os.environ[n] for n in names if os.environ.get(n)}
    secrets |= {
        value
        for name, value in os.environ.items()
        if _SECRET_NAME.search(name) and len(value) >= MIN_FRAGMENT
    }
    return sorted((s for s in secrets if s.strip()), key=len, reverse=True)


def _lower(text: str) -> str:
    # Per character, so positions in the lowered text are positions in the original.
    return "".join(c.lower() if len(c.lower()) == 1 else c for c in text)


def redact(text: str, secrets: Iterable[str] | None = None) -> str:
    """``text`` with every secret, case variant or >= MIN_FRAGMENT-character fragment replaced."""
    secrets = configured_secrets() if secrets is None else [s for s in secrets if s]
    if not text or not secrets:
        return text
    lowered = _lower(text)
    covered = [False] * len(text)
    for secret in secrets:
        key = _lower(secret)
        width = min(MIN_FRAGMENT, len(key))
        grams = {key[i : i + width] for i in range(len(key) - width + 1)}
        for i in range(len(text) - width + 1):
            if lowered[i : i + width] in grams:
                covered[i : i + width] = [True] * width
    if not any(covered):
        return text
    out: list[str] = []
    i = 0
    while i < len(text):
        if covered[i]:
            while i < len(text) and covered[i]:
                i += 1
            out.append(REDACTED)
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def redact_value(value: Any, secrets: Iterable[str] | None = None) -> Any:
    """A copy of a JSON-like value (dicts, lists, strings) with every string (and key) redacted."""
    secrets = configured_secrets() if secrets is None else list(secrets)
    if not secrets:
        return value
    return _walk(value, secrets)


def _walk(value: Any, secrets: list[str]) -> Any:
    if isinstance(value, str):
        return redact(value, secrets)
    if isinstance(value, dict):
        return {(_walk(k, secrets) if isinstance(k, str) else k): _walk(v, secrets) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_walk(v, secrets) for v in value]
    return value
