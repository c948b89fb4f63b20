"""Command-line behaviour that needs no model run: names, exit codes, listings."""

from __future__ import annotations

import http.server
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest

from obv_eval.benchmarks import BENCHMARKS, GROUPS, UnknownTaskError, resolve_task_names
from obv_eval.cli import main
from obv_eval.hub import HubUnavailable


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        (["surgeryvqa"], ["surgeryvqa"]),
        (["obv_medqa"], ["medqa"]),
        (["video"], ["mimicechoqa", "surgeryvqa"]),
        (["text", "medqa"], ["medqa", "pubmedqa"]),
        (["image,slake"], ["vqarad", "pathvqa", "slake"]),
        (["all"], list(GROUPS["all"])),
    ],
)
def test_task_names_and_groups_expand(names: list[str], expected: list[str]) -> None:
    assert resolve_task_names(names) == expected


def test_unknown_task_lists_valid_names() -> None:
    with pytest.raises(UnknownTaskError, match=r"unknown task 'nope'; valid: mimicechoqa, surgeryvqa"):
        resolve_task_names(["nope"])


def test_unknown_task_exits_2_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--model", "tiny-qwen2vl", "--tasks", "nope"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "valid:" in err[0] and "surgeryvqa" in err[0]


def test_unknown_model_exits_2_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--model", "gpt-9", "--tasks", "surgeryvqa"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "tiny-qwen2vl" in err[0] and "qwen2vl-7b-obv" in err[0]


def test_bad_flag_exits_2() -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--no-such-flag"])
    assert exit_info.value.code == 2


def test_missing_finetuned_checkpoint_says_how_to_train(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--model", "qwen2vl-7b-obv", "--tasks", "surgeryvqa", "--data", "samples"]) == 2
    err = capsys.readouterr().err
    assert "obv-train" in err and "--model-path" in err


def test_hub_unreachable_is_a_clear_error(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # The tests run with the hub off (conftest) and an empty cache: one line, and nothing written in the
    # folder the command ran from (no results/runs/..., no empty run folder).
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.chdir(tmp_path)
    assert main(["--model", "tiny-qwen2vl", "--tasks", "medqa", "--data", "hub", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert "cannot load medqa (GBaker/MedQA-USMLE-4-options)" in err[0] and "--data" in err[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_hub_off_with_the_dataset_in_the_cache_is_let_through(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from obv_eval.hub import check_hub_datasets

    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HF_DATASETS_CACHE", raising=False)
    medqa = BENCHMARKS["medqa"]
    with pytest.raises(HubUnavailable, match="the hub is off"):
        check_hub_datasets([medqa])
    (tmp_path / "hub" / "datasets--GBaker--MedQA-USMLE-4-options").mkdir(parents=True)
    check_hub_datasets([medqa])  # in the hub cache: the loader will find it
    shutil.rmtree(tmp_path / "hub")
    (tmp_path / "datasets" / "GBaker___med_qa-usmle-4-options").mkdir(parents=True)
    check_hub_datasets([medqa])  # prepared by datasets before: likewise


def test_a_benchmark_not_on_the_hub_is_refused_up_front() -> None:
    from obv_eval.hub import check_hub_datasets

    with pytest.raises(HubUnavailable, match="mimicechoqa: not on the Hugging Face hub"):
        check_hub_datasets([BENCHMARKS["mimicechoqa"]])


def test_the_hub_probe_tells_an_answering_server_from_a_silent_or_closed_one() -> None:
    from obv_eval.hub import unreachable_reason

    class _NotFound(http.server.BaseHTTPRequestHandler):
        def do_HEAD(self) -> None:
            self.send_response(404)  # any answer means the hub is there
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), _NotFound)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    with socket.socket() as silent, socket.socket() as closed:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)  # connects, never answers
        closed.bind(("127.0.0.1", 0))  # bound, not listening: refused
        try:
            assert unreachable_reason(f"http://127.0.0.1:{server.server_port}", timeout_s=5) is None
            started = time.monotonic()
            assert unreachable_reason(f"http://127.0.0.1:{silent.getsockname()[1]}", timeout_s=0.5) == (
                "no answer within 0.5 s"
            )
            assert time.monotonic() - started < 2
            assert "refused" in str(unreachable_reason(f"http://127.0.0.1:{closed.getsockname()[1]}", 2))
        finally:
            server.shutdown()
            server.server_close()


def test_tasks_dir_points_at_the_task_yamls(capsys: pytest.CaptureFixture[str]) -> None:
    from pathlib import Path

    assert main(["tasks-dir"]) == 0
    folder = Path(capsys.readouterr().out.strip())
    assert (folder / "surgeryvqa" / "surgeryvqa.yaml").exists()


def test_models_lists_availability(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for name in ("tiny-qwen2vl", "qwen2vl-2b", "qwen2vl-7b-obv", "gpt-4o"):
        assert name in out
    assert "OPENAI_API_KEY not set" in out


def test_model_path_hub_id_not_in_cache_says_how_to_get_it(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["--model", "qwen2vl-2b", "--model-path", "Qwen/Qwen2-VL-2B-Instruct", "--tasks", "medqa"])
    assert code == 2
    err = capsys.readouterr().err
    assert (
        "hf download Qwen/Qwen2-VL-2B-Instruct" in err and "huggingface-cli" not in err
    )  # the lock has `hf`


def test_model_path_folder_runs_under_its_own_name(
    tmp_path: object, tiny_model_path: object, capsys: pytest.CaptureFixture[str]
) -> None:
    from pathlib import Path

    out = Path(str(tmp_path))
    args = [
        "--model",
        "my-model",
        "--model-path",
        str(tiny_model_path),
        "--tasks",
        "medqa",
        "--data",
        "samples",
    ]
    assert main([*args, "--output-dir", str(out), "--run-id", "r", "--no-progress", "--limit", "2"]) == 0
    assert (out / "my-model" / "r" / "results.json").exists()


def test_data_check_on_an_unavailable_hub_is_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("HF_HOME", str(tmp_path))  # the tests' hub is off (conftest); the cache is empty
    assert main(["data", "check", "medqa", "--data", "hub", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot load medqa (GBaker/MedQA-USMLE-4-options): the hub is off" in err[0], err


def test_data_commands_parsed_elsewhere_take_verbose(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # `data prepare mimicechoqa` and `data overlap` have their own parsers: --verbose is taken before them
    missing = tmp_path / "no-dicoms"
    assert main(["data", "prepare", "mimicechoqa", "--source", str(missing), "--verbose"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"obv-eval: error: --source {missing}: not a folder"]
