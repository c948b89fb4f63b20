"""Calls the judge for many items: cache first, bounded concurrency, bounded retries.

Transport faults (connection errors, timeouts, 408/409/429/5xx) are retried with backoff by the
official ``openai`` client (``max_retries``); a reply that is not a 0/1 verdict is asked again up
to ``max_retries`` times. Whatever still fails becomes an *unscored* verdict with a reason: one
bad item never stops a run, and nothing loops forever.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal, cast

from tqdm import tqdm

from obv_eval.judge.cache import JudgeCache, cache_key
from obv_eval.judge.config import JudgeConfig, estimate_cost_usd, judge_available
from obv_eval.judge.parse import parse_verdict
from obv_eval.judge.prompt import build_judge_messages
from obv_eval.progress import Bar
from obv_eval.redaction import configured_secrets, redact

if TYPE_CHECKING:  # the client library loads only when a judge is called (a run without one never needs it)
    import openai
    from openai.types.chat import ChatCompletion, ChatCompletionMessageParam

log = logging.getLogger(__name__)

# Servers without their own key (a local vLLM) still need a non-empty bearer for the client.
_PLACEHOLDER_KEY = "EMPTY"
_REPLY_EXCERPT_CHARS = 80
# Statuses the openai client retries itself.
_RETRIED_STATUSES = frozenset({408, 409, 429}) | frozenset(range(500, 600))

# HTTP requests sent on behalf of the item being judged in the current task (transport retries
# included); counted by an httpx event hook, which runs in the task that sends the request.
_requests_sent: contextvars.ContextVar[list[int] | None] = contextvars.ContextVar(
    "obv_judge_requests_sent", default=None
)


@dataclass(frozen=True)
class JudgeItem:
    question: str
    gold: str
    prediction: str
    modality: str = "video"  # the task's modality, named in the prompt


@dataclass(frozen=True)
class Verdict:
    """The judge's 0/1 score for one item, or why there is none.

    ``attempts`` counts HTTP requests sent for this item in this run (transport retries and
    re-asks included; 0 for a cache hit). Tokens are those spent in this run.
    """

    score: int | None
    status: Literal["scored", "unscored"]
    reason: str | None
    cached: bool
    attempts: int
    prompt_tokens: int
    completion_tokens: int
    raw: str | None = None  # the judge's last reply text, for audit
    response_model: str | None = None  # the model that answered (``response.model``)
    system_fingerprint: str | None = None  # the backend configuration that answered, when given
    output_mode: str | None = None  # "structured" or "text": how the verdict was asked


@dataclass
class JudgeRunStats:
    """Totals of one ``judge_many`` call."""

    items: int = 0
    calls: int = 0  # HTTP requests sent, retries included
    cache_hits: int = 0
    deduplicated: int = 0  # items identical to an earlier one of the same batch
    scored: int = 0
    unscored: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    estimated_cost_usd: float | None = None
    structured_output_used: bool = True
    elapsed_s: float = 0.0
    unscored_reasons: dict[str, int] = field(default_factory=dict)
    # What answered the scored items (cache hits included, as recorded when they were asked):
    # a judge name served by two snapshots shows up here as two entries.
    response_models: dict[str, int] = field(default_factory=dict)
    system_fingerprints: dict[str, int] = field(default_factory=dict)
    output_modes: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class _Answered:
    """What answered one request: ``response.model``, ``system_fingerprint``, the output mode."""

    model: str | None
    system_fingerprint: str | None
    structured: bool


class _TransportFailure(Exception):
    """A request that failed for good; ``reason`` is safe to record (no key, no body)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Judge:
    """LLM judge over an OpenAI-compatible chat endpoint, with a verdict cache."""

    def __init__(self, config: JudgeConfig, *, cache: JudgeCache | None = None) -> None:
        self.config = config
        self.cache = cache if cache is not None else JudgeCache(config.cache_path or ":memory:")
        self.stats = JudgeRunStats()
        self._structured = config.structured_output

    def key(self, item: JudgeItem, *, structured: bool | None = None) -> str:
        """The cache key of ``item`` asked in the given output mode (default: the current one)."""
        used = self._structured if structured is None else structured
        settings = {**self.config.settings(), "structured_output": used}
        return cache_key(settings, item.question, item.gold, item.prediction, item.modality)

    # -- public API ---------------------------------------------------------------------------
    def judge_many(self, items: Sequence[JudgeItem], *, progress: bool | None = None) -> list[Verdict]:
        """Verdicts for ``items``, in order. ``progress``: None shows a bar only on a terminal."""
        return asyncio.run(self.ajudge_many(items, progress=progress))

    def judge(self, item: JudgeItem) -> Verdict:
        return self.judge_many([item], progress=False)[0]

    async def ajudge_many(self, items: Sequence[JudgeItem], *, progress: bool | None = None) -> list[Verdict]:
        """Async form of :meth:`judge_many`, for callers already inside an event loop."""
        started = time.perf_counter()
        stats = JudgeRunStats(items=len(items), structured_output_used=self._structured)
        self.stats = stats
        keys = [self.key(it) for it in items]
        hits = self.cache.get_many(keys)
        results: list[Verdict | None] = [None] * len(items)
        todo: dict[str, int] = {}  # key -> index of the first item that needs a call
        for i, key in enumerate(keys):
            if key in hits:
                c = hits[key]
                results[i] = Verdict(
                    c.verdict,
                    "scored",
                    None,
                    True,
                    0,
                    0,
                    0,
                    c.raw,
                    c.response_model,
                    c.system_fingerprint,
                    c.output_mode,
                )
                stats.cache_hits += 1
            elif key not in todo:
                todo[key] = i

        # Cached verdicts count as done from the start, so the rate is that of real calls only.
        bar = Bar(
            total=len(items),
            initial=stats.cache_hits,
            desc=f"obv-eval: judge {self.config.model}",
            unit="item",
            file=sys.stderr,
            disable=None if progress is None else not progress,
        )
        try:
            if todo:
                available, why = judge_available(self.config)
                if available:
                    fresh = await self._call_all(items, todo, stats, bar)
                else:
                    unscored = Verdict(None, "unscored", why, False, 0, 0, 0)
                    fresh = {key: unscored for key in todo}
                for i, key in enumerate(keys):
                    if results[i] is not None:
                        continue
                    verdict = fresh[key]
                    if i != todo[key]:  # a copy of an item judged once in this batch: no cost
                        stats.deduplicated += 1
                        verdict = replace(
                            verdict, cached=True, attempts=0, prompt_tokens=0, completion_tokens=0
                        )
                        bar.update(1)
                    results[i] = verdict
        finally:
            bar.close()

        final = [v for v in results if v is not None]
        for v in final:
            if v.status == "scored":
                stats.scored += 1
                for counts, value in (
                    (stats.response_models, v.response_model),
                    (stats.system_fingerprints, v.system_fingerprint),
                    (stats.output_modes, v.output_mode),
                ):
                    name = value or "not recorded"
                    counts[name] = counts.get(name, 0) + 1
            else:
                stats.unscored += 1
                reason = v.reason or "unknown"
                stats.unscored_reasons[reason] = stats.unscored_reasons.get(reason, 0) + 1
        stats.estimated_cost_usd = estimate_cost_usd(
            self.config.model, stats.prompt_tokens, stats.completion_tokens
        )
        stats.structured_output_used = self._structured
        stats.elapsed_s = time.perf_counter() - started
        if stats.unscored and judge_available(self.config)[0]:  # with no judge, the caller says so once
            log.warning(
                "judge: %d of %d items unscored: %s", stats.unscored, len(items), stats.unscored_reasons
            )
        log.info(
            "judge: %d items, %d cache hits, %d calls, %d+%d tokens",
            stats.items,
            stats.cache_hits,
            stats.calls,
            stats.prompt_tokens,
            stats.completion_tokens,
        )
        return final

    # -- calls --------------------------------------------------------------------------------
    async def _call_all(
        self, items: Sequence[JudgeItem], todo: dict[str, int], stats: JudgeRunStats, bar: tqdm
    ) -> dict[str, Verdict]:
        async def count_request(request: object) -> None:  # an httpx request; only counted
            stats.calls += 1
            counter = _requests_sent.get()
            if counter is not None:
                counter[0] += 1

        import openai

        cfg = self.config
        http_client = openai.DefaultAsyncHttpxClient(event_hooks={"request": [count_request]})
        client = openai.AsyncOpenAI(
            api_key=cfg.api_key() or _PLACEHOLDER_KEY,
            base_url=cfg.endpoint,
            timeout=cfg.timeout_s,
            max_retries=cfg.max_retries,
            http_client=http_client,
        )
        semaphore = asyncio.Semaphore(cfg.concurrency)

        async def run_one(key: str, index: int) -> tuple[str, Verdict]:
            async with semaphore:
                verdict = await self._judge_one(client, key, items[index], stats)
            bar.update(1)
            return key, verdict

        async with client:
            pairs = await asyncio.gather(*(run_one(key, index) for key, index in todo.items()))
        return dict(pairs)

    async def _judge_one(
        self, client: openai.AsyncOpenAI, key: str, item: JudgeItem, stats: JudgeRunStats
    ) -> Verdict:
        counter = [0]
        _requests_sent.set(counter)  # this coroutine runs in its own task: the value stays local
        preset = self.config.prompt
        messages = build_judge_messages(
            item.question, item.gold, item.prediction, preset=preset.name, modality=item.modality
        )
        prompt_tokens = completion_tokens = 0
        asks = 1 + self.config.max_retries
        last_problem = ""
        last_text: str | None = None
        for _ in range(asks):
            try:
                text, usage, answered = await self._ask(client, messages, counter)
            except _TransportFailure as failure:
                return Verdict(
                    None, "unscored", failure.reason, False, counter[0], prompt_tokens, completion_tokens
                )
            prompt_tokens += usage[0]
            completion_tokens += usage[1]
            stats.prompt_tokens += usage[0]
            stats.completion_tokens += usage[1]
            if text is None:  # a body that was not a chat completion
                last_problem = "malformed response body"
                continue
            score = parse_verdict(text, key=preset.verdict_key)
            text = self._redact(text)  # the reply may quote a key: never store or report it
            last_text = text
            if score is not None:
                mode = "structured" if answered.structured else "text"
                self.cache.put(
                    self.key(item, structured=answered.structured),  # the mode actually used
                    score,
                    raw=text,
                    prompt_tokens=prompt_tokens,
                    completion_tokens=completion_tokens,
                    model=self.config.model,
                    prompt_version=preset.version,
                    response_model=answered.model,
                    system_fingerprint=answered.system_fingerprint,
                    output_mode=mode,
                )
                return Verdict(
                    score,
                    "scored",
                    None,
                    False,
                    counter[0],
                    prompt_tokens,
                    completion_tokens,
                    text,
                    answered.model,
                    answered.system_fingerprint,
                    mode,
                )
            last_problem = "empty reply" if not text.strip() else f"reply {text[:_REPLY_EXCERPT_CHARS]!r}"
        reason = f"no 0/1 verdict after {asks} asks (last: {last_problem})"
        return Verdict(
            None, "unscored", reason, False, counter[0], prompt_tokens, completion_tokens, last_text
        )

    async def _ask(
        self, client: openai.AsyncOpenAI, messages: list[dict[str, str]], counter: list[int]
    ) -> tuple[str | None, tuple[int, int], _Answered]:
        """One ask (the client retries transport faults): reply text, or None for a malformed body,
        the tokens, and what answered (model, fingerprint, output mode)."""
        import openai

        before = counter[0]
        structured = self._structured
        try:
            if self._structured:
                try:
                    response = await self._create(client, messages, structured=True)
                except openai.BadRequestError:
                    # Servers without structured outputs answer 400. Ask in plain text (the prompt
                    # asks for the same JSON and the parser takes a bare digit too); only a success
                    # switches plain text on for the rest of the run, so one bad item cannot.
                    before = counter[0]
                    structured = False
                    response = await self._create(client, messages, structured=False)
                    if self._structured:
                        log.warning("judge endpoint rejected response_format; asking in plain text")
                        self._structured = False
            else:
                response = await self._create(client, messages, structured=False)
        except openai.APIStatusError as exc:
            retries = max(counter[0] - before - 1, 0)
            if retries > 0 or exc.status_code in _RETRIED_STATUSES:
                reason = f"HTTP {exc.status_code} after {retries} retries"
            else:  # not retried: the server's message says what to mend (bad model name, key, ...)
                body = exc.body if isinstance(exc.body, dict) else {}
                message = str(body.get("message") or exc.message)
                reason = f"HTTP {exc.status_code}: {self._redact(message)[: _REPLY_EXCERPT_CHARS * 2]}"
            raise _TransportFailure(reason) from None
        except openai.APITimeoutError:
            retries = max(counter[0] - before - 1, 0)
            raise _TransportFailure(
                f"timeout ({self.config.timeout_s:g} s) after {retries} retries"
            ) from None
        except openai.APIConnectionError:
            retries = max(counter[0] - before - 1, 0)
            raise _TransportFailure(f"connection error after {retries} retries") from None
        except (json.JSONDecodeError, openai.APIResponseValidationError):
            return None, (0, 0), _Answered(None, None, structured)
        except openai.OpenAIError as exc:  # anything else from the client: unscored, run goes on
            raise _TransportFailure(f"{type(exc).__name__} from the judge client") from None
        usage = response.usage
        tokens = (usage.prompt_tokens, usage.completion_tokens) if usage is not None else (0, 0)
        model = getattr(response, "model", None) or None
        answered = _Answered(model, getattr(response, "system_fingerprint", None), structured)
        if not response.choices:
            return "", tokens, answered
        return response.choices[0].message.content or "", tokens, answered

    async def _create(
        self, client: openai.AsyncOpenAI, messages: list[dict[str, str]], *, structured: bool
    ) -> ChatCompletion:
        import openai

        cfg = self.config
        return await client.chat.completions.create(
            model=cfg.model,
            messages=cast("list[ChatCompletionMessageParam]", messages),
            temperature=cfg.temperature,
            max_tokens=cfg.max_tokens,
            seed=cfg.seed if cfg.seed is not None else openai.omit,
            response_format=cfg.prompt.response_format if structured else openai.omit,
        )

    def _redact(self, text: str) -> str:
        return redact(text, configured_secrets(self.config.api_key_env))
