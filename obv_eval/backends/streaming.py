"""Streaming generation: items grouped by clip, media loaded just ahead of use, batches by token budget.

Memory is bounded by the batch and the prefetch budget, never by the task:

* items are ordered so the questions on one clip are consecutive (a clip is decoded, processed and
  encoded once while its questions run); an item alone in its group keeps the order it always had
  (modality, prompt length, input index), so small tasks meet the same batch-mates as before;
* a loader thread decodes the next clips while the current batch generates, at most
  ``prefetch_bytes`` of frames ahead (always at least one clip);
* a clip's frames are dropped as soon as its last question is answered;
* a batch takes up to ``batch_size`` items while ``rows x longest (prompt + new tokens)`` stays within
  ``max_batch_tokens`` and its pixels within ``max_batch_pixels``; an item over either runs alone.
"""

from __future__ import annotations

import json
import math
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from obv_eval import controls
from obv_eval.backends.base import GenerationRequest, LoadedVisuals, MediaSettings, Visual, load_visuals
from obv_eval.conversation import VisualKind
from obv_eval.media import MediaError
from obv_eval.sources import MediaRef

MiB = 1 << 20
# Qwen2-VL's geometry: 14-pixel patches, 2x2 merged into one token, frames in temporal pairs.
PATCH_SIZE = 14
MERGE_SIZE = 2
TEMPORAL_PATCH_SIZE = 2


@dataclass(frozen=True)
class StreamSettings:
    """Budgets of streaming generation (recorded in provenance)."""

    max_batch_tokens: int = 32768  # rows x longest (prompt + max_new_tokens) per batch
    # With prefix reuse a batch computes only its questions' own tokens (within max_batch_tokens) while
    # its KV cache holds every row's whole prompt: rows x longest (prompt + new tokens) within this
    # (131,072 tokens: 7.5 GB of bf16 cache for Qwen2-VL-7B, 3.7 GB for the 2B).
    max_batch_cache_tokens: int = 4 * 32768
    max_batch_pixels: int = 32768 * 2 * 28 * 28  # the pixels of 32,768 video tokens
    prefetch_bytes: int = 256 * MiB  # decoded frames held ahead of the batch being generated
    processor_cache_bytes: int = 512 * MiB  # the processor's video outputs kept for the next batch
    feature_cache_bytes: int = 256 * MiB  # vision-tower outputs kept for the next batch

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if int(value) < 1:
                raise ValueError(f"{name} must be positive, got {value}")

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


def visual_kinds(visuals: Sequence[Visual], media: MediaSettings | None = None) -> tuple[VisualKind, ...]:
    """The kinds load_visuals will report (videos first) under `media`'s control, known without decoding."""
    if media is not None and not controls.keeps_visuals(media.control):
        return ()
    kinds: list[VisualKind] = []
    for visual in visuals:
        if isinstance(visual, MediaRef):
            kinds.append("video" if visual.kind == "video" else "image")
        else:
            kinds.append("image")
    return tuple(sorted(kinds, key=lambda kind: 0 if kind == "video" else 1))


def clip_group(request: GenerationRequest) -> tuple[Visual, ...] | None:
    """Items with the same video files share one decoded, processed and encoded clip."""
    visuals = request.visuals
    if (
        visuals
        and all(isinstance(v, MediaRef) for v in visuals)
        and any(isinstance(v, MediaRef) and v.kind == "video" for v in visuals)
    ):
        return visuals
    return None


def stream_order(requests: Sequence[GenerationRequest], prompts: Sequence[str]) -> list[list[int]]:
    """Units of request indices in generation order; the items of one unit share their visuals.

    Sort key: (kinds, group's shortest prompt, group's first index, prompt length, index). For an item
    alone in its group this is (kinds, length, index), the order the backend always used.
    """
    groups: dict[Any, list[int]] = {}
    for index, request in enumerate(requests):
        key = clip_group(request)
        groups.setdefault(("clip", key) if key is not None else ("item", index), []).append(index)
    rank: dict[int, tuple[int, int]] = {}
    for members in groups.values():
        group_rank = (min(len(prompts[i]) for i in members), min(members))
        for i in members:
            rank[i] = group_rank
    order = sorted(
        range(len(requests)),
        key=lambda i: (visual_kinds(requests[i].visuals), rank[i], len(prompts[i]), i),
    )
    units: list[list[int]] = []
    for index in order:
        if units and rank[units[-1][0]] == rank[index]:
            units[-1].append(index)
        else:
            units.append([index])
    return units


def work_units(
    requests: Sequence[GenerationRequest], units: Sequence[list[int]], batch_size: int
) -> list[list[list[int]]]:
    """Stream units gathered into work units: what one engine generates with no batch crossing them.

    A unit of several items (a clip's questions) is a work unit of its own; single items join the open
    work unit of their visual kinds until it holds `batch_size` items. Work units come in the order
    of their first unit. Removing whole work units leaves the others as they were (every full one
    stays full, each kind's last one stays last), so a resumed run, and engines that take work units
    in any order, meet the same batch-mates as one uninterrupted engine.
    """
    work: list[list[list[int]]] = []
    sizes: list[int] = []
    open_for: dict[tuple[VisualKind, ...], int] = {}
    for unit in units:
        if len(unit) > 1:
            work.append([list(unit)])
            sizes.append(len(unit))
            continue
        kinds = visual_kinds(requests[unit[0]].visuals)
        at = open_for.get(kinds)
        if at is None or sizes[at] >= batch_size:
            at = open_for[kinds] = len(work)
            work.append([])
            sizes.append(0)
        work[at].append(list(unit))
        sizes[at] += 1
    return work


