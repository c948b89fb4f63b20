"""LLM judge for open-ended answers: versioned prompt, strict 0/1 parsing, cache, retries."""

from obv_eval.judge.agreement import agreement
from obv_eval.judge.cache import JudgeCache, cache_key
from obv_eval.judge.client import Judge, JudgeItem, JudgeRunStats, Verdict
from obv_eval.judge.config import (
    NO_JUDGE_REASON,
    PRICES_USD_PER_1M,
    JudgeConfig,
    estimate_cost_usd,
    judge_available,
)
from obv_eval.judge.parse import parse_verdict
from obv_eval.judge.prompt import (
    DEFAULT_PRESET,
    JUDGE_PROMPT_VERSION,
    PRESETS,
    PROMPT_SHA256,
    JudgePreset,
    build_judge_messages,
    get_preset,
)
from obv_eval.judge.rescore import rescore_samples

__all__ = [
    "DEFAULT_PRESET",
    "JUDGE_PROMPT_VERSION",
    "NO_JUDGE_REASON",
    "PRESETS",
    "PRICES_USD_PER_1M",
    "PROMPT_SHA256",
    "Judge",
    "JudgeCache",
    "JudgeConfig",
    "JudgeItem",
    "JudgePreset",
    "JudgeRunStats",
    "Verdict",
    "agreement",
    "build_judge_messages",
    "cache_key",
    "estimate_cost_usd",
    "get_preset",
    "judge_available",
    "parse_verdict",
    "rescore_samples",
]
