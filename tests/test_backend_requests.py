"""What each backend sends for a video, an image and a text item, pinned by golden files.

The golden files (tests/golden/requests/*.json) hold the exact prompt, frame counts, frame sizes and
sampling settings of the vLLM offline request and of the chat request sent to a vLLM server and to
the OpenAI API (Qwen2-VL's tiny model), and per model family (family.<name>.json, each family's tiny
twin and native frame rule) its video and image requests, with the clip metadata and processor
arguments vLLM gets. Regenerate them after an intended change with

    OBV_EVAL_UPDATE_GOLDEN=1 pytest tests/test_backend_requests.py

Also here: the transformers backend renders the same prompt as the vLLM request, for every family;
the real processors compute the transformers backend's timing from the request's metadata; the vLLM
backend's generation loop, families and LoRA against a stand-in `vllm` package that refuses what vLLM
0.33 refuses (the real one needs a GPU; scripts/vllm_parity.py checks that on one); a vLLM server's
requests against a fake HTTP server.
"""

from __future__ import annotations

import base64
import dataclasses
import difflib
import hashlib
import importlib.util
import io
import json
import os
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from obv_eval.backends.base import GenerationOutput, GenerationRequest, GenerationSettings, MediaSettings
from obv_eval.backends.openai_compat import OpenAICompatBackend, build_chat_request
from obv_eval.backends.vllm import (
    VLLM_EXTRA_HINT,
    build_vllm_request,
    sampling_params_dict,
)
from obv_eval.conversation import render_prompt
from obv_eval.models import Family, families, tiny_twin_dir
from obv_eval.sources import SAMPLES_DIR, MediaRef

GOLDEN_DIR = Path(__file__).parent / "golden" / "requests"
UPDATE = os.environ.get("OBV_EVAL_UPDATE_GOLDEN") == "1"
SETTINGS = GenerationSettings(max_new_tokens=32)
MEDIA = MediaSettings()

ITEMS: dict[str, GenerationRequest] = {
    "video": GenerationRequest(
        ("obv_surgeryvqa", 0),
        "What structure is retracted to expose the gallbladder?",
        (MediaRef("video", "Qm7_vB2xKpL_112_115.mp4", str(SAMPLES_DIR / "media" / "surgeryvqa")),),
    ),
    "image": GenerationRequest(
        ("obv_vqarad", 0),
        "is there evidence of a pneumothorax?\nAnswer the question using a single word or phrase.",
        (MediaRef("image", "synpic59536.jpg", str(SAMPLES_DIR / "media" / "vqarad")),),
    ),
    "text": GenerationRequest(
        ("obv_pubmedqa", 0),
        "Context: Statins lowered LDL in 80% of patients.\nQuestion: Do statins lower LDL?\n"
        "Answer the question with yes, no, or maybe.",
    ),
}


@pytest.fixture(scope="module")
def processor(tiny_model_path: Path) -> Any:
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(tiny_model_path)


# ---------------------------------------------------------------------------------------------------
# Golden files


def _summarize_url(url: str) -> str:
    """A data URL as '<head>: [N frames] WxH' (the base64 itself depends on the JPEG library build)."""
    head, _, payload = url.partition(",")
    video = head == "data:video/jpeg;base64"
    chunks = payload.split(",") if video else [payload]
    sizes = {Image.open(io.BytesIO(base64.b64decode(chunk))).size for chunk in chunks}
    assert len(sizes) == 1, "every frame of one video has one size"
    (width, height) = sizes.pop()
    return f"{head}: {len(chunks)} frames {width}x{height}" if video else f"{head}: {width}x{height}"


def _summarize_chat(body: dict[str, Any]) -> dict[str, Any]:
    messages = []
    for message in body["messages"]:
        content = []
        for part in message["content"]:
            if part["type"] in ("image_url", "video_url"):
                content.append({"type": part["type"], "url": _summarize_url(part[part["type"]]["url"])})
            else:
                content.append(part)
        messages.append({"role": message["role"], "content": content})
    return {**{k: v for k, v in body.items() if k != "messages"}, "messages": messages}


def _summarize_video(video: Any) -> dict[str, Any]:
    """A bare (T, H, W, 3) array, or vLLM's (frames, metadata) tuple with its metadata in full."""
    frames, metadata = video if isinstance(video, tuple) else (video, None)
    summary: dict[str, Any] = {"shape": list(frames.shape), "dtype": str(frames.dtype)}
    if metadata is not None:
        summary["metadata"] = metadata
    return summary


def _summarize_vllm(request: dict[str, Any], sampling: dict[str, Any]) -> dict[str, Any]:
    data = request.get("multi_modal_data", {})
    summary = {
        "prompt": request["prompt"],
        "videos": [_summarize_video(v) for v in data.get("video", [])],
        "images": [{"size": list(image.size), "mode": image.mode} for image in data.get("image", [])],
        "sampling_params": sampling,
    }
    if "mm_processor_kwargs" in request:  # absent for Qwen2-VL: its goldens stay as they were
        summary["mm_processor_kwargs"] = request["mm_processor_kwargs"]
    return summary


