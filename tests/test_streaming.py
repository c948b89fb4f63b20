"""Streaming generation: same outputs as loading the whole task first, records in input order,
batches within the token budget, clips decoded once and frames held within the prefetch budget."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from obv_eval import media
from obv_eval.backends.base import (
    GenerationOutput,
    GenerationRequest,
    GenerationSettings,
    MediaSettings,
    load_visuals,
)
from obv_eval.backends.hf import HFBackend, _Item
from obv_eval.backends.streaming import (
    Prefetcher,
    StreamSettings,
    prompt_length,
    stream_order,
    visual_kinds,
    visual_tokens,
)
from obv_eval.conversation import build_messages, render_prompt
from obv_eval.data.synth import write_image, write_video
from obv_eval.media import MediaError
from obv_eval.sources import MediaRef

QUESTIONS = ["What is shown?", "Which instrument is used here?", "Is there bleeding?"]


def _requests(root: Path) -> list[GenerationRequest]:
    """Questions on three clips interleaved in the input order, plus an image, a text item and a
    missing clip."""
    for clip in range(3):
        write_video(root / f"clip{clip}.mp4", num_frames=6 + 2 * clip, fps=4, width=84, height=56, seed=clip)
    write_image(root / "image.png", 60, 44, seed=7)
    requests = []
    for question in QUESTIONS:
        for clip in range(3):
            ref = MediaRef("video", f"clip{clip}.mp4", str(root))
            requests.append(GenerationRequest(("video", len(requests)), f"{question} ({clip})", (ref,)))
    requests.insert(
        4, GenerationRequest(("image", 0), "What organ?", (MediaRef("image", "image.png", str(root)),))
    )
    requests.insert(2, GenerationRequest(("text", 0), "Name a bone of the hand."))
    requests.insert(
        7, GenerationRequest(("video", 99), "Missing?", (MediaRef("video", "gone.mp4", str(root)),))
    )
    return requests


def _reference(backend: HFBackend, requests: list[GenerationRequest]) -> list[GenerationOutput]:
    """The backend before streaming: load every item's visuals first, sort, chunk by batch size."""
    outputs: dict[int, GenerationOutput] = {}
    ready = []
    for index, request in enumerate(requests):
        try:
            visuals = load_visuals(request.visuals, backend.media)
        except MediaError as error:
            outputs[index] = GenerationOutput(request.key, "", error=f"MediaError: {error}")
            continue
        prompt = render_prompt(backend.processor, build_messages(request.text, visuals.kinds))
        ready.append((index, request, visuals, prompt))
    ready.sort(key=lambda item: (item[2].kinds, len(item[3]), item[0]))
    config = backend._generation_config()
    for start in range(0, len(ready), backend.batch_size):
        chunk = ready[start : start + backend.batch_size]
        batch = [_Item(i, r, v, p, 0, visual_tokens(v), 0) for i, r, v, p in chunk]
        for (index, *_), output in zip(chunk, backend._generate_batch(batch, config), strict=True):
            outputs[index] = output
    return [outputs[i] for i in range(len(requests))]


def _comparable(output: GenerationOutput) -> tuple[object, ...]:
    return (
        output.key,
        output.text,
        output.prompt,
        output.prompt_tokens,
        output.output_tokens,
        output.frames,
        output.error,
    )


@pytest.fixture(scope="module")
def backend(tiny_model_path: Path) -> HFBackend:
    return HFBackend(tiny_model_path, batch_size=2, generation=GenerationSettings(max_new_tokens=6))


def test_streaming_gives_the_outputs_of_loading_everything_first_in_input_order(
    backend: HFBackend, tmp_path: Path
) -> None:
    requests = _requests(tmp_path)
    media.clear_cache()
    batches: list[list[GenerationOutput]] = []
    streamed = backend.generate(requests, progress=False, on_batch=batches.append)
    assert [o.key for o in streamed] == [r.key for r in requests]  # input order, not generation order
    assert media.cache_stats()["decodes"] == 3  # each clip decoded once (the missing one not at all)
    reference = _reference(backend, requests)
    assert [_comparable(o) for o in streamed] == [_comparable(o) for o in reference]
    missing = next(o for o in streamed if o.key == ("video", 99))
    assert missing.error is not None and "not found" in missing.error
    assert sorted(o.key for batch in batches for o in batch) == sorted(r.key for r in requests)
    # Questions on one clip run together: no batch mixes clips where the clip has questions left.
    video_batches = [
        [o.key[1] for o in batch if o.key[0] == "video" and o.error is None] for batch in batches
    ]
    clip_of = {r.key[1]: r.visuals[0].path for r in requests if r.key[0] == "video"}  # type: ignore[union-attr]
    order = [clip_of[k] for batch in video_batches for k in batch]
    assert order == sorted(order, key=order.index)  # each clip's items are consecutive


