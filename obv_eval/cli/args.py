"""Argument helpers shared by several commands: the judge options and range checks."""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from obv_eval.benchmarks import BENCHMARKS
from obv_eval.redaction import register_secret_env
from obv_eval.usage import UsageError


def add_judge_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("judge (open-ended answers)")
    group.add_argument("--judge-model", default=os.environ.get("OBV_EVAL_JUDGE_MODEL", "gpt-4o"))
    group.add_argument(
        "--judge-base-url",
        default=os.environ.get("OBV_EVAL_JUDGE_BASE_URL"),
        help="an OpenAI-compatible server (e.g. a local vLLM); default: the OpenAI API",
    )
    group.add_argument("--judge-api-key-env", default="OPENAI_API_KEY", help="env variable holding the key")
    group.add_argument("--judge-concurrency", type=int, default=32)
    group.add_argument("--judge-timeout", type=float, default=30.0)
    group.add_argument("--judge-retries", type=int, default=3)
    group.add_argument("--judge-cache", help="SQLite cache file (default: $OBV_EVAL_HOME/judge-cache.sqlite)")
    group.add_argument(
        "--judge-preset",
        default="study-rubric",
        choices=["study-rubric", "v1", "study-published"],
        help="judge prompt: study-rubric (the study's rubric, injection-safe; default), v1 (obv-eval's "
        "stricter first rubric), study-published (the study's prompt exactly as published); "
        "see docs/judge.md",
    )


def judge_config(
    args: argparse.Namespace, model: str | None = None, base_url: str | None = None, preset: str | None = None
) -> Any:
    from obv_eval.judge import JudgeConfig
    from obv_eval.tiny_model import default_cache_root

    register_secret_env(args.judge_api_key_env)  # its value is redacted from everything printed
    cache = args.judge_cache or str(default_cache_root() / "judge-cache.sqlite")
    Path(cache).parent.mkdir(parents=True, exist_ok=True)
    try:
        return JudgeConfig(
            model=model or args.judge_model,
            base_url=base_url if model else args.judge_base_url,
            api_key_env=args.judge_api_key_env,
            concurrency=args.judge_concurrency,
            timeout_s=args.judge_timeout,
            max_retries=args.judge_retries,
            cache_path=cache,
            preset=preset or args.judge_preset,
        )
    except ValueError as error:
        raise UsageError(f"judge settings: {error}") from error


def fraction(value: float, flag: str) -> None:
    if not 0.0 <= value <= 1.0:
        raise UsageError(f"{flag} must be a fraction between 0 and 1 (got {value:g})")


def at_least(value: int | None, low: int, flag: str) -> None:
    if value is not None and value < low:
        raise UsageError(f"{flag} must be at least {low} (got {value})")


def check_url(url: str, flag: str) -> None:
    """A server URL must be well formed, http(s), without credentials; the message never quotes it."""
    from obv_eval.judge.config import url_problem

    problem = url_problem(url)
    if problem is not None:
        raise UsageError(f"{flag} {problem}")


def check_hub(names: Sequence[str]) -> None:
    """The benchmarks' hub rows can be loaded from here (in seconds, before any library loads them)."""
    from obv_eval.hub import HubUnavailable, check_hub_datasets

    try:
        check_hub_datasets(BENCHMARKS[name] for name in names)
    except HubUnavailable as error:
        raise UsageError(str(error)) from error