def _frame_digests(request: dict[str, Any]) -> list[list[str]]:
    """Each sent video's frames by a short digest of their pixels (order, repeats and blanks show)."""
    videos = request.get("multi_modal_data", {}).get("video", [])
    return [[hashlib.sha1(frame.tobytes()).hexdigest()[:12] for frame in video] for video in videos]


def _golden(name: str, processor: Any, media: MediaSettings = MEDIA) -> dict[str, Any]:
    request = ITEMS[name]
    eos = processor.tokenizer.convert_tokens_to_ids("<|im_end|>")
    golden = _golden_requests(request, processor, media, eos)
    if media.control is not None:  # control goldens also pin which frames go, in which order
        golden["control"] = media.control
        golden["vllm_offline_frames"] = _frame_digests(build_vllm_request(request, processor, media))
    return golden


def _golden_requests(
    request: GenerationRequest, processor: Any, media: MediaSettings, eos: int
) -> dict[str, Any]:
    return {
        "item": {
            "key": list(request.key),
            "text": request.text,
            "visuals": [str(v.path) for v in request.visuals],
        },
        "vllm_offline": _summarize_vllm(
            build_vllm_request(request, processor, media), sampling_params_dict(SETTINGS, [eos])
        ),
        "vllm_server": _summarize_chat(
            build_chat_request(request, media, "qwen2vl-7b", SETTINGS, "video", "vllm")
        ),
        "openai_api": _summarize_chat(
            build_chat_request(request, media, "gpt-4o", SETTINGS, "frames", "openai")
        ),
    }


# Every control on the video item; the image item takes blind and blank (obv_eval.controls).
CONTROL_CASES = [
    *(("video", control) for control in ("blind", "blank", "single-frame", "shuffled", "frames=4")),
    ("image", "blind"),
    ("image", "blank"),
]


