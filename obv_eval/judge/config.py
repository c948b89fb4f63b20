"""Judge settings, provenance, availability and the price table."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from obv_eval.judge.prompt import DEFAULT_PRESET, JudgePreset, get_preset

OPENAI_BASE_URL = "https://api.openai.com/v1"

# USD per 1M tokens (input, output), OpenAI list prices for standard (non-batch) requests as
# published in 2025; check https://openai.com/api/pricing before quoting a cost. Unknown -> None.
PRICES_USD_PER_1M: dict[str, tuple[float, float]] = {
    "gpt-4o": (2.50, 10.00),
    "gpt-4o-2024-11-20": (2.50, 10.00),
    "gpt-4o-2024-08-06": (2.50, 10.00),
    "gpt-4o-2024-05-13": (5.00, 15.00),
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4o-mini-2024-07-18": (0.15, 0.60),
    "gpt-4.1": (2.00, 8.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1-nano": (0.10, 0.40),
}


def estimate_cost_usd(model: str, prompt_tokens: int, completion_tokens: int) -> float | None:
    """Estimated cost of the tokens at list price; ``None`` for a model not in the table."""
    prices = PRICES_USD_PER_1M.get(model)
    if prices is None:
        return None
    return (prompt_tokens * prices[0] + completion_tokens * prices[1]) / 1_000_000


def url_problem(url: str) -> str | None:
    """Why `url` cannot be a server's base URL, or None. The reason never quotes the URL: a key pasted
    into it (as credentials, a port or a query) must not reach a message."""
    if not url.strip() or any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in url):
        return "not a URL (empty, or with spaces or control characters)"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 -- parsing the port is the check (ValueError when not 0-65535)
    except ValueError:
        return "not a valid URL (malformed host or port)"
    if parts.scheme not in ("http", "https"):
        return "must start with http:// or https://"
    if parts.username is not None or parts.password is not None:
        return "holds credentials, which are never sent; give the key in the environment variable instead"
    if not parts.hostname:
        return "has no host"
    if parts.query or parts.fragment:
        return "has a query or fragment, which is never sent; give the server's base URL only"
    return None


def sanitize_endpoint(url: str) -> str:
    """The URL without credentials, query or fragment, and without a trailing slash."""
    parts = urlsplit(url)
    netloc = parts.hostname or ""
    if parts.port is not None:
        netloc = f"{netloc}:{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))


@dataclass(frozen=True)
class JudgeConfig:
    """How to reach the judge and how to ask it.

    The API key is never held here: ``api_key_env`` names the environment variable read at call
    time, so configs, results, caches and logs cannot carry it.
    """

    model: str = "gpt-4o"
    base_url: str | None = None  # None: the OpenAI API; e.g. "http://127.0.0.1:8000/v1" for vLLM
    api_key_env: str = "OPENAI_API_KEY"
    temperature: float = 0.0
    seed: int | None = 0
    max_tokens: int = 8
    concurrency: int = 32
    timeout_s: float = 30.0
    max_retries: int = 3
    preset: str = DEFAULT_PRESET  # the judge prompt: see obv_eval.judge.prompt.PRESETS
    prompt_version: str | None = None  # when given, must be the preset's version (a guard)
    structured_output: bool = True
    cache_path: str | None = None  # None: an in-memory cache that lives as long as the Judge

    def __post_init__(self) -> None:
        preset = get_preset(self.preset)  # ValueError for an unknown preset
        if self.prompt_version is not None and self.prompt_version != preset.version:
            # Asking for a prompt text this build does not have must not silently use another.
            raise ValueError(
                f"prompt_version {self.prompt_version!r} is not available (preset {self.preset!r} "
                f"is {preset.version!r})"
            )
        if self.concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if self.max_retries < 0:
            raise ValueError("max_retries must be 0 or more")
        if self.timeout_s <= 0:
            raise ValueError("timeout_s must be positive")
        if self.max_tokens < 1:
            raise ValueError("max_tokens must be at least 1")
        problem = None if self.base_url is None else url_problem(self.base_url)
        if problem is not None:
            raise ValueError(f"the judge's base URL {problem}")

    @property
    def prompt(self) -> JudgePreset:
        return get_preset(self.preset)

    @property
    def endpoint(self) -> str:
        """The chat endpoint, explicit even for the OpenAI API (so OPENAI_BASE_URL cannot redirect it)."""
        return sanitize_endpoint(self.base_url or OPENAI_BASE_URL)

    @property
    def endpoint_host(self) -> str:
        return urlsplit(self.endpoint).netloc

    def api_key(self) -> str | None:
        """The key from the environment, read now; never stored."""
        return os.environ.get(self.api_key_env) or None

    def settings(self) -> dict[str, Any]:
        """Everything that can change a verdict: part of the cache key and of provenance."""
        return {
            "model": self.model,
            "endpoint": self.endpoint,
            "preset": self.preset,
            "prompt_version": self.prompt.version,
            "prompt_sha256": self.prompt.sha256,
            "temperature": self.temperature,
            "seed": self.seed,
            "max_tokens": self.max_tokens,
            "structured_output": self.structured_output,
        }

    def describe(self) -> dict[str, Any]:
        """Provenance for results.json: what judged and how. Never the key or local paths."""
        # The host alone: a full endpoint URL can carry credentials or local details.
        verdict_settings = {k: v for k, v in self.settings().items() if k != "endpoint"}
        return {
            **verdict_settings,
            "endpoint_host": self.endpoint_host,
            "prompt_source": self.prompt.source,
            "concurrency": self.concurrency,
            "timeout_s": self.timeout_s,
            "max_retries": self.max_retries,
            "api_key_env": self.api_key_env,
        }


NO_JUDGE_REASON = "not scored: no judge configured"


def judge_available(config: JudgeConfig) -> tuple[bool, str]:
    """Whether a judge can be called, and a one-line reason to show either way.

    A local server (``base_url`` set) may run without a key; the OpenAI API needs one.
    """
    if config.base_url is not None:
        return True, f"judge {config.model} at {config.endpoint_host}"
    if config.api_key() is not None:
        return True, f"judge {config.model} at {config.endpoint_host}"
    return False, (
        f"{NO_JUDGE_REASON} (set {config.api_key_env} for the OpenAI API, or give a base_url for an "
        "OpenAI-compatible server)"
    )
