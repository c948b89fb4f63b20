"""Test-wide settings and the shared, expensive set-ups.

Settings: no network, and everything obv-eval builds goes into a temporary home.

Session fixtures made once and reused by every test that asks for them (keep the suite within its
time: a new test that needs a tiny run, a trained checkpoint or a judged pair takes one of these
instead of making its own). Treat what they return as read-only: copy a run folder before changing it.

- ``tiny_model_path``: the embedded random-weight Qwen2-VL (built once into $OBV_EVAL_HOME).
- ``tiny_obv``: ``obv-train --config tiny_cpu`` once; the fine-tuned ``tiny-qwen2vl-obv`` in its
  default place under a session checkpoints folder. Run it by name inside ``checkpoints(tiny_obv)``
  or after ``monkeypatch.setenv("OBV_EVAL_CHECKPOINTS", str(tiny_obv.output_dir.parent))``.
- ``demo_runs``: the demo twice (``--model tiny-qwen2vl --tasks all``, run ids ``first``, ``second``).
- ``judged_pair``: tiny-qwen2vl and tiny-qwen2vl-obv on surgeryvqa and vqarad, open-ended items
  judged by a local fake judge whose verdict hashes the whole request, so some items flip.
- ``realdata``: the real benchmark files; tests taking it skip where they are absent.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from obv_eval.train.trainer import TrainResult

# Set before any obv_eval module reads them: no test may reach a hub or write to ~/.cache.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
if "OBV_EVAL_HOME" not in os.environ:
    # The tiny models built into it take ~650 MB: removed when the process that made it exits (xdist
    # workers inherit the variable, so only the main process owns the folder).
    os.environ["OBV_EVAL_HOME"] = tempfile.mkdtemp(prefix="obv-eval-test-home-")
    atexit.register(shutil.rmtree, os.environ["OBV_EVAL_HOME"], ignore_errors=True)
os.environ.pop("OPENAI_API_KEY", None)


@pytest.fixture(scope="session")
def tiny_model_path() -> Path:
    from obv_eval.tiny_model import tiny_model_dir

    return tiny_model_dir()


@pytest.fixture()
def samples_source() -> Iterator[None]:
    from obv_eval.sources import parse_data_source, set_data_source

    set_data_source(parse_data_source("samples"))
    yield
    set_data_source(None)


# Real benchmark files and Qwen2-VL's own configs, present in CI beside the clone (../shared/realdata);
# a user's clone lacks them, so tests that need them take the `realdata` fixture and skip with this
# reason. OBV_EVAL_REALDATA moves the folder (scripts/make_samples.py and the benchmarks honour it too);
# pointed at a missing folder it hides the real one, as CI's second pass does (.ci/run).
DEFAULT_REALDATA = Path(__file__).resolve().parents[2] / "shared" / "realdata"
REALDATA = Path(os.environ.get("OBV_EVAL_REALDATA", DEFAULT_REALDATA))
NO_REALDATA = f"real data not found at {REALDATA} (CI has it; set OBV_EVAL_REALDATA to run these tests)"


def _hide_default_realdata(event: str, args: tuple[object, ...]) -> None:
    """With the real data hidden, code that still opens ../shared/realdata (ignoring OBV_EVAL_REALDATA)
    fails here, in this process, as it would on a clone without the folder."""
    if event not in ("open", "os.listdir", "os.scandir") or not args:
        return
    path = args[0]
    if isinstance(path, str | bytes | os.PathLike):
        name = os.path.abspath(os.fsdecode(path))
        if name.startswith(str(DEFAULT_REALDATA)):
            raise FileNotFoundError(f"{name}: real data is hidden (OBV_EVAL_REALDATA={REALDATA})")


if REALDATA != DEFAULT_REALDATA and not REALDATA.is_dir() and DEFAULT_REALDATA.is_dir():
    sys.addaudithook(_hide_default_realdata)


@pytest.fixture(scope="session")
def realdata() -> Path:
    """The real-data folder (OBV_EVAL_REALDATA, else ../shared/realdata); tests taking it skip without it."""
    if not REALDATA.is_dir():
        pytest.skip(NO_REALDATA)
    return REALDATA


# ---------------------------------------------------------------------------------------------------
# Shared runs (see the module docstring). Each is made in this process, once, on first use.


@contextmanager
def environ(**values: str) -> Iterator[None]:
    """Environment variables set for the block, restored after it (for session fixtures and helpers,
    where pytest's function-scoped monkeypatch is not available)."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextmanager
def checkpoints(trained: TrainResult) -> Iterator[None]:
    """The registry finds `trained` by its name (tiny-qwen2vl-obv) inside the block."""
    with environ(OBV_EVAL_CHECKPOINTS=str(trained.output_dir.parent)):
        yield


def run_obv_eval(*argv: str) -> None:
    """obv-eval in this process (what a user's command line runs); the run must exit 0."""
    from obv_eval.cli import main

    assert main(list(argv)) == 0, argv


@pytest.fixture(scope="session")
def tiny_obv(tmp_path_factory: pytest.TempPathFactory, tiny_model_path: Path) -> TrainResult:
    """The tiny model fine-tuned with the shipped tiny_cpu config (6 steps), written where the registry
    looks for tiny-qwen2vl-obv by default: <OBV_EVAL_CHECKPOINTS>/tiny-qwen2vl-obv."""
    from obv_eval.train.config import load_config
    from obv_eval.train.trainer import train

    folder = tmp_path_factory.mktemp("checkpoints")
    with environ(OBV_EVAL_CHECKPOINTS=str(folder)):
        result = train(load_config("tiny_cpu", {"progress": False}), echo=lambda line: None)
    assert result.output_dir == folder / "tiny-qwen2vl-obv"
    return result


@pytest.fixture(scope="session")
def demo_runs(tmp_path_factory: pytest.TempPathFactory, tiny_model_path: Path) -> tuple[Path, Path]:
    """The demo (`obv-eval --model tiny-qwen2vl --tasks all`) run twice: run ids first and second."""
    out = tmp_path_factory.mktemp("demo-runs")
    for run_id in ("first", "second"):
        run_obv_eval("--model", "tiny-qwen2vl", "--tasks", "all", "--output-dir", str(out),
                     "--run-id", run_id, "--no-progress")  # fmt: skip
    return out / "tiny-qwen2vl" / "first", out / "tiny-qwen2vl" / "second"


def verdict_by_hash(request: dict[str, Any]) -> str:
    """A judge whose verdict depends on the whole request (question, gold and the model's reply), so two
    models that answer differently get different verdicts: some items flip."""
    digest = hashlib.sha256(json.dumps(request["messages"], sort_keys=True).encode()).digest()
    return json.dumps({"verdict": digest[0] % 2})


@pytest.fixture(scope="session")
def judged_pair(tmp_path_factory: pytest.TempPathFactory, tiny_obv: TrainResult) -> dict[str, Path]:
    """{"base": tiny-qwen2vl's run, "tuned": tiny-qwen2vl-obv's run (by name)} on surgeryvqa and vqarad,
    run id "judged", open-ended items judged by a fake judge (verdict_by_hash)."""
    from fake_chat_server import FakeChatServer

    root = tmp_path_factory.mktemp("judged-pair")
    out = root / "runs"
    with FakeChatServer(verdict_by_hash) as server, checkpoints(tiny_obv), environ(FAKE_JUDGE_KEY="sk-fake"):
        judge = ["--judge-base-url", server.base_url, "--judge-model", "fake-judge"]
        judge += ["--judge-api-key-env", "FAKE_JUDGE_KEY", "--judge-cache", str(root / "judge.sqlite")]
        for model in ("tiny-qwen2vl", "tiny-qwen2vl-obv"):
            run_obv_eval("--model", model, "--run-id", "judged", "--tasks", "surgeryvqa", "vqarad",
                         "--output-dir", str(out), "--no-progress", *judge)  # fmt: skip
    return {"base": out / "tiny-qwen2vl" / "judged", "tuned": out / "tiny-qwen2vl-obv" / "judged"}