@pytest.mark.parametrize(
    ("name", "control"),
    [*((name, None) for name in sorted(ITEMS)), *CONTROL_CASES],
    ids=lambda value: str(value),
)
def test_requests_match_golden_files(name: str, control: str | None, processor: Any) -> None:
    media = MediaSettings(control=control)
    actual = json.dumps(_golden(name, processor, media), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    stem = name if control is None else f"{name}.control-{control.replace('=', '-')}"
    _check_golden(GOLDEN_DIR / f"{stem}.json", actual)


def test_golden_files_pin_what_matters(processor: Any) -> None:
    # Guards the goldens themselves: a regenerated file that lost these would pin nothing.
    video = json.loads((GOLDEN_DIR / "video.json").read_text())
    frames = video["vllm_offline"]["videos"][0]["shape"][0]
    assert frames >= 4 and frames % 2 == 0
    assert "<|vision_start|><|video_pad|><|vision_end|>" in video["vllm_offline"]["prompt"]
    assert video["vllm_server"]["messages"][0]["content"][0]["url"].startswith(
        f"data:video/jpeg;base64: {frames} frame"
    )
    openai_parts = video["openai_api"]["messages"][0]["content"]
    assert (
        sum(p["type"] == "image_url" for p in openai_parts) == frames and openai_parts[-1]["type"] == "text"
    )
    assert "extra_body" not in video["openai_api"]  # the OpenAI API refuses vLLM's fields
    assert video["vllm_server"]["extra_body"]["repetition_penalty"] == 1.0
    sampling = video["vllm_offline"]["sampling_params"]
    assert (sampling["temperature"], sampling["top_p"], sampling["max_tokens"]) == (0.0, 1.0, 32)


# ---------------------------------------------------------------------------------------------------
# One request golden per model family: what vLLM offline and a vLLM server get for its video and image


FAMILIES = sorted(families())
FAMILY_ITEMS = ("video", "image")


@pytest.fixture(scope="module")
def family_processors() -> dict[str, Any]:
    """Each family's tiny twin processor (real chat template and processor settings), built once."""
    from transformers import AutoProcessor

    return {name: AutoProcessor.from_pretrained(tiny_twin_dir(families()[name])) for name in FAMILIES}


def family_media(family: Family) -> MediaSettings:
    """The family's native frame and image rule, as a native run samples them."""
    return MediaSettings(video=family.frame_rule.video(), image=family.frame_rule.image())


def served_video_mode(family: Family) -> Any:
    """The video mode the OpenAI-compatible backend picks for this family on a vLLM server."""
    return OpenAICompatBackend("m", base_url="http://127.0.0.1:9/v1", family=family).video_mode


def _family_golden(family: Family, processor: Any) -> dict[str, Any]:
    media = family_media(family)
    eos = processor.tokenizer.convert_tokens_to_ids(family.eos_token)
    golden: dict[str, Any] = {"family": family.describe(), "frames": media.to_dict()}
    for name in FAMILY_ITEMS:
        request = ITEMS[name]
        golden[name] = {
            "item": {
                "key": list(request.key),
                "text": request.text,
                "visuals": [v.path for v in request.visuals],
            },
            "vllm_offline": _summarize_vllm(
                build_vllm_request(request, processor, media, family), sampling_params_dict(SETTINGS, [eos])
            ),
            "vllm_server": _summarize_chat(
                build_chat_request(
                    request, media, family.name, SETTINGS, served_video_mode(family), "vllm", family
                )
            ),
        }
    return golden


def _check_golden(path: Path, actual: str) -> None:
    if UPDATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(actual, encoding="utf-8")
        return
    assert path.exists(), (
        f"{path} is missing; create it with OBV_EVAL_UPDATE_GOLDEN=1 pytest tests/test_backend_requests.py"
    )
    expected = path.read_text(encoding="utf-8")
    if actual != expected:
        diff = "".join(
            difflib.unified_diff(
                expected.splitlines(keepends=True), actual.splitlines(keepends=True), str(path), "now"
            )
        )
        pytest.fail(
            f"the {path.stem} request changed; if intended, run "
            f"OBV_EVAL_UPDATE_GOLDEN=1 pytest tests/test_backend_requests.py\n{diff}"
        )


@pytest.mark.parametrize("name", FAMILIES)
def test_each_familys_requests_match_its_golden_file(name: str, family_processors: dict[str, Any]) -> None:
    golden = _family_golden(families()[name], family_processors[name])
    actual = json.dumps(golden, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    _check_golden(GOLDEN_DIR / f"family.{name}.json", actual)


def test_family_goldens_pin_what_each_family_needs() -> None:
    # Guards the per-family goldens themselves (a regenerated file that lost these would pin nothing).
    goldens = {name: json.loads((GOLDEN_DIR / f"family.{name}.json").read_text()) for name in FAMILIES}
    for name, golden in goldens.items():
        family = families()[name]
        video = golden["video"]
        offline, server = video["vllm_offline"], video["vllm_server"]
        assert video["vllm_offline"]["sampling_params"]["stop_token_ids"], name
        if family.video_input == "frames-as-images":  # each frame an image, in the prompt and on the wire
            frames = len(offline["images"])
            assert frames > 1 and not offline["videos"], name
            parts = server["messages"][0]["content"]
            assert [p["type"] for p in parts] == ["image_url"] * frames + ["text"], name
            continue
        (sent,) = offline["videos"]
        extra = server["extra_body"]
        if name == "qwen2_vl":  # frames alone, as they always went
            assert "metadata" not in sent and "media_io_kwargs" not in extra, name
            continue
        served = extra["media_io_kwargs"]["video"]
        assert served["num_frames"] == -1, name  # vLLM's server keeps 32 frames unless told
        if family.video_timing == "frame-index":  # no timing: the frames' order places them
            assert "metadata" not in sent and served == {"num_frames": -1}, name
            continue
        # Timed families: the clip's metadata offline, and the same on the server's request.
        meta = sent["metadata"]
        assert meta["do_sample_frames"] is False and len(meta["frames_indices"]) == sent["shape"][0], name
        assert {k: served[k] for k in ("fps", "total_num_frames", "frames_indices", "duration")} == {
            k: meta[k] for k in ("fps", "total_num_frames", "frames_indices", "duration")
        }, name
    # Qwen2-VL through its family is the request it always was.
    qwen2 = goldens["qwen2_vl"]["video"]
    before = json.loads((GOLDEN_DIR / "video.json").read_text())
    assert qwen2["vllm_offline"] == before["vllm_offline"]
    assert {k: v for k, v in qwen2["vllm_server"].items() if k != "model"} == {
        k: v for k, v in before["vllm_server"].items() if k != "model"
    }


@pytest.mark.parametrize("name", FAMILIES)
@pytest.mark.parametrize("item", FAMILY_ITEMS)
def test_server_renders_each_familys_offline_prompt(
    name: str, item: str, family_processors: dict[str, Any]
) -> None:
    # vLLM's server turns each video_url / image_url part into its chat template's video / image entry, in
    # place: the same rendering must give the offline prompt, frames-as-images families included.
    family, processor = families()[name], family_processors[name]
    media = family_media(family)
    body = build_chat_request(ITEMS[item], media, "m", SETTINGS, served_video_mode(family), "vllm", family)
    placeholders = {"video_url": {"type": "video"}, "image_url": {"type": "image"}}
    messages = [
        {**m, "content": [placeholders.get(p["type"], p) for p in m["content"]]} for m in body["messages"]
    ]
    offline = build_vllm_request(ITEMS[item], processor, media, family)
    assert render_prompt(processor, messages) == offline["prompt"]


def test_qwen2_5_vl_gets_each_clips_fps_as_the_hf_backend_does(family_processors: dict[str, Any]) -> None:
    # What vLLM's Qwen2.5-VL does with a (frames, metadata) item: the metadata, less do_sample_frames,
    # becomes the processor's VideoMetadata, from which it computes second_per_grid_ts. With the real
    # processor that must give the hf backend's value (tests/golden/requests/video.qwen2_5_vl.json).
    from transformers.video_utils import VideoMetadata

    family, processor = families()["qwen2_5_vl"], family_processors["qwen2_5_vl"]
    request = build_vllm_request(ITEMS["video"], processor, family_media(family), family)
    ((frames, metadata),) = request["multi_modal_data"]["video"]
    given = VideoMetadata(**{k: v for k, v in metadata.items() if k != "do_sample_frames"})
    out = processor(
        text=[request["prompt"]], videos=[frames], video_metadata=[given], return_tensors="pt",
        **request.get("mm_processor_kwargs", {}),
    )  # fmt: skip
    hf = json.loads((GOLDEN_DIR / "video.qwen2_5_vl.json").read_text())
    assert list(out["second_per_grid_ts"]) == hf["second_per_grid_ts"]
    assert given.sampled_fps == 2.0 and metadata["frames_indices"] == hf["frame_indices"]
    # Without the metadata transformers would assume 24 fps: the timing would not be the clip's.
    bare = processor(text=[request["prompt"]], videos=[frames], return_tensors="pt")
    assert list(bare["second_per_grid_ts"]) != hf["second_per_grid_ts"]


@pytest.mark.skipif("qwen3_vl" not in FAMILIES, reason="the Qwen3-VL family is not here")
def test_qwen3_vl_gets_each_frames_timestamp_as_the_hf_backend_does(
    family_processors: dict[str, Any],
) -> None:
    # vLLM's Qwen3-VL writes "<t seconds>" per frame pair from the metadata's frames_indices / fps; the
    # real processor given the request's metadata and arguments writes the hf backend's timestamps.
    from transformers.video_utils import VideoMetadata

    from obv_eval.backends.base import load_visuals
    from obv_eval.models import family_processor_kwargs

    family, processor = families()["qwen3_vl"], family_processors["qwen3_vl"]
    media = family_media(family)
    request = build_vllm_request(ITEMS["video"], processor, media, family)
    ((frames, metadata),) = request["multi_modal_data"]["video"]
    given = VideoMetadata(**{k: v for k, v in metadata.items() if k != "do_sample_frames"})
    kwargs = request["mm_processor_kwargs"]
    assert kwargs["do_sample_frames"] is False and metadata["do_sample_frames"] is False
    served = processor(text=[request["prompt"]], videos=[frames], video_metadata=[given], **kwargs)
    videos = load_visuals(ITEMS["video"].visuals, media).videos
    hf = processor(
        text=[request["prompt"]], videos=[v.frames for v in videos], **family_processor_kwargs(family, videos)
    )
    text = processor.tokenizer.decode(served["input_ids"][0])
    assert served["input_ids"] == hf["input_ids"] and "seconds>" in text
    first = metadata["frames_indices"][:2]
    assert f"<{sum(first) / 2 / metadata['fps']:.1f} seconds>" in text  # frame pair 1: mean of its times


# ---------------------------------------------------------------------------------------------------
# One conversation for every backend


def test_hf_backend_renders_the_vllm_prompt(tiny_model_path: Path, processor: Any) -> None:
    from obv_eval.backends.hf import HFBackend

    backend = HFBackend(tiny_model_path, generation=GenerationSettings(max_new_tokens=2))
    outputs = backend.generate(list(ITEMS.values()), progress=False)
    for output, request in zip(outputs, ITEMS.values(), strict=True):
        assert output.error is None
        vllm_request = build_vllm_request(request, processor, MEDIA)
        assert output.prompt == vllm_request["prompt"]
        videos = vllm_request.get("multi_modal_data", {}).get("video", [])
        assert output.frames == [len(v) for v in videos]


@pytest.mark.parametrize("name", FAMILIES)
def test_hf_backend_renders_each_familys_vllm_prompt(name: str, family_processors: dict[str, Any]) -> None:
    # The same prompt and frames through the transformers backend as in the family's vLLM request.
    from obv_eval.backends.hf import HFBackend

    family = families()[name]
    media = family_media(family)
    backend = HFBackend(tiny_twin_dir(family), generation=GenerationSettings(max_new_tokens=1), media=media)
    requests = [ITEMS[item] for item in FAMILY_ITEMS]
    for output, request in zip(backend.generate(requests, progress=False), requests, strict=True):
        assert output.error is None, output.error
        vllm_request = build_vllm_request(request, family_processors[name], media, family)
        assert output.prompt == vllm_request["prompt"]
        data = vllm_request.get("multi_modal_data", {})
        sent = [len(v[0] if isinstance(v, tuple) else v) for v in data.get("video", [])]
        if family.video_input == "frames-as-images" and request.visuals[0].kind == "video":
            sent = [len(data["image"])]
        assert output.frames == sent


@pytest.mark.parametrize("name", sorted(ITEMS))
def test_server_renders_the_offline_prompt(name: str, processor: Any) -> None:
    # vLLM's server turns each video_url / image_url part into a video / image placeholder of the
    # chat template, in place; doing the same here must give the offline prompt exactly.
    body = build_chat_request(ITEMS[name], MEDIA, "m", SETTINGS, "video", "vllm")
    placeholders = {"video_url": {"type": "video"}, "image_url": {"type": "image"}}
    messages = [
        {**m, "content": [placeholders.get(p["type"], p) for p in m["content"]]} for m in body["messages"]
    ]
    assert render_prompt(processor, messages) == build_vllm_request(ITEMS[name], processor, MEDIA)["prompt"]


def test_video_goes_as_one_video_of_the_sampled_frames(processor: Any) -> None:
    request = build_vllm_request(ITEMS["video"], processor, MEDIA)
    (video,) = request["multi_modal_data"]["video"]
    assert "image" not in request["multi_modal_data"]
    assert video.dtype == np.uint8 and video.ndim == 4 and video.shape[-1] == 3
    assert video.shape[1] % 28 == 0 and video.shape[2] % 28 == 0  # already at Qwen2-VL's size
    assert "multi_modal_data" not in build_vllm_request(ITEMS["text"], processor, MEDIA)


def test_sampling_params_are_explicit_and_greedy() -> None:
    params = sampling_params_dict(GenerationSettings(max_new_tokens=7, seed=3), [5])
    assert params["temperature"] == 0.0 and params["top_p"] == 1.0 and params["top_k"] == 0
    assert (params["max_tokens"], params["seed"], params["stop_token_ids"]) == (7, 3, [5])
    assert params["repetition_penalty"] == 1.0 and params["n"] == 1
    with pytest.raises(ValueError, match="greedily"):
        sampling_params_dict(GenerationSettings(do_sample=True))


# ---------------------------------------------------------------------------------------------------
# Data parallel: sharding and merging


def _requests(n: int) -> list[GenerationRequest]:
    return [GenerationRequest(("t", i), f"q{i}") for i in range(n)]


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vLLM is installed here")
def test_without_vllm_the_error_names_the_extra(tiny_model_path: Path) -> None:
    from obv_eval.backends.vllm import VLLMBackend

    with pytest.raises(ImportError) as info:
        VLLMBackend(tiny_model_path)
    assert str(info.value) == VLLM_EXTRA_HINT


FAKE_VLLM = '''
"""Stand-in for vllm's offline API: records what it is given and answers deterministically."""
import os
from types import SimpleNamespace

CALLS = []
COMPUTED = []  # prompts of earlier generate calls: the prefix cache (the same call's requests share nothing)


# As vLLM 0.33's processors: these take a video only with its metadata (Qwen2VLMultiModalDataParser's
# video_needs_metadata), and refuse more items per prompt than limit_mm_per_prompt allows.
NEEDS_METADATA = {"Qwen2_5_VLForConditionalGeneration", "Qwen3VLForConditionalGeneration"}


def _frames(video):
    """vLLM's parser: a (frames, metadata) tuple or a bare array."""
    return video[0] if isinstance(video, tuple) else video


def _tokens(prompt):
    """The prompt's words, each video placeholder standing for its frames (vLLM hashes media into blocks)."""
    videos = [_frames(v).tobytes() for v in prompt.get("multi_modal_data", {}).get("video", [])]
    words = prompt["prompt"].split()
    return [f"video:{hash(videos[0])}" if "<|video_pad|>" in w and videos else w for w in words]


def _cached(tokens):
    best = 0
    for seen in COMPUTED:
        n = 0
        while n < min(len(seen), len(tokens) - 1) and seen[n] == tokens[n]:
            n += 1
        best = max(best, n)
    return best


class SamplingParams:
    def __init__(self, **kwargs):
        self.kwargs = kwargs


class LLM:
    def __init__(self, **kwargs):
        import json
        from pathlib import Path

        from transformers import AutoTokenizer

        self.kwargs = kwargs
        config = json.loads((Path(kwargs["model"]) / "config.json").read_text())
        self.needs_metadata = bool(set(config.get("architectures") or []) & NEEDS_METADATA)
        # Replies are token ids, as from the real engine: the backend decodes them itself.
        self.tokenizer = AutoTokenizer.from_pretrained(kwargs["model"])
        CALLS.append(("init", kwargs))

    def generate(self, prompts, sampling_params, use_tqdm=True, lora_request=None, tokenization_kwargs=None):
        CALLS.append(("generate", len(prompts), sampling_params.kwargs, lora_request))
        self.tokenization_kwargs = tokenization_kwargs
        texts = [p["prompt"] for p in prompts]
        if any("CRASH" in t for t in texts):
            os._exit(3)
        if any("TOO-LONG" in t for t in texts):
            raise ValueError("prompt is longer than max_model_len")
        for prompt in prompts:
            data = prompt.get("multi_modal_data", {})
            for modality, items in data.items():
                limit = self.kwargs["limit_mm_per_prompt"].get(modality, 0)
                if len(items) > limit:
                    raise ValueError(f"At most {limit} {modality}(s) may be provided in one prompt.")
            if self.needs_metadata and any(not isinstance(v, tuple) for v in data.get("video", [])):
                raise ValueError("Video metadata is required but not found in mm input.")
        results = []
        for prompt in prompts:
            videos = prompt.get("multi_modal_data", {}).get("video", [])
            counts = [len(_frames(v)) for v in videos]
            text = " gpu%s frames%s " % (os.environ.get("CUDA_VISIBLE_DEVICES"), counts)
            for video in videos:  # the sampled fps a processor derives from it (VideoMetadata.sampled_fps)
                if isinstance(video, tuple):
                    meta = video[1]
                    text += "fps%g " % (len(meta["frames_indices"]) / meta["total_num_frames"] * meta["fps"])
            results.append(
                SimpleNamespace(
                    prompt_token_ids=list(range(len(prompt["prompt"].split()))),
                    num_cached_tokens=_cached(_tokens(prompt)),
                    outputs=[SimpleNamespace(text="(ignored)", token_ids=self.tokenizer.encode(text))],
                )
            )
        COMPUTED.extend(_tokens(prompt) for prompt in prompts)
        return results
'''

FAKE_LORA = """
class LoRARequest:
    def __init__(self, name, int_id, path):
        self.args = (name, int_id, path)
"""


@pytest.fixture()
def fake_vllm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    root = tmp_path / "fake_site"
    (root / "vllm" / "lora").mkdir(parents=True)
    (root / "vllm" / "__init__.py").write_text(textwrap.dedent(FAKE_VLLM))
    (root / "vllm" / "lora" / "__init__.py").write_text("")
    (root / "vllm" / "lora" / "request.py").write_text(textwrap.dedent(FAKE_LORA))
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]))
    import vllm

    yield vllm
    for name in [n for n in sys.modules if n == "vllm" or n.startswith("vllm.")]:
        del sys.modules[name]


