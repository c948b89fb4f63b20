"""A resumed run never mixes records made under other settings (issue 24, point 1).

Each resume case is either regenerated or refused with one line (exit 2), and the records always agree
with the provenance; a second process on a run id is refused naming the holder; two checkpoints with
one basename never share a run folder.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from obv_eval.cli import main
from obv_eval.run_identity import request_digest, run_folder_name
from obv_eval.sources import SAMPLES_DIR, MediaRef


def _run(
    out: Path, run_id: str, *args: str, model: str = "tiny-qwen2vl", limit: int = 1, batch: int = 8
) -> int:
    return main(
        ["--model", model, "--tasks", "medqa", "--limit", str(limit), "--output-dir", str(out),
         "--run-id", run_id, "--no-progress", "--batch-size", str(batch), *args]
    )  # fmt: skip


def _records(run: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run / "samples.jsonl").read_text().splitlines()]


def _provenance(run: Path) -> dict[str, Any]:
    provenance: dict[str, Any] = json.loads((run / "results.json").read_text())["provenance"]
    return provenance


def _one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("obv-eval: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def _copy_model(source: Path, target: Path, perturb: bool) -> Path:
    shutil.copytree(source, target)
    if perturb:  # one bit of the last weight: same names, same config, other weights
        weights = sorted(target.glob("*.safetensors"))[0]
        data = bytearray(weights.read_bytes())
        data[-1] ^= 1
        weights.write_bytes(bytes(data))
    return target


def test_run_folders_keep_the_model_identity(tmp_path: Path) -> None:
    a, b = tmp_path / "a" / "x", tmp_path / "b" / "x"
    a.mkdir(parents=True)
    b.mkdir(parents=True)
    assert run_folder_name("tiny-qwen2vl") == "tiny-qwen2vl"  # a registry name stays readable
    assert run_folder_name(str(a)) != run_folder_name(str(b))
    assert run_folder_name(str(a)).startswith("x-") and run_folder_name(str(b)).startswith("x-")
    assert run_folder_name("org/x") != run_folder_name("other/x")  # served names too
    assert run_folder_name("a:b") != run_folder_name("a_b")  # escaping never merges two names
    for odd in (".", "..", "../..", "/"):
        name = run_folder_name(odd)
        assert "/" not in name and name.strip(".") == name and name
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:  # one folder however it is spelt
        assert run_folder_name("a/x") == run_folder_name(str(a)) == run_folder_name("./a/x/")
        (tmp_path / "tiny-qwen2vl").mkdir()  # a folder named like a registry model: the registry's wins
        assert run_folder_name("tiny-qwen2vl") == "tiny-qwen2vl"
    finally:
        os.chdir(cwd)


def test_a_request_digest_follows_the_prompt_the_media_bytes_and_the_settings(tmp_path: Path) -> None:
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    for folder in ("one", "two"):
        Image.new("RGB", (4, 4), (10, 20, 30)).save(tmp_path / folder / "a.png")
    Image.new("RGB", (4, 4), (10, 20, 31)).save(tmp_path / "two" / "b.png")
    settings = {"settings": {"generation": {"max_new_tokens": 32}}}

    def digest(text: str, *visuals: object, context: dict[str, Any] = settings) -> str:
        return request_digest(("obv_vqarad", 0), text, visuals, context)

    here, moved = (
        MediaRef("image", "a.png", str(tmp_path / "one")),
        MediaRef("image", "a.png", str(tmp_path / "two")),
    )
    assert digest("Q?", here) == digest("Q?", moved)  # the same bytes under another root: the same request
    assert digest("Q?", here) != digest("Q?", MediaRef("image", "b.png", str(tmp_path / "two")))
    assert digest("Q?", here) != digest("Q!", here)
    assert digest("Q?", here) != digest(
        "Q?", here, context={"settings": {"generation": {"max_new_tokens": 8}}}
    )
    pixels = Image.open(tmp_path / "one" / "a.png")
    assert digest("Q?", pixels) == digest("Q?", Image.open(tmp_path / "two" / "a.png"))
    missing = MediaRef("image", "gone.png", str(tmp_path))
    assert digest("Q?", missing) != digest("Q?", here)  # an unreadable file is a request too, never an error
    assert digest("\ud800 lone surrogate") != digest("Q?")


def test_resume_under_other_generation_settings_is_refused_and_restart_regenerates(
    tmp_path: Path, tiny_model_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "runs"
    run = out / "tiny-qwen2vl" / "X"
    assert _run(out, "X") == 0
    first = (run / "samples.jsonl").read_bytes()
    assert max(r["tokens"]["output"] for r in _records(run)) > 8  # the random model talks past 8 tokens
    capsys.readouterr()

    assert _run(out, "X", "--max-new-tokens", "8") == 2
    err = capsys.readouterr().err
    line = _one_error_line(err)
    assert "max_new_tokens 32 -> 8" in line and "--restart" in line
    assert "obv-eval: loading" not in err  # known before the model loads: refused before it does
    # Frame settings are known once the backend is built: refused there, before any item is generated.
    assert _run(out, "X", "--frames", "train") == 2
    assert "settings.frames.video" in _one_error_line(capsys.readouterr().err)
    assert (run / "samples.jsonl").read_bytes() == first  # nothing written under the refused settings

    (run / "report.html").write_text("a report of the 32-token records")
    assert _run(out, "X", "--max-new-tokens", "8", "--restart") == 0
    assert not (run / "report.html").exists()  # nothing made under the old settings stays in the folder
    records, provenance = _records(run), _provenance(run)
    assert provenance["generation"]["max_new_tokens"] == 8
    assert all(r["tokens"]["output"] <= 8 for r in records)  # every record made under what provenance says
    assert {k: v for k, v in provenance["run"].items() if k != "sessions"} == {
        "restarted": True,
        "outputs_reused": 0,
        "outputs_generated": 1,
    }
    assert [s["backend"]["batch_size"] for s in provenance["run"]["sessions"]] == [
        8
    ]  # the first run's is gone

    capsys.readouterr()
    assert _run(out, "X", "--max-new-tokens", "8") == 0  # the same settings resume: nothing regenerated
    assert _provenance(run)["run"]["outputs_reused"] == 1
    assert _provenance(run)["run"]["outputs_generated"] == 0
    assert len(_provenance(run)["run"]["sessions"]) == 1  # a start that generated nothing made no records
    assert "resuming" in capsys.readouterr().err


def test_resume_with_other_weights_is_refused_whatever_the_path(
    tmp_path: Path, tiny_model_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    same = _copy_model(tiny_model_path, tmp_path / "a" / "x", perturb=False)
    other = _copy_model(tiny_model_path, tmp_path / "b" / "x", perturb=True)
    out = tmp_path / "runs"
    run = out / "tiny-qwen2vl" / "W"
    assert _run(out, "W", "--data", "samples") == 0
    first = (run / "samples.jsonl").read_bytes()

    # Another path to the same bytes is the same model: the run resumes, every output reused.
    assert _run(out, "W", "--data", "samples", "--model-path", str(same)) == 0
    assert _provenance(run)["run"]["outputs_reused"] == 1
    assert (run / "samples.jsonl").read_bytes() == first

    capsys.readouterr()
    assert _run(out, "W", "--data", "samples", "--model-path", str(other)) == 2  # a perturbed copy
    err = capsys.readouterr().err
    assert "weights_sha256" in _one_error_line(err) and "obv-eval: loading" not in err
    assert (run / "samples.jsonl").read_bytes() == first

    # Two folders with one basename are two models: two run folders, each a fresh run of its own.
    assert _run(out, "W", "--data", "samples", model=str(same)) == 0
    assert _run(out, "W", "--data", "samples", model=str(other)) == 0
    folders = {p.parent.parent.name for p in out.glob("*/W/results.json")}
    assert folders == {"tiny-qwen2vl", run_folder_name(str(same)), run_folder_name(str(other))}
    for model in (same, other):
        assert _provenance(out / run_folder_name(str(model)) / "W")["run"]["outputs_reused"] == 0


def test_resume_against_a_server_now_serving_another_checkpoint_under_the_name_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A served model has no weights here: its identity is its name and the checkpoint the server says
    it loaded under that name (vLLM's /v1/models root); the server's address is not part of it."""
    from fake_chat_server import FakeChatServer

    out, run = tmp_path / "runs", tmp_path / "runs" / "served-m" / "S"

    def served(root: str | None) -> int:
        with FakeChatServer(reply=lambda body: "A", model="served-m", root=root) as server:
            return _run(out, "S", "--data", "samples", "--base-url", server.base_url, model="served-m")

    assert served("/ckpt/a") == 0
    identity = json.loads((run / "identity.json").read_text())
    assert identity["model"] == {"served_name": "served-m", "served_root": "/ckpt/a"}
    first = (run / "samples.jsonl").read_bytes()
    assert served("/ckpt/a") == 0  # another server (port) with the same checkpoint: every output reused
    assert _provenance(run)["run"]["outputs_reused"] == 1
    capsys.readouterr()
    assert served("/ckpt/b") == 2
    assert "served_root" in _one_error_line(capsys.readouterr().err)
    assert (run / "samples.jsonl").read_bytes() == first


