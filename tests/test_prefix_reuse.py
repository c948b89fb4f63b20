"""One prefill per clip on the transformers backend: the questions on a clip continue from one KV cache of
the shared prefix (system text and the clip's visual tokens), with the tokens of computing each item whole."""

from __future__ import annotations

from pathlib import Path

import pytest

from obv_eval import media, profiling
from obv_eval.backends.base import GenerationOutput, GenerationRequest, GenerationSettings, load_visuals
from obv_eval.backends.hf import HFBackend, _Item
from obv_eval.backends.streaming import StreamSettings, prompt_length, visual_tokens
from obv_eval.conversation import build_messages, render_prompt
from obv_eval.data.synth import write_image, write_video
from obv_eval.sources import MediaRef

QUESTIONS = [
    "What is shown?",
    "Which instrument is used in this part of the procedure?",
    "Is there bleeding?",
    "Describe the anatomy visible, in one sentence.",
    "Yes or no: is a suture being placed?",
]


@pytest.fixture(scope="module")
def reuse(tiny_model_path: Path) -> HFBackend:
    # batch_size 2 puts 5 questions in 3 batches: two continue from copies of the prefix, one consumes it.
    return HFBackend(tiny_model_path, batch_size=2, generation=GenerationSettings(max_new_tokens=12))


@pytest.fixture(scope="module")
def whole(tiny_model_path: Path) -> HFBackend:
    return HFBackend(
        tiny_model_path, batch_size=1, generation=GenerationSettings(max_new_tokens=12), prefix_reuse=False
    )


def _clip_requests(root: Path, questions: list[str]) -> list[GenerationRequest]:
    write_video(root / "clip.mp4", num_frames=8, fps=2, width=224, height=168, seed=3)
    ref = MediaRef("video", "clip.mp4", str(root))
    return [GenerationRequest(("video", i), q, (ref,)) for i, q in enumerate(questions)]


def _comparable(output: GenerationOutput) -> tuple[object, ...]:
    return output.key, output.text, output.output_tokens, output.prompt_tokens, output.frames, output.error


def test_questions_on_a_clip_share_one_prefill_and_get_the_tokens_of_each_item_computed_whole(
    reuse: HFBackend, whole: HFBackend, tmp_path: Path
) -> None:
    requests = _clip_requests(tmp_path, QUESTIONS)
    media.clear_cache()
    shared_run = reuse.generate(requests, progress=False)
    alone = [whole.generate([request], progress=False)[0] for request in requests]
    assert [_comparable(o) for o in shared_run] == [_comparable(o) for o in alone]
    assert all(o.error is None and o.output_tokens for o in shared_run)

    # The first question pays the prefix, the others only their own tokens: the clip's prefill is the
    # prefix once plus each question's tokens, against every prompt whole without reuse.
    visual = shared_run[0].visual_tokens
    assert visual and visual > 100
    prompts = [o.prompt_tokens for o in shared_run]
    prefills = [o.prefill_tokens for o in shared_run]
    assert all(isinstance(n, int) for n in prompts + prefills)
    assert [o.prefill_tokens for o in alone] == [o.prompt_tokens for o in alone]  # no reuse: all whole
    first = prefills.index(max(prefills))  # type: ignore[type-var]
    assert prefills[first] == prompts[first]
    shared = prompts[first] - min(p for i, p in enumerate(prefills) if i != first)  # type: ignore[operator]
    own = [n - shared for n in prompts]  # type: ignore[operator]
    assert shared > visual  # the system text and every visual token are in the shared prefix
    assert sum(prefills) == shared + sum(own)  # type: ignore[arg-type]
    q = len(requests)
    assert sum(prefills) / sum(prompts) < 1 / q + max(own) / min(prompts)  # type: ignore[arg-type,type-var]


def _items(backend: HFBackend, requests: list[GenerationRequest]) -> list[_Item]:
    items = []
    for index, request in enumerate(requests):
        visuals = load_visuals(request.visuals, backend.media)
        prompt = render_prompt(backend.processor, build_messages(request.text, visuals.kinds))
        tokens = visual_tokens(visuals)
        length = prompt_length(backend.processor.tokenizer, prompt, visuals, tokens)
        items.append(_Item(index, request, visuals, prompt, 0, tokens, length))
    return items