def test_vllm_backend_sends_video_frames_and_explicit_settings(
    fake_vllm: Any, tiny_model_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from obv_eval.backends.vllm import VLLMBackend

    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    backend = VLLMBackend(tiny_model_path, dtype="float32", generation=GenerationSettings(max_new_tokens=5))
    outputs = backend.generate(list(ITEMS.values()), progress=False)
    init = fake_vllm.CALLS[0][1]
    assert init["dtype"] == "float32" and init["limit_mm_per_prompt"] == {"video": 1, "image": 1}
    assert init["generation_config"] == "vllm" and "enable_lora" not in init
    _, count, sampling, lora = fake_vllm.CALLS[1]
    assert count == 3 and lora is None
    assert sampling["max_tokens"] == 5 and sampling["temperature"] == 0.0
    video, image, text = outputs
    assert video.frames and video.text == f"gpuNone frames{video.frames}"  # stripped, frames as one video
    assert image.frames == [] and text.output_tokens == len(
        backend.processor.tokenizer.encode(" gpuNone frames[] ")
    )
    assert text.prompt_tokens == len(text.prompt.split())


def test_vllm_backend_sends_each_clips_first_question_ahead_and_records_prefix_cache_hits(
    fake_vllm: Any, tiny_model_path: Path
) -> None:
    from obv_eval.backends.vllm import VLLMBackend

    video = ITEMS["video"].visuals
    other = (MediaRef("video", "Qm7_vB2xKpL_240_244.mp4", str(SAMPLES_DIR / "media" / "surgeryvqa")),)
    requests = [
        GenerationRequest(("v", i), f"Question {i} about this clip?", clip)
        for i, clip in enumerate([video, other, video, other, video])
    ]
    requests.append(ITEMS["text"])
    backend = VLLMBackend(tiny_model_path, generation=GenerationSettings(max_new_tokens=5))
    outputs = backend.generate(requests, progress=False)
    assert fake_vllm.CALLS[0][1]["enable_prefix_caching"] is True
    waves = [count for name, count, *_ in fake_vllm.CALLS if name == "generate"]
    assert waves == [3, 3]  # one question per clip and the text item, then the clips' other questions
    by_clip: dict[object, list[GenerationOutput]] = {}
    for request, output in zip(requests[:5], outputs, strict=False):
        by_clip.setdefault(request.visuals, []).append(output)
    for clip_outputs in by_clip.values():
        computed = [o.prefill_tokens == o.prompt_tokens for o in clip_outputs]
        assert computed.count(True) == 1  # the clip's prefix is computed once
        reused = [o for o, whole in zip(clip_outputs, computed, strict=True) if not whole]
        assert all((o.prefill_tokens or 0) < (o.prompt_tokens or 0) for o in reused)
    prompt = sum(o.prompt_tokens or 0 for o in outputs)
    cached = sum((o.prompt_tokens or 0) - (o.prefill_tokens or 0) for o in outputs)
    assert cached > 0 and backend.describe()["prefix_cache_hit_rate"] == round(cached / prompt, 4)


def test_vllm_backend_fails_bad_items_alone(fake_vllm: Any, tiny_model_path: Path) -> None:
    from obv_eval.backends.vllm import VLLMBackend

    backend = VLLMBackend(tiny_model_path, chunk_size=3)  # two chunks: the second decoded during the first
    requests = [
        *_requests(2),
        GenerationRequest(("t", 2), "TOO-LONG"),
        GenerationRequest(("t", 3), "q", (MediaRef("video", "missing.mp4", str(SAMPLES_DIR)),)),
    ]
    seen: list[GenerationOutput] = []
    outputs = backend.generate(requests, progress=False, on_batch=seen.extend)
    assert [o.key for o in outputs] == [r.key for r in requests] and len(seen) == 4
    assert outputs[0].error is None and outputs[1].error is None
    assert outputs[2].error is not None and "max_model_len" in outputs[2].error
    assert outputs[3].error is not None and outputs[3].error.startswith("MediaError")


def test_vllm_backend_loads_a_lora_adapter(fake_vllm: Any, tiny_model_path: Path, tmp_path: Path) -> None:
    from obv_eval.backends.vllm import VLLMBackend

    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"r": 48, "base_model_name_or_path": "x"}))
    backend = VLLMBackend(tiny_model_path, adapter_path=adapter)
    backend.generate(_requests(1), progress=False)
    init = fake_vllm.CALLS[0][1]
    assert init["enable_lora"] is True and init["max_lora_rank"] == 64  # the smallest vLLM rank >= 48
    assert fake_vllm.CALLS[1][3].args == ("adapter", 1, str(adapter))
    assert backend.describe()["lora"] is True