def visual_tokens(
    visuals: LoadedVisuals,
    patch_size: int = PATCH_SIZE,
    merge_size: int = MERGE_SIZE,
    temporal_patch_size: int = TEMPORAL_PATCH_SIZE,
) -> int:
    """Visual tokens the processor will put in the prompt for these visuals (Qwen2-VL's grid rule)."""
    total = 0
    for video in visuals.videos:
        frames, height, width = video.frames.shape[:3]
        grid_t = math.ceil(frames / temporal_patch_size)
        total += grid_t * (height // patch_size) * (width // patch_size) // merge_size**2
    for image in visuals.images:
        total += (image.height // patch_size) * (image.width // patch_size) // merge_size**2
    return total


def visual_pixels(visuals: LoadedVisuals) -> int:
    pixels = sum(int(v.frames.shape[0] * v.frames.shape[1] * v.frames.shape[2]) for v in visuals.videos)
    return pixels + sum(image.width * image.height for image in visuals.images)


def visual_bytes(visuals: LoadedVisuals) -> int:
    return sum(v.nbytes for v in visuals.videos) + sum(i.width * i.height * 3 for i in visuals.images)


def prompt_length(tokenizer: Any, prompt: str, visuals: LoadedVisuals, tokens: int) -> int:
    """Prompt tokens after the processor expands each visual placeholder into its visual tokens."""
    text = len(tokenizer(prompt, add_special_tokens=False)["input_ids"])
    return text - len(visuals.videos) - len(visuals.images) + tokens


def native_context(model_path: str | Path) -> int | None:
    """The checkpoint's max_position_embeddings (Qwen2-VL: 32,768), read from its config.json."""
    path = Path(model_path) / "config.json"
    if not path.is_file():
        return None
    config = json.loads(path.read_text(encoding="utf-8"))
    value = (config.get("text_config") or {}).get("max_position_embeddings")
    value = value or config.get("max_position_embeddings")
    return int(value) if value else None


@dataclass
class Loaded:
    """One unit from the loader: its visuals, or the media failure shared by its items."""

    unit: list[int]
    visuals: LoadedVisuals | None
    error: str | None
    nbytes: int


class Prefetcher:
    """Loads units in order on a thread, holding at most `budget` bytes and `max_units` units not yet
    released (always at least one). Prefetch only hides decoding behind generation: a couple of batches
    ahead does that, and holding more only makes a large task's peak memory larger than a small one's."""

    _DONE = object()

    def __init__(
        self,
        units: Sequence[list[int]],
        requests: Sequence[GenerationRequest],
        media: MediaSettings,
        budget: int,
        load: Callable[[tuple[Visual, ...], MediaSettings], LoadedVisuals] = load_visuals,
        max_units: int | None = None,
    ) -> None:
        self.units, self.requests, self.media, self.budget, self.load = units, requests, media, budget, load
        self.max_units = max_units
        self.held = 0
        self.held_units = 0
        self.peak = 0
        self._cond = threading.Condition()
        self._queue: queue.Queue[Any] = queue.Queue()
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="obv-prefetch", daemon=True)

    def _run(self) -> None:
        try:
            for unit in self.units:
                with self._cond:
                    self._cond.wait_for(self._room)
                    if self._stop:
                        return
                try:
                    visuals: LoadedVisuals | None = self.load(self.requests[unit[0]].visuals, self.media)
                    error = None
                except MediaError as exc:
                    visuals, error = None, f"MediaError: {exc}"
                size = visual_bytes(visuals) if visuals is not None else 0
                with self._cond:
                    self.held += size
                    self.held_units += 1
                    self.peak = max(self.peak, self.held)
                self._queue.put(Loaded(unit, visuals, error, size))
        except BaseException as exc:  # raised again in the consumer
            self._queue.put(exc)
        finally:
            self._queue.put(self._DONE)

    def _room(self) -> bool:
        if self._stop or self.held_units == 0:
            return True
        return self.held < self.budget and (self.max_units is None or self.held_units < self.max_units)

    def release(self, nbytes: int) -> None:
        """A unit is done (called once per unit, with its bytes)."""
        with self._cond:
            self.held -= nbytes
            self.held_units -= 1
            self._cond.notify_all()

    def __iter__(self) -> Iterator[Loaded]:
        self._thread.start()
        try:
            while True:
                item = self._queue.get()
                if item is self._DONE:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            with self._cond:
                self._stop = True
                self._cond.notify_all()
            self._thread.join()


def fits(
    batch_lengths: Sequence[int],
    batch_pixels: int,
    length: int,
    pixels: int,
    settings: StreamSettings,
    batch_size: int,
) -> bool:
    """Whether one more item (`length` tokens incl. new ones, `pixels`) joins the batch in the budgets."""
    if not batch_lengths:
        return True
    rows = len(batch_lengths) + 1
    if rows > batch_size:
        return False
    if rows * max(max(batch_lengths), length) > settings.max_batch_tokens:
        return False
    return batch_pixels + pixels <= settings.max_batch_pixels


def derive_max_model_len(
    lengths: Sequence[int], max_new_tokens: int, native: int | None, requested: int | None = None
) -> tuple[int, bool]:
    """vLLM's max_model_len for these items and whether it needs VLLM_ALLOW_LONG_MAX_MODEL_LEN=1.

    `requested` (--max-model-len) wins; otherwise the longest item's prompt (visual + text tokens)
    plus max_new_tokens, so vLLM runs every item the transformers backend runs. Above the model's
    native context (max_position_embeddings) vLLM refuses the length unless the documented switch
    VLLM_ALLOW_LONG_MAX_MODEL_LEN=1 is set.
    """
    length = int(requested) if requested else max(lengths, default=0) + int(max_new_tokens)
    length = max(length, 1)
    return length, native is not None and length > native
