"""Model families (obv_eval.models): detection by config.json, Qwen2.5-VL as the second family on its tiny
twin (absolute-time video positions, one prefill per clip exact in fp32, a whole run on the samples), the
request golden of its video item, and one clear line for an unknown family."""

from __future__ import annotations

import difflib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch

from obv_eval import media
from obv_eval.backends.base import GenerationRequest, GenerationSettings, load_visuals
from obv_eval.backends.hf import HFBackend
from obv_eval.cli import main
from obv_eval.conversation import build_messages, render_prompt
from obv_eval.data.synth import write_video
from obv_eval.models import Family, UnknownFamily, families, family_of_checkpoint, qwen2_5_vl, tiny_twin_dir
from obv_eval.registry import ModelNotAvailable, resolve_model
from obv_eval.sources import SAMPLES_DIR, MediaRef

GOLDEN = Path(__file__).parent / "golden" / "requests" / "video.qwen2_5_vl.json"
UPDATE = os.environ.get("OBV_EVAL_UPDATE_GOLDEN") == "1"


@pytest.fixture(scope="module")
def tiny25() -> Path:
    return tiny_twin_dir(qwen2_5_vl.FAMILY)


def test_each_checkpoint_is_its_family_by_config(tiny_model_path: Path, tiny25: Path) -> None:
    assert family_of_checkpoint(tiny_model_path).name == "qwen2_vl"
    family = family_of_checkpoint(tiny25)
    assert family.name == "qwen2_5_vl" and family.video_timing == "absolute"
    config = json.loads((tiny25 / "config.json").read_text())
    assert config["architectures"] == ["Qwen2_5_VLForConditionalGeneration"]
    assert config["vision_config"]["tokens_per_second"] == 2
    # The real Qwen2 vocabulary and Qwen2-VL's (= Qwen2.5-VL's) added tokens and chat template.
    ours = json.loads((tiny25 / "tokenizer.json").read_text())
    theirs = json.loads((tiny_model_path / "tokenizer.json").read_text())
    assert ours["model"]["vocab"] == theirs["model"]["vocab"] and len(ours["model"]["vocab"]) == 151643
    assert ours["added_tokens"] == theirs["added_tokens"]
    assert (tiny25 / "chat_template.jinja").read_text() == (
        tiny_model_path / "chat_template.jinja"
    ).read_text()


