"""Provenance (issue 15): model side files, hub revision, media digest, environment, API snapshot."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from fake_chat_server import FakeChatServer

from obv_eval.provenance import (
    environment,
    hub_revision,
    media_digest,
    model_files,
    record_rows,
    rows_provenance,
)


def test_model_files_hash_tokenizer_processor_and_config(tiny_model_path: Path, tmp_path: Path) -> None:
    files = model_files(tiny_model_path)
    assert "config.json" in files and any(name.startswith("tokenizer") for name in files)
    assert not any(name.endswith(".safetensors") for name in files)  # weights are hashed elsewhere
    copy = tmp_path / "model"
    shutil.copytree(tiny_model_path, copy)
    assert model_files(copy) == files  # content, not location
    edited = next(name for name in files if name.startswith("tokenizer"))
    (copy / edited).write_bytes((copy / edited).read_bytes() + b" ")
    changed = model_files(copy)
    assert changed[edited] != files[edited]
    unchanged = {k: v for k, v in files.items() if k != edited}
    assert {k: v for k, v in changed.items() if k != edited} == unchanged


def test_hub_revision_read_from_the_cache_path() -> None:
    sha = "0123456789abcdef0123456789abcdef01234567"

    class Fake:
        def __init__(self, filename: str) -> None:
            self.cache_files = [{"filename": filename}]

    assert hub_revision(Fake(f"/c/connectthapa84___mimic_echo_qa/default/0.0.0/{sha}/x.arrow")) == sha
    assert hub_revision(Fake("/tmp/local/data.arrow")) is None


def test_media_digest_sees_bytes_and_missing_files(tmp_path: Path) -> None:
    (tmp_path / "a.mp4").write_bytes(b"clip a")
    (tmp_path / "b.mp4").write_bytes(b"clip b")
    names = ["a.mp4", "b.mp4", "a.mp4"]  # a clip named twice is one file
    first = media_digest(names, tmp_path)
    assert (first["media_files"], first["media_missing"]) == (2, 0)
    (tmp_path / "b.mp4").write_bytes(b"clip B")
    assert media_digest(names, tmp_path)["media_sha256"] != first["media_sha256"]
    gone = media_digest([*names, "c.mp4"], tmp_path)
    assert gone["media_missing"] == 1 and gone["media_missing_examples"] == ["c.mp4"]


def test_bundled_samples_record_their_media() -> None:
    from obv_eval.benchmarks import BENCHMARKS
    from obv_eval.sources import parse_data_source
    from obv_eval.tasking import load_rows

    source = parse_data_source("samples")
    benchmark = BENCHMARKS["vqarad"]
    rows = load_rows(benchmark, source)
    record_rows(benchmark, source, rows)
    entry = rows_provenance(["vqarad", "not-loaded"])
    assert list(entry) == ["vqarad"]
    assert entry["vqarad"]["rows"] == len(rows) and entry["vqarad"]["media_files"] > 0
    assert entry["vqarad"]["media_missing"] == 0 and len(entry["vqarad"]["media_sha256"]) == 64


def test_environment_names_pillow_and_the_accelerator() -> None:
    import PIL
    import torch

    info = environment()
    assert info["pillow"] == PIL.__version__
    assert info["cuda_available"] is torch.cuda.is_available()
    if info["cuda_available"]:  # on a GPU machine: the models, driver and runtime
        assert info["gpus"] and info["cuda_runtime"] == torch.version.cuda and info["driver"]


def test_api_model_snapshot_is_recorded() -> None:
    from obv_eval.backends.base import GenerationRequest
    from obv_eval.backends.openai_compat import OpenAICompatBackend

    snapshot = {"served_model": "gpt-4o-2024-08-06", "system_fingerprint": "fp_x"}
    with FakeChatServer(lambda request: "ok", **snapshot) as fake:
        backend = OpenAICompatBackend("gpt-4o", base_url=fake.base_url)
        backend.generate([GenerationRequest(("obv_medqa", i), f"Q{i}?") for i in range(3)], progress=False)
    described = backend.describe()
    assert described["response_models"] == {"gpt-4o-2024-08-06": 3}
    assert described["system_fingerprints"] == {"fp_x": 3}


@pytest.mark.parametrize("name", ["config.json", "preprocessor_config.json"])
def test_model_file_names_cover_processor_and_config(name: str) -> None:
    from obv_eval.provenance import MODEL_FILE_NAMES

    assert name in MODEL_FILE_NAMES