def test_batches_stay_within_the_token_budget_and_a_long_item_runs_alone(
    backend: HFBackend, tmp_path: Path
) -> None:
    # Two text items: single items of one kind share batches (a batch never mixes kinds: work units)
    requests = [*_requests(tmp_path), GenerationRequest(("text", 1), "Name a bone of the foot.")]
    lengths = {}
    for request in requests:
        try:
            visuals = load_visuals(request.visuals, backend.media)
        except MediaError:
            continue
        prompt = render_prompt(backend.processor, build_messages(request.text, visuals.kinds))
        lengths[request.key] = prompt_length(
            backend.processor.tokenizer, prompt, visuals, visual_tokens(visuals)
        )
    new = backend.generation.max_new_tokens
    budget = max(lengths.values()) + new + 10  # one long item fits, two do not
    original = backend.stream
    backend.stream = StreamSettings(max_batch_tokens=budget)
    backend.prefix_reuse = False  # whole prompts (tests/test_prefix_reuse.py: the budgets of shared ones)
    try:
        batches: list[list[GenerationOutput]] = []
        outputs = backend.generate(requests, progress=False, on_batch=batches.append)
    finally:
        backend.stream = original
        backend.prefix_reuse = True
    # The token count the planner uses is the processor's own.
    assert all(o.prompt_tokens == lengths[o.key] for o in outputs if o.error is None)
    for batch in batches:
        rows = [lengths[o.key] + new for o in batch if o.key in lengths]
        assert len(rows) <= 1 or len(rows) * max(rows) <= budget
    longest = max(lengths, key=lambda key: lengths[key])
    assert [len(b) for b in batches if any(o.key == longest for o in b)] == [1]
    assert any(len(batch) == 2 for batch in batches)  # short items still share batches


def test_prefetch_holds_at_most_its_budget_plus_one_clip(tmp_path: Path) -> None:
    requests = [r for r in _requests(tmp_path) if r.key[0] == "video" and r.key[1] != 99]
    prompts = [r.text for r in requests]
    units = stream_order(requests, prompts)
    assert len(units) == 3 and all(len(unit) == 3 for unit in units)
    sizes = []
    prefetch = Prefetcher(units, requests, MediaSettings(), budget=1)
    for loaded in prefetch:
        assert loaded.visuals is not None
        sizes.append(loaded.nbytes)
        assert prefetch.held <= loaded.nbytes + max(sizes)  # never more than one clip ahead
        prefetch.release(loaded.nbytes)
    assert prefetch.peak <= 2 * max(sizes)
    assert visual_kinds(requests[0].visuals) == ("video",)


def test_prefetch_holds_at_most_max_units_whatever_the_byte_budget(tmp_path: Path) -> None:
    requests = [r for r in _requests(tmp_path) if r.key[0] == "video" and r.key[1] != 99]
    units = stream_order(requests, [r.text for r in requests])
    loaded_count = 0

    def counting_load(visuals: tuple[object, ...], settings: MediaSettings) -> object:
        nonlocal loaded_count
        loaded_count += 1
        return load_visuals(visuals, settings)  # type: ignore[arg-type]

    prefetch = Prefetcher(units, requests, MediaSettings(), budget=1 << 40, load=counting_load, max_units=2)  # type: ignore[arg-type]
    seen = 0
    for loaded in prefetch:
        seen += 1
        time.sleep(0.2)  # give the loader every chance to run ahead
        assert loaded_count - (seen - 1) <= 2  # units loaded and not yet released
        assert prefetch.held_units <= 2
        prefetch.release(loaded.nbytes)
    assert seen == len(units) == 3
