"""lmms-eval's own models on obv tasks: the video and the image reach the model, and obv scores the reply.

lmms-eval's stock `qwen2_vl` (a simple model: `doc_to_visual`) and its chat-style `huggingface` model
(`doc_to_messages`) run the tiny Qwen2-VL on the samples; its stock `qwen2_5_vl` and `qwen3_vl` (lmms-eval
picks their chat models) run the tiny Qwen2.5-VL and Qwen3-VL twins, and its `llava_hf` (the llava-hf
checkpoints' model) the tiny LLaVA-OneVision twin. A probe on the model's `generate` counts the vision
placeholder tokens in the input ids each item sends. lmms-eval's `llava_onevision` (LLaVA-NeXT-format
checkpoints) needs the GitHub-only LLaVA-NeXT package and is not run here (docs/lmms-eval.md).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from task_utils import task_utils

from obv_eval.sources import MediaRef, media_refs

# Stock qwen2_vl imports decord at the top of its module (the dev extra installs it on x86_64).
pytest.importorskip("decord", reason="lmms-eval's qwen2_vl needs decord: pip install decord (x86_64 wheels)")

KINDS = {"obv_surgeryvqa": "video", "obv_mimicechoqa": "video", "obv_vqarad": "image"}


def record_generate(monkeypatch: pytest.MonkeyPatch, model_class: type) -> list[list[int]]:
    """Every prompt (token ids) that reaches `model_class.generate`, in order."""
    sent: list[list[int]] = []
    generate = model_class.generate

    def recording(self: Any, *args: Any, **kwargs: Any) -> Any:
        sent.extend(kwargs["input_ids"].tolist())
        return generate(self, *args, **kwargs)

    monkeypatch.setattr(model_class, "generate", recording)
    return sent


@pytest.fixture()
def sent_input_ids(monkeypatch: pytest.MonkeyPatch) -> list[list[int]]:
    """Every prompt (token ids) that reaches the tiny Qwen2-VL's generate."""
    from transformers import Qwen2VLForConditionalGeneration

    return record_generate(monkeypatch, Qwen2VLForConditionalGeneration)