@pytest.mark.parametrize("kind", ["image", "text"])
def test_prefix_reuse_is_exact_for_image_and_text_items_too(
    reuse: HFBackend, whole: HFBackend, tmp_path: Path, kind: str
) -> None:
    """The backend shares prefixes within a clip's questions; the same path on questions about one image,
    or text items sharing only the system prompt, gives the tokens of each computed whole."""
    visuals: tuple[MediaRef, ...] = ()
    if kind == "image":
        write_image(tmp_path / "scan.png", 180, 150, seed=5)
        visuals = (MediaRef("image", "scan.png", str(tmp_path)),)
    requests = [GenerationRequest((kind, i), q, visuals) for i, q in enumerate(QUESTIONS)]
    items = _items(reuse, requests)
    plan = reuse._prefix_plan(items)
    assert plan is not None and plan.shared > 0
    config = reuse._generation_config()
    produced = [o for _, batch in reuse._generate_with_prefix(plan, config) for o in batch]
    alone = [whole._generate_batch([item], whole._generation_config())[0] for item in _items(whole, requests)]
    assert [_comparable(o) for o in produced] == [_comparable(o) for o in alone]
    assert (
        sum(o.prefill_tokens or 0 for o in produced)
        == sum(o.prompt_tokens or 0 for o in alone) - (len(items) - 1) * plan.shared
    )


def test_a_clip_with_one_question_and_items_after_a_shared_prefix_run_whole(
    reuse: HFBackend, whole: HFBackend, tmp_path: Path
) -> None:
    """The model's rotary state left by a clip's prefix does not leak into the items computed after it."""
    requests = _clip_requests(tmp_path, QUESTIONS[:3])
    write_video(tmp_path / "other.mp4", num_frames=6, fps=2, width=196, height=140, seed=9)
    requests.append(
        GenerationRequest(("other", 0), "What is shown?", (MediaRef("video", "other.mp4", str(tmp_path)),))
    )
    requests.append(GenerationRequest(("text", 0), "Name a bone of the hand."))
    shared_run = reuse.generate(requests, progress=False)
    alone = [whole.generate([request], progress=False)[0] for request in requests]
    assert [_comparable(o) for o in shared_run] == [_comparable(o) for o in alone]
    assert [o.prefill_tokens == o.prompt_tokens for o in shared_run[3:]] == [True, True]


def test_the_profile_splits_model_time_into_vision_prefill_and_decode_steps(
    reuse: HFBackend, tmp_path: Path
) -> None:
    requests = [*_clip_requests(tmp_path, QUESTIONS[:3]), GenerationRequest(("text", 0), "Name a bone.")]
    media.clear_cache()
    profiling.enable()
    profiling.reset()
    try:
        reuse.generate(requests, progress=False)
        profile = profiling.snapshot()
    finally:
        profiling.enable(False)
        profiling.reset()
    assert {"processor", "vision", "prefill", "decode_steps"} <= set(profile)
    assert profile["vision"]["calls"] == 1  # one clip, encoded once
    # the clip's prefix, its two batches of questions, and the text item's generate
    assert profile["prefill"]["calls"] == 4
    assert all(entry["seconds"] >= 0 for entry in profile.values())


def test_a_clips_question_batches_keep_their_kv_cache_and_computed_tokens_within_budget(
    tiny_model_path: Path, whole: HFBackend, tmp_path: Path
) -> None:
    """Rows share a batch while rows x whole prompt (the cache) and rows x own tokens (computed) fit."""
    requests = _clip_requests(tmp_path, QUESTIONS)
    alone = [whole.generate([request], progress=False)[0] for request in requests]
    longest = max(o.prompt_tokens or 0 for o in alone) + 12
    budgets = StreamSettings(max_batch_cache_tokens=2 * longest)  # two rows' caches fit, three do not
    backend = HFBackend(
        tiny_model_path, batch_size=8, generation=GenerationSettings(max_new_tokens=12), stream=budgets
    )
    batches: list[list[GenerationOutput]] = []
    produced = backend.generate(requests, progress=False, on_batch=batches.append)
    assert [len(batch) for batch in batches] == [2, 2, 1]
    assert [_comparable(o) for o in produced] == [_comparable(o) for o in alone]
    roomy = HFBackend(tiny_model_path, batch_size=8, generation=GenerationSettings(max_new_tokens=12))
    batches.clear()
    roomy.generate(requests, progress=False, on_batch=batches.append)
    assert [len(batch) for batch in batches] == [len(requests)]  # the default budgets take the clip at once
