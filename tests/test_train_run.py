"""obv-train end to end on CPU: the tiny model learns, and its checkpoint is a complete, loadable folder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import AutoModelForImageTextToText, AutoProcessor

from obv_eval.conversation import build_messages, render_prompt
from obv_eval.media import VideoSettings, load_video
from obv_eval.registry import checkpoint_dir, resolve_model
from obv_eval.sources import SAMPLES_DIR
from obv_eval.train.cli import main
from obv_eval.train.config import load_config
from obv_eval.train.data import build_samples, encode_sample, load_train_rows
from obv_eval.train.manifest import read_manifest
from obv_eval.train.packing import PackCollator, concat_samples, prepare_packed_inputs
from obv_eval.train.trainer import ObvTrainer, TrainResult, default_output_dir, resolve_base_model, train

MEDIA = SAMPLES_DIR / "media" / "openbiomedvid"


@pytest.fixture()
def trained(tiny_obv: TrainResult) -> TrainResult:
    # The session's tiny_cpu training run (tests/conftest.py), shared with the tests that evaluate it.
    return tiny_obv


def _batch(processor: Any, config_name: str = "tiny_cpu") -> dict[str, Any]:
    config = load_config(config_name)
    samples = build_samples(load_train_rows("samples")[0][:2]).samples
    encoded = [encode_sample(processor, s, load_video(s.video, config.video, root=MEDIA)) for s in samples]
    return PackCollator(processor.tokenizer.pad_token_id)([concat_samples(encoded)])


def _loss(path: Path, batch: dict[str, Any]) -> float:
    model = AutoModelForImageTextToText.from_pretrained(path).eval()
    with torch.no_grad():
        return float(model(**prepare_packed_inputs(model, batch)).loss)


def test_training_lowers_the_loss_on_a_repeated_batch(trained: TrainResult, tiny_model_path: Path) -> None:
    batch = _batch(AutoProcessor.from_pretrained(tiny_model_path))
    before, after = _loss(tiny_model_path, batch), _loss(trained.output_dir, batch)
    assert after < before - 0.1
    logged = [entry["loss"] for entry in trained.log_history if "loss" in entry]
    assert len(logged) == 6 and logged[-1] < logged[0]
    assert all("tokens_per_second" in e and "pack_fill" in e for e in trained.log_history if "loss" in e)


def _greedy(path: Path) -> list[int]:
    """The evaluation path: one user turn, eval frame settings, greedy decoding."""
    processor = AutoProcessor.from_pretrained(path)
    model = AutoModelForImageTextToText.from_pretrained(path).eval()
    row = json.loads((SAMPLES_DIR / "surgeryvqa" / "test.jsonl").read_text().splitlines()[0])
    video = load_video(row["video"], VideoSettings(), root=SAMPLES_DIR / "media" / "surgeryvqa")
    prompt = render_prompt(processor, build_messages(row["question"], ["video"]))
    inputs = processor(text=[prompt], videos=[video.frames], return_tensors="pt")
    with torch.inference_mode():
        out = model.generate(**inputs, max_new_tokens=12, do_sample=False)
    return [int(t) for t in out[0, inputs["input_ids"].shape[1] :]]


def test_the_checkpoint_loads_and_answers_differently_from_the_base(
    trained: TrainResult, tiny_model_path: Path
) -> None:
    folder = trained.output_dir
    names = {p.name for p in folder.iterdir()}
    assert {
        "config.json",
        "model.safetensors",
        "chat_template.jinja",
        "tokenizer.json",
        "obv_manifest.json",
    } <= names
    assert not folder.with_name(folder.name + ".partial").exists()
    assert _greedy(folder) != _greedy(tiny_model_path)


def test_the_manifest_describes_base_data_and_counts(trained: TrainResult) -> None:
    manifest = read_manifest(trained.output_dir)
    assert manifest["base_model"]["reference"] == "tiny-qwen2vl" and manifest["method"] == "full"
    data = manifest["data"]
    assert (data["clips"], data["samples"], data["samples_trained"]) == (6, 12, 12)
    assert data["samples_by_kind"] == {"caption": 6, "qa": 6}
    assert data["over_length"]["count"] == 0 and data["media_failed"]["count"] == 0
    assert len(data["fingerprint"]) == 64 and manifest["versions"]["obv-eval"]
    assert manifest["overlap"]["benchmarks_checked"] == ["surgeryvqa", "mimicechoqa"]
    assert manifest["packing"]["sequences"] < 12 and manifest["training"]["global_steps"] == 6
    assert manifest["config"]["learning_rate"] == 2e-3


def test_default_output_is_where_the_registry_looks(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("OBV_EVAL_CHECKPOINTS", str(tmp_path))
    assert default_output_dir(resolve_base_model("tiny-qwen2vl")) == checkpoint_dir() / "tiny-qwen2vl-obv"
    # qwen2vl-2b -> qwen2vl-2b-obv, the registry's name for the fine-tuned model.
    (tmp_path / "qwen2vl-2b-obv").mkdir()
    (tmp_path / "qwen2vl-2b-obv" / "config.json").write_text('{"model_type": "qwen2_vl"}')  # its family
    assert resolve_model("qwen2vl-2b-obv").path == tmp_path / "qwen2vl-2b-obv"


def test_lora_writes_an_adapter_the_registry_resolves_to_its_base(
    tmp_path: Path, tiny_model_path: Path
) -> None:
    out = tmp_path / "lora"
    config = load_config(
        "tiny_cpu", {"output_dir": str(out), "method": "lora", "max_steps": 2, "progress": False, "lora.r": 4}
    )
    train(config, echo=lambda line: None)
    adapter = json.loads((out / "adapter_config.json").read_text())
    assert adapter["base_model_name_or_path"] == "tiny-qwen2vl" and not (out / "config.json").exists()
    resolved = resolve_model(str(out))
    assert resolved.adapter_path == out and resolved.path == tiny_model_path
    assert read_manifest(out)["method"] == "lora"


def test_resume_continues_from_the_last_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    common = [
        "--config",
        "tiny_cpu",
        "--no-progress",
        "--set",
        "save_steps=1",
        "--work-dir",
        str(tmp_path / "w"),
    ]
    assert main([*common, "--output-dir", str(tmp_path / "a"), "--max-steps", "2"]) == 0
    assert (tmp_path / "w" / "checkpoint-2").is_dir()
    assert main([*common, "--output-dir", str(tmp_path / "a"), "--max-steps", "3", "--resume"]) == 2  # exists

    steps: list[int] = []
    original = ObvTrainer.training_step

    def counting_step(self: ObvTrainer, *args: Any, **kwargs: Any) -> Any:
        steps.append(self.state.global_step)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(ObvTrainer, "training_step", counting_step)
    assert (
        main([*common, "--output-dir", str(tmp_path / "a"), "--max-steps", "3", "--resume", "--overwrite"])
        == 0
    )
    assert steps == [2]  # only the third step ran, starting from checkpoint-2
    assert read_manifest(tmp_path / "a")["training"]["global_steps"] == 3


def test_training_refuses_a_split_that_overlaps_a_benchmark(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = load_train_rows("samples")[0]
    surgery = json.loads((SAMPLES_DIR / "surgeryvqa" / "test.jsonl").read_text().splitlines()[0])
    planted = {**rows[0], "id": "planted", "video_id": surgery["video_id"], "timestamp": surgery["timestamp"]}
    train_file = tmp_path / "train.jsonl"
    train_file.write_text("".join(json.dumps(row) + "\n" for row in [*rows, planted]))
    args = ["--config", "tiny_cpu", "--data", str(train_file), "--video-root", str(MEDIA)]
    args += ["--benchmark-data", "samples", "--output-dir", str(tmp_path / "out"), "--no-progress"]
    assert main(args) == 1
    assert "refusing to train" in capsys.readouterr().err and not (tmp_path / "out").exists()