def test_an_edited_row_is_generated_again_and_the_rest_reused(tmp_path: Path, tiny_model_path: Path) -> None:
    rows = [json.loads(line) for line in (SAMPLES_DIR / "medqa" / "test.jsonl").read_text().splitlines()]
    data = tmp_path / "data" / "medqa" / "test.jsonl"
    data.parent.mkdir(parents=True)
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "runs"
    run = out / "tiny-qwen2vl" / "E"
    assert _run(out, "E", "--data", str(tmp_path / "data"), limit=2) == 0
    before = _records(run)

    rows[1] = {**rows[1], "question": "An edited question: which option names the smallest bone?"}
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert _run(out, "E", "--data", str(tmp_path / "data"), limit=2, batch=1) == 0
    after, provenance = _records(run), _provenance(run)
    assert (provenance["run"]["outputs_reused"], provenance["run"]["outputs_generated"]) == (1, 1)
    # Both starts made records, each under its own batch size: provenance names both.
    assert [s["backend"]["batch_size"] for s in provenance["run"]["sessions"]] == [8, 1]
    assert after[0] == before[0]  # the unchanged row keeps its output
    assert "An edited question" in after[1]["question"] and "An edited question" in after[1]["prompt"]
    assert "An edited question" not in before[1]["prompt"]


_HOLD = """
import sys, time
from obv_eval.run_identity import run_lock
with run_lock(sys.argv[1]):
    print("held", flush=True)
    time.sleep(600)
"""


def test_a_second_process_on_a_run_id_exits_2_naming_the_holder_and_a_dead_holder_is_taken_over(
    tmp_path: Path, tiny_model_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "runs"
    run = out / "tiny-qwen2vl" / "L"
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD, str(run)], stdout=subprocess.PIPE, text=True, env=dict(os.environ)
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        assert _run(out, "L") == 2
        line = _one_error_line(capsys.readouterr().err)
        assert f"pid {holder.pid} on {socket.gethostname()}" in line and "in use" in line
        assert not (run / "generations.jsonl").exists()  # the refused process generated nothing
    finally:
        holder.send_signal(signal.SIGKILL)  # dies holding the lock: its note stays behind, stale
        holder.wait()
    assert (run / "run.lock.json").exists()
    assert _run(out, "L") == 0  # the kernel released the dead holder's lock: this run takes it over
    assert len(_records(run)) == 1
    assert not (run / "run.lock.json").exists()  # released at the end