def test_vllm_backend_sends_each_familys_frames_and_timing(fake_vllm: Any) -> None:
    from obv_eval.backends.vllm import VLLMBackend

    requests = [ITEMS["video"], ITEMS["image"], ITEMS["text"]]
    for name in FAMILIES:
        family = families()[name]
        fake_vllm.CALLS.clear()
        backend = VLLMBackend(tiny_twin_dir(family), media=family_media(family))
        video, image, text = backend.generate(requests, progress=False)
        assert backend.family is family and backend.describe()["model_family"] == family.describe()
        # The chat template's <bos> (Gemma 3) is the only one: vLLM adds none (its server does the same).
        assert backend.llm.tokenization_kwargs == {"add_special_tokens": False}
        assert backend.eos_token_id == backend.processor.tokenizer.convert_tokens_to_ids(family.eos_token)
        assert [o.error for o in (video, image, text)] == [None, None, None], name
        (frames,) = video.frames
        assert (
            video.visual_tokens
            and video.visual_tokens > 0
            and video.prompt
            == build_vllm_request(ITEMS["video"], backend.processor, backend.media, family)["prompt"]
        )
        if family.video_input == "frames-as-images":  # the frames went as images, within vLLM's limit
            assert video.text == "gpuNone frames[]", name
            assert fake_vllm.CALLS[0][1]["limit_mm_per_prompt"]["image"] >= frames + 1
        elif family.video_timing == "frame-index":
            assert video.text == f"gpuNone frames[{frames}]", name
        else:  # placed in time: vLLM got the clip's metadata, so its sampled fps (2 from 4-fps source)
            assert video.text == f"gpuNone frames[{frames}] fps2", name