@pytest.fixture()
def processor_on_transformers5(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """lmms-eval 0.7.3's chat models `huggingface` and `llava_hf` call the processor as transformers 4 took
    it; these mend that call only (the tasks' messages go through untouched), as a fixed lmms-eval would:

    * they pass empty `images=[]` / `videos=[]` lists (transformers 5.24 indexes the first), and
      `huggingface` always passes `audios=` (transformers 5 refuses it): here those are left out;
    * they hand the processor a video path, which transformers 5 decodes only through torchcodec (FFmpeg's
      shared libraries): here through PyAV, which obv-eval installs.
    """
    from transformers.processing_utils import ProcessorMixin
    from transformers.video_processing_utils import BaseVideoProcessor
    from transformers.video_utils import load_video

    call = ProcessorMixin.__call__

    def without_empty_media(self: Any, *args: Any, **kwargs: Any) -> Any:
        assert not kwargs.pop("audios", None), "obv tasks have no audio"
        kwargs = {k: v for k, v in kwargs.items() if not (k in ("images", "videos") and v == [])}
        return call(self, *args, **kwargs)

    def fetch_videos(self: Any, urls: Any, sample_indices_fn: Any = None) -> Any:
        if isinstance(urls, list):
            return list(zip(*[fetch_videos(self, url, sample_indices_fn) for url in urls], strict=True))
        return load_video(urls, backend="pyav", sample_indices_fn=sample_indices_fn)

    monkeypatch.setattr(ProcessorMixin, "__call__", without_empty_media)
    monkeypatch.setattr(BaseVideoProcessor, "fetch_videos", fetch_videos)
    yield


@pytest.fixture()
def huggingface_on_transformers5(monkeypatch: pytest.MonkeyPatch, processor_on_transformers5: None) -> None:
    """Besides the processor call: lmms-eval 0.7.3's `huggingface` picks the model class by testing
    `config.model_type in AutoModelFor...._model_mapping.keys()`, whose keys are config classes in
    transformers 5, so every checkpoint loads as AutoModel (no `generate`): here AutoModel is
    AutoModelForImageTextToText."""
    import lmms_eval.models.chat.huggingface as chat_huggingface
    from transformers import AutoModelForImageTextToText

    monkeypatch.setattr(chat_huggingface, "AutoModel", AutoModelForImageTextToText)


def run_lmms_eval(model: str, model_args: str) -> dict[str, Any]:
    from lmms_eval.evaluator import simple_evaluate
    from lmms_eval.tasks import TaskManager

    from obv_eval.runner import TASKS_DIR

    manager = TaskManager(include_path=str(TASKS_DIR), include_defaults=False, verbosity="ERROR")
    output = simple_evaluate(
        model=model,
        model_args=model_args,
        tasks=list(KINDS),
        task_manager=manager,
        limit=1,
        log_samples=True,
        gen_kwargs="max_new_tokens=2",  # the inputs are what is checked; two tokens keep it fast
    )
    assert output is not None
    return output


def check_visuals_and_scoring(
    output: dict[str, Any],
    sent: list[list[int]],
    model_dir: Path,
    placeholders: tuple[str, str] = ("<|video_pad|>", "<|image_pad|>"),  # (video, image): the Qwen families'
) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    video_pad, image_pad = tokenizer.convert_tokens_to_ids(list(placeholders))
    prompts = [(tokenizer.decode(ids), ids.count(video_pad), ids.count(image_pad)) for ids in sent]
    assert len(prompts) == len(KINDS)
    for task, kind in KINDS.items():
        [sample] = output["samples"][task]
        question = sample["doc"]["question"].strip()
        [(videos, images)] = [(v, i) for text, v, i in prompts if question in text]
        assert (videos > 0, images > 0) == (kind == "video", kind == "image"), (task, videos, images)
        # obv's process_results ran: each metric holds obv's per-item record, scored.
        metric = {"obv_surgeryvqa": "exact_match"}.get(task, "accuracy")
        record = sample[metric]
        assert record["status"] == "ok" and record["item_id"]
        assert record["question"] == sample["doc"]["question"]
        assert metric in record["scores"] and output["results"][task][f"{metric},none"] is not None


def test_stock_qwen2_vl_sees_the_video_and_the_image(
    samples_source: None, tiny_model_path: Path, sent_input_ids: list[list[int]]
) -> None:
    output = run_lmms_eval("qwen2_vl", f"pretrained={tiny_model_path},device=cpu,device_map=cpu")
    check_visuals_and_scoring(output, sent_input_ids, tiny_model_path)


def test_chat_huggingface_model_sees_the_video_and_the_image(
    samples_source: None,
    tiny_model_path: Path,
    sent_input_ids: list[list[int]],
    huggingface_on_transformers5: None,
) -> None:
    args = f"pretrained={tiny_model_path},device=cpu,device_map=cpu,attn_implementation=sdpa"
    output = run_lmms_eval("huggingface", args)
    assert output["config"]["model_backend"].endswith("(chat)")  # lmms-eval's chat task path ran
    check_visuals_and_scoring(output, sent_input_ids, tiny_model_path)


def test_stock_qwen2_5_vl_sees_the_video_and_the_image(
    samples_source: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """lmms-eval's `qwen2_5_vl` as published (no fixes), on the tiny Qwen2.5-VL twin. It reads video paths
    with decord and frames with qwen-vl-utils (both installed with the dev extra)."""
    pytest.importorskip("qwen_vl_utils", reason="lmms-eval's qwen2_5_vl needs qwen-vl-utils")
    from transformers import Qwen2_5_VLForConditionalGeneration

    from obv_eval.models import families, tiny_twin_dir

    twin = tiny_twin_dir(families()["qwen2_5_vl"])
    sent = record_generate(monkeypatch, Qwen2_5_VLForConditionalGeneration)
    args = f"pretrained={twin},device=cpu,device_map=cpu,attn_implementation=sdpa"
    output = run_lmms_eval("qwen2_5_vl", args)
    assert output["config"]["model_backend"].endswith("(chat)")  # doc_to_messages, not doc_to_visual
    check_visuals_and_scoring(output, sent, twin)


def test_stock_qwen3_vl_sees_the_video_and_the_image(
    samples_source: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """lmms-eval's `qwen3_vl` (its chat model) as published, on the tiny Qwen3-VL twin. `fps=2`: without it
    the model asks qwen-vl-utils for `max_num_frames` (32) frames of every clip, which fails for a clip with
    fewer frames (the samples' have 12) and then falls back to torchvision's removed `read_video`."""
    from obv_eval.models import families, tiny_twin_dir

    if "qwen3_vl" not in families():
        pytest.skip("no qwen3_vl family module here")
    from transformers import Qwen3VLForConditionalGeneration

    twin = tiny_twin_dir(families()["qwen3_vl"])
    sent = record_generate(monkeypatch, Qwen3VLForConditionalGeneration)
    output = run_lmms_eval(
        "qwen3_vl", f"pretrained={twin},device=cpu,device_map=cpu,attn_implementation=sdpa,fps=2"
    )
    assert output["config"]["model_backend"].endswith("(chat)")
    check_visuals_and_scoring(output, sent, twin)


def test_chat_llava_hf_on_llava_onevision_sees_the_video_and_the_image(
    samples_source: None, monkeypatch: pytest.MonkeyPatch, processor_on_transformers5: None
) -> None:
    """lmms-eval's `llava_hf` (the model for llava-hf checkpoints such as llava-onevision-qwen2-7b-ov-hf;
    lmms-eval picks its chat model) on the tiny LLaVA-OneVision twin, with the processor-call fixes only."""
    from transformers import LlavaOnevisionForConditionalGeneration

    from obv_eval.models import families, tiny_twin_dir

    twin = tiny_twin_dir(families()["llava_onevision"])
    sent = record_generate(monkeypatch, LlavaOnevisionForConditionalGeneration)
    output = run_lmms_eval("llava_hf", f"pretrained={twin},device=cpu,device_map=cpu,dtype=float32")
    assert output["config"]["model_backend"].endswith("(chat)")
    check_visuals_and_scoring(output, sent, twin, placeholders=("<video>", "<image>"))


def test_visuals_are_lmms_eval_types_and_media_refs_for_obv(samples_source: None) -> None:
    from obv_eval.benchmarks import BENCHMARKS
    from obv_eval.sources import parse_data_source
    from obv_eval.tasking import load_rows

    for benchmark, kind in (("surgeryvqa", "video"), ("vqarad", "image")):
        utils = task_utils(benchmark)
        row = load_rows(BENCHMARKS[benchmark], parse_data_source("samples"))[0]
        [plain] = utils.doc_to_visual(row)
        with media_refs():
            [ref] = utils.doc_to_visual(row)
        assert isinstance(ref, MediaRef) and ref.kind == kind and ref.root is not None
        if kind == "video":  # what lmms-eval's own video tasks give: the path, an exact str
            assert type(plain) is str and plain == str(ref) and os.path.isfile(plain)
        else:
            assert isinstance(plain, Image.Image) and plain.size[0] > 0
        [turn] = utils.doc_to_messages(row)
        assert turn["role"] == "user" and [part["type"] for part in turn["content"]] == [kind, "text"]
        assert turn["content"][-1]["text"] == utils.doc_to_text(row)