def test_an_unknown_family_is_one_line_and_exit_2(
    tmp_path: Path, tiny_model_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "llava"
    shutil.copytree(tiny_model_path, folder, ignore=shutil.ignore_patterns("*.safetensors"))
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "model_type": "idefics3"}))
    with pytest.raises(UnknownFamily, match="idefics3"):
        family_of_checkpoint(folder)
    with pytest.raises(ModelNotAvailable, match="not a known family"):
        resolve_model("x", str(folder), build=False)
    assert main(["--model", "x", "--model-path", str(folder), "--tasks", "medqa", "--data", "samples"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "model_type 'idefics3' is not a known family" in err[0], err


def _scored_run(backend: HFBackend, requests: list[GenerationRequest]) -> tuple[list[str], torch.Tensor]:
    """Texts and the scores of every generated step (greedy tokens alone hide small differences: a
    random tiny model says the same thing whatever it is shown)."""
    scores: list[torch.Tensor] = []

    def timed(kwargs: dict[str, Any], config: Any) -> torch.Tensor:
        out = backend.model.generate(
            **kwargs, generation_config=config, output_scores=True, return_dict_in_generate=True
        )
        scores.append(torch.stack(out.scores, 1))
        return out.sequences

    backend._timed_generate = timed  # type: ignore[method-assign]
    media.clear_cache()
    texts = [o.text for o in backend.generate(requests, progress=False)]
    return texts, torch.cat(scores)


def test_qwen25_prefix_reuse_is_exact_and_video_positions_are_in_absolute_time(
    tiny25: Path, tmp_path: Path
) -> None:
    # 6 frames at 6 fps: qwen-vl-utils samples its minimum of 4 frames from one second (4 fps), so
    # second_per_grid_ts is 0.5, not the 1.0 a 2-fps sample (or a missing value) gives.
    write_video(tmp_path / "short.mp4", num_frames=6, fps=6, width=224, height=168, seed=5)
    ref = MediaRef("video", "short.mp4", str(tmp_path))
    questions = ["What is shown?", "Is there bleeding?", "Describe the anatomy visible, in one sentence."]
    requests = [GenerationRequest(("video", i), q, (ref,)) for i, q in enumerate(questions)]
    settings = GenerationSettings(max_new_tokens=4)
    whole = HFBackend(tiny25, batch_size=1, generation=settings, prefix_reuse=False)
    reuse = HFBackend(tiny25, batch_size=2, generation=settings)
    assert reuse.prefix_reuse and reuse.describe()["model_family"]["video_timing"] == "absolute"

    video = load_visuals((ref,), reuse.media).videos[0]
    inputs = whole.processor(
        text=[render_prompt(whole.processor, build_messages("q", ("video",)))],
        videos=[video.frames],
        return_tensors="pt",
        **whole._family_kwargs([video]),
    )
    assert inputs["second_per_grid_ts"].tolist() == [0.5]  # temporal_patch_size 2 / sampled 4 fps

    texts, alone = _scored_run(whole, requests)
    shared_texts, shared = _scored_run(reuse, requests)
    assert shared_texts == texts
    assert torch.allclose(shared, alone, atol=1e-5, rtol=0), (shared - alone).abs().max()

    # The timing is not a no-op: without each clip's fps (transformers then assumes 24) the scores move.
    whole._family_kwargs = lambda videos: {}  # type: ignore[method-assign]
    _, untimed = _scored_run(whole, requests)
    assert (untimed - alone).abs().max() > 1e-4


def test_qwen25_video_request_golden(tiny25: Path) -> None:
    backend = HFBackend(tiny25, generation=GenerationSettings(max_new_tokens=2))
    request = GenerationRequest(
        ("obv_surgeryvqa", 0),
        "What structure is retracted to expose the gallbladder?",
        (MediaRef("video", "Qm7_vB2xKpL_112_115.mp4", str(SAMPLES_DIR / "media" / "surgeryvqa")),),
    )
    (prompt,) = backend._prompts([request])
    video = load_visuals(request.visuals, backend.media).videos[0]
    timing = backend._family_kwargs([video])
    inputs = backend.processor(text=[prompt], videos=[video.frames], return_tensors="pt", **timing)
    got = {
        "family": backend.family.describe(),
        "prompt": prompt,
        "frames": len(video.indices),
        "frame_size": list(video.frames.shape[1:3]),
        "frame_indices": list(video.indices),
        "video_metadata": timing["video_metadata"],
        "video_grid_thw": inputs["video_grid_thw"].tolist(),
        "second_per_grid_ts": inputs["second_per_grid_ts"].tolist(),
        "video_tokens": int((inputs["input_ids"] == backend.processor.video_token_id).sum()),
    }
    text = json.dumps(got, indent=2, sort_keys=True) + "\n"
    if UPDATE or not GOLDEN.exists():
        GOLDEN.write_text(text)
    expected = GOLDEN.read_text()
    assert text == expected, "".join(difflib.unified_diff(expected.splitlines(True), text.splitlines(True)))
    (output,) = backend.generate([request], progress=False)
    assert output.error is None and output.prompt == prompt and output.visual_tokens == got["video_tokens"]


# Every family but Qwen2-VL (whose tiny model the rest of the suite runs end to end).
OTHER_FAMILIES = [f for f in families().values() if f.name != "qwen2_vl" and f.tiny_name]


@pytest.mark.parametrize("family", OTHER_FAMILIES, ids=lambda f: f.name)
def test_each_familys_tiny_twin_runs_every_task_on_the_samples(family: Family, tmp_path: Path) -> None:
    """The acceptance line: each family's tiny twin runs `--tasks all` on the samples on CPU, its visuals
    reach the model (visual tokens on every video and image item), under its own frame rule."""
    assert family.tiny_name is not None
    args = ["--model", family.tiny_name, "--tasks", "all", "--limit", "1", "--no-progress"]
    assert main([*args, "--output-dir", str(tmp_path), "--run-id", "r"]) == 0
    run = tmp_path / family.tiny_name / "r"
    results = json.loads((run / "results.json").read_text())
    assert len(results["tasks"]) == 7
    described = results["provenance"]["backend"]["model_family"]
    assert described["family"] == family.name
    assert described["frame_rule"] == family.frame_rule.name
    records = [json.loads(line) for line in (run / "samples.jsonl").open()]
    assert len(records) == 7 and not [r for r in records if r.get("error")]
    for record in records:
        visual = record["task"] in ("surgeryvqa", "mimicechoqa", "vqarad", "pathvqa", "slake")
        assert record["tokens"]["visual"] > 0 if visual else record["tokens"]["visual"] == 0, record


def test_qwen25_packed_training_rows_keep_each_sample_and_its_time_positions(tiny25: Path) -> None:
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from obv_eval.media import VideoSettings, load_video
    from obv_eval.train.data import build_samples, encode_sample, load_train_rows
    from obv_eval.train.packing import PackCollator, concat_samples, prepare_packed_inputs

    processor = AutoProcessor.from_pretrained(tiny25)
    model = AutoModelForImageTextToText.from_pretrained(tiny25).eval()
    settings = VideoSettings(fps=1.0, max_frames=8, total_pixels=12845056)  # tiny_cpu's
    root = SAMPLES_DIR / "media" / "openbiomedvid"
    samples = build_samples(load_train_rows("samples")[0][:2]).samples
    encoded = [encode_sample(processor, s, load_video(s.video, settings, root=root)) for s in samples]
    # 3-second clips at 1 fps: 3 frames, raised to the minimum 4, so 4/3 fps and 2 / (4/3) = 1.5 s per pair.
    seconds = [e.second_per_grid_ts.tolist() for e in encoded if e.second_per_grid_ts is not None]
    assert seconds == [[1.5]] * len(encoded)
    collate = PackCollator(processor.tokenizer.pad_token_id)

    def logits(batch: dict[str, Any]) -> torch.Tensor:
        with torch.no_grad():
            return model(**prepare_packed_inputs(model, batch)).logits[0]

    packed = logits(collate([concat_samples(encoded)]))
    start = 0
    for sample in encoded:
        with torch.no_grad():  # the model's own positions for the sample alone, its time included
            theirs = model(
                input_ids=sample.input_ids[None],
                mm_token_type_ids=sample.mm_token_type_ids[None],
                pixel_values_videos=sample.pixel_values_videos,
                video_grid_thw=sample.video_grid_thw,
                second_per_grid_ts=sample.second_per_grid_ts,
                use_cache=False,
            ).logits[0]
        torch.testing.assert_close(packed[start : start + sample.length], theirs, rtol=1e-5, atol=1e-5)
        start += sample.length
    # The control: positions without the clips' time (1 s per frame pair assumed) differ.
    untimed = collate([concat_samples(encoded)])
    untimed.pop("second_per_grid_ts")
    assert not torch.allclose(logits(untimed), packed, atol=1e-5)


def test_train_tiny_qwen25_then_evaluate_it_by_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from obv_eval.train.cli import main as train_main

    monkeypatch.setenv("OBV_EVAL_CHECKPOINTS", str(tmp_path / "checkpoints"))
    assert train_main(["--model", "tiny-qwen2.5-vl", "--max-steps", "2", "--no-progress"]) == 0
    trained = tmp_path / "checkpoints" / "tiny-qwen2.5-vl-obv"
    assert family_of_checkpoint(trained).name == "qwen2_5_vl"
    args = ["--model", "tiny-qwen2.5-vl-obv", "--tasks", "video", "--limit", "1", "--no-progress"]
    assert main([*args, "--output-dir", str(tmp_path / "out"), "--run-id", "r"]) == 0
    results = json.loads((tmp_path / "out" / "tiny-qwen2.5-vl-obv" / "r" / "results.json").read_text())
    assert set(results["tasks"]) == {"surgeryvqa", "mimicechoqa"}


def test_obv_train_refuses_a_family_it_was_not_written_for(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from obv_eval.train.cli import main as train_main

    out = tmp_path / "out"
    assert train_main(["--model", "tiny-llava-onevision", "--output-dir", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert "a LLaVA-OneVision checkpoint; obv-train trains Qwen2-VL and Qwen2.5-VL" in err[0]
    assert not out.exists()