def test_vllm_limits_give_a_frames_as_images_family_room_for_its_frames() -> None:
    from obv_eval.backends.vllm import mm_limits

    asked = {"image": 1, "video": 1}  # obv_vllm's max_images / max_videos
    for family in families().values():
        media = family_media(family)
        if family.video_input == "video":
            assert mm_limits(family, asked, media) == asked
            continue
        frames = media.video.nframes or media.video.max_frames
        assert mm_limits(family, asked, media) == {"image": frames + 1}  # a clip's frames and an image
        control = dataclasses.replace(media, control="frames=4")
        assert mm_limits(family, asked, control) == {"image": 5}


def test_without_metadata_vllms_qwen2_5_vl_refuses_the_clip_alone(
    fake_vllm: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What the backend sent before it knew the family (a bare array), vLLM 0.33's Qwen2.5-VL refuses;
    # the stand-in does the same, and the item fails alone with the reason.
    from obv_eval.backends import vllm as backend_module
    from obv_eval.backends.vllm import VLLMBackend

    family = families()["qwen2_5_vl"]
    monkeypatch.setattr(backend_module, "processor_kwargs", lambda family, videos: ([], {}))
    backend = VLLMBackend(tiny_twin_dir(family))
    video, text = backend.generate([ITEMS["video"], ITEMS["text"]], progress=False)
    assert video.error is not None and "metadata is required" in video.error
    assert text.error is None


def test_a_vllm_server_gets_each_clips_timing_and_a_refusal_stops_the_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import fake_chat_server
    from fake_chat_server import FakeChatServer, Fault

    from obv_eval.backends.base import load_visuals

    family = families()["qwen2_5_vl"]
    media = family_media(family)
    with FakeChatServer(reply=lambda body: "ok") as server:
        # The family from the registry entry named like the served model.
        backend = OpenAICompatBackend("qwen2.5-vl-7b", base_url=server.base_url, media=media, max_retries=0)
        assert backend.family is family and backend.video_mode == "video"
        video, image = backend.generate([ITEMS["video"], ITEMS["image"]], progress=False)
        bodies = {r.body["messages"][0]["content"][0]["type"]: r.body for r in server.chat_requests if r.body}
    assert video.error is None and image.error is None
    (clip,) = load_visuals(ITEMS["video"].visuals, media).videos
    # vLLM's server builds the clip's metadata from these (VideoMediaIO.load_base64): its source fps and
    # sampled indices, so second_per_grid_ts is 2 / sampled fps as offline; every frame sent is kept.
    assert bodies["video_url"]["media_io_kwargs"] == {
        "video": {
            "num_frames": -1,
            "fps": clip.source_fps,
            "total_num_frames": clip.total_frames,
            "duration": clip.duration_s,
            "frames_indices": list(clip.indices),
        }
    }
    assert "media_io_kwargs" not in bodies["image_url"]

    # A server started without --trust-request-mm-kwargs refuses such a request (vLLM's message): the
    # first item fails with what to do, and nothing more is sent.
    refusal = (
        "Per-request media_io_kwargs are disabled by default because they can change multimodal media "
        "loading resource usage. Start the server with --trust-request-mm-kwargs only when clients "
        "are trusted."
    )
    monkeypatch.setattr(
        fake_chat_server, "_error", lambda message, kind, code: {"error": {"message": refusal, "code": code}}
    )
    fault = lambda index, body: Fault.BAD_REQUEST if "media_io_kwargs" in body else None  # noqa: E731
    with FakeChatServer(reply=lambda body: "ok", fault_fn=fault) as server:
        backend = OpenAICompatBackend(
            "m", base_url=server.base_url, media=media, family="qwen2_5_vl", concurrency=1, max_retries=0
        )
        outputs = backend.generate([ITEMS["video"]] * 3, progress=False)
        assert server.calls == 1
    assert outputs[0].error is not None and "--trust-request-mm-kwargs" in outputs[0].error
    assert all(o.error is not None and o.error.startswith("not sent:") for o in outputs[1:])


def test_a_served_familys_name_must_be_known() -> None:
    with pytest.raises(ValueError, match="family 'nope' is not one of qwen2_vl"):
        OpenAICompatBackend("m", base_url="http://127.0.0.1:9/v1", family="nope")
    images_only = [f for f in families().values() if f.video_input == "frames-as-images"]
    for family in images_only:
        with pytest.raises(ValueError, match="takes no video input"):
            OpenAICompatBackend("m", base_url="http://127.0.0.1:9/v1", family=family, video_mode="video")


def test_obv_vllm_adapter_runs_a_task(fake_vllm: Any, samples_source: None) -> None:
    from lmms_eval.evaluator import simple_evaluate
    from lmms_eval.tasks import TaskManager
    from obv_eval.model_adapters.vllm import ObvVLLM

    from obv_eval.sources import tasks_package_dir

    adapter = ObvVLLM(pretrained="tiny-qwen2vl", tensor_parallel_size="1", progress=False, batch_size=1)
    manager = TaskManager(include_path=str(tasks_package_dir()), include_defaults=False, verbosity="ERROR")
    output = simple_evaluate(
        model=adapter, tasks=["obv_surgeryvqa"], task_manager=manager, limit=2, log_samples=True,
        bootstrap_iters=0, verbosity="ERROR",
    )  # fmt: skip
    assert output is not None
    assert [key for key in adapter.outputs] == [("obv_surgeryvqa", 0), ("obv_surgeryvqa", 1)]
    assert all(o.error is None and o.frames == [6] for o in adapter.outputs.values())
    init = fake_vllm.CALLS[0][1]
    assert init["tensor_parallel_size"] == 1 and init["dtype"] == "bfloat16"
    assert adapter.backend.describe()["sampling"]["max_tokens"] == 32  # the task's budget
