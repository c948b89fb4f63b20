"""Controls (issue 28): what the tiny model is sent under each control, on the transformers backend.

What the processor receives is recorded by wrapping the real video processor, so the checks are on the
frames sent, not on what the control module says it does.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from obv_eval import controls
from obv_eval.backends.base import GenerationRequest, GenerationSettings, MediaSettings, load_visuals
from obv_eval.conversation import build_messages, render_prompt
from obv_eval.media import VideoSettings, load_video
from obv_eval.sources import SAMPLES_DIR, MediaRef

VIDEO = MediaRef("video", "Qm7_vB2xKpL_112_115.mp4", str(SAMPLES_DIR / "media" / "surgeryvqa"))
IMAGE = MediaRef("image", "synpic59536.jpg", str(SAMPLES_DIR / "media" / "vqarad"))
VIDEO_ITEM = GenerationRequest(("obv_surgeryvqa", 0), "What structure is retracted?", (VIDEO,))
IMAGE_ITEM = GenerationRequest(("obv_vqarad", 0), "Is there a pneumothorax?", (IMAGE,))


def test_control_names_parse_to_one_spelling_and_bad_ones_are_one_line() -> None:
    assert controls.parse_control(" Blind ") == "blind"
    assert controls.parse_control("frames=08") == "frames=8"
    for bad, words in (("blurry", "unknown control"), ("frames=3", "even"), ("frames=0", "even")):
        with pytest.raises(controls.ControlError, match=words) as error:
            controls.parse_control(bad)
        assert "\n" not in str(error.value)
    assert controls.refusal("blind", "text") == "text tasks have no visual to remove"
    assert controls.refusal("shuffled", "image") is not None
    assert controls.refusal("blank", "image") is None and controls.refusal("frames=4", "video") is None
    assert controls.run_suffix("frames=8") == "control-frames-8"


def test_run_refuses_a_control_that_does_not_apply_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    from obv_eval.cli import main

    assert main(["--control", "blind", "--tasks", "medqa", "vqarad"]) == 2
    error = capsys.readouterr().err.strip()
    assert "medqa (text tasks have no visual to remove)" in error and "\n" not in error
    assert main(["--control", "shuffled", "--tasks", "vqarad"]) == 2
    assert "image tasks take only blind and blank" in capsys.readouterr().err
    assert main(["--control", "frames=5", "--tasks", "surgeryvqa"]) == 2
    assert "even" in capsys.readouterr().err


def test_shuffled_order_is_seeded_and_never_the_original() -> None:
    orders = {tuple(controls.shuffle_order(6, f"clip{i}")) for i in range(20)}
    assert all(order != tuple(range(6)) and sorted(order) == list(range(6)) for order in orders)
    assert len(orders) > 1  # depends on the clip
    assert controls.shuffle_order(6, "clip0") == controls.shuffle_order(6, "clip0")
    assert controls.shuffle_order(2, "x") == [1, 0]


def test_the_cached_full_frames_are_not_changed_by_a_control() -> None:
    full = load_visuals((VIDEO,), MediaSettings()).videos[0]
    before = full.frames.copy()
    for control in ("blank", "single-frame", "shuffled"):
        load_visuals((VIDEO,), MediaSettings(control=control))
    assert np.array_equal(load_video(VIDEO.path, VideoSettings(), root=VIDEO.root).frames, before)


def _digests(frames: np.ndarray) -> list[str]:
    return [hashlib.sha1(frame.tobytes()).hexdigest() for frame in frames]


@pytest.fixture(scope="module")
def backend(tiny_model_path: Path) -> Any:
    from obv_eval.backends.hf import HFBackend

    backend = HFBackend(
        tiny_model_path, batch_size=1, generation=GenerationSettings(max_new_tokens=2), prefix_reuse=False
    )
    # The processor's clip cache is keyed by the frames' bytes: each control's frames reach the processor.
    cached = backend.processor.video_processor
    cached.inner = _Recording(cached.inner)
    return backend


class _Recording:
    """The real video processor, noting the frames it is given."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def __call__(self, videos: list[np.ndarray], **kwargs: Any) -> Any:
        SENT.extend(np.asarray(video) for video in videos)
        return self.inner(videos, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


SENT: list[np.ndarray] = []  # the frames of each video the processor was given


def _run(backend: Any, control: str | None, item: GenerationRequest = VIDEO_ITEM) -> tuple[Any, list[Any]]:
    backend.media = MediaSettings(control=control)
    SENT.clear()
    (output,) = backend.generate([item], progress=False)
    assert output.error is None
    return output, list(SENT)


def test_every_control_sends_what_it_says_on_the_tiny_model(backend: Any) -> None:
    full, (full_frames,) = _run(backend, None)
    assert full.visual_tokens and full.visual_tokens > 0 and len(full_frames) >= 4

    blind, sent = _run(backend, "blind")
    text_only = render_prompt(backend.processor, build_messages(VIDEO_ITEM.text, ()))
    assert sent == [] and blind.frames == [] and blind.visual_tokens == 0
    assert blind.prompt == text_only
    assert blind.prompt_tokens == len(backend.processor.tokenizer(text_only)["input_ids"])

    blank, (blank_frames,) = _run(backend, "blank")
    assert blank.visual_tokens == full.visual_tokens and blank.prompt_tokens == full.prompt_tokens
    assert blank_frames.shape == full_frames.shape and not blank_frames.any()

    shuffled, (shuffled_frames,) = _run(backend, "shuffled")
    assert sorted(_digests(shuffled_frames)) == sorted(_digests(full_frames))
    assert _digests(shuffled_frames) != _digests(full_frames)
    assert shuffled.visual_tokens == full.visual_tokens

    single, (single_frames,) = _run(backend, "single-frame")
    assert len(single_frames) == 2 and len(set(_digests(single_frames))) == 1  # one temporal patch
    assert _digests(single_frames)[0] == _digests(full_frames)[len(full_frames) // 2]
    assert single.frames == [2] and single.visual_tokens == full.visual_tokens // (len(full_frames) // 2)

    four, (four_frames,) = _run(backend, "frames=4")
    assert four.frames == [4] and len(four_frames) == 4
    clip = load_video(VIDEO.path, VideoSettings(nframes=4), root=VIDEO.root)  # the sampler's 4 frames
    assert _digests(four_frames) == _digests(clip.frames)
    spaced = np.rint(np.linspace(0, clip.total_frames - 1, 4)).astype(int).tolist()
    assert list(clip.indices) == spaced  # evenly spaced over the clip


def test_image_items_take_blind_and_blank(backend: Any) -> None:
    full, _ = _run(backend, None, IMAGE_ITEM)
    blind, _ = _run(backend, "blind", IMAGE_ITEM)
    blank, _ = _run(backend, "blank", IMAGE_ITEM)
    assert blind.visual_tokens == 0 and full.visual_tokens and full.visual_tokens > 0
    assert blind.prompt == render_prompt(backend.processor, build_messages(IMAGE_ITEM.text, ()))
    assert (blank.visual_tokens, blank.prompt_tokens) == (full.visual_tokens, full.prompt_tokens)
    (image,) = load_visuals((IMAGE,), MediaSettings(control="blank")).images
    assert image.size == load_visuals((IMAGE,), MediaSettings()).images[0].size
    assert image.getextrema() == ((0, 0), (0, 0), (0, 0))
